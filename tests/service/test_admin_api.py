"""The operators' HTTP API: POST /admin/digests, GET /admin/digests/{id}, POST …/cancel."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from digest.db import session_scope
from digest.planning import plan_digest, request_digest
from digest.web.app import create_app
from schema.models import DeliveryBatch
from tests.support.recipients import add_subscribers, count, publish
from tests.support.services import ADMIN_TOKEN, read_outbox

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
NOW = datetime.now(UTC)


@pytest.fixture
def client(pg: str) -> Iterator[TestClient]:
    from workers.app import app as celery_app

    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True  # the embedded default: tasks run in-process
    with session_scope() as session:
        publish(
            session,
            [("quillmate-vs-parsewell", "Writing"), ("palettebird-vs-vectorine", "Design")],
            at=NOW - timedelta(hours=1),
        )
        add_subscribers(session, 3)
        add_subscribers(session, 2, prefix="design", categories=["Design"])
    yield TestClient(create_app())
    celery_app.conf.task_always_eager = eager


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/admin/digests"), ("get", "/admin/digests/1"), ("post", "/admin/digests/1/cancel")],
)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": ADMIN_TOKEN},
        {"X-Token": ADMIN_TOKEN},
    ],
)
def test_every_route_needs_the_admin_token(
    client: TestClient, method: str, path: str, headers: dict[str, str]
) -> None:
    response = client.request(method, path, json={}, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    with session_scope() as session:
        assert count(session, DeliveryBatch) == 0


def test_the_ingest_token_is_not_an_admin_token(client: TestClient) -> None:
    from tests.support.services import INGEST_TOKEN

    response = client.post(
        "/admin/digests", json={}, headers={"Authorization": f"Bearer {INGEST_TOKEN}"}
    )
    assert response.status_code == 401


def test_an_empty_admin_token_switches_the_api_off(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.db import reset_caches

    monkeypatch.setenv("DIGEST_ADMIN_TOKEN", "")
    reset_caches()
    response = client.post("/admin/digests", json={}, headers={"Authorization": "Bearer "})
    assert response.status_code == 401


def test_the_token_is_compared_in_constant_time(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr("digest.web.auth.hmac.compare_digest", spy)
    client.get("/admin/digests/1", headers={"Authorization": "Bearer guess"})
    assert compared == [(b"guess", ADMIN_TOKEN.encode())]


def test_post_sends_an_ad_hoc_digest(client: TestClient, outbox: object) -> None:
    response = client.post("/admin/digests", json={}, headers=AUTH)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["kind"] == "adhoc" and body["status"] == "sent"  # in-process: done already
    assert response.headers["Location"] == f"/admin/digests/{body['id']}"
    assert len(read_outbox(outbox)) == 5  # type: ignore[arg-type]


def test_get_reports_status_counts_and_plan(client: TestClient) -> None:
    digest_id = client.post("/admin/digests", json={}, headers=AUTH).json()["id"]
    response = client.get(f"/admin/digests/{digest_id}", headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "sent"
    assert body["recipients"] == 5 and body["items"] == 2
    assert body["deliveries"]["sent"] == 5 and body["batches"]["sent"] == 2
    assert sorted((s["key"], s["recipients"]) for s in body["segments"]) == [
        ("all", 3),
        ("categories:design", 2),
    ]
    assert body["renders"] == 2


def test_dry_run_plans_and_sends_nothing(client: TestClient, outbox: object) -> None:
    response = client.post("/admin/digests", json={"dry_run": True}, headers=AUTH)
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "cancelled" and body["status_reason"].startswith("dry run")
    detail = client.get(f"/admin/digests/{body['id']}", headers=AUTH).json()
    assert detail["dry_run"] is True and detail["recipients"] == 5
    assert sum(detail["batches"].values()) == 0
    assert read_outbox(outbox) == []  # type: ignore[arg-type]


def test_to_sends_one_test_copy(client: TestClient, outbox: object) -> None:
    response = client.post(
        "/admin/digests", json={"to": "ops@example.org", "subject": "Preview"}, headers=AUTH
    )
    assert response.status_code == 202
    assert response.json()["kind"] == "test"
    [message] = read_outbox(outbox)  # type: ignore[arg-type]
    assert message["To"] == "ops@example.org"
    assert message["Subject"] == "[Test] Preview"


def test_segment_and_window_are_honoured(client: TestClient, outbox: object) -> None:
    since = (NOW - timedelta(days=2)).isoformat()
    response = client.post(
        "/admin/digests", json={"segment": "Design", "since": since}, headers=AUTH
    )
    detail = client.get(f"/admin/digests/{response.json()['id']}", headers=AUTH).json()
    assert detail["items"] == 1
    assert detail["window_start"] == datetime.fromisoformat(since).isoformat()
    assert len(read_outbox(outbox)) == 5  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"segment": ["Gardening"]}, "segment"),
        ({"to": "not an address"}, "to"),
        ({"since": "2026-11-20T00:00:00Z", "until": "2026-11-19T00:00:00Z"}, "since"),
        ({"subject": "   "}, "subject"),
        ({"since": "last tuesday"}, "since"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_bad_fields_are_422_naming_the_field(
    client: TestClient, body: dict[str, object], field: str
) -> None:
    response = client.post("/admin/digests", json=body, headers=AUTH)
    assert response.status_code == 422
    assert field in str(response.json()["detail"][0]["loc"])
    with session_scope() as session:
        assert count(session, DeliveryBatch) == 0


def test_cancel_stops_the_pending_batches(client: TestClient) -> None:
    with session_scope() as session:  # planned, but no worker has taken its batches yet
        digest = request_digest(session)
        report = plan_digest(session, digest)
    assert report.status == "sending"
    response = client.post(f"/admin/digests/{report.digest_id}/cancel", headers=AUTH)
    assert response.status_code == 200
    assert response.json()["batches_cancelled"] == 2
    detail = client.get(f"/admin/digests/{report.digest_id}", headers=AUTH).json()
    assert detail["status"] == "cancelled" and detail["batches"]["cancelled"] == 2


def test_cancel_of_a_sent_digest_is_409(client: TestClient) -> None:
    digest_id = client.post("/admin/digests", json={}, headers=AUTH).json()["id"]
    assert client.post(f"/admin/digests/{digest_id}/cancel", headers=AUTH).status_code == 409


def test_unknown_digest_is_404(client: TestClient) -> None:
    assert client.get("/admin/digests/999", headers=AUTH).status_code == 404
    assert client.post("/admin/digests/999/cancel", headers=AUTH).status_code == 404
