"""Storing normalised SendGrid events in `email_events`: only rows not stored yet come back.

At least once: SendGrid redelivers, so the INSERT skips any row whose `dedupe_key` (the one
idempotency key, `digest.webhook_events.dedupe_key`) is already stored (`ON CONFLICT
(dedupe_key) DO NOTHING`), and only the rows it actually inserted are returned, as
`StoredEvent`s: those alone have consequences (`digest.tracking`).

PostgreSQL: the ids are drawn from the table's sequence first (one query), the rows travel by
binary COPY (no bind parameter per value, no 3 MB JSON document to unpack) and the INSERT
returns only the ids it stored; everything else about a new row is already in Python. Returning
whole rows made PostgreSQL re-parse every payload (`payload->>'reason'`) and Python convert every
timestamp back: a fifth of a 15,000-event batch's Python time. SQLite (the embedded default):
one `INSERT … RETURNING` of the same columns.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, NamedTuple

import orjson
from sqlalchemy import text
from sqlalchemy.orm import Session

from schema.models import EmailEvent

INSERTED_COLUMNS = (
    "id",
    "sg_event_id",
    "sg_message_id",
    "dedupe_key",
    "event",
    "bounce_class",
    "email",
    "occurred_at",
    "delivery_id",
    "digest_id",
    "url",
    "machine",
    "payload",
)
_COLUMNS = ", ".join(INSERTED_COLUMNS)
# One array back, not a row per event (fetching 15,000 rows one by one costs more than the ids).
# The sequence is looked up once (a scalar subquery), not per id.
PG_IDS = text(
    "SELECT array_agg(nextval((SELECT pg_get_serial_sequence('email_events', 'id')::regclass))) "
    "FROM generate_series(1, :n)"
)
# The rows go by binary COPY into a temporary table dropped with the call, then into
# `email_events` in one INSERT … SELECT … ON CONFLICT DO NOTHING. A JSON document of the rows
# instead made PostgreSQL parse 3 MB of JSON to unpack it: a quarter of its CPU for the INSERT.
STAGE = "webhook_events_stage"
STAGE_COLUMNS = {
    "id": "bigint",
    "sg_event_id": "text",
    "sg_message_id": "text",
    "dedupe_key": "text",  # 32 hex digits, cast to uuid by the INSERT
    "event": "text",
    "bounce_class": "text",
    "email": "text",
    "occurred_at": "timestamptz",
    "delivery_id": "bigint",
    "digest_id": "bigint",
    "url": "text",
    "machine": "boolean",
    "payload": "text",  # cast to json by the INSERT, which validates it
}
PG_CREATE_STAGE = (
    f"CREATE TEMPORARY TABLE {STAGE} "
    f"({', '.join(f'{name} {kind}' for name, kind in STAGE_COLUMNS.items())}) ON COMMIT DROP"
)
PG_COPY = f"COPY {STAGE} ({_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_STAGED = _COLUMNS.replace("payload", "CAST(payload AS json)").replace(
    "dedupe_key", "CAST(dedupe_key AS uuid)"
)
PG_INSERT = (
    f"WITH new AS (INSERT INTO email_events ({_COLUMNS}) SELECT {_STAGED} FROM {STAGE} "
    "ON CONFLICT (dedupe_key) DO NOTHING RETURNING id) SELECT array_agg(id) FROM new"
)
PG_DROP_STAGE = f"DROP TABLE {STAGE}"


class StoredEvent(NamedTuple):
    """A newly stored event: what its consequences (suppression, machine clicks) read."""

    id: int
    event: str
    bounce_class: str | None
    email: str | None
    occurred_at: datetime
    delivery_id: int | None
    sg_message_id: str | None
    reason: str | None  # the payload's `reason` (why SendGrid dropped or bounced it)


def insert_new(session: Session, rows: list[dict[str, Any]]) -> list[StoredEvent]:
    """Insert `rows` (normalised, linked), skipping any already stored; return the new ones."""
    if not rows:
        return []
    if session.get_bind().dialect.name == "postgresql":
        return _insert_postgres(session, rows)
    return _insert_sqlite(session, rows)


def _insert_postgres(session: Session, rows: list[dict[str, Any]]) -> list[StoredEvent]:
    ids = session.scalar(PG_IDS, {"n": len(rows)})
    with session.connection().connection.cursor() as cursor:  # psycopg's own, for COPY
        cursor.execute(PG_CREATE_STAGE)
        with cursor.copy(PG_COPY) as copy:
            copy.set_types(list(STAGE_COLUMNS.values()))
            for row, id_ in zip(rows, ids, strict=True):
                copy.write_row(
                    (
                        id_,
                        row["sg_event_id"],
                        row["sg_message_id"],
                        row["dedupe_key"],
                        row["event"],
                        row["bounce_class"],
                        row["email"],
                        row["occurred_at"],
                        row["delivery_id"],
                        row["digest_id"],
                        row["url"],
                        row["machine"],
                        _payload_text(row["payload"]),
                    )
                )
        cursor.execute(PG_INSERT)
        new = set(cursor.fetchone()[0] or ())
        cursor.execute(PG_DROP_STAGE)
    return [_stored(id_, row) for row, id_ in zip(rows, ids, strict=True) if id_ in new]


def _insert_sqlite(session: Session, rows: list[dict[str, Any]]) -> list[StoredEvent]:
    from sqlalchemy.dialects.sqlite import insert

    table = EmailEvent.__table__
    returned = ("id", "event", "bounce_class", "email", "occurred_at", "delivery_id")
    statement = (
        insert(table)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(
            *(table.c[name] for name in (*returned, "sg_message_id")),
            EmailEvent.payload["reason"].as_string().label("reason"),
        )
    )
    return [StoredEvent(*row) for row in session.execute(statement, rows)]


def _stored(id_: int, row: dict[str, Any]) -> StoredEvent:
    reason = row["payload"].get("reason")
    return StoredEvent(
        id_,
        row["event"],
        row["bounce_class"],
        row["email"],
        row["occurred_at"],
        row["delivery_id"],
        row["sg_message_id"],
        reason if reason is None or isinstance(reason, str) else json.dumps(reason),
    )


def _payload_text(payload: dict[str, Any]) -> str:
    """The event as JSON text. orjson writes it in a tenth of the stdlib's time; what it refuses
    (integers past 64 bits) goes the stdlib's way."""
    try:
        return orjson.dumps(payload).decode()
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(payload)
