"""`digest.key_lists`: thousands of keys in one query find exactly the rows they name."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, select

from digest.db import session_scope
from digest.key_lists import among, key_parts
from schema.models import Subscriber

AWKWARD = [
    'quote"in@example.test',
    "back\\slash@example.test",
    "comma,brace{}@example.test",
    "space and 'apostrophe'@example.test",
    "NULL",
    "ünïcödé@example.test",
]


def _store(addresses: list[str]) -> dict[str, int]:
    with session_scope() as session:
        session.execute(insert(Subscriber), [{"email": a, "status": "active"} for a in addresses])
        return dict(session.execute(select(Subscriber.email, Subscriber.id)).all())


def _found_by_email(keys: list[str]) -> set[str]:
    with session_scope() as session:
        found: set[str] = set()
        for part in key_parts(session, keys):
            found.update(
                session.scalars(
                    select(Subscriber.email).where(among(session, Subscriber.email, part))
                )
            )
        return found


@pytest.mark.parametrize("backend", ["pg", "sqlite"])
def test_strings_with_quotes_backslashes_and_braces_find_their_rows(backend, request) -> None:
    request.getfixturevalue(backend)
    _store([*AWKWARD, "other@example.test"])
    assert _found_by_email(AWKWARD) == set(AWKWARD)


@pytest.mark.parametrize("backend", ["pg", "sqlite"])
def test_thousands_of_ids_find_exactly_their_rows(backend, request) -> None:
    request.getfixturevalue(backend)
    ids = _store([f"reader{i}@example.test" for i in range(3000)])
    wanted = sorted(ids.values())[::2]
    with session_scope() as session:
        found: set[int] = set()
        for part in key_parts(session, wanted):
            found.update(
                session.scalars(select(Subscriber.id).where(among(session, Subscriber.id, part)))
            )
    assert found == set(wanted)


def test_a_key_longer_than_the_column_does_not_match_its_first_characters(pg: str) -> None:
    stored = "a" * 307 + "@example.test"  # 320 characters, the column's length
    _store([stored])
    assert _found_by_email([stored + "x"]) == set()
