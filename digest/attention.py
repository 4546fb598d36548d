"""What needs a person: the console dashboard's list, read from digest/progress.py's reports.

Ambiguous batches (someone must decide), paused digests (SendGrid refused the key: resume
after fixing it), failed digests, and a digest still `planned` well after beat's sweep should
have queued it again (DIGEST_PLAN_REQUEUE_AFTER): its planner is stuck or its worker gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from digest.progress import DigestReport
from digest.settings import get_settings
from schema.statuses import DigestStatus

STUCK_FACTOR = 3  # planned longer than this many requeue periods: the sweep did not help


@dataclass(frozen=True)
class Attention:
    digest_id: int
    what: str  # ambiguous, paused, failed, stuck
    why: str


def needs_a_person(reports: list[DigestReport], now: datetime) -> list[Attention]:
    stuck_after = timedelta(seconds=get_settings().plan_requeue_after * STUCK_FACTOR)
    found: list[Attention] = []
    for r in reports:
        if r.ambiguous:
            found.append(
                Attention(r.id, "ambiguous", f"{len(r.ambiguous)} batch(es) need a decision")
            )
        if r.status == DigestStatus.PAUSED:
            found.append(Attention(r.id, "paused", r.status_reason or "paused"))
        elif r.status == DigestStatus.FAILED:
            found.append(Attention(r.id, "failed", r.status_reason or "failed"))
        elif r.status == DigestStatus.PLANNED and r.created_at:
            waited = now - datetime.fromisoformat(r.created_at)
            if waited > stuck_after:
                minutes = int(waited.total_seconds() // 60)
                found.append(Attention(r.id, "stuck", f"planned {minutes} min ago, not sent"))
    return found
