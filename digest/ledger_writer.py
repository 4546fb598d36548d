"""Writing a plan's batches and deliveries: the ledger every send works from.

Batches hold at most `DIGEST_BATCH_SIZE` (1000) deliveries, one open batch per segment, flushed
when full; no address twice in a batch. On PostgreSQL both writes go straight through the
driver (the measurements are beside them); elsewhere through SQLAlchemy Core.
"""

from __future__ import annotations

import logging

from sqlalchemy import insert
from sqlalchemy.orm import Session

from digest.segments import OpenSegment
from schema.models import Delivery, DeliveryBatch
from schema.statuses import BatchStatus, DeliveryStatus

log = logging.getLogger(__name__)

# A batch's deliveries stream in through COPY: psycopg dumps array parameters in Python,
# element by element, which cost more than the insert itself at a million recipients.
COPY_DELIVERIES = "COPY deliveries (digest_id, batch_id, subscriber_id, email, status) FROM STDIN"
INSERT_BATCH = (
    "INSERT INTO delivery_batches (digest_id, segment_id, seq, status, size, attempts)"
    " VALUES (%s, %s, %s, 'pending', %s, 0) RETURNING id"
)
# The plain string in each COPY row, as measured: the driver never has to pick a dumper for an
# enum member, a million times over.
_PENDING = DeliveryStatus.PENDING.value


class LedgerWriter:
    """Buffers each segment's recipients and writes a batch with its deliveries when full."""

    def __init__(self, session: Session, digest_id: int, *, batch_size: int, dry_run: bool):
        self.session, self.digest_id = session, digest_id
        self.batch_size, self.dry_run = batch_size, dry_run
        self.postgres = session.get_bind().dialect.name == "postgresql"
        self.seq = 0  # batches planned (counted in a dry run too)
        self.batch_ids: list[int] = []

    def add(self, segment: OpenSegment, subscriber_id: int, email: str) -> None:
        folded = email.lower()
        if folded in segment.emails:  # the unique index makes this impossible; guard anyway
            log.warning("digest %s: %s twice in one batch, kept once", self.digest_id, email)
            return
        segment.emails.add(folded)
        segment.buffer.append((subscriber_id, email))
        if len(segment.buffer) >= self.batch_size:
            self.flush(segment)

    def flush(self, segment: OpenSegment) -> None:
        if not segment.buffer:
            return
        self.seq += 1
        size = len(segment.buffer)
        if not self.dry_run:
            batch_id = self._insert_batch(segment.id, size)
            self._insert_deliveries(batch_id, segment.buffer)
            self.batch_ids.append(batch_id)
        segment.plan.recipients += size
        segment.plan.batches += 1
        segment.buffer.clear()
        segment.emails.clear()

    def _insert_batch(self, segment_id: int | None, size: int) -> int:
        """The batch row, returning its id. On PostgreSQL straight through the driver: there is
        one per thousand recipients, and SQLAlchemy's statement handling cost more than the row.
        """
        if self.postgres:
            driver = self.session.connection().connection.driver_connection
            with driver.cursor() as cursor:
                cursor.execute(INSERT_BATCH, (self.digest_id, segment_id, self.seq, size))
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
            )
            .returning(DeliveryBatch.id)
        )
        assert batch_id is not None
        return batch_id

    def _insert_deliveries(self, batch_id: int, recipients: list[tuple[int, str]]) -> None:
        """One batch's deliveries in one statement: COPY on PostgreSQL, else executemany."""
        if self.postgres:
            driver = self.session.connection().connection.driver_connection
            with driver.cursor() as cursor, cursor.copy(COPY_DELIVERIES) as copy:
                digest_id = self.digest_id
                for subscriber_id, email in recipients:
                    copy.write_row((digest_id, batch_id, subscriber_id, email, _PENDING))
            return
        self.session.execute(
            insert(Delivery),
            [
                {
                    "digest_id": self.digest_id,
                    "batch_id": batch_id,
                    "subscriber_id": subscriber_id,
                    "email": email,
                    "status": DeliveryStatus.PENDING,
                }
                for subscriber_id, email in recipients
            ],
        )
