"""Fixtures for sending tests: the fake SendGrid on loopback and settings that point at it.

Load them in a test module with `pytest_plugins = ["tests.sendgrid_fixtures"]`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from digest.db import reset_caches
from tests.sendgrid_server import DEFAULT_KEY, FakeSendGrid


@pytest.fixture(scope="module")
def _module_sendgrid() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as server:
        yield server


@pytest.fixture
def fake_sendgrid(_module_sendgrid: FakeSendGrid) -> Iterator[FakeSendGrid]:
    """The module's fake SendGrid, forgotten and reset to good behaviour for this test."""
    _module_sendgrid.reset()
    _module_sendgrid.set_max_bytes(30 * 1024 * 1024)
    yield _module_sendgrid
    _module_sendgrid.reset()


@pytest.fixture
def sendgrid_env(
    pg: str, fake_sendgrid: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> FakeSendGrid:
    """PostgreSQL plus the SendGrid backend aimed at the fake, with short timeouts and delays."""
    monkeypatch.setenv("DIGEST_EMAIL_BACKEND", "sendgrid")
    monkeypatch.setenv("DIGEST_SENDGRID_HOST", fake_sendgrid.url)
    monkeypatch.setenv("SENDGRID_API_KEY", DEFAULT_KEY)
    monkeypatch.setenv("DIGEST_SENDGRID_TIMEOUT", "1")
    monkeypatch.setenv("DIGEST_SEND_RETRY_BASE_DELAY", "0.2")
    monkeypatch.setenv("DIGEST_SEND_RETRY_MAX_DELAY", "2")
    monkeypatch.setenv("DIGEST_SEND_MAX_ATTEMPTS", "4")
    reset_caches()
    return fake_sendgrid
