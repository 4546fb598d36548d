"""Results that are also a JSON document: frozen dataclasses with `as_dict()`.

The CLI's `--json` output and the admin API print `as_dict()`, whose keys are the fields in
order, so the JSON shape is the dataclass. The record also reads as a (read-only) mapping of
that document, `record["key"]`, for callers written against the dicts these results used to be;
new code reads the attributes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, fields
from typing import Any


class JsonRecord(Mapping[str, Any]):
    """Mixin for a dataclass result; `as_dict` is its JSON document (nested records included)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    def __getitem__(self, key: str) -> Any:
        return self.as_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return (f.name for f in fields(self))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(fields(self))  # type: ignore[arg-type]
