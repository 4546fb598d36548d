"""Email addresses as keys: the one hash that suppressions and lookups share."""

from __future__ import annotations

import hashlib


def email_hash(address: str) -> str:
    """SHA-256 hex of the lower-cased address: how a suppression remembers an address.

    Suppressions outlive the subscriber row ("delete me" erases the address), so they keep only
    this hash; every writer and reader of `suppressions.email_hash` must use this function.
    """
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()
