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
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from digest.addresses import email_hash, suppressed_hashes
from digest.subscriptions import (
    InvalidField,
    available_categories,
    clean_frequency,
    clean_name,
    clean_timezone,
    normalise_email,
)
from schema.models import Subscriber

COLUMNS = ("email", "name", "categories", "frequency", "timezone")
EXPORT_COLUMNS = (*COLUMNS, "status")
CHUNK = 5000
PAGE = 5000
MAX_CATEGORIES = 20
# A cell starting with one of these is a formula to a spreadsheet: export quotes it with "'".
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_START) else value


def unquote_cell(value: str) -> str:
    return value[1:] if value.startswith("'") and value[1:].startswith(FORMULA_START) else value


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
    return {
        "email": normalise_email(row.get("email") or ""),
        "name": clean_name(unquote_cell((row.get("name") or "").strip()) or None),
        "categories": _categories(row.get("categories"), canonical),
        "frequency": clean_frequency((row.get("frequency") or "").strip().lower()),
        "timezone": clean_timezone((row.get("timezone") or "").strip()),
    }


# PostgreSQL: a chunk as one INSERT of five arrays; its row count is what went in.
UNNEST_SUBSCRIBERS = text(
    "INSERT INTO subscribers (email, name, categories, frequency, timezone, status, paused,"
    " soft_bounces, consent_at, consent_source, confirmed_at, created_at, updated_at) "
    "SELECT r.email, r.name, CAST(r.categories AS json), r.frequency, r.timezone, :status, false,"
    " 0, :consent_at, :consent_source, :confirmed_at, :now, :now "
    "FROM unnest(CAST(:emails AS text[]), CAST(:names AS text[]), CAST(:categories AS text[]),"
    " CAST(:frequencies AS text[]), CAST(:timezones AS text[]))"
    " AS r(email, name, categories, frequency, timezone) "
    "ON CONFLICT DO NOTHING"
)


def _insert_ignoring_known(
    session: Session, rows: list[dict[str, Any]], base: dict[str, Any]
) -> int:
    """Insert the rows whose address is new, skipping known ones (ON CONFLICT DO NOTHING on
    PostgreSQL, INSERT OR IGNORE on SQLite); returns how many went in. A signup racing the
    import is skipped the same way."""
    if session.get_bind().dialect.name == "postgresql":
        result = session.execute(
            UNNEST_SUBSCRIBERS,
            {
                "status": base["status"],
                "consent_at": base["consent_at"],
                "consent_source": base["consent_source"],
                "confirmed_at": base["confirmed_at"],
                "now": base["created_at"],
                "emails": [r["email"] for r in rows],
                "names": [r["name"] for r in rows],
                "categories": [json.dumps(r["categories"]) for r in rows],
                "frequencies": [r["frequency"] for r in rows],
                "timezones": [r["timezone"] for r in rows],
            },
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
    known = session.scalar(
        select(func.count())
        .select_from(Subscriber)
        .where(func.lower(Subscriber.email).in_([r["email"].lower() for r in rows]))
    )
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    statement = sqlite_insert(Subscriber.__table__).on_conflict_do_nothing()
    session.execute(statement, [{**base, **r} for r in rows])
    return len(rows) - int(known or 0)


def _flush(
    session: Session, chunk: list[dict[str, Any]], base: dict[str, Any], report: ImportReport
) -> None:
    hashes = {email_hash(r["email"]): r for r in chunk}
    blocked = suppressed_hashes(session, list(hashes))
    keep = [r for h, r in hashes.items() if h not in blocked]
    report.suppressed += len(chunk) - len(keep)
    if keep:
        added = _insert_ignoring_known(session, keep, base)
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
        "status": "active" if confirmed else "pending",
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
    writer = csv.writer(out, lineterminator="\n")
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
            .where(Subscriber.status != "deleted", Subscriber.id > last)
            .order_by(Subscriber.id)
            .limit(PAGE)
        ).all()
        if not rows:
            return written
        for _id, email, name, categories, frequency, timezone, status in rows:
            writer.writerow(
                [
                    email,
                    spreadsheet_safe(name or ""),
                    ";".join(categories or []),
                    frequency,
                    timezone or "",
                    status,
                ]
            )
        written += len(rows)
        last = rows[-1][0]
