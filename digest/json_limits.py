"""How deep a JSON document from outside may nest, checked before anything parses it.

Python's parser recurses once per level: a few thousand `[` in a small body end in a
RecursionError, and what survives parsing can still overflow later recursive code (validation,
error rendering, serialisation). No legitimate body of ours nests deeper than a handful of
levels (an event's reviews, a webhook event's `custom_args`), so deeper documents are refused
up front with a clear error. The scan is linear and runs at C speed: escape pairs are dropped,
then everything but quotes and brackets, then what lies between quote pairs; the brackets left
are counted.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

MAX_JSON_DEPTH = 32

_ESCAPE = re.compile(rb"\\.", re.DOTALL)  # a backslash and the character it escapes
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class JSONTooDeep(ValueError):
    """The document nests deeper than allowed; nothing of it was parsed."""

    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        super().__init__(f"the JSON document is nested deeper than {max_depth} levels")


def json_depth(document: bytes | str) -> int:
    """The deepest nesting of arrays and objects (0 for a scalar). Brackets inside strings do
    not count; for malformed input the figure is an upper bound, which is all a limit needs."""
    raw = document.encode("utf-8", "surrogatepass") if isinstance(document, str) else document
    structure = _ESCAPE.sub(b"", raw).translate(None, _NOT_STRUCTURE)
    brackets = b"".join(structure.split(b'"')[::2])  # every other piece is inside a string
    if not brackets:
        return 0
    return max(0, max(accumulate(map(_STEP.__getitem__, brackets))))


def too_deep(document: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """Whether `document` nests deeper than `max_depth`. A document with no more opening
    brackets than that cannot, whatever their order: two counts at C speed answer for nearly
    every body, the scan (about a tenth of a small signup's parsing, py-spy) only for the rest."""
    raw = document.encode("utf-8", "surrogatepass") if isinstance(document, str) else document
    if raw.count(b"[") + raw.count(b"{") <= max_depth:
        return False
    return json_depth(raw) > max_depth


def check_depth(document: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise JSONTooDeep if `document` nests deeper than `max_depth`."""
    if too_deep(document, max_depth):
        raise JSONTooDeep(max_depth)


def loads(document: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """`json.loads`, refusing documents deeper than `max_depth` before parsing them."""
    check_depth(document, max_depth)
    return json.loads(document)
