"""Who is on the list and how it grows: the console's audience page (`/console/audience`).

Weeks are ISO weeks in UTC (Monday 00:00 to Monday 00:00), labelled `2026-W49`; the window is
the current week and the 25 before it. Each figure is one named query below, counted by the
database (a GROUP BY over a week number it computes), never by loading rows into Python:

- signups: subscriber rows created that week — a new address, by the form, an import or a test
  copy's placeholder; a re-signup after leaving reuses its row and is not counted again;
- confirmations: `confirmed_at` that week (the latest confirmation of each row);
- unsubscribes: `unsubscribed_at` that week (link, one-click or SendGrid's unsubscribe event);
  someone who has signed up again since no longer counts;
- bounces: SendGrid's hard-bounce events that week; complaints: its spam reports;
- erasures: rows of `erasures` (a timestamp and nothing else, written by `digest/privacy.py`).

Events are read through a partial index of list-changing events (migration 0012), so the page
never scans opens and clicks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, cast, func, literal, select, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from schema.models import EmailEvent, Erasure, Subscriber
from schema.statuses import SubscriberStatus

WEEKS = 26
WEEK_SECONDS = 7 * 24 * 3600
SERIES = ("signups", "confirmations", "unsubscribes", "bounces", "complaints", "erasures")
NO_TIMEZONE = "not set (the default wave)"
ALL_CATEGORIES = "all categories (none chosen)"


@dataclass(frozen=True)
class Week:
    """One ISO week's figures, in SERIES order."""

    label: str  # 2026-W49
    starts: date  # its Monday (UTC)
    signups: int
    confirmations: int
    unsubscribes: int
    bounces: int
    complaints: int
    erasures: int

    @property
    def values(self) -> list[int]:
        return [getattr(self, name) for name in SERIES]


@dataclass(frozen=True)
class ConfirmationRate:
    """Of the addresses that signed up in the window, how many confirmed (so far)."""

    signups: int
    confirmed: int

    @property
    def percent(self) -> float | None:
        return round(100 * self.confirmed / self.signups, 1) if self.signups else None


@dataclass(frozen=True)
class Share:
    """One line of a breakdown of active subscribers."""

    label: str
    subscribers: int


@dataclass(frozen=True)
class Audience:
    weeks: list[Week]
    rate: ConfirmationRate
    active: int
    paused: int
    by_frequency: list[Share]
    by_category: list[Share]
    by_timezone: list[Share]


def window_start(now: datetime, weeks: int = WEEKS) -> datetime:
    """Monday 00:00 UTC of the first week shown (the current week is the last)."""
    today = now.astimezone(UTC).date()
    monday = today - timedelta(days=today.weekday()) - timedelta(weeks=weeks - 1)
    return datetime(monday.year, monday.month, monday.day, tzinfo=UTC)


def _week_number(session: Session, column: Any, start: datetime) -> ColumnElement[Any]:
    """0 for the window's first week, 1 for the next, …: computed by the database."""
    if session.get_bind().dialect.name == "postgresql":
        seconds = func.extract("epoch", column - literal(start))
        return cast(func.floor(seconds / WEEK_SECONDS), Integer)
    days = func.julianday(column) - func.julianday(start.isoformat())
    return cast(days / 7, Integer)  # SQLite: non-negative here, so the cast is a floor


def _per_week(session: Session, column: Any, start: datetime, *where: Any) -> dict[int, int]:
    """COUNT(*) per week number of rows whose `column` falls in the window."""
    week = _week_number(session, column, start).label("week")
    rows = session.execute(select(week, func.count()).where(column >= start, *where).group_by(week))
    return {int(n): int(count) for n, count in rows}


def signups_per_week(session: Session, start: datetime) -> dict[int, int]:
    """New subscriber rows per week (erased rows keep their `created_at`: they still count)."""
    return _per_week(session, Subscriber.created_at, start)


def confirmations_per_week(session: Session, start: datetime) -> dict[int, int]:
    """Subscribers whose (latest) confirmation fell in each week."""
    return _per_week(session, Subscriber.confirmed_at, start)


def unsubscribes_per_week(session: Session, start: datetime) -> dict[int, int]:
    """Subscribers whose unsubscribe fell in each week and who have not signed up again."""
    return _per_week(session, Subscriber.unsubscribed_at, start)


def hard_bounces_per_week(session: Session, start: datetime) -> dict[int, int]:
    """SendGrid hard-bounce events per week (one per bounced message)."""
    return _per_week(
        session,
        EmailEvent.occurred_at,
        start,
        EmailEvent.event == "bounce",
        EmailEvent.bounce_class == "hard",
    )


def complaints_per_week(session: Session, start: datetime) -> dict[int, int]:
    """SendGrid spam reports per week."""
    return _per_week(session, EmailEvent.occurred_at, start, EmailEvent.event == "spamreport")


def erasures_per_week(session: Session, start: datetime) -> dict[int, int]:
    """Erasures per week, from the count-only `erasures` table."""
    return _per_week(session, Erasure.erased_at, start)


COUNTERS = (
    signups_per_week,
    confirmations_per_week,
    unsubscribes_per_week,
    hard_bounces_per_week,
    complaints_per_week,
    erasures_per_week,
)


def weekly_growth(session: Session, now: datetime, weeks: int = WEEKS) -> list[Week]:
    """The window's weeks, oldest first, every week listed (zeros included)."""
    start = window_start(now, weeks)
    counts = [counter(session, start) for counter in COUNTERS]
    result = []
    for n in range(weeks):
        monday = (start + timedelta(weeks=n)).date()
        year, week, _ = monday.isocalendar()
        result.append(Week(f"{year}-W{week:02d}", monday, *(c.get(n, 0) for c in counts)))
    return result


def confirmation_rate(session: Session, start: datetime) -> ConfirmationRate:
    """Rows created since `start`, and how many of them have a confirmation."""
    total, confirmed = session.execute(
        select(func.count(), func.count(Subscriber.confirmed_at)).where(
            Subscriber.created_at >= start
        )
    ).one()
    return ConfirmationRate(int(total), int(confirmed))


def _active() -> ColumnElement[bool]:
    return Subscriber.status == SubscriberStatus.ACTIVE


def active_counts(session: Session) -> tuple[int, int]:
    """(active subscribers, of whom paused) — through the (status, id) index."""
    active, paused = session.execute(
        select(func.count(), func.count().filter(Subscriber.paused.is_(True))).where(_active())
    ).one()
    return int(active), int(paused)


def active_by_frequency(session: Session) -> list[Share]:
    """Active subscribers per frequency (weekly digest, or an alert per comparison)."""
    rows = session.execute(
        select(Subscriber.frequency, func.count())
        .where(_active())
        .group_by(Subscriber.frequency)
        .order_by(func.count().desc(), Subscriber.frequency)
    )
    return [Share(str(frequency), int(count)) for frequency, count in rows]


def active_by_timezone(session: Session, limit: int = 30) -> list[Share]:
    """Active subscribers per timezone, largest first (the first `limit`, then "others")."""
    rows = list(
        session.execute(
            select(Subscriber.timezone, func.count())
            .where(_active())
            .group_by(Subscriber.timezone)
            .order_by(func.count().desc(), Subscriber.timezone)
        )
    )
    shares = [Share(zone or NO_TIMEZONE, int(count)) for zone, count in rows[:limit]]
    rest = sum(int(count) for _, count in rows[limit:])
    return shares + ([Share(f"{len(rows) - limit} other timezones", rest)] if rest else [])


_CATEGORY_SQL = {
    "postgresql": "SELECT c.value, count(*) FROM subscribers s "
    "CROSS JOIN LATERAL json_array_elements_text(s.categories) AS c(value) "
    "WHERE s.status = 'active' GROUP BY c.value",
    "sqlite": "SELECT c.value, count(*) FROM subscribers s, json_each(s.categories) AS c "
    "WHERE s.status = 'active' GROUP BY c.value",
}
_NO_CATEGORY_SQL = (  # the same on both dialects
    "SELECT count(*) FROM subscribers WHERE status = 'active' AND json_array_length(categories) = 0"
)


def active_by_category(session: Session) -> list[Share]:
    """Active subscribers per chosen category (one person may count in several), largest
    first, and those who chose none (they get every category). The JSON array is unnested by
    the database (PostgreSQL `json_array_elements_text`, SQLite `json_each`)."""
    dialect = session.get_bind().dialect.name
    rows = session.execute(text(_CATEGORY_SQL[dialect]))
    shares = sorted((Share(str(name), int(count)) for name, count in rows), key=_largest)
    none_chosen = int(session.scalar(text(_NO_CATEGORY_SQL)) or 0)
    return [*shares, Share(ALL_CATEGORIES, none_chosen)]


def _largest(share: Share) -> tuple[int, str]:
    return (-share.subscribers, share.label)


def audience(session: Session, now: datetime | None = None, weeks: int = WEEKS) -> Audience:
    """Everything the audience page shows, read in one session."""
    now = now or datetime.now(UTC)
    active, paused = active_counts(session)
    return Audience(
        weeks=weekly_growth(session, now, weeks),
        rate=confirmation_rate(session, window_start(now, weeks)),
        active=active,
        paused=paused,
        by_frequency=active_by_frequency(session),
        by_category=active_by_category(session),
        by_timezone=active_by_timezone(session),
    )


def totals(weeks: Sequence[Week]) -> list[int]:
    """Each series summed over the window (the table's last row)."""
    return [sum(week.values[i] for week in weeks) for i in range(len(SERIES))]
