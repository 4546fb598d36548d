"""`/console`: the next slot of each wave, what is sending now, the last ten digests, readers'
verdicts on their way to the site, and what needs a person. `/console/live` is the sending-now
part alone, polled by HTMX."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from digest.attention import Attention, needs_a_person, site_webhook_attention
from digest.db import session_scope
from digest.edition_review import EditionError, ReviewState, next_edition, review_state
from digest.editions import other_waves
from digest.progress import DigestReport, SendingProgress, recent_digests, sending_progress
from digest.schedule import next_waves
from digest.site_events import health
from digest.stats import DigestStats, digest_stats
from digest.web.console.views import Signed, render, signed_in
from schema.models import Digest, utcnow
from schema.statuses import DigestKind, DigestStatus

router = APIRouter(tags=["console"], include_in_schema=False, dependencies=[Depends(signed_in)])
RECENT = 50  # digests looked at for "sending now" and "needs a person"


@dataclass(frozen=True)
class WaveSlot:
    timezone: str
    local: str
    utc: str


@dataclass(frozen=True)
class EditionWave:
    digest_id: int
    timezone: str
    status: str
    recipients: int


@dataclass(frozen=True)
class EditionState:
    edition: str
    waves: list[EditionWave]


def _latest_edition(session: Session, reports: list[DigestReport]) -> EditionState | None:
    """The newest weekly edition's waves (digest/editions.py finds the others)."""
    weekly = next((r for r in reports if r.kind == DigestKind.WEEKLY), None)
    digest = session.get(Digest, weekly.id) if weekly else None
    if digest is None or not digest.edition:
        return None
    waves = sorted([digest, *other_waves(session, digest)], key=lambda d: d.id)
    return EditionState(
        digest.edition,
        [
            EditionWave(d.id, (d.options or {}).get("timezone", "?"), d.status, d.recipients)
            for d in waves
        ],
    )


@dataclass(frozen=True)
class Sending:
    report: DigestReport
    progress: SendingProgress


def _sending(session: Session, reports: list[DigestReport]) -> list[Sending]:
    return [
        Sending(r, sending_progress(session, r.id))
        for r in reports
        if r.status == DigestStatus.SENDING
    ]


@router.get("/console")
def dashboard(signed: Signed = Depends(signed_in)) -> HTMLResponse:
    now = utcnow()
    with session_scope() as session:
        waves = [
            WaveSlot(
                w.timezone,
                w.slot.strftime("%a %d %b %Y %H:%M %Z"),
                w.slot.astimezone(now.tzinfo).strftime("%a %d %b %H:%M UTC"),
            )
            for w in next_waves(session, now)
        ]
        reports = recent_digests(session, RECENT).digests
        sending = _sending(session, reports)
        last: list[tuple[DigestReport, DigestStats]] = [
            (r, digest_stats(session, r.id)) for r in reports[:10]
        ]
        site_webhook = health(session)
        attention: list[Attention] = needs_a_person(reports, now)
        attention += site_webhook_attention(site_webhook, now)
        edition = _latest_edition(session, reports)
        upcoming = _next_review(session, now)
    return render(
        "dashboard.html",
        signed,
        page="dashboard",
        waves=waves,
        sending=sending,
        last=last,
        attention=attention,
        edition=edition,
        upcoming=upcoming,
        site_webhook=site_webhook,
    )


def _next_review(session: Session, now: datetime) -> ReviewState | None:
    """The next edition's review state (pins, note, approval), if the schedule has one."""
    try:
        return review_state(session, next_edition(session, now).edition)
    except EditionError:
        return None


@router.get("/console/live")
def live(signed: Signed = Depends(signed_in)) -> HTMLResponse:
    with session_scope() as session:
        sending = _sending(session, recent_digests(session, RECENT).digests)
    return render("_sending.html", signed, sending=sending)
