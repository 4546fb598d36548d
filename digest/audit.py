"""The audit log: every action an operator takes in the console (or on their account).

Written in the same transaction as the action, so an action that rolled back leaves no entry
and an entry always means the action happened. Read newest first, a page at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from schema.models import AuditEntry

PAGE_SIZE = 50


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: str
    actor: str
    action: str
    target: str | None
    detail: str | None


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditRecord]
    page: int
    pages: int
    total: int


def record(
    session: Session, actor: str, action: str, target: str | None = None, detail: str | None = None
) -> None:
    session.add(
        AuditEntry(
            actor=_printable(actor)[:320],
            action=_printable(action)[:60],
            target=_printable(target)[:200] if target else None,
            detail=_printable(detail) if detail else None,
        )
    )
    session.flush()


def recent(session: Session, page: int = 1, per_page: int = PAGE_SIZE) -> AuditPage:
    """Entries newest first; `page` counts from 1 and is clamped to the pages there are."""
    total = session.scalar(select(func.count()).select_from(AuditEntry)) or 0
    pages = max(1, -(-total // per_page))
    page = min(max(1, page), pages)
    rows = session.scalars(
        select(AuditEntry)
        .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
        .offset((page - 1) * per_page)
        .limit(per_page)
    )
    entries = [
        AuditRecord(e.id, e.at.isoformat(), e.actor, e.action, e.target, e.detail) for e in rows
    ]
    return AuditPage(entries, page, pages, total)


def _printable(text: str) -> str:
    """Typed text (a sign-in address) may hold control characters; NUL cannot be stored."""
    return "".join(c if c.isprintable() else "\N{REPLACEMENT CHARACTER}" for c in text)
