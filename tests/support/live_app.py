"""The app under uvicorn in child processes, publishing tasks to this test's Redis: for tests
that go through a real socket to a real worker (console lists, metrics).

Registered for every test by the root conftest.py.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from bench.procs import Proc, free_port, port_open, wait_for
from digest.db import reset_caches

ServeApp = Callable[..., str]
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def serve_app(
    worker_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ServeApp]:
    """`serve_app(workers=1, **env)` starts uvicorn and returns its base URL; stopped after."""
    started: list[Proc] = []

    def start(workers: int = 1, **env: str) -> str:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        monkeypatch.setenv("DIGEST_PUBLIC_URL", base)
        reset_caches()
        argv = [
            sys.executable, "-m", "uvicorn", "digest.web.app:app",
            f"--port={port}", f"--workers={workers}",
        ]  # fmt: skip
        merged = {**worker_env, "DIGEST_PUBLIC_URL": base, **env}
        proc = Proc(f"web-{port}", argv, env=merged, log_dir=tmp_path).start()
        started.append(proc)
        wait_for(lambda: port_open(port) or not proc.alive, 60, what="uvicorn to listen")
        assert proc.alive, proc.log_tail()
        return base

    yield start
    for proc in started:
        proc.stop(timeout=10)
    reset_caches()


def console_client(base: str, email: str, password: str) -> httpx.Client:
    """An HTTP client signed in to the console at `base` through the sign-in form."""
    client = httpx.Client(base_url=base, timeout=30)
    form = client.get("/console/login")
    answer = client.post(
        "/console/login",
        data={"email": email, "password": password, "csrf_token": csrf_of(form.text)},
    )
    assert answer.status_code == 303, answer.text
    return client


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)
