"""email events: one idempotency key, 128 bits, instead of two unique text keys

Revision ID: 0015_one_event_key
Revises: 0014_batch_subscriber_ids
Create Date: 2026-12-01

`email_events` had two unique keys: `sg_event_id` and `dedupe_key` (a hash of message id,
address, event, time and URL). The webhook's `INSERT … ON CONFLICT DO NOTHING` checked and
maintained both for every row, as text compared under the database's collation: measured on
15,000 events, rolled back, 28.6 µs per row against 16.1 µs with one 16-byte `uuid` key (median
of six alternated rounds). Now `dedupe_key` is the only key: the content hash when there is a
message id (a redelivered event hashes the same; so does one resent under a new `sg_event_id`),
else a hash of the `sg_event_id` — SendGrid's documented dedupe id — so no event that one of the
two old keys caught goes uncaught — save one stored with a U+001F inside a field (SendGrid's
fields hold none), whose key is now hashed another way, so its redelivery would be stored
again. `sg_event_id` stays as a plain column.

Stored keys keep their first 32 hex digits; events that had no key but an `sg_event_id` get the
new key (`digest.webhook_events.dedupe_key`'s second branch, copied below).

On PostgreSQL the type change rewrites `email_events` once (the cast takes the 32 digits as it
goes), holding its lock meanwhile: webhook processing waits for it, while the webhook endpoint,
which only stores bodies in `webhook_batches`, keeps answering SendGrid. Measured on this
project's 2-core machine: 4.4 s for a table of 1,000,000 events. A worker of the previous
release cannot store events afterwards (it writes the key as text); its bodies stay stored
and beat queues them again, so workers are restarted with the web process (README).
"""

import hashlib
import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_one_event_key"
down_revision: str | None = "0014_batch_subscriber_ids"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

events = sa.table(
    "email_events",
    sa.column("id", sa.BigInteger),
    sa.column("sg_event_id", sa.String),
    sa.column("dedupe_key", sa.String),
)


def _event_id_key(event_id: str) -> str:
    # A copy of digest.webhook_events.dedupe_key's second branch: a migration must not change
    # when the code it ran with does.
    joined = f"sg_event_id\x1f{event_id}"
    if "\x1f" in event_id:
        joined = "json\x1f" + json.dumps(["sg_event_id", event_id])
    return hashlib.sha256(joined.encode()).hexdigest()[:32]


def upgrade() -> None:
    bind = op.get_bind()
    if (
        bind.dialect.name != "postgresql"
    ):  # SQLite copies the table in batch mode anyway: shorten the keys first
        op.execute(
            events.update()
            .where(events.c.dedupe_key.is_not(None))
            .values(dedupe_key=sa.func.substr(events.c.dedupe_key, 1, 32))
        )
    keyless = bind.execute(
        sa.select(events.c.id, events.c.sg_event_id).where(
            events.c.dedupe_key.is_(None), events.c.sg_event_id.is_not(None)
        )
    ).all()
    if keyless:
        bind.execute(
            events.update()
            .where(events.c.id == sa.bindparam("event_row_id"))
            .values(dedupe_key=sa.bindparam("new_key")),
            [
                {"event_row_id": id_, "new_key": _event_id_key(event_id)}
                for id_, event_id in keyless
            ],
        )
    with op.batch_alter_table("email_events", schema=None) as batch_op:
        batch_op.drop_constraint("uq_email_events_sg_event_id", type_="unique")
        batch_op.alter_column(
            "dedupe_key",
            existing_type=sa.String(length=64),
            type_=sa.Uuid(as_uuid=False),
            postgresql_using="CAST(left(dedupe_key, 32) AS uuid)",
        )


def downgrade() -> None:
    # Events stored since that share an sg_event_id with another (one resent with other
    # content) would make the old key fail to build: the downgrade then stops, changing nothing.
    with op.batch_alter_table("email_events", schema=None) as batch_op:
        batch_op.alter_column(
            "dedupe_key",
            existing_type=sa.Uuid(as_uuid=False),
            type_=sa.String(length=64),
            postgresql_using="replace(CAST(dedupe_key AS text), '-', '')",
        )
        batch_op.create_unique_constraint("uq_email_events_sg_event_id", ["sg_event_id"])
