"""Write a planned digest straight into the ledger, as digest/planning.py leaves it.

Sending tests start from the planning contract, not from planning itself: a `sending` digest, one
rendered segment, subscribers, and batches of at most 1000 (`pending`, no address twice), each
holding its recipients' subscriber ids; their delivery rows are written by the batch's first
claim. Bulk inserts keep 5,000 recipients quick.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from digest.substitution import Placeholders
from schema.models import DeliveryBatch, Digest, DigestSegment, Subscriber, utcnow

# The render's placeholder keys, as planning draws them (a fixed nonce keeps tests readable).
KEYS = Placeholders.from_nonce("0123456789ab")
NAME_TOKEN, UNSUBSCRIBE_TOKEN, PREFERENCES_TOKEN = (
    KEYS.name,
    KEYS.unsubscribe_url,
    KEYS.preferences_url,
)
SUBJECT = "This week: Quillmark vs Draftwell, and two more verdicts"
HTML = (
    f"<html><body><p>Hi {NAME_TOKEN},</p><p>Quillmark ships, Draftwell is mixed.</p>"
    f'<p><a href="{UNSUBSCRIBE_TOKEN}">Unsubscribe</a> · '
    f'<a href="{PREFERENCES_TOKEN}">Preferences</a></p></body></html>'
)
TEXT = (
    f"Hi {NAME_TOKEN},\n\nQuillmark ships, Draftwell is mixed.\n\n"
    f"Unsubscribe: {UNSUBSCRIBE_TOKEN}\nPreferences: {PREFERENCES_TOKEN}\n"
)


@dataclass
class PlannedDigest:
    digest_id: int
    segment_id: int
    batch_ids: list[int]
    emails: list[str]


def email_for(n: int, prefix: str = "reader") -> str:
    return f"{prefix}{n:06d}@example.com"


def plan_rows(
    session: Session,
    recipients: int,
    *,
    batch_size: int = 1000,
    status: str = "sending",
    prefix: str = "reader",
    names: bool = True,
) -> PlannedDigest:
    """A digest in `status` with `recipients` subscribers split into batches of `batch_size`."""
    digest = Digest(kind="weekly", status=status, subject=SUBJECT, recipients=recipients)
    digest.started_at = utcnow()
    session.add(digest)
    session.flush()
    segment = DigestSegment(
        digest_id=digest.id,
        segment_key="all",
        subject=SUBJECT,
        html=HTML,
        text=TEXT,
        placeholder_nonce=KEYS.nonce,
    )
    segment.recipients = recipients
    session.add(segment)
    session.flush()
    emails = [email_for(n, prefix) for n in range(recipients)]
    session.execute(
        insert(Subscriber),
        [
            {
                "email": email,
                "name": f"Reader {n}" if names and n % 3 else None,
                "status": "active",
                "categories": [],
                "frequency": "weekly",
            }
            for n, email in enumerate(emails)
        ],
    )
    ids_by_email = dict(
        session.execute(
            select(Subscriber.email, Subscriber.id).where(Subscriber.email.in_(emails))
        ).all()
    )
    subscriber_ids = [ids_by_email[email] for email in emails]
    batch_ids: list[int] = []
    for seq, start in enumerate(range(0, recipients, batch_size), start=1):
        chunk = subscriber_ids[start : start + batch_size]
        batch_id = session.scalar(
            insert(DeliveryBatch)
            .values(
                digest_id=digest.id,
                segment_id=segment.id,
                seq=seq,
                status="pending",
                size=len(chunk),
                attempts=0,
                subscriber_ids=chunk,
            )
            .returning(DeliveryBatch.id)
        )
        batch_ids.append(batch_id)
    session.commit()
    return PlannedDigest(digest.id, segment.id, batch_ids, emails)
