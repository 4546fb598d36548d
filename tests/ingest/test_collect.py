"""Collecting a digest's comparisons: the window, retractions, and nothing mailed twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.collect import collect_comparisons, weekly_window
from digest.db import reset_caches, session_scope
from schema.models import Comparison, Digest, DigestItem
from tests.support.factories import NOW, comparison, published, store, tool

SINCE = NOW - timedelta(days=7)


def slugs(comparisons: list[Comparison]) -> list[str]:
    return [c.slug for c in comparisons]


def publish(session: Session, slug: str, when: datetime, **kwargs) -> Comparison:
    store(session, published(comparison(slug, published_at=when, **kwargs)))
    return session.scalar(select(Comparison).where(Comparison.slug == slug))


def mail(
    session: Session,
    *items: Comparison,
    status: str = "sent",
    kind: str = "weekly",
    window_end: datetime = SINCE,
) -> Digest:
    """A digest that carried `items` with the fingerprints they have now."""
    digest = Digest(
        kind=kind, status=status, window_start=window_end - timedelta(days=7), window_end=window_end
    )
    digest.items = [
        DigestItem(
            comparison_id=c.id,
            rank=n,
            score=1.0,
            explanation="x",
            verdict_fingerprint=c.verdict_fingerprint,
        )
        for n, c in enumerate(items, start=1)
    ]
    session.add(digest)
    session.commit()
    return digest


def test_collects_what_was_published_in_the_half_open_window(pg: str) -> None:
    with session_scope() as session:
        publish(session, "before", SINCE - timedelta(seconds=1))
        publish(session, "at-start", SINCE)
        publish(session, "inside", NOW - timedelta(days=1))
        publish(session, "at-end", NOW)
        assert slugs(collect_comparisons(session, SINCE, NOW)) == ["at-start", "inside"]


def test_retracted_comparisons_are_never_collected(pg: str) -> None:
    with session_scope() as session:
        publish(session, "kept", NOW - timedelta(days=2))
        publish(session, "withdrawn", NOW - timedelta(days=1))
        store(session, {"type": "comparison.retracted", "data": {"slug": "withdrawn"}})
        for kind in ("weekly", "adhoc", "alert"):
            assert slugs(collect_comparisons(session, SINCE, NOW, kind=kind)) == ["kept"]


def test_comparison_sent_in_an_earlier_weekly_digest_is_not_collected_again(pg: str) -> None:
    with session_scope() as session:
        sent = publish(session, "sent-before", NOW - timedelta(days=2))
        publish(session, "fresh", NOW - timedelta(days=1))
        mail(session, sent, status="sent")
        assert slugs(collect_comparisons(session, SINCE, NOW)) == ["fresh"]


def test_comparison_in_a_weekly_digest_still_sending_is_not_collected_again(pg: str) -> None:
    with session_scope() as session:
        sending = publish(session, "sending", NOW - timedelta(days=2))
        mail(session, sending, status="sending")
        assert collect_comparisons(session, SINCE, NOW) == []


@pytest.mark.parametrize("status", ["planned", "cancelled", "failed"])
def test_digest_that_never_went_out_does_not_hold_a_comparison_back(pg: str, status: str) -> None:
    with session_scope() as session:
        item = publish(session, "held", NOW - timedelta(days=2))
        mail(session, item, status=status)
        assert slugs(collect_comparisons(session, SINCE, NOW)) == ["held"]


def test_sent_comparison_comes_back_when_its_verdict_changed(pg: str) -> None:
    first = NOW - timedelta(days=20)
    with session_scope() as session:
        item = publish(session, "changed", first)
        mail(session, item, window_end=first + timedelta(days=1))
        update = comparison(
            "changed",
            published_at=first,
            updated_at=(NOW - timedelta(days=1)).isoformat(),
            b=tool("Parsewell", ship=4, skip=0),  # the panel changed its mind
        )
        store(session, {"type": "comparison.updated", "data": update})
        assert slugs(collect_comparisons(session, SINCE, NOW)) == ["changed"]


def test_sent_comparison_stays_out_when_only_its_wording_changed(pg: str) -> None:
    first = NOW - timedelta(days=20)
    with session_scope() as session:
        item = publish(session, "reworded", first)
        mail(session, item, window_end=first + timedelta(days=1))
        update = comparison(
            "reworded",
            published_at=first,
            updated_at=(NOW - timedelta(days=1)).isoformat(),
            b=tool("Parsewell", ship=2, skip=2, tagline="A new tagline, same verdict"),
        )
        store(session, {"type": "comparison.updated", "data": update})
        assert collect_comparisons(session, SINCE, NOW) == []


def test_alerts_and_adhoc_digests_ignore_what_weekly_digests_sent(pg: str) -> None:
    with session_scope() as session:
        item = publish(session, "sent-weekly", NOW - timedelta(days=2))
        mail(session, item)
        assert slugs(collect_comparisons(session, SINCE, NOW, kind="adhoc")) == ["sent-weekly"]


def test_window_after_until_is_refused(pg: str) -> None:
    with session_scope() as session, pytest.raises(ValueError, match="since"):
        collect_comparisons(session, NOW, SINCE)


# --- the weekly window ----------------------------------------------------------------------


def test_first_weekly_window_covers_seven_days_from_local_midnight(
    pg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_TIMEZONE", "America/New_York")
    reset_caches()
    now = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)  # Sunday 22 November, 22:00 in New York
    with session_scope() as session:
        since, until = weekly_window(session, now)
    # Sunday 15 November, 00:00 in New York (EST, UTC-5)
    assert since == datetime(2026, 11, 15, 5, 0, tzinfo=UTC)
    assert until == now


def test_first_weekly_window_in_utc_starts_at_utc_midnight(pg: str) -> None:
    with session_scope() as session:
        since, _ = weekly_window(session, datetime(2026, 11, 23, 3, 0, tzinfo=UTC))
    assert since == datetime(2026, 11, 16, 0, 0, tzinfo=UTC)


def test_weekly_window_starts_where_the_last_sent_weekly_digest_ended(pg: str) -> None:
    ended = NOW - timedelta(days=6, hours=3)
    with session_scope() as session:
        mail(session, window_end=ended - timedelta(days=7))
        mail(session, window_end=ended, status="sending")
        assert weekly_window(session, NOW) == (ended, NOW)


@pytest.mark.parametrize(("kind", "status"), [("weekly", "planned"), ("adhoc", "sent")])
def test_weekly_window_ignores_digests_that_are_not_sent_weekly_ones(
    pg: str, kind: str, status: str
) -> None:
    with session_scope() as session:
        mail(session, kind=kind, status=status, window_end=NOW - timedelta(days=1))
        since, _ = weekly_window(session, NOW)
    assert since == datetime(2026, 11, 16, 0, 0, tzinfo=UTC)


def test_weekly_window_needs_an_aware_now(pg: str) -> None:
    with session_scope() as session, pytest.raises(ValueError, match="timezone"):
        weekly_window(session, datetime(2026, 11, 23, 12, 0))
