"""One validated path for comparisons coming in: API events, event files and saved pages.

Each record is validated against `schema/events.py`, keyed for idempotency (the sender's event id,
or a hash of the record), recorded in `inbound_events`, and applied: a publish or update replaces
the comparison wholesale, a retraction keeps it out of future digests, a votes update replaces one
tool's community tallies. Replaying anything changes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from digest import json_limits
from digest.db import session_scope
from digest.pages import PageFormatError, looks_like_page, parse_page
from schema.events import ComparisonIn, Event, RetractionIn, VotesIn
from schema.models import Comparison, InboundEvent, Review, Tool, utcnow


class Outcome(StrEnum):
    """What applying one event did to the stored comparisons (reported, never stored)."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"  # the same facts again
    DUPLICATE = "duplicate"  # this event (id or content) was applied before
    STALE = "stale"  # older than the stored version: ignored
    RETRACTED = "retracted"


EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(Event)


class IngestError(ValueError):
    """A record that cannot be applied, with the field path at fault (`data.tools.0.name`)."""

    def __init__(self, field: str, message: str, *, where: str = "") -> None:
        self.field, self.message, self.where = field, message, where
        super().__init__(f"{where}: {field}: {message}" if where else f"{field}: {message}")

    def located(self, where: str) -> IngestError:
        return IngestError(self.field, self.message, where=where)


def field_path(loc: Iterable[Any]) -> str:
    """pydantic's error location as a dotted path, without the union tag it inserts."""
    parts = [str(p) for p in loc if not (isinstance(p, str) and "." in p and p[0].islower())]
    return ".".join(parts) or "(record)"


def validation_errors(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {
            # a missing or unknown event type is reported at the record level by pydantic
            "field": "type" if e["type"].startswith("union_tag") else field_path(e["loc"]),
            "message": e["msg"],
        }
        for e in exc.errors()
    ]


def validate_event(raw: Any) -> Any:
    """Parse one event or raise IngestError naming the first bad field."""
    try:
        return EVENT_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        first = validation_errors(exc)[0]
        raise IngestError(first["field"], first["message"]) from exc


def record_key(raw: Any, event_id: str | None) -> str:
    if event_id:
        return "id:" + event_id
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def verdict_fingerprint(data: ComparisonIn) -> str:
    """The facts a verdict rests on; when they change, the comparison may be mailed again."""
    facts = [(t.name, t.verdict, t.panel_ship, t.panel_skip, t.panel_ship_pct) for t in data.tools]
    return hashlib.sha256(json.dumps(facts).encode()).hexdigest()


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _tool_row(position: int, tool: Any) -> Tool:
    return Tool(
        position=position,
        name=tool.name,
        tagline=tool.tagline,
        category=tool.category,
        description=tool.description,
        pricing=tool.pricing,
        entry_price=tool.entry_price,
        best_for=tool.best_for,
        verdict_label=tool.verdict,
        panel_ship=tool.panel_ship,
        panel_skip=tool.panel_skip,
        panel_ship_pct=tool.panel_ship_pct,
        community_ship=tool.community_ship,
        community_skip=tool.community_skip,
        reviews=[
            Review(position=i, persona=r.persona, score=r.score, verdict=r.verdict, text=r.text)
            for i, r in enumerate(tool.reviews, start=1)
        ],
    )


def upsert_comparison(session: Session, data: ComparisonIn, *, source: str) -> Outcome:
    """Create or wholly replace a comparison; an older update than the stored one is ignored."""
    updated_at = _aware(data.updated_at or data.published_at)
    existing = session.scalar(select(Comparison).where(Comparison.slug == data.slug))
    if existing is not None and updated_at < existing.updated_at:
        return Outcome.STALE
    stated = data.model_dump_json(exclude={"published_at", "updated_at"})
    content_hash = hashlib.sha256(stated.encode()).hexdigest()
    if existing is not None and existing.content_hash == content_hash:
        return Outcome.UNCHANGED
    comparison = existing or Comparison(slug=data.slug, source=source, retracted=False)
    comparison.content_hash = content_hash
    comparison.title = data.title
    comparison.url = data.url
    comparison.category = data.category
    if existing is None or source != "page":  # a page's date is only a guess (file time)
        comparison.published_at = _aware(data.published_at)
    comparison.updated_at = updated_at
    comparison.verdict_fingerprint = verdict_fingerprint(data)
    if existing is not None:
        existing.tools.clear()
        session.flush()  # delete the old tools before their positions are reused
    comparison.tools = [_tool_row(i, tool) for i, tool in enumerate(data.tools)]
    session.add(comparison)
    session.flush()
    return Outcome.UPDATED if existing is not None else "created"


def retract_comparison(session: Session, data: RetractionIn) -> Outcome:
    comparison = session.scalar(select(Comparison).where(Comparison.slug == data.slug))
    if comparison is None:
        raise IngestError("data.slug", f"no comparison with slug {data.slug!r}")
    if not comparison.retracted:
        comparison.retracted, comparison.retracted_at = True, utcnow()
    return Outcome.RETRACTED


def update_votes(session: Session, data: VotesIn) -> Outcome:
    comparison = session.scalar(select(Comparison).where(Comparison.slug == data.slug))
    if comparison is None:
        raise IngestError("data.slug", f"no comparison with slug {data.slug!r}")
    tool = next((t for t in comparison.tools if t.name.casefold() == data.tool.casefold()), None)
    if tool is None:
        names = " or ".join(repr(t.name) for t in comparison.tools)
        raise IngestError("data.tool", f"{data.slug!r} has no tool {data.tool!r} (try {names})")
    if (tool.community_ship, tool.community_skip) == (data.ship, data.skip):
        return Outcome.UNCHANGED
    tool.community_ship, tool.community_skip = data.ship, data.skip
    return Outcome.UPDATED


@dataclass(frozen=True)
class Applied:
    """What applying one event did; `new_publication` names a comparison worth an alert."""

    outcome: Outcome
    type: str
    comparison_id: int | None = None

    @property
    def new_publication(self) -> int | None:
        """The id of a comparison this `comparison.published` event created, else None."""
        if self.type == "comparison.published" and self.outcome == Outcome.CREATED:
            return self.comparison_id
        return None


def apply_event(session: Session, raw: Any, *, source: str) -> Outcome:
    """Validate, dedupe and apply one event inside the caller's transaction."""
    return apply_event_detail(session, raw, source=source).outcome


def apply_event_detail(session: Session, raw: Any, *, source: str) -> Applied:
    """`apply_event`, also saying which comparison it touched (the caller queues alerts)."""
    event = validate_event(raw)
    key = record_key(raw, event.id)
    savepoint = session.begin_nested()
    try:
        session.add(InboundEvent(source=source, key=key, type=event.type, payload=raw))
        session.flush()
    except IntegrityError:
        savepoint.rollback()
        return Applied(Outcome.DUPLICATE, event.type)
    savepoint.commit()
    if event.type in ("comparison.published", "comparison.updated"):
        outcome = upsert_comparison(session, event.data, source=source)
    elif event.type == "comparison.retracted":
        outcome = retract_comparison(session, event.data)
    else:
        outcome = update_votes(session, event.data)
    session.flush()
    comparison_id = session.scalar(select(Comparison.id).where(Comparison.slug == event.data.slug))
    return Applied(outcome, event.type, comparison_id)


def page_event(text: str, *, slug: str, published_at: datetime, path: str) -> dict[str, Any]:
    """A saved comparison page as the `comparison.updated` event it amounts to."""

    comparison = parse_page(text, slug=slug, published_at=published_at, path=path)
    return {
        "type": "comparison.updated",
        "id": "page:" + hashlib.sha256(text.encode()).hexdigest(),
        "data": comparison.model_dump(mode="json"),
    }


# --- files -------------------------------------------------------------------------------------


@dataclass
class Record:
    where: str  # "file.ndjson line 3" / "file.json record 2" / "page.txt"
    raw: Any = None
    error: IngestError | None = None


@dataclass
class ImportReport:
    outcomes: dict[str, int]
    errors: list[str]

    @property
    def ok(self) -> bool:
        return not self.errors


def read_records(path: Path, *, published_at: datetime | None = None) -> Iterator[Record]:
    """Yield the records of one file: a JSON array or object, NDJSON, or a saved page."""

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        yield Record(str(path), error=IngestError("(file)", f"cannot read: {exc}"))
        return
    if looks_like_page(text):
        when = published_at or datetime.fromtimestamp(path.stat().st_mtime, UTC)
        try:
            yield Record(
                str(path), raw=page_event(text, slug=path.stem, published_at=when, path=str(path))
            )
        except PageFormatError as exc:
            yield Record(str(path), error=IngestError(exc.field, str(exc)))
        except ValidationError as exc:
            first = validation_errors(exc)[0]
            yield Record(str(path), error=IngestError("data." + first["field"], first["message"]))
        return
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            items = json_limits.loads(text, json_limits.MAX_JSON_DEPTH + 1)  # + the outer array
        except json_limits.JSONTooDeep as exc:
            yield Record(str(path), error=IngestError("(json)", str(exc)))
            return
        except json.JSONDecodeError as exc:
            yield Record(f"{path} line {exc.lineno}", error=IngestError("(json)", exc.msg))
            return
        for number, item in enumerate(items, start=1):
            yield Record(f"{path} record {number}", raw=item)
        return
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json_limits.loads(line)
        except ValueError as exc:  # not JSON, or nested deeper than any event
            message = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            yield Record(f"{path} line {lineno}", error=IngestError("(json)", message))
            continue
        yield Record(f"{path} line {lineno}", raw=raw)


def import_paths(
    paths: Iterable[Path],
    *,
    published_at: datetime | None = None,
    new_publications: list[int] | None = None,
) -> ImportReport:
    """Import files record by record: good records commit on their own, bad ones are reported.

    `new_publications`, when given, collects the ids of comparisons that `comparison.published`
    records created (for `digest import --alert`).
    """
    report = ImportReport(outcomes={}, errors=[])
    for path in paths:
        source = "page" if path.suffix == ".txt" else "file"
        for record in read_records(path, published_at=published_at):
            error = record.error
            if error is None:
                try:
                    with session_scope() as session:
                        applied = apply_event_detail(session, record.raw, source=source)
                    outcome = applied.outcome
                    if new_publications is not None and applied.new_publication is not None:
                        new_publications.append(applied.new_publication)
                    report.outcomes[outcome] = report.outcomes.get(outcome, 0) + 1
                    continue
                except IngestError as exc:
                    error = exc
            report.errors.append(str(error.located(record.where)))
    return report
