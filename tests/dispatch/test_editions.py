"""The waves of one weekly edition are found by the `digests.edition` column (digest/editions.py),
and migration 0007 fills that column for weekly digests planned before it existed."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from digest import migrations
from digest.db import session_scope
from digest.editions import other_waves
from schema.models import Digest
from schema.statuses import DigestKind, DigestStatus

EDITION = "2026-11-30T09:00:00"


def wave(timezone: str, edition: str | None = EDITION) -> Digest:
    return Digest(
        kind=DigestKind.WEEKLY,
        status=DigestStatus.SENT,
        slot_key=f"{edition}+00:00@{timezone}",
        edition=edition,
        options={"timezone": timezone, "edition": edition},
    )


def test_other_waves_are_the_same_editions_other_digests_first_fired_first(pg: str) -> None:
    with session_scope() as session:
        tokyo, berlin = wave("Asia/Tokyo"), wave("Europe/Berlin")
        other = wave("UTC", edition="2026-12-07T09:00:00")
        session.add_all([tokyo, berlin, other])
        session.flush()
        assert [w.id for w in other_waves(session, berlin)] == [tokyo.id]
        assert other_waves(session, other) == []


def test_a_digest_that_is_not_a_weekly_wave_has_no_other_waves(pg: str) -> None:
    with session_scope() as session:
        session.add(wave("Asia/Tokyo"))
        adhoc = Digest(kind=DigestKind.ADHOC, status=DigestStatus.PLANNED, options={})
        session.add(adhoc)
        session.flush()
        assert other_waves(session, adhoc) == []


@pytest.mark.parametrize("backend", ["sqlite", "pg"])
def test_migration_0007_backfills_the_edition_of_existing_weekly_digests(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(backend)
    migrations.downgrade(url, "0006_segment_placeholders")
    engine = create_engine(url)
    insert = text(
        "INSERT INTO digests (kind, status, slot_key, options, recipients, renders, created_at)"
        " VALUES (:kind, 'sent', :key, :options, 0, 0, CURRENT_TIMESTAMP)"
    )
    with engine.begin() as connection:
        connection.execute(
            insert,
            [
                {"kind": "weekly", "key": "w@UTC", "options": f'{{"edition": "{EDITION}"}}'},
                {"kind": "weekly", "key": "old@UTC", "options": "{}"},
                {"kind": "adhoc", "key": None, "options": '{"edition": "not a wave"}'},
            ],
        )
    migrations.upgrade(url, "head")
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT kind, slot_key, edition FROM digests ORDER BY id"))
        assert [tuple(row) for row in rows] == [
            ("weekly", "w@UTC", EDITION),
            ("weekly", "old@UTC", None),
            ("adhoc", None, None),
        ]
    engine.dispose()
