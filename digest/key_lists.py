"""Queries that name many keys at once: one array parameter on PostgreSQL, chunks on SQLite.

`column IN (:p1, …, :p1000)` renders, sends and parses a bind parameter per key, a thousand at a
time; processing one webhook body names its five thousand deliveries in several queries, and
building those lists was a fifth of its time. On PostgreSQL the keys travel as one array
(`column = ANY(:keys)`), all in one query; SQLite keeps IN lists of at most CHUNK keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import String, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.sqltypes import NullType

CHUNK = 1000


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def key_parts(session: Session, keys: Iterable[Any]) -> Iterator[Sequence[Any]]:
    """`keys` (sorted, without repeats) in as few parts as the database takes in one query:
    all of them on PostgreSQL, CHUNK at a time on SQLite; nothing for no keys."""
    wanted = sorted(set(keys))
    size = len(wanted) if is_postgres(session) else CHUNK
    for start in range(0, len(wanted), max(1, size)):
        yield wanted[start : start + size]


def among(session: Session, column: Any, keys: Sequence[Any]) -> ColumnElement[bool]:
    """`column` is one of `keys`: `= ANY(array)` on PostgreSQL, `IN (…)` on SQLite."""
    if is_postgres(session):
        element = String() if isinstance(column.type, NullType) else column.type  # lower(…)
        return column == any_(bindparam(None, list(keys), type_=ARRAY(element)))
    return column.in_(keys)
