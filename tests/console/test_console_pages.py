"""The console's pages and actions: the same facts and operations as the CLI, each action in
the audit log, operator-visible data escaped."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from digest import audit
from digest.db import session_scope
from schema.models import Comparison, Delivery, DeliveryBatch, Digest, EmailEvent, utcnow
from tests.support.console_fixtures import OPERATOR, csrf_in
from tests.support.html import Page
from tests.support.planned_rows import plan_rows
from tests.support.sent_digests import sent_digest

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _actions() -> list[tuple[str, str, str | None]]:
    with session_scope() as session:
        return [(e.actor, e.action, e.target) for e in audit.recent(session).entries]


def _post(client: TestClient, path: str, **data: str):
    token = csrf_in(client.get("/console").text)
    return client.post(path, data={"csrf_token": token, **data}, follow_redirects=False)


def test_cancel_from_the_digest_page_cancels_through_operations_and_is_audited(
    signed_in: TestClient,
) -> None:
    with session_scope() as session:
        planned = plan_rows(session, 5, batch_size=2)
    page = signed_in.get(f"/console/digests/{planned.digest_id}")
    assert "Cancel this digest" in page.text
    answer = _post(signed_in, f"/console/digests/{planned.digest_id}/cancel")
    assert answer.status_code == 303
    with session_scope() as session:
        assert session.get(Digest, planned.digest_id).status == "cancelled"
        statuses = set(session.scalars(select(DeliveryBatch.status)))
    assert statuses == {"cancelled"}
    assert _actions()[0] == (OPERATOR, "digest.cancelled", f"digest {planned.digest_id}")
    assert "Cancelled" in signed_in.get(answer.headers["location"]).text


def test_cancelling_a_sent_digest_is_refused_with_the_reason(signed_in: TestClient) -> None:
    with session_scope() as session:
        sent = sent_digest(session, ["a@example.com"])
    answer = _post(signed_in, f"/console/digests/{sent.digest_id}/cancel")
    assert answer.status_code == 409
    assert "already sent" in answer.text
    assert [a for _, a, _ in _actions()] == ["console.sign-in"]


def test_resume_queues_the_paused_digests_batches_and_is_audited(
    signed_in: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    queued: list[list[int]] = []
    monkeypatch.setattr("digest.web.console.digest_pages.dispatch_batches", queued.append)
    with session_scope() as session:
        planned = plan_rows(session, 4, batch_size=2, status="paused")
    answer = _post(signed_in, f"/console/digests/{planned.digest_id}/resume")
    assert answer.status_code == 303
    assert queued == [planned.batch_ids]
    assert _actions()[0][1] == "digest.resumed"


@pytest.mark.parametrize(
    ("decision", "batch_status", "queued"),
    [("resend", "pending", True), ("mark-sent", "sent", False), ("mark-failed", "failed", False)],
)
def test_each_ambiguous_batch_offers_the_three_decisions(
    signed_in: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    decision: str,
    batch_status: str,
    queued: bool,
) -> None:
    sent: list[list[int]] = []
    monkeypatch.setattr("digest.web.console.digest_pages.dispatch_batches", sent.append)
    with session_scope() as session:
        planned = plan_rows(session, 2)
        session.execute(update(DeliveryBatch).values(status="ambiguous", claimed_at=utcnow()))
    batch = planned.batch_ids[0]
    page = signed_in.get(f"/console/digests/{planned.digest_id}").text
    for label in ("Resend", "Mark sent", "Mark failed"):
        assert label in page
    answer = _post(
        signed_in, f"/console/digests/{planned.digest_id}/batches/{batch}", decision=decision
    )
    assert answer.status_code == 303
    with session_scope() as session:
        assert session.get(DeliveryBatch, batch).status == batch_status
    assert sent == ([[batch]] if queued else [])
    assert _actions()[0] == (OPERATOR, "digest.settled", f"digest {planned.digest_id}")


def test_the_ledger_answers_did_this_person_get_it_when_with_which_id_and_what_next(
    signed_in: TestClient,
) -> None:
    with session_scope() as session:
        sent = sent_digest(session, ["reader@example.com", "other@example.com"], message_id="m-42")
        session.add(
            EmailEvent(
                event="delivered",
                email="reader@example.com",
                occurred_at=utcnow(),
                delivery_id=sent.deliveries["reader@example.com"],
                digest_id=sent.digest_id,
                payload={},
            )
        )
    page = signed_in.get(
        f"/console/digests/{sent.digest_id}", params={"address": "Reader@Example.com"}
    ).text
    assert "reader@example.com" in page and "m-42" in page and "delivered" in page
    assert "other@example.com" not in page
    missing = signed_in.get(
        f"/console/digests/{sent.digest_id}", params={"address": "nobody@example.com"}
    )
    assert "is not a recipient" in missing.text


def test_markup_in_subjects_reasons_and_addresses_is_shown_as_text(signed_in: TestClient) -> None:
    with session_scope() as session:
        planned = plan_rows(session, 1, status="failed")
        session.execute(update(Digest).values(subject=HOSTILE, status_reason=HOSTILE))
        session.execute(update(Delivery).values(email=f"x{HOSTILE}@example.com"))
        session.add(
            Comparison(
                slug="hostile",
                title=HOSTILE,
                published_at=utcnow(),
                updated_at=utcnow(),
                verdict_fingerprint="f",
                content_hash="h",
                source="api",
            )
        )
        audit.record(session, OPERATOR, "test.hostile", HOSTILE, HOSTILE)
    pages = [
        signed_in.get("/console").text,
        signed_in.get("/console/digests").text,
        signed_in.get(f"/console/digests/{planned.digest_id}").text,
        signed_in.get(
            f"/console/digests/{planned.digest_id}", params={"address": f"x{HOSTILE}@example.com"}
        ).text,
        signed_in.get("/console/audit").text,
    ]
    for html in pages:
        assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;" in pages[2]


def test_dashboard_shows_waves_sending_now_last_digests_and_what_needs_a_person(
    signed_in: TestClient,
) -> None:
    with session_scope() as session:
        sending = plan_rows(session, 3, prefix="s")
        paused = plan_rows(session, 1, prefix="p", status="paused")
        stuck = Digest(kind="adhoc", status="planned", created_at=utcnow() - timedelta(hours=1))
        session.add(stuck)
        session.flush()
        stuck_id = stuck.id
    page = signed_in.get("/console").text
    assert "UTC" in page and "Next weekly slot" in page
    assert f'href="/console/digests/{sending.digest_id}"' in page
    assert "Sending now" in page and "0 of 3 recipients done" in page
    assert f"digest {paused.digest_id}</a>" in page
    assert f"digest {stuck_id}</a>: planned" in page
    live = signed_in.get("/console/live", headers={"HX-Request": "true"})
    assert live.status_code == 200 and 'hx-trigger="every 3s"' in live.text


def test_the_audit_page_lists_each_action_newest_first(signed_in: TestClient) -> None:
    with session_scope() as session:
        planned = plan_rows(session, 1)
    _post(signed_in, f"/console/digests/{planned.digest_id}/cancel")
    html = signed_in.get("/console/audit").text
    assert html.index("digest.cancelled") < html.index("console.sign-in")
    assert OPERATOR in html


def test_audit_page_numbers_out_of_range_are_clamped(signed_in: TestClient) -> None:
    for page in ("0", "-5", "999999"):
        assert signed_in.get("/console/audit", params={"page": page}).status_code == 200
    assert signed_in.get("/console/audit", params={"page": "x"}).status_code == 422


def test_an_unknown_digest_is_404(signed_in: TestClient) -> None:
    assert signed_in.get("/console/digests/999999").status_code == 404
    assert _post(signed_in, "/console/digests/999999/cancel").status_code == 404


def test_dashboard_shows_the_latest_weekly_editions_waves(signed_in: TestClient) -> None:
    with session_scope() as session:
        for zone, status in (("Europe/Berlin", "sent"), ("America/New_York", "sending")):
            session.add(
                Digest(
                    kind="weekly",
                    status=status,
                    edition="2026-11-30T09:00:00",
                    slot_key=f"2026-11-30T09:00:00@{zone}",
                    options={"timezone": zone},
                )
            )
    page = signed_in.get("/console").text
    assert "Edition 2026-11-30T09:00:00: 2 wave(s)" in page
    assert 'Europe/Berlin</a>: <span class="status status-sent">sent' in page
    assert "America/New_York" in page


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(address=st.text(max_size=400))
@example(address="\x00")
def test_any_ledger_search_is_answered_without_a_5xx(signed_in: TestClient, address: str) -> None:
    with session_scope() as session:
        digest_id = (
            session.scalar(select(Digest.id)) or sent_digest(session, ["a@b.example"]).digest_id
        )
    answer = signed_in.get(f"/console/digests/{digest_id}", params={"address": address})
    assert answer.status_code == 200


def test_dashboard_shows_the_next_editions_review_state(signed_in: TestClient) -> None:
    from digest.edition_review import approve, next_edition, set_note

    with session_scope() as session:
        edition = next_edition(session, utcnow()).edition
        set_note(session, edition, "A quiet week.", actor="ops@example.com")
        approve(session, edition, actor="ops@example.com")
    page = Page(signed_in.get("/console").text).text
    assert f"Edition {edition}: approved" in page
    assert "0 pinned · 0 excluded · editor's note set · approved by ops@example.com" in page
