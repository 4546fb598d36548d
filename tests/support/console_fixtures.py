"""The console under test: an operator, a client that signs in through the form, CSRF tokens
read from the pages as a browser would."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from playwright.sync_api import Page

from bench.procs import Proc, free_port, port_open, wait_for
from digest.db import reset_caches, session_scope
from digest.operators import create_operator

OPERATOR = "ops@example.com"
PASSWORD = "correct horse battery staple"
_HIDDEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass(frozen=True)
class OperatorAccount:
    email: str
    password: str


def add_operator(email: str = OPERATOR, password: str = PASSWORD) -> OperatorAccount:
    with session_scope() as session:
        create_operator(session, email, password)
    return OperatorAccount(email, password)


def csrf_in(html: str) -> str:
    found = _HIDDEN.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def sign_in_in_browser(page: Page, base: str, path: str, email: str) -> None:
    """Open `path` signed out, follow the console to its sign-in form, sign in as `email`
    (password PASSWORD) and land back on `path`."""
    page.goto(base + path)
    page.wait_for_url(lambda url: "/console/login?next=" in url)
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: url.endswith(path))


def sign_in(
    client: TestClient, email: str = OPERATOR, password: str = PASSWORD, next: str = ""
) -> Response:
    """Open the sign-in form (its cookie and token), then post it; redirects not followed."""
    form = client.get("/console/login")
    return client.post(
        "/console/login",
        data={
            "email": email,
            "password": password,
            "csrf_token": csrf_in(form.text),
            "next": next,
        },
        follow_redirects=False,
    )


@pytest.fixture
def operator(pg: str) -> OperatorAccount:
    return add_operator()


@pytest.fixture
def console(pg: str, redis_url: str, eager_tasks: None) -> Iterator[TestClient]:
    """The app on PostgreSQL with limits in Redis; not signed in."""
    from digest.web.app import create_app

    with TestClient(create_app()) as client:
        yield client


@pytest.fixture
def signed_in(console: TestClient, operator: OperatorAccount) -> TestClient:
    answer = sign_in(console)
    assert answer.status_code == 303, answer.text
    return console


@pytest.fixture
def console_web(
    worker_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The app under uvicorn in a child process, publishing its tasks to this test's Redis (a
    worker from `launch` runs them); its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("DIGEST_PUBLIC_URL", base)
    reset_caches()
    argv = [sys.executable, "-m", "uvicorn", "digest.web.app:app", f"--port={port}"]
    proc = Proc(
        "console-web", argv, env={**worker_env, "DIGEST_PUBLIC_URL": base}, log_dir=tmp_path
    )
    proc.start()
    try:
        wait_for(lambda: port_open(port) or not proc.alive, 60, what="uvicorn to listen")
        assert proc.alive, proc.log_tail()
        yield base
    finally:
        proc.stop(timeout=10)
        reset_caches()
