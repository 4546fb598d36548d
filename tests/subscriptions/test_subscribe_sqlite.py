"""The embedded default: signups on SQLite with in-process rate limits and tasks."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.support.subscriber_fixtures import count_subscribers, find, link, mail, path_of


@pytest.fixture
def lite(sqlite: str, eager_tasks: None) -> TestClient:
    from digest.web.app import create_app

    return TestClient(create_app(), follow_redirects=False)


def test_signup_and_confirmation_work_on_sqlite(lite: TestClient, outbox: Path) -> None:
    assert lite.post("/subscribe", json={"email": "ada@example.com"}).status_code == 202
    lite.post(path_of(link(mail(outbox, "ada@example.com", "confirmation"), "confirm")))
    assert find("ada@example.com").status == "active"


def test_ascii_case_variants_are_one_subscriber_on_sqlite(lite: TestClient) -> None:
    for address in ("ada@example.com", "ADA@example.com", "Ada@EXAMPLE.COM"):
        assert lite.post("/subscribe", json={"email": address}).status_code == 202
    assert count_subscribers() == 1


def test_non_ascii_case_variants_stay_apart_on_sqlite_but_never_fail(lite: TestClient) -> None:
    """SQLite's lower() folds ASCII only, so Åsa and åsa are two rows here (one on PostgreSQL)."""
    for address in ("Åsa@example.com", "Åsa@example.com", "åsa@example.com"):
        assert lite.post("/subscribe", json={"email": address}).status_code == 202
    assert count_subscribers() == 2


def test_rate_limits_count_in_process_without_redis(
    sqlite: str, eager_tasks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.db import reset_caches
    from digest.web.app import create_app

    monkeypatch.setenv("DIGEST_SUBSCRIBE_RATE_PER_IP", "2/minute")
    reset_caches()
    client = TestClient(create_app())
    answers = [
        client.post("/subscribe", json={"email": f"r{i}@example.com"}).status_code for i in range(3)
    ]
    assert answers == [202, 202, 429]
