"""A digest's first 48 hours, hour by hour: deliveries, people's opens and clicks, machines'.

The window starts at the whole hour in which sending began (the first batch's `sent_at`, else the
digest's `started_at`) and lasts `HOURS` hours; what comes later is counted once, in
`after_window`, so every series adds up to its figure in digest/stats.py:

- delivered, human opens, human clicks: recipients (`recipient_of_event`), each in the hour of
  its *first* such event (a delivered event, an open or click not flagged as machine), so the
  hours sum to `delivered`, `human_unique_opens` and `human_unique_clicks`;
- machine opens, machine clicks: events flagged as machine activity, in the hour they happened,
  so the hours sum to `machine_opens` and `machine_clicks`.

An event stamped before the window (clocks differ by a second or two) counts in its first hour.
Hours are computed in the database (`hours_since`), so a million deliveries come back as 49 rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from digest.records import JsonRecord
from digest.stats import recipient_of_event
from schema.models import DeliveryBatch, Digest, EmailEvent

HOURS = 48
SERIES = ("delivered", "human_opens", "human_clicks", "machine_opens", "machine_clicks")
# series name -> (event, machine flag, count people by their first event (True) or events)
_SOURCES: dict[str, tuple[str, bool | None, bool]] = {
    "delivered": ("delivered", None, True),
    "human_opens": ("open", False, True),
    "human_clicks": ("click", False, True),
    "machine_opens": ("open", True, False),
    "machine_clicks": ("click", True, False),
}


class hours_since(FunctionElement[int]):
    """Whole hours from `epoch` (Unix seconds) to a timestamp column, in SQL; negative before."""

    type = Integer()
    inherit_cache = True
    name = "hours_since"


def _operands(element: hours_since, compiler: SQLCompiler, **kw: Any) -> tuple[str, str]:
    """The column, and the epoch written as a literal integer (ours, never a reader's): a bound
    parameter would differ between SELECT and GROUP BY, which PostgreSQL then refuses."""
    column, epoch = element.clauses
    return compiler.process(column, **kw), str(int(epoch.value))


@compiles(hours_since, "postgresql")
def _hours_since_postgresql(element: hours_since, compiler: SQLCompiler, **kw: Any) -> str:
    column, epoch = _operands(element, compiler, **kw)
    return f"CAST(floor((extract(epoch FROM {column}) - {epoch}) / 3600) AS INTEGER)"


@compiles(hours_since, "sqlite")
def _hours_since_sqlite(element: hours_since, compiler: SQLCompiler, **kw: Any) -> str:
    # Integer division truncates toward zero: an event less than an hour early reads as hour 0,
    # which is where the window puts it anyway.
    column, epoch = _operands(element, compiler, **kw)
    return f"((CAST(strftime('%s', {column}) AS INTEGER) - {epoch}) / 3600)"


@dataclass(frozen=True)
class ActivityCounts(JsonRecord):
    delivered: int
    human_opens: int
    human_clicks: int
    machine_opens: int
    machine_clicks: int


@dataclass(frozen=True)
class ActivityHour(JsonRecord):
    hour: int  # 0 = the hour sending began
    starts_at: str  # ISO 8601, UTC
    delivered: int
    human_opens: int
    human_clicks: int
    machine_opens: int
    machine_clicks: int


@dataclass(frozen=True)
class ActivitySeries(JsonRecord):
    """`HOURS` rows from the hour sending began (none if nothing was sent), and the rest."""

    starts_at: str | None
    hours: list[ActivityHour]
    after_window: ActivityCounts


def sending_began(session: Session, digest_id: int) -> datetime | None:
    """When the digest's first batch went out; its `started_at` if no batch records it."""
    first = session.scalar(
        select(func.min(DeliveryBatch.sent_at)).where(DeliveryBatch.digest_id == digest_id)
    )
    if first is None:
        digest = session.get(Digest, digest_id)
        first = digest.started_at if digest is not None else None
    return first


def _hourly(session: Session, digest_id: int, series: str, epoch: int) -> dict[int, int]:
    """One series by hour since `epoch`: people by the hour of their first event of the kind,
    or machine events by the hour they happened (see the module's docstring)."""
    event, machine, first_only = _SOURCES[series]
    wanted = [EmailEvent.digest_id == digest_id, EmailEvent.event == event]
    if machine is not None:
        wanted.append(EmailEvent.machine.is_(machine))
    if first_only:
        firsts = (
            select(func.min(EmailEvent.occurred_at).label("at"))
            .where(*wanted)
            .group_by(recipient_of_event())
            .subquery()
        )
        hour = hours_since(firsts.c.at, epoch)
        query = select(hour, func.count()).select_from(firsts).group_by(hour)
    else:
        hour = hours_since(EmailEvent.occurred_at, epoch)
        query = select(hour, func.count()).where(*wanted).group_by(hour)
    counts: dict[int, int] = {}
    for at, count in session.execute(query):
        index = min(max(int(at), 0), HOURS)  # before the window: its first hour; after: HOURS
        counts[index] = counts.get(index, 0) + count
    return counts


def activity_series(session: Session, digest_id: int) -> ActivitySeries:
    """The digest's first `HOURS` hours, hour by hour, and what came after."""
    began = sending_began(session, digest_id)
    if began is None:
        return ActivitySeries(None, [], ActivityCounts(0, 0, 0, 0, 0))
    start = began.replace(minute=0, second=0, microsecond=0)
    epoch = int(start.timestamp())
    counts = {name: _hourly(session, digest_id, name, epoch) for name in SERIES}
    hours = [
        ActivityHour(
            hour,
            (start + timedelta(hours=hour)).isoformat(),
            *(counts[name].get(hour, 0) for name in SERIES),
        )
        for hour in range(HOURS)
    ]
    later = ActivityCounts(*(counts[name].get(HOURS, 0) for name in SERIES))
    return ActivitySeries(start.isoformat(), hours, later)
