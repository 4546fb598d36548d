"""Property-based requests from /openapi.json (schemathesis): no input may cause a 5xx.

Every operation of the app is exercised, form and JSON bodies alike, with a bounded and
derandomized run so that CI sees the same cases each time.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from starlette.types import ASGIApp, Receive, Scope, Send

from digest.db import reset_caches
from digest.web.app import create_app


class CurrentApp:
    """The app a test built for its own database and settings, behind one stable ASGI callable.

    The schema is read once at import (the OpenAPI document does not depend on the database);
    the requests go to the app of the running test. (`schemathesis.pytest.from_fixture` would
    do this, but does not run on pytest 9.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


current = CurrentApp(create_app())
schema = schemathesis.openapi.from_asgi("/openapi.json", current)


@pytest.fixture(autouse=True)
def live_app(
    pg: str, redis_url: str, eager_tasks: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Limits high enough not to answer 429 to the fuzzer; PostgreSQL, Redis, eager tasks."""
    monkeypatch.setenv("DIGEST_SUBSCRIBE_RATE_PER_IP", "100000/minute")
    monkeypatch.setenv("DIGEST_SUBSCRIBE_RATE_PER_EMAIL", "100000/hour")
    reset_caches()
    previous, current.app = current.app, create_app()
    yield
    current.app = previous


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_request_from_the_schema_gets_a_server_error(case) -> None:
    case.call_and_validate(checks=[not_a_server_error])
