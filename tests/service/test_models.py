"""The database itself refuses bad rows (PostgreSQL), whatever code writes them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from digest.db import new_session
from schema.models import (
    Comparison,
    Delivery,
    DeliveryBatch,
    Digest,
    DigestSegment,
    Review,
    Subscriber,
    Tool,
)

NOW = datetime(2026, 11, 23, tzinfo=UTC)


def a_comparison(**kw: object) -> Comparison:
    fields = dict(
        slug="a-vs-b",
        title="A vs B",
        published_at=NOW,
        updated_at=NOW,
        verdict_fingerprint="f",
        content_hash="c",
        source="api",
    )
    fields.update(kw)
    return Comparison(**fields)


def refused(pg: str, build: Callable[[Session], None]) -> bool:
    session = new_session()
    try:
        build(session)
        session.commit()
    except IntegrityError:
        session.rollback()
        return True
    finally:
        session.close()
    return False


def test_slug_is_unique(pg: str) -> None:
    assert not refused(pg, lambda s: s.add(a_comparison()))
    assert refused(pg, lambda s: s.add(a_comparison()))


def test_tool_position_is_a_or_b(pg: str) -> None:
    assert refused(pg, lambda s: s.add(a_comparison(tools=[Tool(position=2, name="X")])))


def test_panel_percentage_is_0_to_100(pg: str) -> None:
    assert refused(
        pg, lambda s: s.add(a_comparison(tools=[Tool(position=0, name="X", panel_ship_pct=101)]))
    )


def test_negative_votes_are_refused(pg: str) -> None:
    assert refused(
        pg, lambda s: s.add(a_comparison(tools=[Tool(position=0, name="X", community_skip=-1)]))
    )


def test_verdict_label_is_ship_mixed_or_skip(pg: str) -> None:
    assert refused(
        pg, lambda s: s.add(a_comparison(tools=[Tool(position=0, name="X", verdict_label="Meh")]))
    )


def test_review_score_is_0_to_100(pg: str) -> None:
    review = Review(position=1, persona="Builder", score=101, verdict="ship")
    assert refused(
        pg, lambda s: s.add(a_comparison(tools=[Tool(position=0, name="X", reviews=[review])]))
    )


def test_review_persona_is_a_known_persona(pg: str) -> None:
    review = Review(position=1, persona="Intern")
    assert refused(
        pg, lambda s: s.add(a_comparison(tools=[Tool(position=0, name="X", reviews=[review])]))
    )


def test_subscriber_email_is_unique_case_insensitively(pg: str) -> None:
    assert not refused(pg, lambda s: s.add(Subscriber(email="Ann@Example.com")))
    assert refused(pg, lambda s: s.add(Subscriber(email="ann@example.COM")))


def test_subscriber_status_is_a_known_status(pg: str) -> None:
    assert refused(pg, lambda s: s.add(Subscriber(email="b@example.com", status="maybe")))


def test_delivery_is_unique_per_digest_and_subscriber(pg: str) -> None:
    def build(s: Session) -> None:
        sub = Subscriber(email="c@example.com", status="active")
        digest = Digest(kind="weekly")
        segment = DigestSegment(digest=digest, segment_key="all", subject="s", html="h", text="t")
        batch = DeliveryBatch(digest=digest, segment=segment, seq=1)
        s.add_all([sub, digest, segment, batch])
        s.flush()
        for _ in range(2):
            s.add(
                Delivery(
                    digest_id=digest.id, batch_id=batch.id, subscriber_id=sub.id, email=sub.email
                )
            )

    assert refused(pg, build)


def test_batch_holds_at_most_1000_recipients(pg: str) -> None:
    def build(s: Session) -> None:
        digest = Digest(kind="weekly")
        segment = DigestSegment(digest=digest, segment_key="all", subject="s", html="h", text="t")
        s.add(DeliveryBatch(digest=digest, segment=segment, seq=1, size=1001))

    assert refused(pg, build)


def test_weekly_slot_fires_one_digest(pg: str) -> None:
    assert not refused(pg, lambda s: s.add(Digest(kind="weekly", slot_key="2026-W48@UTC")))
    assert refused(pg, lambda s: s.add(Digest(kind="weekly", slot_key="2026-W48@UTC")))


def test_deleting_a_comparison_deletes_its_tools_and_reviews(pg: str) -> None:
    from sqlalchemy import func, select

    session = new_session()
    review = Review(position=1, persona="Builder", score=90, verdict="ship")
    session.add(a_comparison(tools=[Tool(position=0, name="X", reviews=[review])]))
    session.commit()
    session.delete(session.scalar(select(Comparison)))
    session.commit()
    assert session.scalar(select(func.count()).select_from(Review)) == 0
    session.close()


@pytest.mark.parametrize("backend", ["sqlite", "pg"])
def test_migrations_downgrade_and_upgrade_cleanly(backend: str, request: pytest.FixtureRequest):
    from digest import migrations

    url = request.getfixturevalue(backend)
    migrations.downgrade(url, "base")
    migrations.upgrade(url, "head")


def test_stored_webhook_bodies_are_compressed_with_lz4(pg: str) -> None:
    """Migration 0013: lz4 stores a 3 MB body in half pglz's time (SendGrid waits for it)."""
    session = new_session()
    try:
        method = session.execute(
            text(
                "SELECT attcompression FROM pg_attribute "
                "WHERE attrelid = 'webhook_batches'::regclass AND attname = 'body'"
            )
        ).scalar_one()
    finally:
        session.close()
    assert method == "l"


@pytest.mark.parametrize("backend", ["sqlite", "pg"])
def test_migration_0014_downgrade_writes_the_rows_of_batches_never_claimed(
    backend: str, request: pytest.FixtureRequest
) -> None:
    """Before 0014 every planned recipient had a delivery row: going back must not lose them."""
    from digest import migrations
    from digest.db import get_engine
    from tests.support.planned_rows import plan_rows

    url = request.getfixturevalue(backend)
    session = new_session()
    try:
        planned = plan_rows(session, 3)
    finally:
        session.close()
    migrations.downgrade(url, "0013_webhook_storage")
    with get_engine(url).connect() as connection:
        rows = connection.execute(
            text("SELECT email, status FROM deliveries WHERE digest_id = :d ORDER BY email"),
            {"d": planned.digest_id},
        ).all()
    migrations.upgrade(url, "head")
    assert [tuple(row) for row in rows] == [(email, "pending") for email in planned.emails]


@pytest.mark.parametrize("backend", ["sqlite", "pg"])
def test_migration_0015_keeps_every_stored_event_recognisable(
    backend: str, request: pytest.FixtureRequest
) -> None:
    """Events stored under the two old keys still match their redeliveries' one new key."""
    import hashlib

    from digest import migrations
    from digest.db import get_engine
    from digest.webhook_events import dedupe_key

    url = request.getfixturevalue(backend)
    content = ("msg-7.filter.0", "ada@example.test", "open", "1764000000", "")
    old_key = hashlib.sha256("\x1f".join(content).encode()).hexdigest()  # the 64-digit key
    migrations.downgrade(url, "0014_batch_subscriber_ids")
    insert = text(
        "INSERT INTO email_events (id, sg_event_id, sg_message_id, dedupe_key, event, "
        "occurred_at, machine, payload) VALUES (:id, :event_id, :message_id, :key, 'open', "
        ":at, false, '{}')"
    )
    with get_engine(url).begin() as connection:
        connection.execute(
            insert,
            [
                {"id": 1, "event_id": "evt-a", "message_id": content[0], "key": old_key, "at": NOW},
                {"id": 2, "event_id": "evt-b", "message_id": None, "key": None, "at": NOW},
            ],
        )
    migrations.upgrade(url, "head")
    with get_engine(url).connect() as connection:
        keys = dict(connection.execute(text("SELECT id, dedupe_key FROM email_events")).all())
    assert {id_: str(key).replace("-", "") for id_, key in keys.items()} == {
        1: dedupe_key(content[0], content[1], "open", 1764000000, None, "evt-a"),
        2: dedupe_key(None, None, "open", 0, None, "evt-b"),
    }


# Declared only in migration 0012: PostgreSQL expression indexes with the `text_pattern_ops`
# operator class (prefix search under any collation), which the models cannot spell portably.
MIGRATION_ONLY_INDEXES = {"ix_subscribers_email_prefix", "ix_subscribers_name_prefix"}


# SQLite cannot reflect expression indexes (`uq_subscribers_email_lower`): Alembic says so and
# skips them there; PostgreSQL compares them.
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based")
@pytest.mark.parametrize("backend", ["sqlite", "pg"])
def test_the_migrations_build_the_schema_the_models_declare(
    backend: str, request: pytest.FixtureRequest
) -> None:
    """A model changed without its migration (or the reverse) fails here, not in production."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from digest.db import get_engine
    from schema.models import Base

    url = request.getfixturevalue(backend)
    with get_engine(url).connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    unexplained = [
        difference
        for difference in differences
        if not (difference[0] == "remove_index" and difference[1].name in MIGRATION_ONLY_INDEXES)
    ]
    assert unexplained == []
