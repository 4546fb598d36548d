"""Subscriber lists in and out as CSV: `digest subscribers import|export` and the console's
Lists page (digest/list_imports.py and digest/web/console/lists.py use these same functions).

Columns: `email,name,categories,frequency,timezone` (categories separated by `;`); export adds
`status`, and import ignores it, so an export can be imported elsewhere. Every row is checked by
the same rules as the signup form (digest/subscriptions.py); a bad row is reported by line and
field and skipped, good rows are kept. Addresses already known are left as they are (a list
never overwrites what a subscriber chose on their preferences page) and suppressed addresses are
never added back. Rows are read in chunks of 5,000 lines (`read_list`) and go in with
INSERT … ON CONFLICT DO NOTHING (`store_chunk`), so 100,000 rows take seconds and a concurrent
signup of the same address cannot make the import fail. Export can be filtered (`ListFilter`)
and is written a page at a time (`export_chunks`), every cell spreadsheet-safe.
"""

from __future__ import annotations

import csv
import io
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
from schema.statuses import Frequency, SubscriberStatus

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


@dataclass(frozen=True)
class ListChunk:
    """Up to CHUNK lines of a list read and checked: the good rows, the bad ones, and the last
    line read (the checkpoint a resumed import starts after)."""

    rows: list[dict[str, Any]]
    errors: list[RowError]
    last_line: int


def read_list(
    handle: TextIO, canonical: dict[str, str], *, resume_after: int = 0
) -> Iterator[ListChunk]:
    """The list in chunks of at most CHUNK lines, every row checked; an address seen twice is
    reported at its second line. Lines up to `resume_after` were imported before (a worker
    resuming): they are read again only to know their addresses, and yield nothing.

    Raises ListFormatError when the file as a whole cannot be read on (not UTF-8, a CSV error).
    """
    seen: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    errors: list[RowError] = []
    line = first = max(resume_after, 1)  # line 1 is the header
    failure: ListFormatError | None = None
    try:
        for line, row in _rows(handle):
            if line <= resume_after:
                _remember(row, canonical, seen, line)
                continue
            try:
                values = _validate(row, canonical)
                folded = values["email"].lower()
                if folded in seen:
                    raise InvalidField("email", f"same address as line {seen[folded]}; skipped")
                seen[folded] = line
                rows.append(values)
            except InvalidField as exc:
                errors.append(RowError(line, exc.field, exc.message))
            if line - first >= CHUNK:
                yield ListChunk(rows, errors, line)
                rows, errors, first = [], [], line
    except UnicodeDecodeError as exc:
        failure = ListFormatError(f"not UTF-8 text after line {line}: {exc.reason}")
    except csv.Error as exc:
        failure = ListFormatError(f"line {line + 1}: {exc}")
    if line > first:  # what was read before a failure is kept, like every chunk before it
        yield ListChunk(rows, errors, line)
    if failure is not None:
        raise failure


def _remember(
    row: dict[str, Any], canonical: dict[str, str], seen: dict[str, int], line: int
) -> None:
    """A line imported before a resume: only its address matters (a later duplicate of it)."""
    try:
        folded = _validate(row, canonical)["email"].lower()
    except InvalidField:
        return
    seen.setdefault(folded, line)


def import_base(source: str, confirmed: bool, now: datetime) -> dict[str, Any]:
    """The columns every new row of one import shares: pending unless the operator vouches for
    earlier consent (recorded as the consent source)."""
    return {
        "status": SubscriberStatus.ACTIVE if confirmed else SubscriberStatus.PENDING,
        "paused": False,
        "soft_bounces": 0,
        "consent_at": now if confirmed else None,
        "consent_source": (
            f"list import {source}" + (" (consent vouched for by operator)" if confirmed else "")
        )[:500],
        "confirmed_at": now if confirmed else None,
        "created_at": now,
        "updated_at": now,
    }


def store_chunk(
    session: Session, chunk: ListChunk, base: dict[str, Any], report: ImportReport
) -> None:
    """Insert a chunk's new, unsuppressed addresses and count what happened to each good row
    (bad rows are the caller's: the CLI lists them all, the console keeps the first ones)."""
    hashes = {email_hash(r["email"]): r for r in chunk.rows}
    blocked = suppressed_hashes(session, list(hashes)) if hashes else set()
    keep = [r for h, r in hashes.items() if h not in blocked]
    report.suppressed += len(chunk.rows) - len(keep)
    if keep:
        added = insert_imported(session, keep, base)
        report.added += added
        report.existing += len(keep) - added


def import_subscribers(
    session: Session,
    path: Path,
    *,
    confirmed: bool = False,
    now: datetime | None = None,
) -> ImportReport:
    """Import a CSV list inside the caller's transaction (`digest subscribers import`).

    `confirmed` marks new rows active (the operator vouches for earlier consent, recorded as the
    consent source); otherwise they are pending and receive nothing until they confirm.
    No email is sent either way: welcoming or confirming a whole list is not an import's job.
    The console's upload reads the same chunks (digest/list_imports.py), committing each.
    """
    base = import_base(path.name, confirmed, now or datetime.now(UTC))
    canonical = categories_by_folded_name(session)
    report = ImportReport()
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for chunk in read_list(handle, canonical):
                report.errors.extend(chunk.errors)
                store_chunk(session, chunk, base, report)
    except ListFormatError as exc:
        raise ListFormatError(f"{path.name}: {exc}") from exc
    return report


def categories_by_folded_name(session: Session) -> dict[str, str]:
    """Known categories by their case-folded name, for the categories cell."""
    return {c.casefold(): c for c in available_categories(session)}


@dataclass(frozen=True)
class ListFilter:
    """Which subscribers an export holds; None = any. `category` keeps those who receive it:
    who chose it, and who chose none (no category ticked means every category)."""

    status: SubscriberStatus | None = None
    category: str | None = None
    frequency: Frequency | None = None
    timezone: str | None = None

    def describe(self) -> str:
        """For the audit log and the CLI: the filter's values, never an address."""
        parts = [f"{name}={value}" for name, value in vars(self).items() if value]
        return ", ".join(parts) or "everyone"

    def keeps_categories(self, categories: list[str] | None) -> bool:
        return self.category is None or not categories or self.category in categories


def _export_page(session: Session, wanted: ListFilter, after: int) -> list[Any]:
    """One page of subscribers after id `after` matching the filter's columns (not erased),
    by id: the export's only query, on the (status, id) index when a status is given."""
    query = select(
        Subscriber.id,
        Subscriber.email,
        Subscriber.name,
        Subscriber.categories,
        Subscriber.frequency,
        Subscriber.timezone,
        Subscriber.status,
    ).where(Subscriber.status != SubscriberStatus.DELETED, Subscriber.id > after)
    if wanted.status is not None:
        query = query.where(Subscriber.status == wanted.status)
    if wanted.frequency is not None:
        query = query.where(Subscriber.frequency == wanted.frequency)
    if wanted.timezone is not None:
        query = query.where(Subscriber.timezone == wanted.timezone)
    return list(session.execute(query.order_by(Subscriber.id).limit(PAGE)).all())


def export_chunks(session: Session, wanted: ListFilter | None = None) -> Iterator[tuple[str, int]]:
    """The list as CSV text, a page at a time: (text, rows in it); the header comes first.

    Shared by `digest subscribers export` and the console's streamed download. Every cell
    that could run in a spreadsheet is quoted (`spreadsheet_safe`).
    """
    wanted = wanted or ListFilter()
    buffer = io.StringIO()
    # CRLF (RFC 4180) also makes the writer quote a lone CR inside a cell: with "\n" it did not,
    # and a spreadsheet starts a new row at that CR, whose first cell could then be a formula.
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    yield buffer.getvalue(), 0
    last = 0
    while rows := _export_page(session, wanted, last):
        buffer.seek(0)
        buffer.truncate()
        written = 0
        for _id, email, name, categories, frequency, timezone, status in rows:
            if not wanted.keeps_categories(categories):
                continue
            cells = (email, name, ";".join(categories or []), frequency, timezone, status)
            writer.writerow([spreadsheet_safe(cell or "") for cell in cells])
            written += 1
        last = rows[-1][0]
        if written:
            yield buffer.getvalue(), written


def export_subscribers(session: Session, out: TextIO, wanted: ListFilter | None = None) -> int:
    """Write the (filtered) list as CSV, page by page; returns the row count."""
    count = 0
    for text, rows in export_chunks(session, wanted):
        out.write(text)
        count += rows
    return count
