"""When the weekly digest goes out: a 5-field cron in local time, fired once per timezone wave.

`DIGEST_WEEKLY_CRON` ("0 9 * * 1": minute hour day-of-month month day-of-week, or `@weekly`;
read by digest/cron.py, which says how daylight-saving changes fall) is read in each
subscriber's own timezone, or `DIGEST_TIMEZONE` for those who gave none. Beat calls
`fire_weekly_slots` every minute; for every timezone it finds the most recent slot at or before
now and, if that slot is less than `DIGEST_WEEKLY_GRACE_HOURS` old and no digest carries its slot
key `"{local ISO time}@{timezone}"` yet, creates that wave's digest and plans it in the same
transaction. The key is unique in the database, so two beats, or two ticks, fire a slot once; a
slot missed while everything was down fires late, once, on the first tick after restart.

All waves of one slot (the same local date and time) are one *edition*: the first wave to fire
collects and ranks the week's comparisons, later waves reuse its items and renders
(digest/planning.py), so every subscriber reads the same email at their own 09:00.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.cron import last_slot, next_slot, parse_cron
from digest.settings import get_settings
from schema.models import Subscriber
from schema.statuses import Frequency, SubscriberStatus


def slot_key(slot: datetime, timezone: str) -> str:
    """`2026-11-23T09:00:00+01:00@Europe/Berlin`: unique per slot and wave."""
    return f"{slot.isoformat()}@{timezone}"


def edition_of(slot: datetime) -> str:
    """The local date and time a slot is for; every wave of one edition shares it."""
    return slot.replace(tzinfo=None).isoformat()


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def wave_timezones(session: Session) -> tuple[list[str], list[str]]:
    """(valid, unknown) timezones of active weekly subscribers; DIGEST_TIMEZONE always included.

    Subscribers with no timezone, or one this machine does not know, ride the default wave.
    """
    default = get_settings().timezone
    stored = session.scalars(
        select(Subscriber.timezone)
        .where(
            Subscriber.status == SubscriberStatus.ACTIVE,
            Subscriber.frequency == Frequency.WEEKLY,
            Subscriber.timezone.is_not(None),
        )
        .distinct()
    )
    valid, unknown = {default}, set()
    for name in stored:
        if name:
            (valid if _zone(name) is not None else unknown).add(name)
    return sorted(valid), sorted(unknown)


@dataclass(frozen=True)
class Wave:
    timezone: str
    slot: datetime  # local, aware

    @property
    def key(self) -> str:
        return slot_key(self.slot, self.timezone)


def due_waves(session: Session, now: datetime) -> list[Wave]:
    """Each timezone's latest slot that is not older than the grace period, earliest first."""
    settings = get_settings()
    cron = parse_cron(settings.weekly_cron)
    grace = timedelta(hours=settings.weekly_grace_hours)
    waves = []
    for name in wave_timezones(session)[0]:
        slot = last_slot(cron, now, ZoneInfo(name))
        if now - slot <= grace:
            waves.append(Wave(name, slot))
    return sorted(waves, key=lambda w: (w.slot.astimezone(UTC), w.timezone))


def next_waves(session: Session, now: datetime) -> list[Wave]:
    """Each timezone wave's next slot after `now`, earliest first (the console's dashboard)."""
    cron = parse_cron(get_settings().weekly_cron)
    waves = [
        Wave(name, next_slot(cron, now, ZoneInfo(name))) for name in wave_timezones(session)[0]
    ]
    return sorted(waves, key=lambda w: (w.slot.astimezone(UTC), w.timezone))
