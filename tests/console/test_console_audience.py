"""The audience page: weekly list growth (ISO weeks, UTC), the confirmation rate, and active
subscribers by frequency, category and timezone — equal to what the test created."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from digest.audience import audience, window_start
from digest.db import session_scope
from digest.privacy import erase_subscriber
from schema.models import EmailEvent, Subscriber, utcnow
from tests.support.html_tables import Tables

NOW = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)  # a Wednesday of ISO week 2026-W49
LAST_WEEK = NOW - timedelta(days=7)  # 2026-W48


def _people() -> None:
    """This week: 3 signups, 2 confirmed, 1 unsubscribed, 1 erased, 1 hard bounce, 1 complaint
    (and a soft bounce and an open, which are not list changes). Last week: 1 signup."""
    with session_scope() as session:
        rows = [
            Subscriber(email="a@example.com", status="active", created_at=NOW,
                       confirmed_at=NOW, categories=["Coding", "Design"], timezone="Europe/Oslo"),
            Subscriber(email="b@example.com", status="active", created_at=NOW,
                       confirmed_at=NOW, frequency="every", categories=["Coding"]),
            Subscriber(email="c@example.com", status="unsubscribed", created_at=NOW,
                       unsubscribed_at=NOW),
            Subscriber(email="d@example.com", status="active", created_at=LAST_WEEK,
                       confirmed_at=LAST_WEEK, paused=True, timezone="Europe/Oslo"),
        ]  # fmt: skip
        session.add_all(rows)
        for event, bounce_class in (("bounce", "hard"), ("bounce", "soft"), ("spamreport", None)):
            session.add(
                EmailEvent(event=event, bounce_class=bounce_class, occurred_at=NOW, payload={})
            )
        session.add(EmailEvent(event="open", occurred_at=NOW, payload={}))
        session.flush()
        erase_subscriber(session, rows[2].id, now=NOW)


def test_weekly_growth_counts_what_happened_in_each_iso_week(pg: str) -> None:
    _people()
    with session_scope() as session:
        found = audience(session, NOW)
    assert len(found.weeks) == 26
    this, last = found.weeks[-1], found.weeks[-2]
    assert (this.label, last.label) == ("2026-W49", "2026-W48")
    assert this.values == [3, 2, 1, 1, 1, 1]  # signups … erasures
    assert last.values == [1, 1, 0, 0, 0, 0]
    assert all(week.values == [0] * 6 for week in found.weeks[:-2])
    assert window_start(NOW) == datetime(2026, 6, 8, tzinfo=UTC)  # the Monday 25 weeks before W49


def test_confirmation_rate_and_active_breakdowns(pg: str) -> None:
    _people()
    with session_scope() as session:
        found = audience(session, NOW)
    assert (found.rate.signups, found.rate.confirmed, found.rate.percent) == (4, 3, 75.0)
    assert (found.active, found.paused) == (3, 1)
    assert [(s.label, s.subscribers) for s in found.by_frequency] == [("weekly", 2), ("every", 1)]
    assert [(s.label, s.subscribers) for s in found.by_category] == [
        ("Coding", 2),
        ("Design", 1),
        ("all categories (none chosen)", 1),
    ]
    zones = [(s.label, s.subscribers) for s in found.by_timezone]
    assert zones == [("Europe/Oslo", 2), ("not set (the default wave)", 1)]


def test_the_same_figures_on_the_embedded_default(sqlite: str) -> None:
    _people()
    with session_scope() as session:
        found = audience(session, NOW)
    assert found.weeks[-1].values == [3, 2, 1, 1, 1, 1]
    assert (found.by_category[0].label, found.by_category[0].subscribers) == ("Coding", 2)


def test_the_audience_page_shows_the_weeks_table_and_breakdowns(signed_in: TestClient) -> None:
    with session_scope() as session:
        session.add(Subscriber(email="new@example.com", status="active", created_at=utcnow(),
                               confirmed_at=utcnow(), categories=["<b>Agents</b>"]))  # fmt: skip
    html = signed_in.get("/console/audience").text
    tables = Tables(html)
    growth = tables.rows("growth")
    assert len(growth) == 26
    assert growth[-1][1:] == ["1", "1", "0", "0", "0", "0"]
    assert growth[-1][0] == "{}-W{:02d}".format(*utcnow().isocalendar()[:2])
    assert ["&lt;b&gt;Agents&lt;/b&gt;" in html, "<b>Agents" in html] == [True, False]
    assert ["<b>Agents</b>", "1"] in tables.rows("by-category")
    assert tables.rows("by-frequency") == [["weekly", "1"]]
    assert "100.0 %" in html
