"""Email addresses as keys: the one hash that suppressions and lookups share."""

from __future__ import annotations

import hashlib

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from schema.models import Suppression


def email_hash(address: str) -> str:
    """SHA-256 hex of the lower-cased address: how a suppression remembers an address.

    Suppressions outlive the subscriber row ("delete me" erases the address), so they keep only
    this hash; every writer and reader of `suppressions.email_hash` must use this function.
    """
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()


def suppressed_hashes(session: Session, hashes: list[str]) -> set[str]:
    """Which of these address hashes a suppression holds, in one query."""
    if session.get_bind().dialect.name == "postgresql":
        found = session.execute(
            text("SELECT email_hash FROM suppressions WHERE email_hash = ANY(:hashes)"),
            {"hashes": hashes},
        ).scalars()
    else:
        found = session.scalars(
            select(Suppression.email_hash).where(Suppression.email_hash.in_(hashes))
        )
    return set(found)
