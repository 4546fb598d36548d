"""Fixture for webhook tests: a signing key the app trusts.

Fixtures registered by the root conftest are seen by every test module, so only names no
other module uses belong here (a shared `client` would shadow the subscription tests' own).
Registered for every test by the root conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from digest.db import reset_caches
from tests.support.signed_webhooks import Signer, eager_celery


@pytest.fixture
def signer(pg: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Signer]:
    """Our own P-256 key pair, its public half configured; tasks run in-process."""
    signer = Signer()
    monkeypatch.setenv("DIGEST_SENDGRID_WEBHOOK_PUBLIC_KEY", signer.public_key)
    reset_caches()
    with eager_celery():
        yield signer
