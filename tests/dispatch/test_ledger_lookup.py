"""The ledger by address (digest/ledger_lookup.py): did this person get this digest, when, with
which message id — found through the subscriber and the (digest, subscriber) key."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from digest.db import session_scope
from digest.ledger_lookup import find_recipient
from digest.privacy import erase_subscriber
from schema.models import Delivery
from tests.support.sent_digests import SENT_AT, sent_digest

ADA, BO = "ada@example.test", "bo@example.test"


@pytest.fixture
def digests(pg: str) -> tuple[int, int]:
    with session_scope() as session:
        first = sent_digest(session, [ADA, BO], message_id="m-first").digest_id
        second = sent_digest(session, [BO], message_id="m-second").digest_id
    return first, second


def test_lookup_answers_when_and_with_which_message_id(digests: tuple[int, int]) -> None:
    with session_scope() as session:
        (trace,) = find_recipient(session, digests[0], ADA)
    assert (trace.email, trace.status, trace.message_id) == (ADA, "sent", "m-first")
    assert trace.sent_at == SENT_AT.isoformat()


def test_lookup_ignores_case_and_surrounding_spaces(digests: tuple[int, int]) -> None:
    with session_scope() as session:
        assert [t.email for t in find_recipient(session, digests[0], "  ADA@Example.TEST ")] == [
            ADA
        ]


def test_lookup_finds_nothing_for_a_reader_not_in_that_digest(digests: tuple[int, int]) -> None:
    with session_scope() as session:
        assert find_recipient(session, digests[1], ADA) == []
        assert find_recipient(session, digests[0], "nobody@example.test") == []


def test_lookup_names_the_digest_asked_about(digests: tuple[int, int]) -> None:
    with session_scope() as session:
        assert [t.message_id for t in find_recipient(session, digests[1], BO)] == ["m-second"]


def test_lookup_of_an_erased_address_finds_nothing(digests: tuple[int, int]) -> None:
    with session_scope() as session:
        (trace,) = find_recipient(session, digests[0], ADA)
        subscriber_id = session.scalar(
            select(Delivery.subscriber_id).where(Delivery.id == trace.delivery_id)
        )
        erase_subscriber(session, subscriber_id)
    with session_scope() as session:
        assert find_recipient(session, digests[0], ADA) == []
        assert [t.email for t in find_recipient(session, digests[0], BO)] == [BO]
