"""A batch's recipients: an array of subscriber ids from planning, delivery rows from its claim.

Planning stores each batch's recipients as one array on the batch (`subscriber_ids`), not a
row each: at a million recipients the rows and their index entries were most of PostgreSQL's
planning work (README, Benchmarks). The batch's first claim turns the array into its delivery
rows, in the claim's transaction and before any request (`write_deliveries`); from then on the
rows are the ledger, and the array is how a batch's rows are found (`rows_of`: deliveries have
no batch index since migration 0016; a 413 split gives its new half an array of the ids it
moved). "Not yet claimed" is `attempts = 0`: only a claim counts attempts, and a split's half
starts with its parent's.
The array is not cleared at the claim: a second UPDATE of the batch row in the claim's
transaction re-checks the row's foreign key to its digest (PostgreSQL does for a row the same
transaction wrote), and that waited on an operator's cancel holding the digest: a deadlock.
"Exactly once" is still checked by the rows (their unique digest-and-subscriber key) of every
batch that could have been sent.

Until its claim, a recipient is only an id in an array. The readers that must see such
recipients ask here: counts (a batch not yet claimed is `size` deliveries, pending or cancelled
with the batch), an earlier wave's reach (`unclaimed_between`) and the ledger by subscriber
(`unclaimed_batches_of`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    String,
    and_,
    case,
    false,
    func,
    insert,
    or_,
    select,
    text,
    type_coerce,
)
from sqlalchemy.orm import Session, joinedload

from digest.key_lists import among
from schema.models import Delivery, DeliveryBatch, Subscriber
from schema.statuses import BatchStatus, DeliveryStatus

# One statement on PostgreSQL. The array's subscribers are read in one index scan (`= ANY`: a
# quarter less backend CPU than unnesting the array and joining row by row), in id order, which
# is the array's order; the address is the subscriber's at claim time. Each recipient gets its
# delivery id from the table's sequence (after the sort, so ids follow the plan's order), the
# rows are inserted from that, and the recipients are read back from the same CTE with what the
# batch's message needs (the row layout of `batch_message._pending`). The INSERT's own
# RETURNING, joined back to the recipients on subscriber id, cost a tenth of the statement
# (backend CPU, README Benchmarks); a data-modifying CTE runs to completion whether or not it
# is read. Only on the first claim (`attempts = 1` once claimed), under the claim's row lock.
WRITE_DELIVERIES = text(
    """
    WITH planned AS MATERIALIZED (
        SELECT nextval('deliveries_id_seq') AS id, b.digest_id, s.id AS subscriber_id, s.email,
               s.name, s.status, s.paused
        FROM delivery_batches b JOIN subscribers s ON s.id = ANY(b.subscriber_ids)
        WHERE b.id = :batch_id AND b.attempts = 1
        ORDER BY s.id
    ), written AS (
        INSERT INTO deliveries (id, digest_id, batch_id, subscriber_id, email, status)
        SELECT id, digest_id, :batch_id, subscriber_id, email, 'pending' FROM planned
    )
    SELECT id, subscriber_id, email, name, status, paused FROM planned ORDER BY id
    """
)


# The planned ids of unclaimed batches in [first, last]. A batch's array is in id order, so
# only arrays whose first and last ids overlap the range are unnested.
UNCLAIMED_BETWEEN = text(
    """
    SELECT u.id
    FROM delivery_batches b, unnest(b.subscriber_ids) AS u(id)
    WHERE b.digest_id = ANY(:digest_ids) AND b.attempts = 0 AND b.subscriber_ids IS NOT NULL
      AND b.subscriber_ids[1] <= :last
      AND b.subscriber_ids[cardinality(b.subscriber_ids)] >= :first
      AND u.id BETWEEN :first AND :last
    """
)


def encode_ids(subscriber_ids: Sequence[int]) -> str:
    """A list of ids as PostgreSQL's array literal, passed as text and cast by the statement:
    psycopg dumps a list parameter element by element in Python, which cost more than the
    whole planning write (measured at a million recipients)."""
    return "{" + ",".join(map(str, subscriber_ids)) + "}"


def write_deliveries(session: Session, batch_id: int) -> list[tuple[Any, ...]] | None:
    """Under a batch's first claim: its delivery rows from its planned array.

    On PostgreSQL one statement writes the rows and returns them as the driver's tuples (delivery
    id, subscriber id, email, name, status, paused). Returns None when the caller must read the
    batch's pending rows itself: not its first claim (a retry), no array (a 413 split's half),
    or the database is SQLite, where the rows are written here through SQLAlchemy.
    """
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        result = connection.execute(WRITE_DELIVERIES, {"batch_id": batch_id})
        rows = result.cursor.fetchall() if result.cursor is not None else []
        result.close()
        return rows or None
    batch = session.execute(
        select(DeliveryBatch.digest_id, DeliveryBatch.subscriber_ids, DeliveryBatch.attempts).where(
            DeliveryBatch.id == batch_id
        )
    ).one()
    if batch.subscriber_ids is None or batch.attempts != 1:
        return None
    ids = _ids(batch.subscriber_ids)
    emails = dict(
        session.execute(select(Subscriber.id, Subscriber.email).where(Subscriber.id.in_(ids))).all()
    )
    rows = [
        {
            "digest_id": batch.digest_id,
            "batch_id": batch_id,
            "subscriber_id": subscriber_id,
            "email": emails[subscriber_id],
            "status": DeliveryStatus.PENDING,
        }
        for subscriber_id in ids
        if subscriber_id in emails
    ]
    if rows:
        session.execute(insert(Delivery), rows)
    return None


# --- a claimed batch's rows ------------------------------------------------------------------


def rows_of(session: Session, batch_ids: Sequence[int]) -> ColumnElement[bool]:
    """The condition "this delivery row belongs to one of these batches", for the rare paths
    that settle, move or re-read a batch's rows (a retry, a failure, a split, a cancel, an
    operator's decision, an event linked by message id).

    There is no index on `deliveries.batch_id` (migration 0016: it was ~a fifth of the claim's
    INSERT, on every row, for queries that run on a few batches). A batch's rows are found
    through its array and the unique (digest, subscriber) key instead: one index probe per
    planned recipient. A 413 split gives its new half an array of the ids it moved. A batch
    never claimed has no rows; a batch planned before migration 0014 has no array, and its
    rows are found among its digest's through the same key's digest prefix (slower, correct).
    """
    ids = list(dict.fromkeys(batch_ids))
    if not ids:
        return false()
    batches = session.execute(
        select(
            DeliveryBatch.id,
            DeliveryBatch.digest_id,
            DeliveryBatch.subscriber_ids,
        ).where(DeliveryBatch.id.in_(ids), ~unclaimed())  # never claimed: no rows
    ).all()
    clauses = []
    for batch_id, digest_id, planned in batches:
        clause = and_(Delivery.digest_id == digest_id, Delivery.batch_id == batch_id)
        if planned is not None:
            clause = and_(clause, among(session, Delivery.subscriber_id, _ids(planned)))
        clauses.append(clause)
    return or_(*clauses) if clauses else false()


# --- readers of batches not yet claimed ---------------------------------------------------------


def unclaimed() -> Any:
    """The condition "this batch's recipients are still only its array": never claimed."""
    return and_(DeliveryBatch.attempts == 0, DeliveryBatch.subscriber_ids.is_not(None))


def unclaimed_status() -> Any:
    """What an unclaimed batch's recipients count as: cancelled with their batch, else
    pending (a batch is only ever pending or cancelled before its first claim)."""
    return case(
        (DeliveryBatch.status == BatchStatus.CANCELLED, DeliveryStatus.CANCELLED.value),
        else_=DeliveryStatus.PENDING.value,
    )


def planned_status(batch_status: str) -> str:
    """`unclaimed_status` for one batch already read."""
    cancelled = batch_status == BatchStatus.CANCELLED
    return (DeliveryStatus.CANCELLED if cancelled else DeliveryStatus.PENDING).value


def unclaimed_counts(session: Session, digest_ids: Sequence[int]) -> list[Row[Any]]:
    """(digest id, delivery status, recipients) of the digests' unclaimed batches."""
    status = type_coerce(unclaimed_status(), String).label("status")
    return list(
        session.execute(
            select(DeliveryBatch.digest_id, status, func.sum(DeliveryBatch.size))
            .where(DeliveryBatch.digest_id.in_(list(digest_ids)), unclaimed())
            .group_by(DeliveryBatch.digest_id, status)
        ).all()
    )


def unclaimed_between(
    session: Session, digest_ids: Sequence[int], first: int, last: int
) -> set[int]:
    """Subscribers in [first, last] planned in an unclaimed batch of one of these digests."""
    if session.get_bind().dialect.name == "postgresql":
        return set(
            session.scalars(
                UNCLAIMED_BETWEEN,
                {"digest_ids": list(digest_ids), "first": first, "last": last},
            )
        )
    batches = select(DeliveryBatch.subscriber_ids).where(
        DeliveryBatch.digest_id.in_(list(digest_ids)), unclaimed()
    )
    found: set[int] = set()
    for ids_ in session.scalars(batches):
        found.update(i for i in _ids(ids_) if first <= i <= last)
    return found


def unclaimed_batches_of(
    session: Session, subscriber_id: int, digest_id: int | None = None
) -> list[DeliveryBatch]:
    """The unclaimed batches (of one digest, or of any) that plan to mail this subscriber."""
    # with its digest in the same query: every caller shows the digest's kind and subject
    query = (
        select(DeliveryBatch)
        .options(joinedload(DeliveryBatch.digest))
        .where(unclaimed())
        .order_by(DeliveryBatch.id)
    )
    if digest_id is not None:
        query = query.where(DeliveryBatch.digest_id == digest_id)
    if session.get_bind().dialect.name == "postgresql":
        ids = DeliveryBatch.subscriber_ids
        query = query.where(ids.any_() == subscriber_id)
        return list(session.scalars(query))
    rows = session.execute(query.add_columns(DeliveryBatch.subscriber_ids)).all()
    return [batch for batch, ids_ in rows if subscriber_id in _ids(ids_)]


def _ids(value: Any) -> list[int]:
    """An id list as stored: a list, or a JSON array the driver left as text."""
    if value is None:
        return []
    return json.loads(value) if isinstance(value, str) else list(value)
