"""The one module for suppressions (`digest.addresses`) and the one for new subscriber rows
(`digest.subscriber_rows`): what they promise, and that nothing else writes those rows."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import String, bindparam, select

from digest.addresses import (
    email_hash,
    is_suppressed,
    suppress,
    suppressed_hashes,
    suppression_held_sql,
)
from digest.db import session_scope
from schema.models import Suppression
from schema.statuses import SuppressionReason

DIGEST = Path(__file__).resolve().parents[2] / "digest"


def _reason(address: str) -> str | None:
    with session_scope() as session:
        return session.scalar(
            select(Suppression.reason).where(Suppression.email_hash == email_hash(address))
        )


def test_suppress_keeps_the_strongest_reason(pg: str) -> None:
    address = "ada@example.com"
    for reason, kept in [
        (SuppressionReason.BOUNCED, "bounced"),
        (SuppressionReason.COMPLAINED, "complained"),
        (SuppressionReason.UNSUBSCRIBED, "complained"),  # never softened
        (SuppressionReason.BOUNCED, "complained"),
        (SuppressionReason.DELETED, "deleted"),
        (SuppressionReason.COMPLAINED, "deleted"),
    ]:
        with session_scope() as session:
            suppress(session, address, reason)
        assert _reason(address) == kept


def test_suppress_takes_an_address_in_any_case_or_its_hash(pg: str) -> None:
    with session_scope() as session:
        suppress(session, "  Ada@Example.COM ", SuppressionReason.BOUNCED)
        suppress(session, email_hash("bob@example.com"), SuppressionReason.COMPLAINED)
    with session_scope() as session:
        assert is_suppressed(session, "ada@example.com")
        assert is_suppressed(session, "BOB@example.com")
        assert not is_suppressed(session, "eve@example.com")
        assert session.query(Suppression).count() == 2


def test_suppressed_hashes_answers_for_many_and_filters_by_reason(pg: str) -> None:
    addresses = [f"r{n}@example.com" for n in range(2500)]  # more than one query's worth
    with session_scope() as session:
        for address in addresses[::2]:
            suppress(session, address, SuppressionReason.BOUNCED)
        suppress(session, addresses[1], SuppressionReason.DELETED)
    hashes = [email_hash(a) for a in addresses]
    with session_scope() as session:
        held = suppressed_hashes(session, hashes)
        deleted = suppressed_hashes(session, hashes, reason=SuppressionReason.DELETED)
    assert held == {email_hash(a) for a in addresses[::2]} | {email_hash(addresses[1])}
    assert deleted == {email_hash(addresses[1])}


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(address=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1))
def test_the_database_hashes_a_plain_address_as_email_hash_does(pg: str, address: str) -> None:
    """PostgreSQL's side of `suppression_held_sql` agrees with Python's `email_hash`."""
    with session_scope() as session:
        session.query(Suppression).delete()
        suppress(session, email_hash(address), SuppressionReason.BOUNCED)
        held = session.scalar(
            select(suppression_held_sql(bindparam("address", type_=String))),
            {"address": address},
        )
        other = session.scalar(
            select(suppression_held_sql(bindparam("address", type_=String))),
            {"address": address + "x"},
        )
    assert held is True
    assert other is False


def test_an_address_that_is_not_plain_ascii_is_left_to_python(pg: str) -> None:
    with session_scope() as session:
        flag = session.scalar(
            select(suppression_held_sql(bindparam("address", type_=String))),
            {"address": "zoë@example.com"},
        )
    assert flag is None


def test_no_module_but_subscriber_rows_inserts_subscribers() -> None:
    """Every new subscriber row goes through `digest/subscriber_rows.py`."""
    writes = re.compile(r"\bSubscriber\(|(?i:INSERT INTO subscribers)|insert\(\s*Subscriber\b")
    offenders = [
        f"{path.relative_to(DIGEST.parent)}:{n}"
        for path in DIGEST.rglob("*.py")
        if path.name != "subscriber_rows.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if writes.search(line)
    ]
    assert offenders == []


def test_no_module_but_addresses_reads_or_writes_suppressions() -> None:
    """Suppressions are read and written through `digest/addresses.py` only."""
    touches = re.compile(r"\bSuppression\b|FROM suppressions|sha256\(func\.convert_to")
    allowed = {"addresses.py", "subscriber_rows.py"}  # rows: the signup INSERT's NOT EXISTS
    offenders = [
        f"{path.relative_to(DIGEST.parent)}:{n}"
        for path in DIGEST.rglob("*.py")
        if path.name not in allowed
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if touches.search(line) and not line.lstrip().startswith("#")
    ]
    assert offenders == []
