"""Beat's weekly tick: fire every timezone wave that is due, planning each in one transaction.

`digest.schedule` says *when* (slots, waves, keys); `digest.planning` says *what* (items,
renders, the ledger); this module joins the two, so neither imports the other.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from digest.db import session_scope
from digest.edition_overrides import is_approved
from digest.planning import PlanReport, plan_digest
from digest.schedule import due_waves, edition_of
from digest.settings import get_settings
from schema.models import Digest
from schema.statuses import DigestKind, DigestStatus

log = logging.getLogger(__name__)


def fire_waves(session: Session, now: datetime) -> list[PlanReport]:
    """Create and plan the digest of every due wave not fired yet; the caller commits.

    The digest row and its whole plan are one transaction: a concurrent tick inserting the same
    slot key waits on the unique index and then fails with IntegrityError (skipped here), and a
    crash mid-plan leaves nothing behind, so the next tick tries again.

    With `DIGEST_WEEKLY_APPROVAL=required` a wave of an edition nobody approved is not created
    at all, so a later tick still fires it once approved, while the slot is within the grace.
    """
    reports = []
    approval = get_settings().weekly_approval == "required"
    for wave in due_waves(session, now):
        if session.scalar(select(Digest.id).where(Digest.slot_key == wave.key)) is not None:
            continue
        edition = edition_of(wave.slot)
        if approval and not is_approved(session, edition, lock=True):
            log.info("slot %s waits for the approval of edition %s", wave.key, edition)
            continue
        savepoint = session.begin_nested()
        digest = Digest(
            kind=DigestKind.WEEKLY,
            status=DigestStatus.PLANNED,
            slot_key=wave.key,
            edition=edition,  # how digest.editions finds the other waves
            window_end=wave.slot.astimezone(UTC),
            options={"timezone": wave.timezone, "edition": edition},
        )
        session.add(digest)
        try:
            session.flush()
        except IntegrityError:
            savepoint.rollback()
            log.info("slot %s already fired by another beat", wave.key)
            continue
        savepoint.commit()
        report = plan_digest(session, digest, now=now)
        log.info("fired %s: digest %s %s", wave.key, digest.id, report.reason or report.status)
        reports.append(report)
    return reports


def fire_weekly_slots(now: datetime | None = None) -> list[PlanReport]:
    """Beat's tick (`digest.fire_weekly_slots`): fire due waves and commit.

    The caller hands every report's `batch_ids` to the workers after this returns.
    """
    now = now or datetime.now(UTC)
    with session_scope() as session:
        return fire_waves(session, now)
