"""The console under test: an operator, a client that signs in through the form, CSRF tokens
read from the pages as a browser would."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from digest.db import session_scope
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
