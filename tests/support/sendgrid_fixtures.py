"""Fixtures for sending tests: the fake SendGrid on loopback and settings that point at it.

Every request the fake receives is checked against SendGrid's rules (`tests/sendgrid_rules.py`);
a test that leaves a broken rule behind fails at teardown, even when the code under test took
the 400 in its stride. Registered for every test by the root conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from digest.db import reset_caches
from tests.support.sendgrid_server import DEFAULT_KEY, FakeSendGrid


def assert_no_violations(server: FakeSendGrid) -> None:
    """Fail with every SendGrid rule our requests broke (each with the page that states it)."""
    broken = server.take_violations()
    if broken:
        lines = "\n".join(f"  {v.field}: {v.message} [{v.rule}; {v.help}]" for v in broken)
        pytest.fail(f"requests to SendGrid broke its rules:\n{lines}", pytrace=False)


@pytest.fixture(scope="module")
def _module_sendgrid() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as server:
        yield server
        assert_no_violations(server)  # requests from worker processes outside any one test


@pytest.fixture
def fake_sendgrid(_module_sendgrid: FakeSendGrid) -> Iterator[FakeSendGrid]:
    """The module's fake SendGrid, forgotten and reset to good behaviour for this test."""
    _module_sendgrid.reset()
    _module_sendgrid.set_max_bytes(30 * 1024 * 1024)
    yield _module_sendgrid
    _module_sendgrid.reset()
    assert_no_violations(_module_sendgrid)


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
