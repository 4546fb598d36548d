"""`digest demo`: the weekly digest end to end on the embedded default, in a few seconds.

SQLite stands in for PostgreSQL, tasks run in-process, and the outbox backend writes one `.eml`
file per recipient, so the demo needs no service at all. It uses the production path: the sample
comparisons go through ingest, the sample subscribers through the CSV import (as confirmed), and
the weekly digest is fired by the same function beat's task calls (`weekly.fire_weekly_slots`),
its batches sent by the same `digest.send_batch` tasks (eager).

The sample data has fixed dates, and the demo must work on any day: it picks next week's slot
(`DIGEST_WEEKLY_CRON` in every subscriber timezone), moves the sample comparisons into the week
before its first wave, and ticks the beat clock once per wave. Each run starts from a fresh
`./var/demo.db` and an empty `./var/outbox/demo`, so running it twice gives the same result; with
an explicit database URL the data is kept, and a second run says that nothing new was due.
"""

from __future__ import annotations

import json
import os
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from schema.statuses import DigestStatus, Frequency, SubscriberStatus

if TYPE_CHECKING:
    from digest.subscriber_lists import ImportReport

SAMPLE_DIR = Path(__file__).resolve().parent / "sample_data"
DEMO_DB = Path("var/demo.db")
DEMO_OUTBOX = Path("var/outbox/demo")
MAX_SPAN = timedelta(days=6)  # the sample week must fit the first digest's 7-day window


@contextmanager
def embedded(database_url: str, outbox: Path) -> Iterator[None]:
    """The embedded default for the length of the demo: SQLite, no broker, the outbox."""
    from digest.db import reset_caches

    overrides = {
        "DIGEST_DATABASE_URL": database_url,
        "DIGEST_BROKER_URL": "",
        "DIGEST_REDIS_URL": "",
        "DIGEST_EMAIL_BACKEND": "outbox",
        "DIGEST_OUTBOX_DIR": str(outbox),
        "DIGEST_ENV": "development",
    }
    saved = {key: os.environ.get(key) for key in overrides}
    os.environ.update(overrides)
    reset_caches()
    from workers.app import app

    was_eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        yield
    finally:
        app.conf.task_always_eager = was_eager
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset_caches()


def sample_events() -> list[dict[str, Any]]:
    lines = (SAMPLE_DIR / "comparisons.ndjson").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def shift_events(events: list[dict[str, Any]], newest: datetime) -> list[dict[str, Any]]:
    """The events with publication times moved (and squeezed into 6 days if they span more)
    so that the newest is published at `newest`; their order and spacing are kept."""
    times = [_parse(e["data"]["published_at"]) for e in events if "published_at" in e["data"]]
    if not times:
        return events
    first, last = min(times), max(times)
    scale = min(1.0, MAX_SPAN / (last - first)) if last > first else 1.0

    def moved(value: str) -> str:
        return (newest - (last - _parse(value)) * scale).replace(microsecond=0).isoformat()

    shifted = []
    for event in events:
        data = dict(event["data"])
        for key in ("published_at", "updated_at"):
            if data.get(key):
                data[key] = moved(data[key])
        shifted.append({**event, "data": data})
    return shifted


def demo_slots(now: datetime) -> dict[str, datetime]:
    """Next week's weekly slot in every wave timezone: one edition, read at 09:00 everywhere."""
    from digest.cron import next_slot, parse_cron
    from digest.db import session_scope
    from digest.schedule import wave_timezones
    from digest.settings import get_settings

    settings = get_settings()
    cron = parse_cron(settings.weekly_cron)
    # Two days before the default wave's next slot: every zone's slot of the same local date
    # (at most 26 hours from the default one) comes after it, the week before does not.
    base = next_slot(cron, now, settings.zone) - timedelta(days=2)
    with session_scope() as session:
        zones = wave_timezones(session)[0]
    return {zone: next_slot(cron, base, ZoneInfo(zone)) for zone in zones}


def run_demo(
    outbox: Path | None = None,
    database_url: str | None = None,
    *,
    now: datetime | None = None,
) -> dict[str, object]:
    """Import the samples, fire every weekly wave, send; return what happened, step by step."""
    fresh = database_url is None
    if fresh:
        for suffix in ("", "-wal", "-shm"):
            DEMO_DB.with_name(DEMO_DB.name + suffix).unlink(missing_ok=True)
        database_url = f"sqlite:///{DEMO_DB}"
    if outbox is None:
        outbox = DEMO_OUTBOX
        for old in outbox.glob("*.eml"):
            old.unlink()
    outbox.mkdir(parents=True, exist_ok=True)
    before = set(outbox.glob("*.eml"))
    with embedded(database_url, outbox):
        return _run(database_url, outbox, before, now or datetime.now(UTC))


def _run(database_url: str, outbox: Path, before: set[Path], now: datetime) -> dict[str, object]:
    from digest import migrations
    from digest.db import session_scope
    from digest.ingest import apply_event
    from digest.rendering import mjml_render_count
    from digest.subscriber_lists import import_subscribers

    with warnings.catch_warnings():
        # SQLite's batch migrations reflect the lower(email) index they cannot read; harmless.
        warnings.filterwarnings("ignore", message="Skipped unsupported reflection")
        migrations.upgrade(database_url)
    with session_scope() as session:
        people = import_subscribers(session, SAMPLE_DIR / "subscribers.csv", confirmed=True)
    slots = demo_slots(now)
    first_wave = min(slots.values())
    outcomes: Counter[str] = Counter()
    with session_scope() as session:
        for event in shift_events(sample_events(), first_wave - timedelta(hours=1)):
            outcomes[apply_event(session, event, source="file")] += 1
    renders_before = mjml_render_count()
    fired = _fire_waves(sorted(set(slots.values())))
    written = sorted(set(outbox.glob("*.eml")) - before)
    created = outcomes.get("created", 0)
    rows = _results(fired, people)
    return {
        "database": database_url,
        "comparisons imported": created
        or f"none new ({sum(outcomes.values())} already imported: no new comparisons)",
        "subscribers": rows["subscribers"],
        "weekly slot": f"{first_wave.replace(tzinfo=None).isoformat()} local time",
        "waves": rows["waves"],
        "segments": rows["segments"],
        "MJML renders": mjml_render_count() - renders_before,
        "batches": rows["batches"],
        "emails written": len(written),
        "outbox": str(outbox.resolve()),
    }


def _fire_waves(ticks: list[datetime]) -> list[int]:
    """Tick the beat clock once per wave, as beat would; the fired digests' ids."""
    from digest.weekly import fire_weekly_slots
    from workers.tasks import dispatch_batches

    fired: list[int] = []
    for ticks_at in ticks:
        for report in fire_weekly_slots(now=ticks_at + timedelta(minutes=1)):
            dispatch_batches(report.batch_ids)
            fired.append(report.digest_id)
    return fired


def _results(ids: list[int], people: ImportReport) -> dict[str, object]:
    """The rows the demo wrote: subscribers, the waves and their segments and batches."""
    from digest.db import session_scope
    from schema.models import DeliveryBatch, Digest, DigestSegment, Subscriber

    with session_scope() as session:
        waves = session.execute(
            select(Digest.options, Digest.status, Digest.recipients, Digest.status_reason)
            .where(Digest.id.in_(ids))
            .order_by(Digest.id)
        ).all()
        segments = session.scalar(
            select(func.count()).select_from(DigestSegment).where(DigestSegment.digest_id.in_(ids))
        )
        batches = session.scalar(
            select(func.count()).select_from(DeliveryBatch).where(DeliveryBatch.digest_id.in_(ids))
        )
        by_frequency = dict(
            session.execute(
                select(Subscriber.frequency, func.count())
                .where(Subscriber.status == SubscriberStatus.ACTIVE)
                .group_by(Subscriber.frequency)
            ).all()
        )
    return {
        "subscribers": f"{people.added} added, {people.existing} already known; active: "
        f"{by_frequency.get(Frequency.WEEKLY, 0)} weekly, {by_frequency.get(Frequency.EVERY, 0)} "
        "every (alerts only)",
        "waves": "; ".join(
            f"{options.get('timezone')}: {status} to {recipients}"
            + (f" ({reason})" if status == DigestStatus.CANCELLED and reason else "")
            for options, status, recipients, reason in waves
        )
        or "none due (already fired in an earlier run: nothing new to send)",
        "segments": segments or 0,
        "batches": batches or 0,
    }
