"""Planning a digest writes the whole ledger before any send (digest/planning.py), on PostgreSQL."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from digest import plan_recipients, planning
from digest.alerts import plan_alert
from digest.db import session_scope
from digest.planning import PlanError, plan_digest, plan_digest_id, request_digest
from digest.rendering import mjml_render_count
from schema.models import (
    Comparison,
    Delivery,
    DeliveryBatch,
    Digest,
    DigestItem,
    DigestSegment,
    Subscriber,
)
from tests.support.recipients import (
    MONDAY,
    add_subscribers,
    batch_sizes,
    count,
    deliveries,
    publish,
    suppress,
)

NOW = MONDAY + timedelta(hours=9)
WEEK = [
    ("quillmate-vs-parsewell", "Writing"),
    ("palettebird-vs-vectorine", "Design"),
    ("latticeflow-vs-cobaltcode", "Developer Tools"),
    ("inkwright-vs-draftloom", "Writing"),
]


@pytest.fixture
def week(pg: str) -> None:
    with session_scope() as session:
        publish(session, WEEK, at=NOW)


def adhoc(**options: object) -> planning.PlanReport:
    with session_scope() as session:
        digest = request_digest(session, now=NOW, **options)  # type: ignore[arg-type]
        return plan_digest(session, digest, now=NOW)


def test_recipients_are_split_into_batches_of_at_most_1000(week: None) -> None:
    with session_scope() as session:
        add_subscribers(session, 2500)
    report = adhoc()
    with session_scope() as session:
        assert batch_sizes(session, report.digest_id) == [1000, 1000, 500]
        rows = deliveries(session, report.digest_id)
        batches = session.scalars(
            select(DeliveryBatch).where(DeliveryBatch.digest_id == report.digest_id)
        ).all()
        assert {b.status for b in batches} == {"pending"}
        assert sorted(report.batch_ids) == sorted(b.id for b in batches)
    assert len(rows) == 2500
    assert len({subscriber for _, subscriber, _ in rows}) == 2500
    per_batch: dict[int, list[str]] = {}
    for batch_id, _, email in rows:
        per_batch.setdefault(batch_id, []).append(email.lower())
    assert all(len(emails) == len(set(emails)) <= 1000 for emails in per_batch.values())


def test_planning_stores_each_batchs_subscriber_ids_in_order_and_writes_no_rows(
    week: None,
) -> None:
    with session_scope() as session:
        add_subscribers(session, 1200)
        add_subscribers(session, 30, prefix="design", categories=["Design"])
    report = adhoc()
    with session_scope() as session:
        arrays = session.scalars(
            select(DeliveryBatch.subscriber_ids).where(DeliveryBatch.digest_id == report.digest_id)
        ).all()
        assert count(session, Delivery, digest_id=report.digest_id) == 0
    assert sorted(len(ids) for ids in arrays) == [30, 200, 1000]
    assert all(ids == sorted(ids) for ids in arrays)
    assert len({i for ids in arrays for i in ids}) == 1230


def test_plan_leaves_digest_sending_with_frozen_ranked_items(week: None) -> None:
    with session_scope() as session:
        add_subscribers(session, 3)
    report = adhoc()
    with session_scope() as session:
        digest = session.get(Digest, report.digest_id)
        assert digest is not None
        assert (digest.status, digest.kind, digest.recipients) == ("sending", "adhoc", 3)
        assert digest.started_at is not None
        items = session.scalars(
            select(DigestItem).where(DigestItem.digest_id == digest.id).order_by(DigestItem.rank)
        ).all()
        assert [i.rank for i in items] == [1, 2, 3, 4]
        assert [i.score for i in items] == sorted((i.score for i in items), reverse=True)
        assert all(i.explanation for i in items)
        for item in items:
            assert item.verdict_fingerprint == item.comparison.verdict_fingerprint
        assert digest.subject and "verdict" in digest.subject.lower()


def test_each_preference_segment_is_rendered_once(week: None) -> None:
    with session_scope() as session:
        add_subscribers(session, 1200, prefix="all")
        add_subscribers(session, 300, prefix="writing", categories=["Writing"])
        add_subscribers(session, 200, prefix="design", categories=["Design"])
        # Design + Research covers the same items as Design alone: the same segment
        add_subscribers(session, 50, prefix="dr", categories=["Design", "Research"])
        add_subscribers(session, 40, prefix="wd", categories=["Writing", "Design"])
    renders = mjml_render_count()
    report = adhoc()
    assert mjml_render_count() - renders == report.renders == 4
    with session_scope() as session:
        segments = {
            s.segment_key: s
            for s in session.scalars(
                select(DigestSegment).where(DigestSegment.digest_id == report.digest_id)
            )
        }
        assert set(segments) == {
            "all",
            "categories:writing",
            "categories:design",
            "categories:design;writing",
        }
        assert {k: s.recipients for k, s in segments.items()} == {
            "all": 1200,
            "categories:writing": 300,
            "categories:design": 250,
            "categories:design;writing": 40,
        }
        design = segments["categories:design"]
        assert "Palettebird vs Vectorine" in design.text
        assert "Quillmate vs Parsewell" not in design.text
        assert "Latticeflow vs Cobaltcode" in segments["all"].text
        segment_of = dict(session.execute(select(DeliveryBatch.id, DeliveryBatch.segment_id)).all())
        recipients = deliveries(session, report.digest_id)
        per_segment = Counter(segment_of[batch_id] for batch_id, _, _ in recipients)
        assert per_segment[design.id] == 250


def test_segment_that_matches_no_item_gets_nothing_and_is_reported(week: None) -> None:
    with session_scope() as session:
        add_subscribers(session, 5, prefix="research", categories=["Research"])
        add_subscribers(session, 2, prefix="all")
    report = adhoc()
    assert report.left_out == {"Research": 5}
    assert report.recipients == 2
    with session_scope() as session:
        digest = session.get(Digest, report.digest_id)
        assert digest is not None and digest.options["left_out"] == {"Research": 5}
        assert all(e.startswith("all") for _, _, e in deliveries(session, report.digest_id))


def test_only_active_unpaused_unsuppressed_weekly_subscribers_are_planned(week: None) -> None:
    with session_scope() as session:
        wanted = add_subscribers(session, 3, prefix="active")
        for status in ("pending", "unsubscribed", "bounced", "complained", "deleted"):
            add_subscribers(session, 2, prefix=status, status=status)
        add_subscribers(session, 2, prefix="paused", paused=True)
        add_subscribers(session, 2, prefix="every", frequency="every")
        blocked = add_subscribers(session, 2, prefix="suppressed")
        suppress(session, blocked[0].upper())  # the hash ignores case
        suppress(session, blocked[1], "bounced")
    report = adhoc()
    assert report.suppressed == 2
    with session_scope() as session:
        assert sorted(e for _, _, e in deliveries(session, report.digest_id)) == wanted


def test_a_suppressed_address_sql_cannot_hash_is_left_out_too(week: None) -> None:
    """Non-ASCII addresses are hashed in Python, not in the page query (addresses.py)."""
    with session_scope() as session:
        kept = add_subscribers(session, 1, prefix="zoë")
        blocked = add_subscribers(session, 1, prefix="jürgen")
        suppress(session, blocked[0])
    report = adhoc()
    assert report.suppressed == 1
    with session_scope() as session:
        assert [e for _, _, e in deliveries(session, report.digest_id)] == kept


def test_recipients_are_read_page_by_page(week: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan_recipients, "PAGE_SIZE", 7)
    with session_scope() as session:
        emails = add_subscribers(session, 50)
        add_subscribers(session, 10, prefix="gone", status="unsubscribed", start=50)
        add_subscribers(session, 10, prefix="late", start=60)
    report = adhoc()
    with session_scope() as session:
        planned = sorted(e for _, _, e in deliveries(session, report.digest_id))
    assert planned == sorted(emails + [f"late{n:06d}@example.com" for n in range(60, 70)])


@pytest.mark.parametrize("backend", ["pg", "sqlite"])
def test_recipient_pages_hold_at_most_a_page_each_in_id_order(
    backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    request.getfixturevalue(backend)
    monkeypatch.setattr(plan_recipients, "PAGE_SIZE", 7)
    with session_scope() as session:
        add_subscribers(session, 50)
    with session_scope() as session:
        weekly = Digest(kind="weekly", status="planned", options={})
        pages = list(
            plan_recipients.recipient_pages(
                session, plan_recipients.recipient_filter(session, weekly)
            )
        )
        ids = session.scalars(select(Subscriber.id).order_by(Subscriber.id)).all()
    assert [len(page.rows) for page in pages] == [7] * 7 + [1]
    assert [row[0] for page in pages for row in page.rows] == ids


def test_recipient_pages_closed_early_leave_the_database_usable(
    pg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Planning that fails midway stops the stream (cancelled) and its connection goes back."""
    monkeypatch.setattr(plan_recipients, "PAGE_SIZE", 7)
    with session_scope() as session:
        add_subscribers(session, 50)
    with session_scope() as session:
        weekly = Digest(kind="weekly", status="planned", options={})
        pages = plan_recipients.recipient_pages(
            session, plan_recipients.recipient_filter(session, weekly)
        )
        first = next(pages)
        pages.close()
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 50
    assert len(first.rows) == 7
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 50


def test_planning_a_digest_twice_plans_it_once(week: None) -> None:
    with session_scope() as session:
        add_subscribers(session, 1500)
        digest_id = request_digest(session, now=NOW).id
    first = plan_digest_id(digest_id, now=NOW)
    second = plan_digest_id(digest_id, now=NOW)
    assert first is not None and len(first.batch_ids) == 2
    assert second is None
    with session_scope() as session:
        assert count(session, DeliveryBatch, digest_id=digest_id) == 2
        assert len(deliveries(session, digest_id)) == 1500


def test_no_new_comparisons_cancels_and_says_so(pg: str) -> None:
    with session_scope() as session:
        add_subscribers(session, 10)
    report = adhoc()
    assert report.status == "cancelled"
    assert report.reason is not None and "no new comparisons" in report.reason
    with session_scope() as session:
        assert count(session, DeliveryBatch) == 0
        assert count(session, Delivery) == 0


def test_dry_run_renders_but_leaves_no_batches(week: None) -> None:
    with session_scope() as session:
        add_subscribers(session, 1001)
        add_subscribers(session, 4, prefix="design", categories=["Design"])
    report = adhoc(dry_run=True)
    assert report.status == "cancelled" and report.reason is not None
    assert report.reason.startswith("dry run")
    assert report.recipients == 1005 and report.batches == 3 and report.batch_ids == []
    with session_scope() as session:
        assert count(session, DigestSegment, digest_id=report.digest_id) == 2
        assert count(session, DeliveryBatch) == 0
        assert count(session, Delivery) == 0


def test_to_plans_one_test_copy_for_that_address_only(week: None) -> None:
    with session_scope() as session:
        add_subscribers(session, 20)
    report = adhoc(to="Ops.Team@Example.org")
    assert (report.kind, report.status, report.recipients) == ("test", "sending", 1)
    with session_scope() as session:
        [(_, subscriber_id, email)] = deliveries(session, report.digest_id)
        placeholder = session.get(Subscriber, subscriber_id)
        assert placeholder is not None
        assert placeholder.status == "pending"  # never mailed by any digest
        assert email == "Ops.Team@example.org"
        digest = session.get(Digest, report.digest_id)
        assert digest is not None and digest.subject.startswith("[Test] ")


def test_to_an_existing_subscriber_reuses_the_row(week: None) -> None:
    with session_scope() as session:
        [email] = add_subscribers(session, 1)
        before = count(session, Subscriber)
    report = adhoc(to=email.upper())
    with session_scope() as session:
        assert count(session, Subscriber) == before
        [(_, _, planned)] = deliveries(session, report.digest_id)
        assert planned == email


def test_to_a_suppressed_address_is_refused(week: None) -> None:
    with session_scope() as session:
        suppress(session, "gone@example.com")
    with pytest.raises(PlanError) as raised:
        adhoc(to="gone@example.com")
    assert raised.value.field == "to"


def test_segment_option_limits_the_items(week: None) -> None:
    with session_scope() as session:
        add_subscribers(session, 3)
        add_subscribers(session, 2, prefix="writing", categories=["Writing"])
    report = adhoc(segments=["design"])
    assert [title for _, title, _, _ in report.items] == ["Palettebird vs Vectorine"]
    assert report.recipients == 3
    assert report.left_out == {"Writing": 2}


def test_unknown_segment_names_the_field(week: None) -> None:
    with pytest.raises(PlanError) as raised:
        adhoc(segments=["Gardening"])
    assert raised.value.field == "segment"


def test_window_that_ends_before_it_starts_names_the_field(week: None) -> None:
    with pytest.raises(PlanError) as raised:
        adhoc(since=NOW, until=NOW - timedelta(days=1))
    assert raised.value.field == "since"


def test_alert_goes_to_every_subscribers_whose_categories_match(week: None) -> None:
    with session_scope() as session:
        add_subscribers(session, 3, prefix="weekly")
        add_subscribers(session, 2, prefix="any", frequency="every")
        add_subscribers(session, 2, prefix="writer", frequency="every", categories=["Writing"])
        add_subscribers(session, 4, prefix="designer", frequency="every", categories=["Design"])
        comparison_id = session.scalar(
            select(Comparison.id).where(Comparison.slug == "quillmate-vs-parsewell")
        )
    assert comparison_id is not None
    report = plan_alert(comparison_id, now=NOW)
    assert report is not None
    assert (report.kind, report.status, report.recipients, report.renders) == (
        "alert",
        "sending",
        4,
        1,
    )
    assert report.left_out == {"Design": 4}
    with session_scope() as session:
        planned = sorted(e for _, _, e in deliveries(session, report.digest_id))
        [segment] = session.scalars(
            select(DigestSegment).where(DigestSegment.digest_id == report.digest_id)
        ).all()
    assert [e[:3] for e in planned] == ["any", "any", "wri", "wri"]
    assert segment.subject.startswith("New verdict: Quillmate vs Parsewell")


def test_alert_is_planned_once_per_comparison(week: None) -> None:
    with session_scope() as session:
        add_subscribers(session, 2, frequency="every")
        comparison_id = session.scalar(select(Comparison.id).limit(1))
    assert comparison_id is not None
    assert plan_alert(comparison_id, now=NOW) is not None
    assert plan_alert(comparison_id, now=NOW) is None
    with session_scope() as session:
        assert count(session, Digest, kind="alert") == 1
        alert_id = session.scalar(select(Digest.id).where(Digest.kind == "alert"))
        assert alert_id is not None and len(deliveries(session, alert_id)) == 2


def test_planning_works_the_same_on_sqlite(sqlite: str) -> None:
    with session_scope() as session:
        publish(session, WEEK, at=NOW)
        kept = add_subscribers(session, 1001)
        add_subscribers(session, 2, prefix="design", categories=["Design"])
        [blocked] = add_subscribers(session, 1, prefix="blocked")
        suppress(session, blocked)
    report = adhoc()
    assert (report.recipients, report.batches, report.suppressed) == (1003, 3, 1)
    with session_scope() as session:
        planned = [e for _, _, e in deliveries(session, report.digest_id)]
    assert set(kept) < set(planned) and blocked not in planned
