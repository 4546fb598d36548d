"""Writing a plan's batches: the ledger every send works from.

Batches hold at most `DIGEST_BATCH_SIZE` (1000) recipients, one open batch per segment, flushed
when full. No address is twice in a digest: recipients are distinct subscriber rows read once
each, and no two subscribers share an address (`uq_subscribers_email_lower`); the deliveries'
unique (digest, subscriber) key checks it again when the rows are written.

A batch row carries its recipients' subscriber ids as one array; its first claim writes their
delivery rows (digest/batch_recipients.py). On PostgreSQL the batch goes straight through the
driver, with the array as text; elsewhere through SQLAlchemy Core.
"""

from __future__ import annotations

from sqlalchemy import insert
from sqlalchemy.orm import Session

from digest.batch_recipients import encode_ids
from digest.segments import OpenSegment
from schema.models import DeliveryBatch
from schema.statuses import BatchStatus

INSERT_BATCH = (
    "INSERT INTO delivery_batches (digest_id, segment_id, seq, status, size, attempts,"
    " subscriber_ids) VALUES (%s, %s, %s, 'pending', %s, 0, %s::bigint[]) RETURNING id"
)


class LedgerWriter:
    """Buffers each segment's recipients and writes a batch with their ids when full."""

    def __init__(self, session: Session, digest_id: int, *, batch_size: int, dry_run: bool):
        self.session, self.digest_id = session, digest_id
        self.batch_size, self.dry_run = batch_size, dry_run
        self.postgres = session.get_bind().dialect.name == "postgresql"
        self.seq = 0  # batches planned (counted in a dry run too)
        self.batch_ids: list[int] = []

    def add(self, segment: OpenSegment, subscriber_id: int) -> None:
        buffer = segment.buffer
        buffer.append(subscriber_id)
        if len(buffer) >= self.batch_size:
            self.flush(segment)

    def flush(self, segment: OpenSegment) -> None:
        if not segment.buffer:
            return
        self.seq += 1
        size = len(segment.buffer)
        if not self.dry_run:
            self.batch_ids.append(self._insert_batch(segment.id, segment.buffer))
        segment.plan.recipients += size
        segment.plan.batches += 1
        segment.buffer.clear()

    def _insert_batch(self, segment_id: int | None, subscriber_ids: list[int]) -> int:
        """The batch row with its recipients' ids, returning its id. On PostgreSQL straight
        through the driver: one per thousand recipients, where SQLAlchemy's statement handling
        cost more than the row."""
        size = len(subscriber_ids)
        if self.postgres:
            driver = self.session.connection().connection.driver_connection
            with driver.cursor() as cursor:
                ids = encode_ids(subscriber_ids)
                cursor.execute(INSERT_BATCH, (self.digest_id, segment_id, self.seq, size, ids))
                (batch_id,) = cursor.fetchone()
                return batch_id
        batch_id = self.session.scalar(
            insert(DeliveryBatch)
            .values(
                digest_id=self.digest_id,
                segment_id=segment_id,
                seq=self.seq,
                status=BatchStatus.PENDING,
                size=size,
                attempts=0,
                subscriber_ids=list(subscriber_ids),
            )
            .returning(DeliveryBatch.id)
        )
        assert batch_id is not None
        return batch_id
