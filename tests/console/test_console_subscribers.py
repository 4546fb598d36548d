"""The subscribers pages: search by address or name, a subscriber's page, its three actions
(each audited, target the id and never the address), the suppression page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from digest import audit
from digest.addresses import suppress
from digest.db import session_scope
from schema.models import (
    AuditEntry,
    Comparison,
    EmailEvent,
    Erasure,
    ReaderVote,
    Subscriber,
    Tool,
    utcnow,
)
from schema.statuses import SubscriberStatus, SuppressionReason
from tests.support.console_fixtures import OPERATOR, csrf_in
from tests.support.erasure_scenario import BOB, leftovers
from tests.support.html import Page
from tests.support.html_tables import Tables
from tests.support.sent_digests import SentDigest, sent_digest

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _subscriber(email: str, name: str | None = None, status: str = "active", **extra) -> int:
    with session_scope() as session:
        row = Subscriber(email=email, name=name, status=status, **extra)
        session.add(row)
        session.flush()
        return row.id


def _post(client: TestClient, path: str, **data: str):
    token = csrf_in(client.get("/console").text)
    return client.post(path, data={"csrf_token": token, **data}, follow_redirects=False)


def _audit() -> list[tuple[str, str, str | None, str | None]]:
    with session_scope() as session:
        return [(e.actor, e.action, e.target, e.detail) for e in audit.recent(session).entries]


def _results(client: TestClient, **params: str) -> list[str]:
    page = Tables(client.get("/console/subscribers", params=params).text)
    return [cells[0] for cells in page.rows("results") if len(cells) == 4]


# --- search -------------------------------------------------------------------------------------


def test_search_finds_subscribers_by_address_prefix_in_any_case(signed_in: TestClient) -> None:
    _subscriber("Ada.Lovelace@example.com", "Ada")
    _subscriber("adam@example.com", "Adam")
    _subscriber("bob@example.com", "Bob")
    assert _results(signed_in, q="ADA") == ["adam@example.com", "Ada.Lovelace@example.com"]
    assert _results(signed_in, q="ada.l") == ["Ada.Lovelace@example.com"]
    assert _results(signed_in, q="nobody") == []


def test_search_finds_subscribers_by_name_prefix(signed_in: TestClient) -> None:
    _subscriber("x1@example.com", "Grace Hopper")
    _subscriber("x2@example.com", "grace kelly")
    _subscriber("x3@example.com", "Hopper Grace")
    assert _results(signed_in, q="grace") == ["x2@example.com", "x1@example.com"]


def test_wildcards_typed_in_the_search_match_only_themselves(signed_in: TestClient) -> None:
    _subscriber("a_b@example.com")
    _subscriber("axb@example.com")
    _subscriber("100%@example.com")
    assert _results(signed_in, q="a_") == ["a_b@example.com"]
    assert _results(signed_in, q="%") == []
    assert _results(signed_in, q="100%") == ["100%@example.com"]


def test_search_filters_by_status(signed_in: TestClient) -> None:
    _subscriber("p@example.com", status="pending")
    _subscriber("a@example.com", status="active")
    assert _results(signed_in, status="pending") == ["p@example.com"]
    assert _results(signed_in, status="not-a-status") == ["a@example.com", "p@example.com"]


def test_results_are_paged_by_key_newest_first(signed_in: TestClient) -> None:
    with session_scope() as session:
        session.add_all(Subscriber(email=f"r{n:03d}@example.com") for n in range(120))
    first = signed_in.get("/console/subscribers", params={"q": "r"}).text
    assert _results(signed_in, q="r")[0] == "r119@example.com"
    older = Tables(first).links("Older")
    assert len(older) == 1 and "before=" in older[0]
    second = signed_in.get(older[0])
    shown = [c[0] for c in Tables(second.text).rows("results")]
    assert shown[0] == "r069@example.com" and len(shown) == 50
    newer = Tables(second.text).links("Newer")
    back = [c[0] for c in Tables(signed_in.get(newer[0]).text).rows("results")]
    assert back[0] == "r119@example.com" and back[-1] == "r070@example.com"


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(query=st.text(max_size=400))
@example(query="\x00")
@example(query="\\")
def test_any_search_is_answered_without_a_5xx(signed_in: TestClient, query: str) -> None:
    answer = signed_in.get("/console/subscribers", params={"q": query})
    assert answer.status_code in (200, 422)


def test_hostile_names_and_addresses_are_shown_as_text(signed_in: TestClient) -> None:
    subscriber_id = _subscriber(f"x{HOSTILE}@example.com", HOSTILE, consent_source=HOSTILE)
    pages = [
        signed_in.get("/console/subscribers").text,
        signed_in.get("/console/subscribers", params={"q": HOSTILE}).text,
        signed_in.get(f"/console/subscribers/{subscriber_id}").text,
        signed_in.get(f"/console/subscribers/{subscriber_id}/erase").text,
    ]
    for html in pages:
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;" in html


# --- a subscriber's page ------------------------------------------------------------------------


def test_the_subscriber_page_shows_status_preferences_consent_digests_and_verdicts(
    signed_in: TestClient,
) -> None:
    with session_scope() as session:
        sent = sent_digest(session, ["reader@example.com"], message_id="m-77")
        subscriber_id = sent.subscribers["reader@example.com"]
        row = session.get(Subscriber, subscriber_id)
        row.name, row.categories, row.timezone = "Reader One", ["Coding"], "Europe/Oslo"
        row.consent_at, row.consent_source = utcnow(), "form https://shiporskip.example/"
        row.consent_ip_hash = "ab" * 32
        session.add(
            EmailEvent(
                event="bounce",
                bounce_class="soft",
                email="reader@example.com",
                occurred_at=utcnow(),
                delivery_id=sent.deliveries["reader@example.com"],
                digest_id=sent.digest_id,
                payload={},
            )
        )
    _vote(sent, subscriber_id)
    html = signed_in.get(f"/console/subscribers/{subscriber_id}").text
    page = Page(html)
    for fact in ("reader@example.com", "Reader One", "Coding", "Europe/Oslo", "ab" * 32):
        assert fact in page.text
    assert "form https://shiporskip.example/" in page.text
    (row,) = Tables(html).rows("deliveries")
    assert f"digest {sent.digest_id}" in row[0] and "m-77" in row[4] and "bounce (soft)" in row[5]
    assert "Ship Alpha (alpha-vs-beta)" in page.text


def _vote(sent: SentDigest, subscriber_id: int) -> None:
    with session_scope() as session:
        comparison = Comparison(
            slug="alpha-vs-beta",
            title="Alpha vs Beta",
            published_at=utcnow(),
            updated_at=utcnow(),
            verdict_fingerprint="f",
            content_hash="h",
            source="api",
        )
        comparison.tools = [Tool(position=0, name="Alpha"), Tool(position=1, name="Beta")]
        session.add(comparison)
        session.flush()
        comparison_id = comparison.id
        session.add(
            ReaderVote(
                subscriber_id=subscriber_id,
                digest_id=sent.digest_id,
                comparison_id=comparison_id,
                tool_position=0,
                choice="ship",
            )
        )


def test_an_unknown_subscriber_is_404(signed_in: TestClient) -> None:
    assert signed_in.get("/console/subscribers/999999").status_code == 404
    assert _post(signed_in, "/console/subscribers/999999/erase").status_code == 404


# --- actions ------------------------------------------------------------------------------------


def test_unsubscribe_stops_mail_and_is_audited_without_the_address(signed_in: TestClient) -> None:
    subscriber_id = _subscriber("leaving@example.com")
    answer = _post(signed_in, f"/console/subscribers/{subscriber_id}/unsubscribe")
    assert answer.status_code == 303
    with session_scope() as session:
        row = session.get(Subscriber, subscriber_id)
        assert row.status == "unsubscribed" and row.unsubscribed_at is not None
    actor, action, target, detail = _audit()[0]
    assert (actor, action, target) == (
        OPERATOR,
        "subscriber.unsubscribed",
        f"subscriber {subscriber_id}",
    )
    assert "leaving" not in (detail or "")
    assert "Unsubscribed" in signed_in.get(answer.headers["location"]).text


def test_unsubscribing_twice_is_refused_and_audited_once(signed_in: TestClient) -> None:
    subscriber_id = _subscriber("twice@example.com")
    _post(signed_in, f"/console/subscribers/{subscriber_id}/unsubscribe")
    again = _post(signed_in, f"/console/subscribers/{subscriber_id}/unsubscribe")
    assert again.status_code == 409 and "nothing to stop" in again.text
    assert [a for _, a, _, _ in _audit()].count("subscriber.unsubscribed") == 1


def test_resend_confirmation_is_refused_for_an_active_subscriber(signed_in: TestClient) -> None:
    subscriber_id = _subscriber("active@example.com", status="active")
    answer = _post(signed_in, f"/console/subscribers/{subscriber_id}/resend-confirmation")
    assert answer.status_code == 409
    assert "Only a pending subscriber" in answer.text
    assert "subscriber.resent" not in [a for _, a, _, _ in _audit()]


def test_resend_confirmation_within_the_resend_interval_is_refused(
    signed_in: TestClient,
) -> None:
    subscriber_id = _subscriber(
        "waiting@example.com",
        status="pending",
        confirmation_sent_at=utcnow() - timedelta(seconds=30),
        signup_cycle="c" * 22,
        signup_cycle_at=utcnow() - timedelta(seconds=30),
    )
    answer = _post(signed_in, f"/console/subscribers/{subscriber_id}/resend-confirmation")
    assert answer.status_code == 409 and "wait before resending" in answer.text


def test_resend_confirmation_is_refused_for_a_suppressed_address(signed_in: TestClient) -> None:
    subscriber_id = _subscriber("held@example.com", status="pending")
    with session_scope() as session:
        suppress(session, "held@example.com", SuppressionReason.BOUNCED)
    answer = _post(signed_in, f"/console/subscribers/{subscriber_id}/resend-confirmation")
    assert answer.status_code == 409 and "suppressed" in answer.text


def test_erase_asks_first_and_the_question_changes_nothing(signed_in: TestClient) -> None:
    subscriber_id = _subscriber("careful@example.com", "Careful")
    page = signed_in.get(f"/console/subscribers/{subscriber_id}/erase")
    assert page.status_code == 200 and "Erase permanently" in page.text
    with session_scope() as session:
        assert session.get(Subscriber, subscriber_id).email == "careful@example.com"


def test_erasing_from_the_console_leaves_no_trace_of_the_address(
    signed_in: TestClient, attacked: SentDigest
) -> None:
    bob = attacked.subscribers[BOB]
    answer = _post(signed_in, f"/console/subscribers/{bob}/erase")
    assert answer.status_code == 303
    assert leftovers() == {}
    with session_scope() as session:
        assert session.get(Subscriber, bob).status == SubscriberStatus.DELETED
        assert session.get(Subscriber, bob).signup_cycle is None
        assert session.scalar(select(Erasure.id)) is not None
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "subscriber.erased")
        ).one()
    assert entry.actor == OPERATOR and entry.target == f"subscriber {bob}"
    assert "deliveries 1" in (entry.detail or "")
    assert "Erased" in signed_in.get(answer.headers["location"]).text


def test_erasing_twice_is_refused(signed_in: TestClient) -> None:
    subscriber_id = _subscriber("once@example.com")
    assert _post(signed_in, f"/console/subscribers/{subscriber_id}/erase").status_code == 303
    again = _post(signed_in, f"/console/subscribers/{subscriber_id}/erase")
    assert again.status_code == 409
    assert [a for _, a, _, _ in _audit()].count("subscriber.erased") == 1


@pytest.mark.parametrize("action", ["unsubscribe", "resend-confirmation", "erase"])
def test_an_action_with_a_forged_csrf_token_changes_nothing(
    signed_in: TestClient, action: str
) -> None:
    subscriber_id = _subscriber("kept@example.com", status="pending")
    answer = signed_in.post(
        f"/console/subscribers/{subscriber_id}/{action}", data={"csrf_token": "forged"}
    )
    assert answer.status_code == 403
    with session_scope() as session:
        row = session.get(Subscriber, subscriber_id)
        assert (row.status, row.email) == ("pending", "kept@example.com")
    assert [a for _, a, _, _ in _audit()] == ["console.sign-in"]


# --- suppressions -------------------------------------------------------------------------------


def test_suppression_lookup_answers_the_reason_in_any_case(signed_in: TestClient) -> None:
    with session_scope() as session:
        suppress(session, "gone@example.com", SuppressionReason.COMPLAINED)
    answer = _post(signed_in, "/console/suppressions", address="  Gone@Example.COM ")
    text = Page(answer.text).text
    assert "Gone@Example.COM is suppressed: complained" in text
    missing = Page(_post(signed_in, "/console/suppressions", address="here@example.com").text)
    assert "here@example.com is not suppressed" in missing.text


def test_suppression_counts_by_reason(signed_in: TestClient) -> None:
    with session_scope() as session:
        for n, reason in enumerate(["bounced", "bounced", "deleted", "unsubscribed"]):
            suppress(session, f"s{n}@example.com", SuppressionReason(reason))
    table = Tables(signed_in.get("/console/suppressions").text).rows("by-reason")
    rows = {cells[0]: cells[1] for cells in table}
    assert rows == {"unsubscribed": "1", "bounced": "2", "complained": "0", "deleted": "1"}


def test_a_hostile_address_in_the_lookup_is_shown_as_text(signed_in: TestClient) -> None:
    answer = _post(signed_in, "/console/suppressions", address=HOSTILE)
    assert answer.status_code == 200
    assert "<script>alert" not in answer.text and "&lt;script&gt;" in answer.text


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/console/subscribers?q=ada%40x.example&status=active", "?q=[redacted]&status=active"),
        ("/console/subscribers?status=pending&q=Ada+Love", "?status=pending&q=[redacted]"),
        ("/console/digests/3?address=ada@x.example", "/console/digests/3?address=[redacted]"),
    ],
)
def test_a_search_for_a_person_reaches_the_access_log_without_them(
    path: str, expected: str
) -> None:
    """uvicorn logs every request line; an operator's search names the person looked for."""
    from digest.web.log_redaction import redact

    line = f'127.0.0.1:5555 - "GET {path} HTTP/1.1" 200'
    assert expected in redact(line)
    assert "ada" not in redact(line).lower()
