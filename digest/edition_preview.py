"""Which weekly edition is next, and what it would send: the ranking with the formula's terms.

An edition is the local date and time of a weekly slot (digest/schedule.py `edition_of`); its
waves fire at that local time in every subscriber timezone. The edition an operator reviews is
the earliest one no wave has fired yet: a slot still within `DIGEST_WEEKLY_GRACE_HOURS` that
waits for approval, else the next slot. The preview ranks what the edition's first wave would
collect if it fired now (digest/collect.py, digest/ranking.py), after the operator's pins and
exclusions (digest/edition_overrides.py), and shows each comparison's one-line explanation
beside the numbers behind it, so "why is this third?" has an answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.collect import collect_comparisons, weekly_window
from digest.cron import last_slot, next_slot, parse_cron
from digest.edition_overrides import EditionOverrides, apply_overrides, overrides_for
from digest.plan_items import categories_of
from digest.ranking import (
    community_term,
    panel_term,
    rank_comparisons,
    review_term,
    tool_score,
)
from digest.schedule import edition_of, wave_timezones
from digest.settings import Settings, get_settings
from digest.votes import reader_counts
from schema.models import Comparison, Digest
from schema.statuses import DigestKind

FORMULA = (
    "tool = panel_weight·P + community_weight·C + score_weight·R; "
    "comparison = max(a, b) + runner_up_weight·min(a, b)"
)


class EditionError(ValueError):
    """An edition review request that cannot be done; `field` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@dataclass(frozen=True)
class EditionSlot:
    """An edition and when its waves fire (UTC): the first and the last timezone's slot."""

    edition: str
    first_slot: datetime
    last_slot: datetime
    timezones: tuple[str, ...]

    def due(self, now: datetime) -> bool:
        return self.first_slot <= now


@dataclass(frozen=True)
class Weights:
    """The ranking formula's constants (`DIGEST_RANK_*`, digest/ranking.py)."""

    panel: float
    community: float
    score: float
    runner_up: float
    confidence_z: float
    community_half_votes: float


@dataclass(frozen=True)
class ToolTerms:
    """One tool's terms: panel P, community C, reviewer scores R, and its weighted score."""

    name: str
    panel: float
    community: float
    reviews: float
    score: float


@dataclass(frozen=True)
class PreviewItem:
    rank: int
    comparison_id: int
    slug: str
    title: str
    categories: tuple[str, ...]
    score: float
    explanation: str
    tools: tuple[ToolTerms, ...]
    pinned: bool


@dataclass(frozen=True)
class Excluded:
    comparison_id: int
    slug: str
    title: str


@dataclass(frozen=True)
class EditionPreview:
    """What the edition would send if its first wave fired now, in order."""

    edition: str
    since: datetime
    until: datetime
    items: list[PreviewItem]
    excluded: list[Excluded]
    weights: Weights
    formula: str = FORMULA


def parse_edition(edition: str) -> str:
    """An edition as `digests.edition` stores it: a local ISO date and time, no zone."""
    try:
        moment = datetime.fromisoformat(edition.strip())
    except (AttributeError, ValueError) as exc:
        raise EditionError("edition", f"{edition!r:.60} is not a local ISO date and time") from exc
    if moment.tzinfo is not None:
        raise EditionError("edition", "an edition is a local time, without a UTC offset")
    return moment.isoformat()


def edition_slot(session: Session, edition: str) -> EditionSlot:
    """When each wave of `edition` fires: its local time in every wave timezone."""
    local = datetime.fromisoformat(parse_edition(edition))
    zones = wave_timezones(session)[0]
    moments = sorted(local.replace(tzinfo=ZoneInfo(z)).astimezone(UTC) for z in zones)
    return EditionSlot(edition_of(local), moments[0], moments[-1], tuple(zones))


def fired_editions(session: Session, editions: set[str]) -> set[str]:
    """Those of `editions` that at least one weekly wave has fired."""
    if not editions:
        return set()
    rows = session.scalars(
        select(Digest.edition).where(
            Digest.kind == DigestKind.WEEKLY, Digest.edition.in_(sorted(editions))
        )
    )
    return {row for row in rows if row}


def next_edition(session: Session, now: datetime) -> EditionSlot:
    """The earliest edition no wave has fired: a due slot within the grace, else the next one."""
    settings = get_settings()
    cron = parse_cron(settings.weekly_cron)
    grace = timedelta(hours=settings.weekly_grace_hours)
    candidates: set[str] = set()
    for name in wave_timezones(session)[0]:
        zone = ZoneInfo(name)
        last = last_slot(cron, now, zone)
        if now - last <= grace:
            candidates.add(edition_of(last))
        candidates.add(edition_of(next_slot(cron, now, zone)))
    waiting = sorted(candidates - fired_editions(session, candidates))
    if not waiting:  # every candidate fired: the slot after the latest one
        latest = max(
            next_slot(cron, now, ZoneInfo(name)).astimezone(UTC)
            for name in wave_timezones(session)[0]
        )
        waiting = [edition_of(next_slot(cron, latest, ZoneInfo(settings.timezone)))]
    return edition_slot(session, waiting[0])


def preview_window(session: Session, slot: EditionSlot, now: datetime) -> tuple[datetime, datetime]:
    """The window the edition's first wave would cover if it fired now."""
    return weekly_window(session, min(now, slot.first_slot))


def _weights(settings: Settings) -> Weights:
    return Weights(
        settings.rank_panel_weight,
        settings.rank_community_weight,
        settings.rank_score_weight,
        settings.rank_runner_up_weight,
        settings.rank_confidence_z,
        settings.rank_community_half_votes,
    )


def _tool_terms(comparison: Comparison, settings: Settings) -> tuple[ToolTerms, ...]:
    return tuple(
        ToolTerms(
            tool.name,
            panel_term(tool, settings.rank_confidence_z),
            community_term(tool, settings.rank_community_half_votes),
            review_term(tool),
            tool_score(tool, settings),
        )
        for tool in sorted(comparison.tools, key=lambda t: -tool_score(t, settings))
    )


def edition_candidates(session: Session, edition: str, now: datetime) -> list[Comparison]:
    """The comparisons the edition would collect now, before any override."""
    since, until = preview_window(session, edition_slot(session, edition), now)
    return collect_comparisons(session, since, until, kind=DigestKind.WEEKLY)


def preview_ranking(
    session: Session, edition: str, now: datetime, overrides: EditionOverrides | None = None
) -> EditionPreview:
    """The ranked comparisons the edition would send, pins first and exclusions left out."""
    settings = get_settings()
    slot = edition_slot(session, edition)
    since, until = preview_window(session, slot, now)
    chosen = collect_comparisons(session, since, until, kind=DigestKind.WEEKLY)
    overrides = overrides if overrides is not None else overrides_for(session, slot.edition)
    readers = reader_counts(session, chosen)  # the same inputs planning ranks with
    ranked = apply_overrides(rank_comparisons(chosen, settings, readers), overrides)
    items = [
        PreviewItem(
            rank=rank,
            comparison_id=entry.comparison.id,
            slug=entry.comparison.slug,
            title=entry.comparison.title,
            categories=tuple(sorted(categories_of(entry.comparison))),
            score=entry.score,
            explanation=entry.explanation,
            tools=_tool_terms(entry.comparison, settings),
            pinned=entry.comparison.id in overrides.pinned,
        )
        for rank, entry in enumerate(ranked, start=1)
    ]
    excluded = [Excluded(c.id, c.slug, c.title) for c in chosen if c.id in overrides.excluded]
    return EditionPreview(slot.edition, since, until, items, excluded, _weights(settings))
