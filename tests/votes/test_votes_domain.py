"""The domain on its own: alert emails carry the links too; the embedded default (SQLite) votes."""

from __future__ import annotations

from sqlalchemy import select

from digest import tokens, votes
from digest.db import session_scope
from digest.rendering import render_alert
from schema.models import Comparison, Digest, DigestItem, ReaderVote, Subscriber
from tests.support.factories import comparison, published, store
from tests.support.html import Page


def test_an_alert_has_ship_and_skip_links_for_both_tools(pg: str) -> None:
    with session_scope() as session:
        store(session, published(comparison("alpha-vs-beta")))
        item = session.scalar(select(Comparison))
        assert item is not None
        email = render_alert(item, "why")
    assert email.placeholders is not None and email.placeholders.reader
    hrefs = [h for h in Page(email.html).hrefs() if "/vote/" in h]
    assert sorted(h.rsplit("/", 2)[-2] + h.rsplit("/", 1)[-1] for h in hrefs) == [
        "0ship",
        "0skip",
        "1ship",
        "1skip",
    ]
    assert all(f"/vote/{email.placeholders.reader}/alpha-vs-beta/" in h for h in hrefs)
    assert email.text.count(f"/vote/{email.placeholders.reader}/") == 4


def test_votes_work_on_the_embedded_default(sqlite: str) -> None:
    with session_scope() as session:
        store(session, published(comparison("alpha-vs-beta")))
        item = session.scalar(select(Comparison))
        assert item is not None
        digest = Digest(kind="weekly", status="sent")
        reader = Subscriber(email="reader@example.com", status="active")
        session.add_all([digest, reader])
        session.flush()
        session.add(
            DigestItem(
                digest_id=digest.id,
                comparison_id=item.id,
                rank=1,
                score=0.0,
                explanation="x",
                verdict_fingerprint="x",
            )
        )
        ids = (digest.id, reader.id)
    claim = tokens.read_reader_token(tokens.reader_token(*ids))
    for choice in ("ship", "ship", "skip"):
        with session_scope() as session:
            outcome = votes.cast(session, claim, "alpha-vs-beta", 1, choice)
    assert outcome.previous == "ship" and outcome.tallies[1].skip == 1
    with session_scope() as session:
        assert session.scalars(select(ReaderVote.choice)).all() == ["skip"]
