"""The first 48 hours of a digest, hour by hour, computed in the database — the same on
PostgreSQL and on SQLite (the embedded default), whose SQL for "hours since" differs."""

from __future__ import annotations

from datetime import timedelta

import pytest

from digest.activity_stats import activity_series
from digest.db import session_scope
from digest.stats import digest_stats
from schema.models import EmailEvent
from tests.support.sent_digests import SENT_AT, sent_digest

HOUR = timedelta(hours=1)
ADA, BO = "ada@example.test", "bo@example.test"


@pytest.fixture(params=["pg", "sqlite"])
def database(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(request.param)


def test_each_reader_counts_in_the_hour_of_their_first_event(database: str) -> None:
    with session_scope() as session:
        sent = sent_digest(session, [ADA, BO])
        session.add_all(
            EmailEvent(
                event=event,
                email=email,
                occurred_at=SENT_AT + after,
                delivery_id=sent.deliveries[email],
                digest_id=sent.digest_id,
                machine=machine,
                payload={},
            )
            for event, email, after, machine in (
                ("delivered", ADA, timedelta(seconds=-2), False),  # a clock a little behind
                ("delivered", BO, timedelta(seconds=5), False),
                ("open", ADA, timedelta(seconds=30), True),  # Apple's proxy
                ("open", ADA, 2 * HOUR + timedelta(minutes=59), False),
                ("open", ADA, 3 * HOUR, False),  # not ADA's first: not counted again
                ("open", BO, 47 * HOUR + timedelta(minutes=59), False),
                ("click", BO, 49 * HOUR, False),  # after the window
                ("click", ADA, 3 * HOUR, True),
            )
        )
    with session_scope() as session:
        activity = activity_series(session, sent.digest_id)
        stats = digest_stats(session, sent.digest_id)
    assert activity.starts_at == SENT_AT.isoformat()  # SENT_AT is on the hour
    by_hour = {h.hour: h for h in activity.hours}
    assert by_hour[0].delivered == 2 and by_hour[0].machine_opens == 1
    assert by_hour[2].human_opens == 1 and by_hour[3].human_opens == 0
    assert by_hour[47].human_opens == 1
    assert by_hour[3].machine_clicks == 1
    assert activity.after_window.human_clicks == 1
    assert sum(h.human_opens for h in activity.hours) == stats.human_unique_opens
    assert sum(h.delivered for h in activity.hours) == stats.delivered


def test_a_digest_never_sent_has_no_hours(database: str) -> None:
    with session_scope() as session:
        sent = sent_digest(session, [ADA], batch_status="pending")
        activity = activity_series(session, sent.digest_id)
    assert (activity.starts_at, activity.hours) == (None, [])


def test_every_result_and_the_site_webhook_health_read_on_either_database(database: str) -> None:
    from digest.results import digest_results
    from digest.site_events import health

    with session_scope() as session:
        sent = sent_digest(session, [ADA])
        session.add(
            EmailEvent(
                event="click",
                email=ADA,
                occurred_at=SENT_AT + HOUR,
                delivery_id=sent.deliveries[ADA],
                digest_id=sent.digest_id,
                url="https://shiporskip.example/elsewhere",
                payload={},
            )
        )
    with session_scope() as session:
        results = digest_results(session, sent.digest_id)
        site = health(session)
    assert (results.clicks.human_clicks, results.clicks.other_links.human_readers) == (1, 1)
    assert (site.waiting, site.oldest_waiting_at) == (0, None)
