"""The subscriber search is an index search on PostgreSQL, not a scan: on 20,000 subscribers,
analysed, the planner picks the prefix indexes of migration 0012 by itself (no planner settings
are touched) for an address prefix, a name prefix and a miss."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from digest.db import session_scope
from digest.subscriber_search import clean_query, search_statement, search_subscribers

ROWS = 20_000
EMAIL_INDEX = "ix_subscribers_email_prefix"
NAME_INDEX = "ix_subscribers_name_prefix"


@pytest.fixture
def many_subscribers(pg: str) -> str:
    """20,000 subscribers with random-looking addresses and names, then ANALYZE."""
    with session_scope() as session:
        session.execute(
            text(
                "INSERT INTO subscribers (email, name, status, categories, frequency, paused, "
                "soft_bounces, created_at, updated_at) "
                "SELECT md5(g::text) || '@example' || (g % 50) || '.com', "
                "initcap(substr(md5('n' || g), 1, 8)) || ' ' "
                "|| initcap(substr(md5('s' || g), 1, 10)), "
                "'active', '[]', 'weekly', false, 0, now(), now() "
                "FROM generate_series(1, :rows) AS g"
            ),
            {"rows": ROWS},
        )
    with session_scope() as session:
        session.connection().exec_driver_sql("ANALYZE subscribers")
        address = session.scalar(
            text("SELECT email FROM subscribers ORDER BY id LIMIT 1 OFFSET 777")
        )
    return address


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def plan_of(query: str) -> list[dict[str, Any]]:
    """Every node of PostgreSQL's plan for the search the console runs for `query`."""
    with session_scope() as session:
        statement = search_statement(session, clean_query(query))
        sql = statement.compile(
            dialect=session.get_bind().dialect, compile_kwargs={"literal_binds": True}
        )
        (document,) = session.execute(text(f"EXPLAIN (FORMAT JSON) {sql}")).scalar_one()
    return list(_nodes(document["Plan"]))


def _indexes(nodes: list[dict[str, Any]]) -> set[str]:
    return {node["Index Name"] for node in nodes if "Index Name" in node}


def _scans(nodes: list[dict[str, Any]]) -> list[str]:
    return [node["Node Type"] for node in nodes if node.get("Relation Name") == "subscribers"]


@pytest.mark.parametrize("kind", ["address prefix", "name prefix", "miss"])
def test_the_search_plan_uses_the_prefix_indexes_not_a_scan(
    many_subscribers: str, kind: str
) -> None:
    with session_scope() as session:
        name = session.scalar(text("SELECT name FROM subscribers ORDER BY id LIMIT 1 OFFSET 4321"))
    query = {
        "address prefix": many_subscribers[:7].upper(),
        "name prefix": name[:6],
        "miss": "zz-nobody",
    }[kind]
    nodes = plan_of(query)
    assert {EMAIL_INDEX, NAME_INDEX} <= _indexes(nodes), nodes
    assert "Seq Scan" not in _scans(nodes), nodes


def test_the_indexed_search_finds_the_rows(many_subscribers: str) -> None:
    with session_scope() as session:
        found = search_subscribers(session, many_subscribers[:9])
    assert many_subscribers in [line.email for line in found.lines]
