"""Reading `DIGEST_WEEKLY_CRON` and finding its slots, through cronsim.

cronsim (the cron evaluator of Healthchecks.io) matches Debian's cron, daylight-saving quirks
included, and iterates both ways. What this module adds is small: Vixie cron's `@weekly`-style
shorthands (cronsim reads five fields only), errors that name the field, and slot lookups on
aware datetimes in a wave's timezone.

Daylight saving, as Debian's cron does it (and so as the tests pin down):

- a slot inside the hour that a spring-forward day skips (02:30 when clocks jump 02:00 → 03:00)
  fires once, at the first minute after the gap (03:00 local);
- a slot inside the hour that a fall-back day repeats (01:30 when clocks go 02:00 → 01:00)
  fires once, at its first occurrence (the summer-time one).

This module imports nothing of the project's, so the settings can validate the expression.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

# Vixie cron's shorthands (crontab(5)); cronsim reads only the five-field form.
SHORTHANDS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
FIELD_NAMES = ("minute", "hour", "day of month", "month", "day of week")


class CronError(ValueError):
    """A cron expression that cannot be read; the message names the field."""


@dataclass(frozen=True)
class Cron:
    """A validated cron expression in its five-field form."""

    expression: str


def parse_cron(expression: str) -> Cron:
    """Validate "minute hour day-of-month month day-of-week" (or a shorthand like `@weekly`)."""
    text = SHORTHANDS.get(expression.strip().lower(), expression.strip())
    if len(text.split()) != 5:
        raise CronError(
            f"{expression!r}: expected 5 fields (minute hour day-of-month month day-of-week)"
            " or a shorthand such as @weekly"
        )
    try:
        CronSim(text, datetime(2000, 1, 1))
    except CronSimError as exc:  # "Bad day-of-week" → "day of week: …"
        message = str(exc)
        field = next((f for f in FIELD_NAMES if f in message.replace("-", " ")), "expression")
        raise CronError(f"{field}: cannot read {expression!r} ({message})") from exc
    return Cron(text)


def last_slot(cron: Cron, now: datetime, zone: ZoneInfo) -> datetime:
    """The latest slot at or before `now`, as an aware local time in `zone`."""
    # cronsim's reverse iteration starts strictly before its start: start just after `now`.
    start = now.astimezone(zone).replace(microsecond=0) + timedelta(seconds=1)
    try:
        return next(CronSim(cron.expression, start, reverse=True))
    except StopIteration as exc:
        raise CronError(f"{cron.expression!r} has no slot in the last 50 years") from exc


def next_slot(cron: Cron, after: datetime, zone: ZoneInfo) -> datetime:
    """The first slot strictly after `after`, as an aware local time in `zone`."""
    try:
        return next(CronSim(cron.expression, after.astimezone(zone)))
    except StopIteration as exc:
        raise CronError(f"{cron.expression!r} has no slot in the next 50 years") from exc
