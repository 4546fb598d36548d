"""Subscriber lists in and out as CSV: `digest subscribers import|export`.

Columns: `email,name,categories,frequency,timezone` (categories separated by `;`); export adds
`status`, and import ignores it, so an export can be imported elsewhere. Every row is checked by
the same rules as the signup form (digest/subscriptions.py); a bad row is reported by line and
field and skipped, good rows are kept. Addresses already known are left as they are (a list
never overwrites what a subscriber chose on their preferences page) and suppressed addresses are
never added back. Rows go in by chunks of 5,000 with INSERT … ON CONFLICT DO NOTHING, so 100,000
rows take seconds and a concurrent signup of the same address cannot make the import fail.
"""

from __future__ import annotations

import csv
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.addresses import email_hash, suppressed_hashes
from digest.signup_fields import (
    InvalidField,
    available_categories,
    clean_frequency,
    clean_name,
    clean_timezone,
    normalise_email,
)
from digest.subscriber_rows import insert_imported
from schema.models import Subscriber
from schema.statuses import SubscriberStatus

COLUMNS = ("email", "name", "categories", "frequency", "timezone")
EXPORT_COLUMNS = (*COLUMNS, "status")
CHUNK = 5000
PAGE = 5000
MAX_CATEGORIES = 20
# CSV injection (OWASP): a spreadsheet runs a cell as a formula when it starts with = + - @
# (or their full-width forms, which some locales accept), and tab, CR or LF at the start are
# treated the same way; spreadsheets also skip leading blanks before deciding. Every exported
# cell that could run is quoted with "'"; import takes the quote off again.
FORMULA_CHARS = frozenset("=+-@\uff1d\uff0b\uff0d\uff20")
FORMULA_LEAD = frozenset("\t\r\n")
QUOTE = "'"


def _first_significant(value: str) -> str:
    """The first character that is not a blank, a control or a format character (ZWSP, BOM)."""
    for char in value:
        if not (char.isspace() or unicodedata.category(char) in ("Cc", "Cf", "Zs")):
            return char
    return ""


def runs_as_formula(value: str) -> bool:
    """Would a spreadsheet opening this cell evaluate it?"""
    return value[:1] in FORMULA_LEAD or _first_significant(value) in FORMULA_CHARS


def spreadsheet_safe(value: str) -> str:
    """The cell as exported: quoted when it (or what follows its own leading quotes) could run,
    so that `unquote_cell` gives back exactly `value`."""
    return QUOTE + value if runs_as_formula(value.lstrip(QUOTE)) else value


def unquote_cell(value: str) -> str:
    """Undo `spreadsheet_safe`: drop the one quote it adds (never a quote the value had)."""
    if value.startswith(QUOTE) and runs_as_formula(value.lstrip(QUOTE)):
        return value[1:]
    return value


class ListFormatError(ValueError):
    """The file as a whole cannot be read as a subscriber list (no email column, not UTF-8)."""


@dataclass(frozen=True)
class RowError:
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}"


@dataclass
class ImportReport:
    added: int = 0
    existing: int = 0  # already known: left unchanged
    suppressed: int = 0  # unsubscribed, bounced, complained or erased before: never re-added
    errors: list[RowError] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.added + self.existing + self.suppressed + len(self.errors)


def _categories(raw: str | None, canonical: dict[str, str]) -> list[str]:
    names = [part.strip() for part in (raw or "").replace(",", ";").split(";") if part.strip()]
    if len(names) > MAX_CATEGORIES:
        raise InvalidField("categories", f"at most {MAX_CATEGORIES} categories")
    unknown = [n for n in names if n.casefold() not in canonical]
    if unknown:
        raise InvalidField("categories", f"unknown category {unknown[0][:100]!r}")
    return sorted({canonical[n.casefold()] for n in names})


def _rows(handle: TextIO) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(handle)
    header = [h.strip().lower() for h in reader.fieldnames or []]
    if "email" not in header:
        raise ListFormatError(
            "the first line must name the columns, with at least 'email' "
            f"(expected {','.join(COLUMNS)})"
        )
    reader.fieldnames = header
    for row in reader:
        yield reader.line_num, row


def _validate(row: dict[str, Any], canonical: dict[str, str]) -> dict[str, Any]:
    if row.get(None):  # type: ignore[call-overload]
        raise InvalidField("(row)", f"more fields than the {len(COLUMNS)} columns")
    cell = {column: unquote_cell(row.get(column) or "") for column in COLUMNS}
    return {
        "email": normalise_email(cell["email"]),
        "name": clean_name(cell["name"].strip() or None),
        "categories": _categories(cell["categories"], canonical),
        "frequency": clean_frequency(cell["frequency"].strip().lower()),
        "timezone": clean_timezone(cell["timezone"].strip()),
    }


def _flush(
    session: Session, chunk: list[dict[str, Any]], base: dict[str, Any], report: ImportReport
) -> None:
    hashes = {email_hash(r["email"]): r for r in chunk}
    blocked = suppressed_hashes(session, list(hashes))
    keep = [r for h, r in hashes.items() if h not in blocked]
    report.suppressed += len(chunk) - len(keep)
    if keep:
        added = insert_imported(session, keep, base)
        report.added += added
        report.existing += len(keep) - added
    chunk.clear()


def import_subscribers(
    session: Session,
    path: Path,
    *,
    confirmed: bool = False,
    now: datetime | None = None,
) -> ImportReport:
    """Import a CSV list inside the caller's transaction.

    `confirmed` marks new rows active (the operator vouches for earlier consent, recorded as the
    consent source); otherwise they are pending and receive nothing until they confirm.
    No email is sent either way: welcoming or confirming a whole list is not an import's job.
    """
    now = now or datetime.now(UTC)
    canonical = {c.casefold(): c for c in available_categories(session)}
    base = {
        "status": SubscriberStatus.ACTIVE if confirmed else SubscriberStatus.PENDING,
        "paused": False,
        "soft_bounces": 0,
        "consent_at": now if confirmed else None,
        "consent_source": (
            f"list import {path.name}" + (" (consent vouched for by operator)" if confirmed else "")
        )[:500],
        "confirmed_at": now if confirmed else None,
        "created_at": now,
        "updated_at": now,
    }
    report = ImportReport()
    seen: dict[str, int] = {}
    chunk: list[dict[str, Any]] = []
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for line, row in _rows(handle):
                try:
                    values = _validate(row, canonical)
                except InvalidField as exc:
                    report.errors.append(RowError(line, exc.field, exc.message))
                    continue
                folded = values["email"].lower()
                if folded in seen:
                    report.errors.append(
                        RowError(line, "email", f"same address as line {seen[folded]}; skipped")
                    )
                    continue
                seen[folded] = line
                chunk.append(values)
                if len(chunk) >= CHUNK:
                    _flush(session, chunk, base, report)
    except UnicodeDecodeError as exc:
        raise ListFormatError(f"{path.name} is not UTF-8 text: {exc.reason}") from exc
    except csv.Error as exc:
        raise ListFormatError(f"{path.name}: {exc}") from exc
    _flush(session, chunk, base, report)
    return report


def export_subscribers(session: Session, out: TextIO) -> int:
    """Write every subscriber but erased ones as CSV, page by page; returns the row count."""
    # CRLF (RFC 4180) also makes the writer quote a lone CR inside a cell: with "\n" it did not,
    # and a spreadsheet starts a new row at that CR, whose first cell could then be a formula.
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    written, last = 0, 0
    while True:
        rows = session.execute(
            select(
                Subscriber.id,
                Subscriber.email,
                Subscriber.name,
                Subscriber.categories,
                Subscriber.frequency,
                Subscriber.timezone,
                Subscriber.status,
            )
            .where(Subscriber.status != SubscriberStatus.DELETED, Subscriber.id > last)
            .order_by(Subscriber.id)
            .limit(PAGE)
        ).all()
        if not rows:
            return written
        for _id, email, name, categories, frequency, timezone, status in rows:
            cells = (email, name, ";".join(categories or []), frequency, timezone, status)
            writer.writerow([spreadsheet_safe(cell or "") for cell in cells])
        written += len(rows)
        last = rows[-1][0]
