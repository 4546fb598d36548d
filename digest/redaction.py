"""Finding and replacing one address (and a name) in stored text and JSON, for erasure.

`Redaction` decides what matches exactly (in Python); `mentions_address` is the SQL superset that
finds candidate rows; `redact_body` rewrites a stored webhook body so it still processes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from sqlalchemy import JSON, Text, cast, func, or_
from sqlalchemy.sql.elements import ColumnElement

NAME_PLACEHOLDER = "[erased]"
# What may not touch an address for it to be that address: a character common in local parts
# before it (not `=`, `/` or `:`, which precede addresses in links and headers), a label
# character or a dot that continues the domain after it.
_ADDRESS_BEFORE = r"(?<![\w.+'-])"
_ADDRESS_AFTER = r"(?![\w-]|\.[\w-])"


@dataclass(frozen=True)
class Redaction:
    """Strings to remove and what replaces them.

    In the person's own rows (`own`: their events, their deliveries) every occurrence of the
    address goes, in any case and spelling, and so does their name. Elsewhere only the address
    as a whole address goes: erasing bob@x.example must not rewrite jimbob@x.example or
    bob@x.example.org in someone else's row, and a name ("Ada") is an ordinary word there.
    """

    address: str
    replacement: str
    names: tuple[str, ...] = ()

    def _pattern(self, own: bool) -> re.Pattern[str]:
        spellings = "|".join(map(re.escape, sorted(_spellings(self.address), key=len)[::-1]))
        if not own:
            return re.compile(_ADDRESS_BEFORE + f"(?:{spellings})" + _ADDRESS_AFTER, re.I)
        names = sorted({n for n in self.names if n}, key=len, reverse=True)
        return re.compile("|".join([spellings, *map(re.escape, names)]), re.IGNORECASE)

    def text(self, value: str, *, own: bool = False) -> str:
        spellings = {a.lower() for a in _spellings(self.address)}

        def replace(match: re.Match[str]) -> str:
            found = match.group(0).lower()
            return self.replacement if found in spellings else NAME_PLACEHOLDER

        return self._pattern(own).sub(replace, value)

    def json(self, value: Any, *, own: bool = False) -> Any:
        """The same JSON with every string (keys too, at any depth) redacted."""
        if isinstance(value, str):
            return self.text(value, own=own)
        if isinstance(value, list):
            return [self.json(v, own=own) for v in value]
        if isinstance(value, dict):
            return {self.text(k, own=own): self.json(v, own=own) for k, v in value.items()}
        return value


def _spellings(address: str) -> set[str]:
    """The address as written and percent-encoded (in a link: `bob%40x.example`)."""
    return {address, quote(address, safe="")}


def _like_patterns(address: str) -> list[str]:
    """LIKE patterns (lower case, `\\` escapes) that find the address in text or in JSON text.

    JSON may store non-ASCII characters as `\\uXXXX` escapes, so the escaped spelling is searched
    too. A superset: the exact match is decided in Python (`Redaction`).
    """
    spellings = {s.lower() for a in _spellings(address) for s in (a, json.dumps(a)[1:-1])}
    escaped = (s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") for s in spellings)
    return [f"%{s}%" for s in escaped]


def mentions_address(column: Any, address: str) -> ColumnElement[bool]:
    as_text = cast(column, Text) if isinstance(column.type, JSON) else column
    return or_(*(func.lower(as_text).like(p, escape="\\") for p in _like_patterns(address)))


def _belongs(event: Any, address: str, delivery_ids: Collection[int]) -> bool:
    if not isinstance(event, dict):
        return False
    if str(event.get("email") or "").strip().lower() == address:
        return True
    try:
        return int(str(event.get("delivery_id"))) in delivery_ids
    except ValueError:
        return False


def redact_body(body: str, redaction: Redaction, delivery_ids: Collection[int] = ()) -> str:
    """A stored webhook body with the address replaced (and names in the person's own events).

    The result is still a JSON array of the same events, so a body not yet processed processes
    as before: the replacement is the erased row's placeholder, which its delivery now carries.
    """
    try:
        events = json.loads(body)
    except ValueError:
        return redaction.text(body)
    if not isinstance(events, list):
        return json.dumps(redaction.json(events), separators=(",", ":"))
    address = redaction.address.lower()
    redacted = [redaction.json(e, own=_belongs(e, address, delivery_ids)) for e in events]
    return json.dumps(redacted, separators=(",", ":"))
