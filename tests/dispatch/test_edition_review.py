"""Reviewing the week's edition (digest/edition_review.py, `digest edition`): pins, exclusions, the
editor's note, subject and preheader reach every wave and segment through the real planner and
real renders; approval gates the beat; bad input names its field and changes nothing."""

from __future__ import annotations

import html as html_lib
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import create_engine, inspect, select
from typer.testing import CliRunner

from digest import edition_review, migrations
from digest.cli import app as cli
from digest.db import reset_caches, session_scope
from digest.edition_review import EditionError
from digest.planning import plan_digest
from digest.rendering import note_paragraphs
from digest.settings import get_settings
from digest.weekly import fire_waves
from schema.models import Digest, DigestItem, DigestSegment, EditionReview
from schema.statuses import DigestKind
from tests.support.recipients import MONDAY, add_subscribers, publish
from tests.support.services import read_outbox

EDITION = "2026-11-23T09:00:00"  # Monday 09:00 local: Tokyo 00:00, Berlin 08:00, UTC 09:00 UTC
SUNDAY = MONDAY - timedelta(hours=12)  # when the operator reviews
WEEK = [
    ("quillmate-vs-parsewell", "Writing"),  # ranked 1st (panel 4–0)
    ("palettebird-vs-vectorine", "Design"),  # 2nd (3–1)
    ("latticeflow-vs-cobaltcode", "Developer Tools"),  # 3rd (2–2)
]
TITLES = {
    "quillmate-vs-parsewell": "Quillmate vs Parsewell",
    "palettebird-vs-vectorine": "Palettebird vs Vectorine",
    "latticeflow-vs-cobaltcode": "Latticeflow vs Cobaltcode",
}
TOKYO_SLOT = datetime.fromisoformat("2026-11-23T00:00:30+00:00")
LATER_SLOTS = datetime.fromisoformat("2026-11-23T09:00:30+00:00")  # Berlin and UTC


@pytest.fixture
def week(pg: str) -> None:
    """Three comparisons; readers in three timezones, some choosing categories (segments)."""
    with session_scope() as session:
        publish(session, WEEK, at=SUNDAY)
        add_subscribers(session, 2, prefix="tokyo", timezone="Asia/Tokyo")
        add_subscribers(
            session,
            1,
            prefix="tokyodesign",
            timezone="Asia/Tokyo",
            categories=["Design", "Developer Tools"],
        )
        add_subscribers(session, 2, prefix="berlin", timezone="Europe/Berlin")
        add_subscribers(
            session, 1, prefix="berlindesign", timezone="Europe/Berlin", categories=["Design"]
        )
        add_subscribers(session, 2, prefix="utc", categories=["Writing", "Developer Tools"])


@pytest.fixture
def approval_required(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DIGEST_WEEKLY_APPROVAL", "required")
    reset_caches()
    yield
    reset_caches()


def act(fn: object, *args: object, now: datetime = SUNDAY, **kwargs: object) -> object:
    with session_scope() as session:
        return fn(session, EDITION, *args, actor="test", now=now, **kwargs)  # type: ignore[operator]


def tick(now: datetime) -> list[int]:
    with session_scope() as session:
        return [report.digest_id for report in fire_waves(session, now)]


def edition_digests() -> list[int]:
    with session_scope() as session:
        return list(
            session.scalars(select(Digest.id).where(Digest.edition == EDITION).order_by(Digest.id))
        )


def items_of(digest_id: int) -> list[str]:
    with session_scope() as session:
        return [
            row.comparison.slug
            for row in session.scalars(
                select(DigestItem)
                .where(DigestItem.digest_id == digest_id)
                .order_by(DigestItem.rank)
            )
        ]


def segments_of(digest_ids: list[int]) -> list[DigestSegment]:
    with session_scope() as session:
        rows = session.scalars(
            select(DigestSegment).where(DigestSegment.digest_id.in_(digest_ids))
        ).all()
        session.expunge_all()
        return list(rows)


def shown(segment: DigestSegment) -> list[str]:
    """The comparisons a segment's text shows, in order."""
    found = [(segment.text.find(title), slug) for slug, title in TITLES.items()]
    return [slug for position, slug in sorted(found) if position >= 0]


def fire_edition() -> list[int]:
    """Tokyo leads the edition; Berlin and UTC follow with the leader's items."""
    assert len(tick(TOKYO_SLOT)) == 1
    assert len(tick(LATER_SLOTS)) == 2
    return edition_digests()


# --- the domain -------------------------------------------------------------------------------


def test_next_edition_is_the_next_slot_before_the_beat_fires(week: None) -> None:
    with session_scope() as session:
        slot = edition_review.next_edition(session, SUNDAY)
    assert slot.edition == EDITION
    assert slot.first_slot == datetime.fromisoformat("2026-11-23T00:00:00+00:00")  # Tokyo
    assert slot.last_slot == datetime.fromisoformat("2026-11-23T09:00:00+00:00")  # UTC
    assert not slot.due(SUNDAY)


def test_preview_shows_the_ranking_with_the_formulas_terms(week: None) -> None:
    with session_scope() as session:
        preview = edition_review.preview_ranking(session, EDITION, SUNDAY)
    assert [i.slug for i in preview.items] == [slug for slug, _ in WEEK]
    top = preview.items[0]
    assert top.explanation.startswith("Quillmate: panel 4–0 ship")
    weights = get_settings()
    best = top.tools[0]
    assert best.name == "Quillmate" and best.panel > 0
    assert best.score == pytest.approx(
        weights.rank_panel_weight * best.panel
        + weights.rank_community_weight * best.community
        + weights.rank_score_weight * best.reviews
    )
    assert top.score == pytest.approx(
        best.score + weights.rank_runner_up_weight * top.tools[1].score
    )
    assert preview.weights.panel == weights.rank_panel_weight


def test_pin_and_exclude_reorder_the_preview_and_restore_undoes_them(week: None) -> None:
    act(edition_review.pin, "latticeflow-vs-cobaltcode")
    act(edition_review.exclude, "quillmate-vs-parsewell")
    with session_scope() as session:
        preview = edition_review.preview_ranking(session, EDITION, SUNDAY)
    assert [i.slug for i in preview.items] == [
        "latticeflow-vs-cobaltcode",
        "palettebird-vs-vectorine",
    ]
    assert [e.slug for e in preview.excluded] == ["quillmate-vs-parsewell"]
    act(edition_review.restore, "quillmate-vs-parsewell")
    change = act(edition_review.restore, "latticeflow-vs-cobaltcode")
    assert change.after == {"pinned": [], "excluded": []}  # type: ignore[attr-defined]
    with session_scope() as session:
        preview = edition_review.preview_ranking(session, EDITION, SUNDAY)
    assert [i.slug for i in preview.items] == [slug for slug, _ in WEEK]


def test_each_change_returns_who_changed_what(week: None) -> None:
    change = act(edition_review.pin, "palettebird-vs-vectorine")
    assert (change.edition, change.actor, change.action, change.target) == (  # type: ignore[attr-defined]
        EDITION,
        "test",
        "pin",
        "palettebird-vs-vectorine",
    )
    assert change.changed  # type: ignore[attr-defined]
    again = act(edition_review.pin, "palettebird-vs-vectorine")
    assert not again.changed  # type: ignore[attr-defined]


# --- planning: every wave and segment -----------------------------------------------------------


def test_excluded_comparison_is_in_no_email_and_pinned_one_leads_every_segment(
    week: None,
) -> None:
    act(edition_review.exclude, "quillmate-vs-parsewell")
    act(edition_review.pin, "latticeflow-vs-cobaltcode")
    digests = fire_edition()
    assert len(digests) == 3
    for digest_id in digests:
        assert items_of(digest_id) == ["latticeflow-vs-cobaltcode", "palettebird-vs-vectorine"]
    segments = segments_of(digests)
    assert segments
    for segment in segments:
        assert "Quillmate" not in segment.html and "Quillmate" not in segment.text
        order = shown(segment)
        if "latticeflow-vs-cobaltcode" in order:
            assert order[0] == "latticeflow-vs-cobaltcode", segment.segment_key
    # segment filtering is kept: the Design-only reader's segment does not get the pinned one
    keys = {s.segment_key: shown(s) for s in segments}
    assert keys["categories:design"] == ["palettebird-vs-vectorine"]


def test_note_subject_and_preheader_reach_every_wave_and_segment(week: None) -> None:
    act(edition_review.set_note, "First paragraph.\n\nSecond paragraph, on\ntwo lines.")
    act(edition_review.set_subject, "Our pick of the week")
    act(edition_review.set_preheader, "Three tools, one verdict each")
    digests = fire_edition()
    segments = segments_of(digests)
    assert len({s.segment_key for s in segments}) >= 3
    for segment in segments:
        assert segment.subject == "Our pick of the week"
        assert '<p style="margin:0 0 8px;">First paragraph.</p>' in segment.html
        assert "Second paragraph, on two lines.</p>" in segment.html
        assert "Three tools, one verdict each" in segment.html
        assert "First paragraph.\n\nSecond paragraph, on two lines." in segment.text
        assert segment.text.index("Second paragraph") < segment.text.index("Here are this week")
    with session_scope() as session:
        preheaders = {d.preheader for d in session.scalars(select(Digest))}
    assert preheaders == {"Three tools, one verdict each"}


def test_a_later_wave_follows_the_first_waves_frozen_review_not_later_edits(week: None) -> None:
    act(edition_review.exclude, "quillmate-vs-parsewell")
    assert len(tick(TOKYO_SLOT)) == 1
    with pytest.raises(EditionError) as refused:
        act(edition_review.restore, "quillmate-vs-parsewell")
    assert refused.value.field == "edition"
    tick(LATER_SLOTS)
    for digest_id in edition_digests():
        assert "quillmate-vs-parsewell" not in items_of(digest_id)


def test_markup_in_the_note_shows_as_text_in_paragraphs(week: None) -> None:
    attack = '<script>alert(1)</script>\n\n<a href="https://evil.example">click</a> & more'
    act(edition_review.set_note, attack)
    digests = fire_edition()
    for segment in segments_of(digests):
        assert "<script>alert" not in segment.html
        assert 'href="https://evil.example"' not in segment.html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in segment.html
        body = segment.html[segment.html.index("&lt;script&gt;") - 200 :]
        paragraphs = re.findall(r"<p style=\"margin:0 0 8px;\">(.*?)</p>", body)
        assert [html_lib.unescape(p) for p in paragraphs[:2]] == attack.split("\n\n")


def test_the_longest_note_keeps_every_segment_within_the_byte_budget(week: None) -> None:
    note = "\n\n".join(["A paragraph of the editor's note, " * 9] * 7)[: edition_review.NOTE_MAX]
    act(edition_review.set_note, note)
    digests = fire_edition()
    budget = get_settings().email_max_bytes
    for segment in segments_of(digests):
        assert "A paragraph of the editor" in segment.html
        assert len(segment.html.encode()) <= budget


@given(st.text(alphabet=st.sampled_from("ab <>&\n\r\t"), max_size=80))
def test_note_paragraphs_are_one_line_each_and_keep_every_word(note: str) -> None:
    paragraphs = note_paragraphs(note)
    assert all("\n" not in p and "\r" not in p and p == p.strip() and p for p in paragraphs)
    assert " ".join(paragraphs).split() == note.split()


def test_a_test_copy_is_the_edition_as_it_will_go(week: None) -> None:
    act(edition_review.exclude, "quillmate-vs-parsewell")
    act(edition_review.pin, "latticeflow-vs-cobaltcode")
    act(edition_review.set_note, "Hello <b>editors</b>")
    act(edition_review.set_subject, "Reviewed subject")
    copy = act(edition_review.request_test_copy, "operator@example.com")
    with session_scope() as session:
        digest = session.get(Digest, copy.digest_id)  # type: ignore[attr-defined]
        assert digest is not None and digest.kind == DigestKind.TEST
        report = plan_digest(session, digest, now=SUNDAY)
    assert report.recipients == 1
    assert items_of(report.digest_id) == ["latticeflow-vs-cobaltcode", "palettebird-vs-vectorine"]
    [segment] = segments_of([report.digest_id])
    assert segment.subject == "[Test] Reviewed subject"
    assert "Hello &lt;b&gt;editors&lt;/b&gt;" in segment.html
    assert shown(segment) == ["latticeflow-vs-cobaltcode", "palettebird-vs-vectorine"]
    assert edition_digests() == []  # the edition itself has not fired


# --- approval ----------------------------------------------------------------------------------


def state(now: datetime) -> str:
    with session_scope() as session:
        return edition_review.review_state(session, EDITION, now).state


def test_with_approval_required_and_none_given_a_due_slot_sends_nothing(
    week: None, approval_required: None
) -> None:
    assert tick(TOKYO_SLOT) == [] and tick(LATER_SLOTS) == []
    assert edition_digests() == []
    assert state(LATER_SLOTS) == "waiting for approval"


def test_approving_within_the_grace_period_lets_the_next_tick_fire(
    week: None, approval_required: None
) -> None:
    assert tick(TOKYO_SLOT) == []
    act(edition_review.approve, now=TOKYO_SLOT + timedelta(hours=1))
    assert state(TOKYO_SLOT + timedelta(hours=1)) == "approved"
    assert len(tick(TOKYO_SLOT + timedelta(hours=1, minutes=1))) == 1
    assert len(tick(LATER_SLOTS)) == 2
    assert state(LATER_SLOTS) == "fired"


def test_approving_after_the_grace_period_fires_nothing(
    week: None, approval_required: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_WEEKLY_GRACE_HOURS", "6")
    reset_caches()
    late = datetime.fromisoformat("2026-11-23T16:00:00+00:00")  # every slot is over 6 h old
    assert tick(late) == []
    assert state(late) == "missed"
    act(edition_review.approve, now=late)
    assert tick(late + timedelta(minutes=1)) == []
    assert edition_digests() == []


def test_a_change_after_approval_withdraws_it(week: None, approval_required: None) -> None:
    act(edition_review.approve)
    change = act(edition_review.set_subject, "Changed after approval")
    assert change.approval_withdrawn  # type: ignore[attr-defined]
    assert tick(TOKYO_SLOT) == []
    assert state(TOKYO_SLOT) == "waiting for approval"


# --- bad input ---------------------------------------------------------------------------------


def review_row() -> tuple[object, ...] | None:
    with session_scope() as session:
        row = session.get(EditionReview, EDITION)
        if row is None:
            return None
        return (row.pinned, row.excluded, row.note, row.subject, row.preheader, row.approved_at)


@pytest.mark.parametrize(
    ("fn", "args", "field"),
    [
        (edition_review.pin, ("no-such-comparison",), "slug"),
        (edition_review.exclude, ("",), "slug"),
        (edition_review.restore, ("palettebird-vs-vectorine",), "slug"),  # neither pinned nor out
        (edition_review.set_subject, ("A" * 200 + "\r\nBcc: victim@example.com",), "subject"),
        (edition_review.set_subject, ("x" * 121,), "subject"),
        (edition_review.set_preheader, ("one\nline",), "preheader"),
        (edition_review.set_note, ("x" * (edition_review.NOTE_MAX + 1),), "note"),
        (edition_review.set_note, ("bell \x07",), "note"),
    ],
)
def test_bad_input_names_the_field_and_changes_nothing(
    week: None, fn: object, args: tuple[str, ...], field: str
) -> None:
    act(edition_review.set_subject, "Kept")
    before = review_row()
    with pytest.raises(EditionError) as refused:
        act(fn, *args)
    assert refused.value.field == field
    assert review_row() == before


def test_an_edition_that_is_not_a_local_time_is_refused(week: None) -> None:
    with session_scope() as session, pytest.raises(EditionError) as refused:
        edition_review.pin(session, "monday", "quillmate-vs-parsewell", actor="test")
    assert refused.value.field == "edition"


# --- the CLI -----------------------------------------------------------------------------------


def run(*args: str, stdin: str | None = None) -> object:
    return CliRunner().invoke(cli, ["edition", *args, "--edition", EDITION], input=stdin)


def output(result: object) -> str:
    return result.output  # type: ignore[attr-defined]


def test_cli_verbs_change_the_edition_as_the_domain_does(week: None) -> None:
    for verb in (
        ("pin", "latticeflow-vs-cobaltcode"),
        ("exclude", "quillmate-vs-parsewell"),
        ("subject", "From the CLI"),
        ("preheader", "A one-line preheader"),
        ("approve",),
    ):
        result = run(*verb)
        assert result.exit_code == 0, output(result)  # type: ignore[attr-defined]
    result = run("note", "--file", "-", stdin="From stdin.\n\nSecond.\n")
    assert result.exit_code == 0, output(result)  # type: ignore[attr-defined]
    shown_json = run("show", "--json")
    assert shown_json.exit_code == 0, (output(shown_json), shown_json.exception)  # type: ignore[attr-defined]
    data = json.loads(output(shown_json))
    assert [i["slug"] for i in data["ranking"]["items"]] == [
        "latticeflow-vs-cobaltcode",
        "palettebird-vs-vectorine",
    ]
    review = data["review"]
    assert review["excluded"] == ["quillmate-vs-parsewell"]
    assert review["note"] == "From stdin.\n\nSecond."
    assert (review["subject"], review["approved_by"]) == ("From the CLI", None)  # note withdrew it
    assert run("approve").exit_code == 0  # type: ignore[attr-defined]
    with session_scope() as session:
        assert session.get(EditionReview, EDITION).approved_by == "cli"  # type: ignore[union-attr]


def test_cli_changes_are_written_to_the_audit_log(week: None) -> None:
    from digest import audit

    assert run("pin", "latticeflow-vs-cobaltcode").exit_code == 0  # type: ignore[attr-defined]
    assert run("pin", "latticeflow-vs-cobaltcode").exit_code == 0  # type: ignore[attr-defined]
    with session_scope() as session:
        entries = audit.recent(session).entries
    assert [(e.actor, e.action, e.target) for e in entries] == [
        ("cli", "edition.pin", f"{EDITION} latticeflow-vs-cobaltcode")
    ]  # the second pin changed nothing, so it is not logged


def test_cli_show_prints_the_ranking_and_its_terms(week: None) -> None:
    result = run("show")
    assert result.exit_code == 0, output(result)  # type: ignore[attr-defined]
    text = output(result)
    assert EDITION in text and "open" in text
    assert text.index("Quillmate") < text.index("Palettebird") < text.index("Latticeflow")
    assert "runner_up_weight" in text and "weights: panel" in text


def test_cli_bad_input_exits_2_naming_the_field_and_changes_nothing(week: None) -> None:
    result = run("pin", "no-such-comparison")
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert "slug:" in output(result)
    result = run("subject", "Hi\r\nBcc: victim@example.com")
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert "subject:" in output(result)
    assert review_row() is None


def test_cli_test_copy_sends_the_reviewed_edition_to_one_address(
    week: None, redis_url: str, eager_tasks: None, outbox: Path
) -> None:
    run("exclude", "quillmate-vs-parsewell")
    run("subject", "Reviewed for you")
    run("note", "A word from the editors.")
    result = run("test-copy", "--to", "operator@example.com")
    assert result.exit_code == 0, output(result)  # type: ignore[attr-defined]
    [message] = read_outbox(outbox)
    assert message["To"].endswith("operator@example.com")
    assert message["Subject"] == "[Test] Reviewed for you"
    body = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "A word from the editors." in body and "Quillmate" not in body
    assert edition_digests() == []


# --- the migration -----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "pg"])
def test_migration_0008_adds_and_drops_edition_reviews(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(backend)
    migrations.downgrade(url, "0007_digest_edition")
    engine = create_engine(url)
    assert "edition_reviews" not in inspect(engine).get_table_names()
    engine.dispose()
    migrations.upgrade(url, "head")
    engine = create_engine(url)
    assert "edition_reviews" in inspect(engine).get_table_names()
    engine.dispose()


# --- the emails before they go ------------------------------------------------------------------


def test_email_previews_are_the_segments_planning_will_render(week: None) -> None:
    from digest.edition_emails import preview_emails

    act(edition_review.exclude, "quillmate-vs-parsewell")
    act(edition_review.set_note, "Read <this> first.")
    with session_scope() as session:
        previews = preview_emails(session, EDITION, SUNDAY)
    assert previews[0].key == "all"
    by_key = {p.key: p for p in previews}
    for preview in previews:
        assert "Quillmate" not in preview.html
        assert "Read &lt;this&gt; first." in preview.html
        assert 0 < preview.size <= preview.budget
    digests = fire_edition()
    planned = {s.segment_key: shown(s) for s in segments_of(digests)}
    assert set(planned) <= set(by_key)
    for key, order in planned.items():
        assert order == shown(by_key[key]), key  # type: ignore[arg-type]
    assert by_key["categories:design"].subscribers == 1


def test_cli_emails_writes_each_segment_and_its_size(week: None, tmp_path: Path) -> None:
    result = run("emails", "--out", str(tmp_path))
    assert result.exit_code == 0, output(result)  # type: ignore[attr-defined]
    budget = f"budget: {get_settings().email_max_bytes:,} bytes"
    assert budget in output(result)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert "segment-1.html" in files and "segment-1.txt" in files
