"""Seed a database with many subscribers fast: PostgreSQL COPY, never row-by-row INSERTs.

Used by `make bench`, the soak run and the fault tests. Subscribers are spread over preference
segments (distinct category sets) and timezones deterministically, so a run is reproducible and
the expected recipients can be recomputed from the seed parameters alone.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import sqlalchemy as sa

from digest import migrations

CATEGORIES = ("Writing", "Developer Tools", "Design", "Productivity", "Research")
TIMEZONES = (
    None,
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Tokyo",
    "Australia/Sydney",
    "America/Los_Angeles",
)
SAMPLE_COMPARISONS = Path(__file__).resolve().parent.parent / (
    "digest/sample_data/comparisons.ndjson"
)
EMAIL_DOMAIN = "bench.example"
COLUMNS = (
    "email",
    "name",
    "status",
    "categories",
    "frequency",
    "timezone",
    "paused",
    "consent_at",
    "consent_source",
    "confirmed_at",
    "soft_bounces",
    "created_at",
    "updated_at",
)


def libpq_url(url: str) -> str:
    """SQLAlchemy's `postgresql+psycopg://` URL as psycopg itself wants it."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def category_sets(count: int) -> list[list[str]]:
    """`count` distinct category sets: the empty set (everything) first, then singles, pairs…

    Each distinct set is one preference segment, so `count` is the number of segments seeded.
    """
    sets: list[list[str]] = [[]]
    for size in range(1, len(CATEGORIES) + 1):
        sets.extend(list(combo) for combo in itertools.combinations(CATEGORIES, size))
    if not 1 <= count <= len(sets):
        raise ValueError(f"segments must be between 1 and {len(sets)}, got {count}")
    return sets[:count]


def subscriber_email(number: int, prefix: str = "reader") -> str:
    return f"{prefix}{number:07d}@{EMAIL_DOMAIN}"


def _rows(start: int, count: int, segments: int, status: str, prefix: str) -> Iterator[str]:
    sets = [json.dumps(s) for s in category_sets(segments)]
    now = datetime.now(UTC).isoformat()
    for number in range(start, start + count):
        zone = TIMEZONES[number % len(TIMEZONES)]
        yield (
            "\t".join(
                (
                    subscriber_email(number, prefix),
                    f"Reader {number}",
                    status,
                    sets[number % len(sets)],
                    "weekly",
                    zone or r"\N",
                    "f",
                    now,
                    "bench seed",
                    now,
                    "0",
                    now,
                    now,
                )
            )
            + "\n"
        )


def copy_subscribers(
    url: str,
    count: int,
    *,
    segments: int = 8,
    start: int = 0,
    status: str = "active",
    prefix: str = "reader",
    chunk: int = 20_000,
) -> int:
    """COPY `count` subscribers (numbered from `start`) in one transaction; returns the count."""
    columns = ", ".join(COLUMNS)
    with psycopg.connect(libpq_url(url)) as connection:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
            with cursor.copy(f"COPY subscribers ({columns}) FROM STDIN") as copy:
                rows = _rows(start, count, segments, status, prefix)
                while block := "".join(itertools.islice(rows, chunk)):
                    copy.write(block)
        connection.execute("ANALYZE subscribers")
    return count


def create_database(name: str, admin_url: str) -> str:
    """Drop and recreate database `name`, migrate it to head, and return its URL."""
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    migrations.upgrade(url)
    return url


def drop_database(name: str, admin_url: str) -> None:
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def import_sample_comparisons(now: datetime | None = None) -> dict[str, int]:
    """The sample comparisons through the real ingest path, re-dated into the past week.

    DIGEST_DATABASE_URL must point at the target database. Publication times are spread over
    the six days before `now`, so a weekly digest run now finds them all.
    """
    from digest.db import session_scope
    from digest.ingest import apply_event

    now = now or datetime.now(UTC)
    outcomes: dict[str, int] = {}
    lines = SAMPLE_COMPARISONS.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(filter(None, lines)):
        raw = json.loads(line)
        when = now - timedelta(days=6) + timedelta(hours=12 * number)
        raw["data"]["published_at"] = when.isoformat().replace("+00:00", "Z")
        raw["id"] = f"bench-{raw['id']}-{now:%Y%m%d%H%M%S}"
        with session_scope() as session:
            outcome = apply_event(session, raw, source="file")
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes
