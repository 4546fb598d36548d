"""Every new `subscribers` row is inserted here, by one of four named statements.

One function cannot serve all callers without slowing a measured hot path, so the statements sit
side by side instead, each saying whom it serves and why it is shaped so:

- `insert_signup`: one signup (the web form, a re-submitted address). INSERT … SELECT … WHERE NOT
  EXISTS (suppression) ON CONFLICT DO NOTHING RETURNING id: the common case, a new unsuppressed
  address, costs one round trip and needs no lock.
- `insert_signups`: a batch of signups (`subscribe_many`, the batched web writer): on PostgreSQL
  one INSERT … SELECT FROM json_to_recordset(one json parameter) WHERE NOT EXISTS (suppression)
  ON CONFLICT DO NOTHING RETURNING id, email: one round trip, and a statement whose text never
  changes with the batch's size (a multi-row VALUES was a new statement for every size, parsed
  again each time). SQLite: one suppression query, then a multi-row INSERT … VALUES.
- `insert_imported`: a CSV chunk of up to 5,000 rows (`digest subscribers import`). PostgreSQL:
  one INSERT … SELECT FROM unnest(five arrays) ON CONFLICT DO NOTHING, thousands of rows
  without thousands of bind parameters; SQLite: INSERT OR IGNORE.
- `insert_test_recipient`: the placeholder an operator's test copy (`digest send --to`) goes to
  when the address is unknown: pending, no consent, never mailed by a digest.

All of them leave a known address alone (ON CONFLICT on the lower(email) unique index, or the
caller looked first), so a concurrent signup of the same address never makes them fail.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import Connection, Table, bindparam, exists, func, insert, select, text
from sqlalchemy.orm import Session

from digest.addresses import email_hash, suppressed_hashes
from schema.models import Subscriber, Suppression, utcnow
from schema.statuses import SubscriberStatus

NEW_SUBSCRIBER_COLUMNS = (
    "email",
    "name",
    "status",
    "categories",
    "frequency",
    "timezone",
    "paused",
    "soft_bounces",
    "consent_at",
    "consent_source",
    "consent_ip_hash",
    "confirmation_sent_at",
    "signup_cycle",
    "signup_cycle_at",
    "created_at",
    "updated_at",
)
TEST_CONSENT_SOURCE = "operator test send (no consent)"


def _dialect_insert(dialect: str) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT DO NOTHING."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:  # pragma: no cover - only the two supported databases
        raise NotImplementedError(dialect)
    return dialect_insert


# --- one signup -------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _signup_statement(dialect: str) -> Any:
    """Built once per dialect (the signup hot path): parameters are bound at execution."""
    table: Table = Subscriber.__table__  # Core, not ORM: no bulk-insert machinery per call
    rows = select(*(bindparam(n, type_=table.c[n].type) for n in NEW_SUBSCRIBER_COLUMNS)).where(
        ~exists().where(Suppression.email_hash == bindparam("suppression_key"))
    )
    statement = _dialect_insert(dialect)(table).from_select(NEW_SUBSCRIBER_COLUMNS, rows)
    return statement.on_conflict_do_nothing().returning(table.c.id)


def insert_signup(session: Session, values: dict[str, Any]) -> int | None:
    """Insert a new, unsuppressed address (every column of NEW_SUBSCRIBER_COLUMNS given).

    Returns the new id, or None when the address is suppressed or already there (including a
    concurrent insert of it).
    """
    statement = _signup_statement(session.get_bind().dialect.name)
    params = {**values, "suppression_key": email_hash(values["email"])}
    return session.connection().execute(statement, params).scalar()


# --- a batch of signups -----------------------------------------------------------------------


@lru_cache(maxsize=4)
def _signups_statement(dialect: str) -> Any:
    """INSERT … VALUES (…), (…) ON CONFLICT DO NOTHING RETURNING id, email (executemany)."""
    table: Table = Subscriber.__table__
    statement = _dialect_insert(dialect)(table).on_conflict_do_nothing()
    return statement.returning(table.c.id, table.c.email)


_JSON_COLUMNS = {
    "categories": "json",
    "paused": "boolean",
    "soft_bounces": "integer",
    "consent_at": "timestamptz",
    "confirmation_sent_at": "timestamptz",
    "signup_cycle_at": "timestamptz",
    "created_at": "timestamptz",
    "updated_at": "timestamptz",
}
# PostgreSQL: the batch as ONE json parameter (orjson writes it in microseconds; arrays of every
# column were dumped element by element, 14 % of a signup's CPU), suppressed addresses left out
# by the statement itself (no query before it).
JSON_SIGNUPS_SQL = (
    f"INSERT INTO subscribers ({', '.join(NEW_SUBSCRIBER_COLUMNS)}) "
    f"SELECT {', '.join('r.' + c for c in NEW_SUBSCRIBER_COLUMNS)} "
    "FROM json_to_recordset(CAST(%(rows)s AS json)) AS r("
    + ", ".join(f"{c} {_JSON_COLUMNS.get(c, 'text')}" for c in NEW_SUBSCRIBER_COLUMNS)
    + ", suppression_key text) "
    "WHERE NOT EXISTS (SELECT 1 FROM suppressions s WHERE s.email_hash = r.suppression_key) "
    "ON CONFLICT DO NOTHING RETURNING id, email"
)
JSON_SIGNUPS = text(JSON_SIGNUPS_SQL.replace("%(rows)s", ":rows"))


def insert_signups(
    target: Session | Connection, rows: list[dict[str, Any]]
) -> list[tuple[int, str]]:
    """Insert the rows whose address is neither suppressed nor already there; returns (id,
    email) of the rows that went in. The caller looks at the others one by one.

    `target`: a session, or a connection of `statement_scope` (the statement is then its own
    transaction: the batched web writer)."""
    dialect = (target.get_bind() if isinstance(target, Session) else target).dialect.name
    if dialect == "postgresql":
        document = orjson.dumps(
            [{**row, "suppression_key": email_hash(row["email"])} for row in rows]
        ).decode()
        if isinstance(target, Session):
            result = target.execute(JSON_SIGNUPS, {"rows": document})
        else:  # the driver's statement as it is: nothing to compile or look up in a cache
            result = target.exec_driver_sql(JSON_SIGNUPS_SQL, {"rows": document})
        return [(row[0], row[1]) for row in result]
    session = target if isinstance(target, Session) else Session(bind=target)
    suppressed = suppressed_hashes(session, [email_hash(row["email"]) for row in rows])
    rows = [row for row in rows if email_hash(row["email"]) not in suppressed]
    if not rows:
        return []
    statement = _signups_statement(dialect)
    return [(row[0], row[1]) for row in session.connection().execute(statement, rows)]


# --- a list import ----------------------------------------------------------------------------

# PostgreSQL: a chunk as one INSERT of five arrays; its row count is what went in.
UNNEST_SUBSCRIBERS = text(
    "INSERT INTO subscribers (email, name, categories, frequency, timezone, status, paused,"
    " soft_bounces, consent_at, consent_source, confirmed_at, created_at, updated_at) "
    "SELECT r.email, r.name, CAST(r.categories AS json), r.frequency, r.timezone, :status, false,"
    " 0, :consent_at, :consent_source, :confirmed_at, :now, :now "
    "FROM unnest(CAST(:emails AS text[]), CAST(:names AS text[]), CAST(:categories AS text[]),"
    " CAST(:frequencies AS text[]), CAST(:timezones AS text[]))"
    " AS r(email, name, categories, frequency, timezone) "
    "ON CONFLICT DO NOTHING"
)


def insert_imported(session: Session, rows: list[dict[str, Any]], base: dict[str, Any]) -> int:
    """Insert the rows whose address is new, skipping known ones; returns how many went in.

    `rows` hold email, name, categories, frequency, timezone; `base` the columns every row of
    the import shares. The caller has already dropped suppressed addresses.
    """
    if session.get_bind().dialect.name == "postgresql":
        result = session.execute(
            UNNEST_SUBSCRIBERS,
            {
                "status": base["status"],
                "consent_at": base["consent_at"],
                "consent_source": base["consent_source"],
                "confirmed_at": base["confirmed_at"],
                "now": base["created_at"],
                "emails": [r["email"] for r in rows],
                "names": [r["name"] for r in rows],
                "categories": [json.dumps(r["categories"]) for r in rows],
                "frequencies": [r["frequency"] for r in rows],
                "timezones": [r["timezone"] for r in rows],
            },
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
    known = session.scalar(
        select(func.count())
        .select_from(Subscriber)
        .where(func.lower(Subscriber.email).in_([r["email"].lower() for r in rows]))
    )
    statement = _dialect_insert("sqlite")(Subscriber.__table__).on_conflict_do_nothing()
    session.execute(statement, [{**base, **r} for r in rows])
    return len(rows) - int(known or 0)


# --- an operator's test copy ------------------------------------------------------------------


def insert_test_recipient(session: Session, email: str) -> int:
    """A pending placeholder row for an unknown address a test copy goes to; returns its id.

    No consent is recorded: pending rows are never mailed by any digest, and a later signup of
    the same address goes through the normal double opt-in on this row. The caller has checked
    that the address is neither suppressed nor known.
    """
    now = utcnow()
    statement = insert(Subscriber).values(
        email=email,
        status=SubscriberStatus.PENDING,
        consent_source=TEST_CONSENT_SOURCE,
        created_at=now,
        updated_at=now,
    )
    return session.execute(statement.returning(Subscriber.id)).scalar_one()
