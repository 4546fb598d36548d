"""Subscriber lists uploaded in the console, imported by a worker in chunks.

Why a worker and the database: a million-row list takes longer than a web request should, and
the worker that imports it may run on another machine than the web process that received it, so
the upload is stored in the database (`list_import_parts`, 1 MiB pieces) and a task takes only
its id. The worker reads the same chunks as `digest subscribers import` (`read_list`,
`store_chunk`) and commits each chunk together with the import's counts and the last line done:
the page polls that row for progress, and a worker that dies mid-file resumes after the last
committed line — no row is imported twice or counted twice, and nothing stops silently (a stalled
import is queued again by beat; a file that cannot be read on ends `failed` with the line).
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from digest import audit
from digest.db import session_scope
from digest.subscriber_lists import (
    COLUMNS,
    ImportReport,
    ListChunk,
    ListFormatError,
    RowError,
    categories_by_folded_name,
    import_base,
    read_list,
    store_chunk,
)
from schema.models import ListImport, ListImportPart
from schema.statuses import ListImportStatus

PART_BYTES = 1 << 20
ERRORS_KEPT = 1000  # bad rows shown with their line; `bad` counts every one
RECENT = 20


@dataclass(frozen=True)
class ImportView:
    """An import as the console shows it."""

    id: int
    actor: str
    filename: str
    confirmed: bool
    status: ListImportStatus
    size_bytes: int
    lines_total: int
    lines_done: int
    added: int
    existing: int
    suppressed: int
    bad: int
    errors: list[RowError]
    failure: str | None
    created_at: datetime
    finished_at: datetime | None

    @property
    def rows_done(self) -> int:
        return self.added + self.existing + self.suppressed + self.bad

    @property
    def finished(self) -> bool:
        return self.status in (ListImportStatus.DONE, ListImportStatus.FAILED)


def _view(row: ListImport) -> ImportView:
    return ImportView(
        row.id, row.actor, row.filename, row.confirmed, row.status, row.size_bytes,
        row.lines_total, row.lines_done, row.added, row.existing, row.suppressed, row.bad,
        [RowError(*error) for error in row.errors or []], row.failure, row.created_at,
        row.finished_at,
    )  # fmt: skip


class _UploadCheck:
    """Reads the upload as it is stored: UTF-8 throughout, a header naming `email`, lines."""

    def __init__(self) -> None:
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.head = ""
        self.lines = 0
        self.size = 0

    def feed(self, piece: bytes, final: bool = False) -> None:
        try:
            text = self.decoder.decode(piece, final)
        except UnicodeDecodeError as exc:
            raise ListFormatError(f"not UTF-8 text near byte {self.size}: {exc.reason}") from exc
        self.size += len(piece)
        self.lines += piece.count(b"\n")
        if "\n" not in self.head and len(self.head) < 4096:
            self.head += text[:4096]

    def check_header(self) -> None:
        header = self.head.splitlines()[0] if self.head.strip() else ""
        names = [name.strip().strip('"').lower() for name in header.split(",")]
        if "email" not in names:
            raise ListFormatError(
                "the first line must name the columns, with at least 'email' "
                f"(expected {','.join(COLUMNS)})"
            )


def create_import(
    session: Session, actor: str, filename: str, confirmed: bool, pieces: Iterable[bytes]
) -> int:
    """Store an uploaded list (in the caller's transaction) and its audit entry; returns its id.

    Refuses (ListFormatError, nothing kept once the caller rolls back) a file that is not UTF-8
    or has no header naming `email`, before any worker sees it. The audit detail holds sizes and
    the consent choice, never an address.
    """
    row = ListImport(actor=actor, filename=filename[:200] or "list.csv", confirmed=confirmed)
    session.add(row)
    session.flush()
    check, seq, pending = _UploadCheck(), 0, b""
    for piece in pieces:
        pending += piece
        while len(pending) >= PART_BYTES:
            part, pending = pending[:PART_BYTES], pending[PART_BYTES:]
            check.feed(part)
            session.add(ListImportPart(import_id=row.id, seq=seq, body=part))
            session.flush()
            seq += 1
    check.feed(pending, final=True)
    if pending:
        session.add(ListImportPart(import_id=row.id, seq=seq, body=pending))
    check.check_header()
    row.size_bytes, row.lines_total = check.size, max(check.lines, 1)
    consent = "confirmed (consent vouched for)" if confirmed else "pending"
    audit.record(
        session, actor, "list.uploaded", f"list import {row.id}",
        f"{check.size} bytes, about {row.lines_total} lines, new rows {consent}",
    )  # fmt: skip
    session.flush()
    return row.id


class _PartsReader(io.RawIOBase):
    """The stored upload as a byte stream, one part (one short query) at a time."""

    def __init__(self, import_id: int) -> None:
        self.import_id, self.seq, self.buffer = import_id, 0, b""

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:  # type: ignore[no-untyped-def,override]
        if not self.buffer:
            with session_scope() as session:
                self.buffer = import_part(session, self.import_id, self.seq) or b""
            self.seq += 1
        size = min(len(target), len(self.buffer))
        target[:size] = self.buffer[:size]
        self.buffer = self.buffer[size:]
        return size


def import_part(session: Session, import_id: int, seq: int) -> bytes | None:
    """One stored piece of an upload, in order; None past the last."""
    return session.scalar(
        select(ListImportPart.body).where(
            ListImportPart.import_id == import_id, ListImportPart.seq == seq
        )
    )


def _claim(import_id: int) -> tuple[ImportReport, int, dict[str, Any]] | None:
    """Mark the import running: its counts so far, the line to resume after, and the columns
    its new rows share. None if it is finished (a redelivered task) or unknown."""
    with session_scope() as session:
        row = session.get(ListImport, import_id)
        if row is None or row.status in (ListImportStatus.DONE, ListImportStatus.FAILED):
            return None
        row.status, row.updated_at = ListImportStatus.RUNNING, datetime.now(UTC)
        report = ImportReport(row.added, row.existing, row.suppressed)
        return report, row.lines_done, import_base(row.filename, row.confirmed, row.created_at)


def _locked(session: Session, import_id: int, expected_line: int) -> ListImport | None:
    """The import row, locked, if it is still running at `expected_line`; None when another
    runner moved it on (two tasks for one import: the one behind stops)."""
    row = session.scalars(
        select(ListImport).where(ListImport.id == import_id).with_for_update()
    ).one()
    if row.lines_done != expected_line or row.status != ListImportStatus.RUNNING:
        return None
    return row


def _store(
    import_id: int, expected_line: int, chunk: ListChunk, base: dict[str, Any], report: ImportReport
) -> bool:
    """One chunk's rows and the import's counts and checkpoint, in one transaction."""
    with session_scope() as session:
        row = _locked(session, import_id, expected_line)
        if row is None:
            return False
        store_chunk(session, chunk, base, report)
        row.added, row.existing, row.suppressed = report.added, report.existing, report.suppressed
        row.bad += len(chunk.errors)
        room = ERRORS_KEPT - len(row.errors or [])
        if room > 0 and chunk.errors:
            kept = [[e.line, e.field, e.message[:300]] for e in chunk.errors[:room]]
            row.errors = [*(row.errors or []), *kept]
        row.lines_done = chunk.last_line
        row.updated_at = datetime.now(UTC)
        return True


def _finish(session: Session, row: ListImport, failure: str | None) -> None:
    """The last step: status, the audit entry with counts, and the stored file deleted."""
    row.status = ListImportStatus.FAILED if failure else ListImportStatus.DONE
    row.failure = failure
    row.finished_at = row.updated_at = datetime.now(UTC)
    session.execute(delete(ListImportPart).where(ListImportPart.import_id == row.id))
    detail = (
        f"added {row.added}, known {row.existing}, suppressed {row.suppressed}, bad {row.bad}"
        + (f"; failed: {failure}" if failure else "")
    )
    audit.record(session, row.actor, f"list.{row.status.value}", f"list import {row.id}", detail)


def run_import(import_id: int) -> ListImportStatus | None:
    """Import a stored upload chunk by chunk, resuming after the last committed line.

    Returns the final status, or None when there was nothing to do (finished already, unknown,
    or another runner is ahead of this one).
    """
    claimed = _claim(import_id)
    if claimed is None:
        return None
    report, done, base = claimed
    with session_scope() as session:
        canonical = categories_by_folded_name(session)
    raw = io.BufferedReader(_PartsReader(import_id), PART_BYTES)
    handle = io.TextIOWrapper(raw, "utf-8-sig", newline="")
    failure = None
    try:
        for chunk in read_list(handle, canonical, resume_after=done):
            if not _store(import_id, done, chunk, base, report):
                return None
            done = chunk.last_line
    except ListFormatError as exc:
        failure = str(exc)
    with session_scope() as session:
        row = _locked(session, import_id, done)
        if row is None:
            return None
        _finish(session, row, failure)
        return row.status


def import_view(session: Session, import_id: int) -> ImportView | None:
    """One import, for its page and its progress fragment."""
    row = session.get(ListImport, import_id)
    return _view(row) if row is not None else None


def recent_imports(session: Session, limit: int = RECENT) -> list[ImportView]:
    """The latest uploads, newest first, for the lists page."""
    rows = session.scalars(select(ListImport).order_by(ListImport.id.desc()).limit(limit))
    return [_view(row) for row in rows]


def stalled_imports(session: Session, older_than: float, now: datetime | None = None) -> list[int]:
    """Imports queued or running with no progress for `older_than` seconds: their task was lost
    (broker down at upload, a worker killed). Queuing one again resumes it after its last line."""
    cutoff = (now or datetime.now(UTC)) - timedelta(seconds=older_than)
    return list(
        session.scalars(
            select(ListImport.id).where(
                ListImport.status.in_([ListImportStatus.QUEUED, ListImportStatus.RUNNING]),
                ListImport.updated_at < cutoff,
            )
        )
    )
