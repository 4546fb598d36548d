"""A digest sent for real (planned in two segments, sent to the outbox) and the SendGrid events
its readers would cause, for the results page and `digest stats` tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from digest import sending
from digest.db import session_scope
from digest.planning import plan_digest, request_digest
from schema.models import Delivery, DeliveryBatch, DigestItem, utcnow
from tests.support.html import Page
from tests.support.recipients import add_subscribers, publish
from tests.support.signed_webhooks import sg_event
from tests.support.subscriber_fixtures import mails_to

WEEK = [
    ("quillmate-vs-parsewell", "Writing"),
    ("palettebird-vs-vectorine", "Design"),
    ("latticeflow-vs-cobaltcode", "Developer Tools"),
]
PICKY_CATEGORIES = ["Design", "Developer Tools"]  # a second segment, without "Writing"
HOUR = 3600


@dataclass
class SentWeek:
    digest_id: int
    sent_at: int  # Unix seconds: when the batches went out
    readers: list[str]  # every category
    picky: str  # the second segment's one reader
    deliveries: dict[str, int]  # address -> delivery id
    message_ids: dict[str, str]  # address -> its batch's message id
    links: dict[str, dict[str, list[str]]]  # address -> slug -> its links in that email
    ranks: dict[str, int]  # slug -> rank in the digest

    def event(self, kind: str, address: str, after: float, **extra: Any) -> dict[str, Any]:
        """One SendGrid event for this reader, `after` seconds after sending."""
        return sg_event(
            kind,
            address,
            timestamp=int(self.sent_at + after),
            delivery_id=self.deliveries[address],
            digest_id=self.digest_id,
            message_id=self.message_ids[address],
            **extra,
        )

    def click(self, address: str, slug: str, after: float, which: int = 0) -> dict[str, Any]:
        """A click on one of the links to `slug` in this reader's email (0: the title)."""
        return self.event("click", address, after, url=self.links[address][slug][which])


def send_results_week(outbox: Path, readers: int = 3) -> SentWeek:
    """Three comparisons, `readers` readers of every category and one of two; planned, sent
    to the outbox (as SendGrid would fill each email) and read back."""
    now = utcnow()
    with session_scope() as session:
        publish(session, WEEK, at=now)
        everyone = add_subscribers(session, readers, prefix="reader")
        [picky] = add_subscribers(session, 1, prefix="picky", categories=PICKY_CATEGORIES)
    with session_scope() as session:
        digest = request_digest(session, since=now - timedelta(days=7), until=now, now=now)
        report = plan_digest(session, digest, now=now)
        digest_id = digest.id
    for batch_id in report.batch_ids:
        assert sending.send_batch(batch_id).status == "sent"
    with session_scope() as session:
        rows = session.execute(
            select(Delivery.email, Delivery.id, DeliveryBatch.message_id, DeliveryBatch.sent_at)
            .join(DeliveryBatch, DeliveryBatch.id == Delivery.batch_id)
            .where(Delivery.digest_id == digest_id)
        ).all()
        ranks = {
            item.comparison.slug: item.rank
            for item in session.scalars(select(DigestItem).where(DigestItem.digest_id == digest_id))
        }
    sent_at = min(r.sent_at for r in rows).timestamp()
    return SentWeek(
        digest_id,
        int(sent_at),
        everyone,
        picky,
        {r.email: r.id for r in rows},
        {r.email: r.message_id for r in rows},
        {a: _links(outbox, a) for a in [*everyone, picky]},
        ranks,
    )


def _links(outbox: Path, address: str) -> dict[str, list[str]]:
    [message] = mails_to(outbox, address)
    part = message.get_body(("html",))
    assert part is not None
    found: dict[str, list[str]] = {}
    for href in Page(part.get_content()).hrefs():
        for slug, _ in WEEK:
            if f"utm_content={slug}" in href or f"/{slug}/" in href:
                found.setdefault(slug, []).append(href)
    return found
