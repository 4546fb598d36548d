"""Telling clicks no person made from people's clicks, so stats can report human figures apart.

Opens SendGrid marks `sg_machine_open` (Apple Mail Privacy Protection) are flagged when stored
(`digest.webhook_events.normalise`). Clicks are judged here, per delivery: any click within
`machine_click_seconds` of delivery, and every click of a burst of `machine_click_links` distinct
links inside one such window, is `machine` (link scanners click everything, at once).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, select, type_coerce, update
from sqlalchemy.orm import Session

from digest.key_lists import among, key_parts
from digest.settings import Settings, get_settings
from schema.models import Delivery, DeliveryBatch, EmailEvent

Click = tuple[int, datetime, str | None, bool]  # (event id, when, URL, flagged machine now)


def flag_machine_activity(
    session: Session, delivery_ids: Iterable[int], settings: Settings | None = None
) -> int:
    """Re-judge the clicks of these deliveries; returns how many clicks are now `machine`.

    Run after every batch for the deliveries it touched, so a `delivered` event that arrives after
    the clicks still gets them judged against the right time.
    """
    settings = settings or get_settings()
    window = timedelta(seconds=settings.machine_click_seconds)
    flagged = 0
    for part in key_parts(session, delivery_ids):
        clicks, delivered = _clicks_and_deliveries(session, part)
        if not clicks:  # only deliveries with clicks have anything to judge
            continue
        never_delivered = sorted(d_id for d_id in clicks if d_id not in delivered)
        if never_delivered:
            delivered.update(_sent_at(session, never_delivered))
        to_set: dict[bool, list[int]] = {True: [], False: []}
        for d_id, rows in clicks.items():
            machine_ids = _machine_clicks(rows, delivered.get(d_id), window, settings)
            for e_id, _, _, was in rows:
                now_machine = e_id in machine_ids
                flagged += now_machine
                if now_machine != was:
                    to_set[now_machine].append(e_id)
        for value, ids in to_set.items():
            for ids_part in key_parts(session, ids):
                session.execute(
                    update(EmailEvent)
                    .where(among(session, EmailEvent.id, ids_part))
                    .values(machine=value)
                )
    return flagged


def _sent_at(session: Session, delivery_ids: Sequence[int]) -> dict[int, datetime]:
    """When each delivery's batch was sent: its arrival, until a `delivered` event says."""
    query = (
        select(Delivery.id, _compared_only(DeliveryBatch.sent_at))
        .join(DeliveryBatch, DeliveryBatch.id == Delivery.batch_id)
        .where(among(session, Delivery.id, delivery_ids), DeliveryBatch.sent_at.is_not(None))
    )
    return {d_id: sent_at for d_id, sent_at in session.connection().execute(query).all()}


def _compared_only(column: Any) -> Any:
    """A time column read as the driver hands it: these times are only compared and subtracted,
    never stored or shown, so the model's conversion to UTC (a tenth of the batch's Python time,
    for 15,000 times) is left out. All are aware on PostgreSQL, all naive on SQLite."""
    return type_coerce(column, DateTime(timezone=True))


def _clicks_and_deliveries(
    session: Session, delivery_ids: Sequence[int]
) -> tuple[dict[int, list[Click]], dict[int, datetime]]:
    """Each delivery's clicks, oldest first, and its first `delivered` event's time, in one
    query. Read as Core rows, fetched at once: the ORM's loading of plain columns, then a fetch
    per row, were most of reading a batch's 5,000 clicks."""
    query = (
        select(
            EmailEvent.id,
            EmailEvent.delivery_id,
            EmailEvent.event,
            _compared_only(EmailEvent.occurred_at),
            EmailEvent.url,
            EmailEvent.machine,
        )
        .where(
            among(session, EmailEvent.delivery_id, delivery_ids),
            EmailEvent.event.in_(("click", "delivered")),
        )
        .order_by(EmailEvent.occurred_at, EmailEvent.id)
    )
    clicks: dict[int, list[Click]] = {}
    delivered: dict[int, datetime] = {}
    for e_id, d_id, event, at, url, machine in session.connection().execute(query).all():
        if event == "click":
            clicks.setdefault(d_id, []).append((e_id, at, url, machine))
        else:
            delivered.setdefault(d_id, at)  # oldest first: the first is the arrival
    return clicks, delivered


def _machine_clicks(
    rows: list[Click],
    delivered_at: datetime | None,
    window: timedelta,
    settings: Settings,
) -> set[int]:
    """Clicks no person makes: within `window` of delivery, or many links inside one window."""
    machine: set[int] = set()
    if delivered_at is not None:
        machine.update(e_id for e_id, at, _, _ in rows if at - delivered_at <= window)
    start = 0
    for end in range(len(rows)):
        while rows[end][1] - rows[start][1] > window:
            start += 1
        burst = rows[start : end + 1]
        if len({url for _, _, url, _ in burst}) >= settings.machine_click_links:
            machine.update(e_id for e_id, _, _, _ in burst)
    return machine
