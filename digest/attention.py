"""What needs a person: the console dashboard's list, read from digest/progress.py's reports.

Ambiguous batches (someone must decide), paused digests (SendGrid refused the key: resume
after fixing it), failed digests, and a digest still `planned` well after beat's sweep should
have queued it again (DIGEST_PLAN_REQUEUE_AFTER): its planner is stuck or its worker gone.
And readers' verdicts not reaching the site (digest/site_events.py `health`): an event whose
delivery failed and is not yet delivered, or one waiting longer than beat's sweeper should have
needed (`STUCK_FACTOR` × DIGEST_SITE_WEBHOOK_REQUEUE_AFTER), or events waiting with the
webhook switched off.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from digest.progress import DigestReport
from digest.settings import get_settings
from digest.site_events import WebhookHealth
from schema.statuses import DigestStatus

STUCK_FACTOR = 3  # planned longer than this many requeue periods: the sweep did not help


@dataclass(frozen=True)
class Attention:
    digest_id: int | None  # None: not one digest's (the site webhook)
    what: str  # ambiguous, paused, failed, stuck, site-webhook
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


def site_webhook_attention(health: WebhookHealth, now: datetime) -> list[Attention]:
    """One item when readers' verdicts are not reaching the site: failing, or backlogged."""
    if not health.waiting:
        return []
    if not health.enabled:
        why = f"{health.waiting} event(s) waiting while DIGEST_SITE_WEBHOOK_URL is empty"
        return [Attention(None, "site-webhook", why)]
    if health.failing:
        why = f"{health.failing} event(s) to the site failing (last error: {health.last_error})"
        return [Attention(None, "site-webhook", why)]
    backlog_after = timedelta(seconds=get_settings().site_webhook_requeue_after * STUCK_FACTOR)
    oldest = health.oldest_waiting_at
    if oldest is not None and now - oldest > backlog_after:
        minutes = int((now - oldest).total_seconds() // 60)
        why = f"{health.waiting} event(s) waiting for the site, the oldest for {minutes} min"
        return [Attention(None, "site-webhook", why)]
    return []
