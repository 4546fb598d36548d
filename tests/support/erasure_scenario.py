"""The erasure attack scenario (finding 6 of the trust issue), shared by every way of erasing:
"delete me" (tests/subscriptions/test_privacy.py), the CLI, the console's Erase button
(tests/console/test_console_subscribers.py).

A person receives a digest, SendGrid posts signed events about them (delivered, open, click, a
bounce whose reason quotes the address, one body still waiting for a worker); `leftovers()` then
searches every string, text and JSON column of every table for the address (any case, and
percent-encoded) and the name.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import JSON, String, Text, cast, func, select, update

from digest.db import session_scope
from digest.web.app import create_app
from digest.webhooks import store_batch
from schema.models import Base, Delivery, DeliveryBatch, Subscriber
from tests.support.sent_digests import T0, SentDigest, event_for, sent_digest
from tests.support.signed_webhooks import Signer, body_of, post_events

BOB = "Bob.Quillfeather@x.example"  # as typed at signup: mixed case
NAME = "Bartholomew Quillfeather"
ADA = "ada@example.test"


# --- the scenario ---------------------------------------------------------------------------------


def receive_digest() -> SentDigest:
    """Bob (and Ada) received one digest; a batch error and a delivery error name Bob too."""
    with session_scope() as session:
        session.add(Subscriber(email=BOB, name=NAME, status="active", timezone="Europe/Oslo"))
        session.commit()
        sent = sent_digest(session, [BOB, ADA])
        session.execute(
            update(DeliveryBatch).values(error=f"400 from SendGrid: {BOB.upper()} looked odd")
        )
        session.execute(
            update(Delivery)
            .where(Delivery.id == sent.deliveries[BOB])
            .values(error=f"rejected by SendGrid: {BOB} ({NAME})")
        )
    return sent


def bob_events(sent: SentDigest) -> list[dict]:
    return [
        event_for(sent, "delivered", BOB, at=T0 + 5, response="250 2.0.0 OK <" + BOB + ">"),
        event_for(sent, "open", BOB, at=T0 + 600, sg_machine_open=False),
        event_for(
            sent, "click", BOB, at=T0 + 700, url=f"https://shiporskip.example/c?who={BOB.lower()}"
        ),
        event_for(  # the address percent-encoded in a link
            sent, "click", BOB, at=T0 + 701, url=f"https://shiporskip.example/c?u={quote(BOB)}"
        ),
        event_for(
            sent,
            "bounce",
            BOB,
            at=T0 + 800,
            type="bounce",
            reason=f"550 5.1.1 <{BOB.upper()}>: user unknown",
            status="5.1.1",
            # a nested structure quoting the address and the name (SendGrid may add fields)
            diagnostics={"smtp": [{"text": f"{NAME} <{BOB.lower()}> rejected"}]},
        ),
    ]


def post(client: TestClient, signer: Signer, events: list[dict]) -> None:
    response = post_events(client, signer, events)
    assert response.status_code == 204, response.text


def text_columns() -> list[tuple[str, str, bool]]:
    """(table, column, is_json) for every string, text and JSON column of every model."""
    return [
        (table.name, column.name, isinstance(column.type, JSON))
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, String | Text | JSON)
    ]


def hits(needle: str) -> list[str]:
    """`table.column` for every column in which any row holds `needle`, in any case."""
    found = []
    with session_scope() as session:
        for table_name, column_name, is_json in text_columns():
            column = Base.metadata.tables[table_name].c[column_name]
            as_text = cast(column, Text) if is_json else column
            count = session.scalar(
                select(func.count())
                .select_from(column.table)
                .where(func.lower(as_text).contains(needle.lower(), autoescape=True))
            )
            if count:
                found.append(f"{table_name}.{column_name} ({count} rows)")
    return found


def leftovers() -> dict[str, list[str]]:
    needles = [BOB, quote(BOB, safe=""), NAME, "Quillfeather"]
    return {needle: hits(needle) for needle in needles if hits(needle)}


@pytest.fixture
def attacked(signer: Signer) -> Iterator[SentDigest]:
    """Bob's digest and SendGrid's events about it: three processed bodies and one waiting."""
    client = TestClient(create_app())
    sent = receive_digest()
    events = bob_events(sent)
    post(client, signer, events[:2])
    post(client, signer, events[2:])
    post(client, signer, [event_for(sent, "delivered", ADA, at=T0 + 6)])
    with session_scope() as session:  # accepted, but the broker was down: still unprocessed
        store_batch(
            session,
            body_of(
                [
                    event_for(sent, "open", BOB, at=T0 + 900),
                    event_for(sent, "open", ADA, at=T0 + 901),
                ]
            ),
            2,
        )
    assert hits(BOB), "the scenario must have stored the address before erasure"
    yield sent
