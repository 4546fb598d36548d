"""Queries that name many keys at once: one array parameter on PostgreSQL, chunks on SQLite.

`column IN (:p1, …, :p1000)` renders, sends and parses a bind parameter per key, a thousand at a
time; processing one webhook body names its five thousand deliveries in several queries, and
building those lists was a fifth of its time. On PostgreSQL the keys travel as one array
(`column = ANY(:keys)`), all in one query; SQLite keeps IN lists of at most CHUNK keys.

Integers and strings go as one array literal (`'{1,2,3}'`, cast in the query) written with a
`join`: psycopg's list adapter dumps element by element in Python, which was still a tenth of
a webhook batch's Python time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import BigInteger, String, Text, any_, bindparam, cast
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
        literal = array_literal(keys)
        if literal is not None:
            # untyped, so PostgreSQL reads it as the array itself (a constant for the planner);
            # typed as text, the cast would be left to run on every row it filters
            keys_param = bindparam(None, literal[0], type_=NullType())
            return column == any_(cast(keys_param, literal[1]))
        element = String() if isinstance(column.type, NullType) else column.type  # lower(…)
        return column == any_(bindparam(None, list(keys), type_=ARRAY(element)))
    return column.in_(keys)


def array_literal(keys: Sequence[Any]) -> tuple[str, ARRAY[Any]] | None:
    """PostgreSQL's text form of an array of these keys and its type (bigint[] or text[]: a
    string is never cut to a varchar's length), or None for other keys or a mixed list."""
    if not keys:
        return None
    if all(type(key) is int for key in keys):
        return "{" + ",".join(map(str, keys)) + "}", ARRAY(BigInteger())
    if all(type(key) is str for key in keys):
        quoted = ('"' + k.replace("\\", "\\\\").replace('"', '\\"') + '"' for k in keys)
        return "{" + ",".join(quoted) + "}", ARRAY(Text())
    return None
