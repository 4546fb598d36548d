"""Fixtures for webhook tests: a signing key the app trusts, and a client of the app.

Load them in a test module with `pytest_plugins = ["tests.webhook_fixtures"]`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from digest.db import reset_caches
from digest.web.app import create_app
from tests.signed_webhooks import Signer, eager_celery


@pytest.fixture
def signer(pg: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Signer]:
    """Our own P-256 key pair, its public half configured; tasks run in-process."""
    signer = Signer()
    monkeypatch.setenv("DIGEST_SENDGRID_WEBHOOK_PUBLIC_KEY", signer.public_key)
    reset_caches()
    with eager_celery():
        yield signer


@pytest.fixture
def client(signer: Signer) -> TestClient:
    return TestClient(create_app())
