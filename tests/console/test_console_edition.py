"""The week's edition in the console (`/console/editions/next`) and the ad hoc digest form: each
action goes through digest/edition_review.py and the audit log; refused input is answered 422
beside its field and changes nothing; markup in the note stays text; the email preview is
sandboxed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from digest import audit, edition_review
from digest.db import reset_caches, session_scope
from schema.models import Digest, EditionReview, utcnow
from schema.statuses import DigestKind
from tests.support.console_fixtures import OPERATOR, csrf_in
from tests.support.recipients import add_subscribers, publish
from tests.support.services import read_outbox

PAGE = "/console/editions/next"
WEEK = [
    ("quillmate-vs-parsewell", "Writing"),  # ranked 1st
    ("palettebird-vs-vectorine", "Design"),  # 2nd
    ("latticeflow-vs-cobaltcode", "Developer Tools"),  # 3rd
]


@pytest.fixture
def week(pg: str) -> None:
    """Three comparisons published in the last hours; readers, some choosing categories."""
    with session_scope() as session:
        publish(session, WEEK, at=utcnow())
        add_subscribers(session, 2, prefix="all")
        add_subscribers(session, 1, prefix="design", categories=["Design"])


@pytest.fixture
def approval_required(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DIGEST_WEEKLY_APPROVAL", "required")
    reset_caches()
    yield
    reset_caches()


def edition_of(client: TestClient) -> tuple[str, str]:
    """The page's edition and CSRF token, as a browser's form would carry them."""
    html = client.get(PAGE).text
    found = re.search(r'name="edition" value="([^"]+)"', html)
    assert found, "no edition field on the page"
    return found.group(1), csrf_in(html)


def act(client: TestClient, action: str, **fields: str):  # type: ignore[no-untyped-def]
    edition, token = edition_of(client)
    return client.post(
        f"{PAGE}/{action}",
        data={"csrf_token": token, "edition": edition, **fields},
        follow_redirects=False,
    )


def ranking(client: TestClient) -> list[str]:
    html = client.get(PAGE).text
    return re.findall(r'<li class="card" id="item-([a-z-]+)"', html)


def audit_actions() -> list[tuple[str, str, str | None]]:
    with session_scope() as session:
        return [
            (e.actor, e.action, e.target)
            for e in audit.recent(session).entries
            if e.action != "console.sign-in"
        ]


def review() -> EditionReview | None:
    with session_scope() as session:
        row = session.scalar(select(EditionReview))
        if row is not None:
            session.expunge(row)
        return row


def test_the_page_shows_the_ranking_its_explanations_and_the_formulas_terms(
    signed_in: TestClient, week: None
) -> None:
    answer = signed_in.get(PAGE)
    assert answer.status_code == 200
    assert ranking(signed_in) == [slug for slug, _ in WEEK]
    with session_scope() as session:
        slot = edition_review.next_edition(session, utcnow())
        preview = edition_review.preview_ranking(session, slot.edition, utcnow())
    for item in preview.items:
        assert item.explanation.replace("'", "&#39;") in answer.text
        for tool in item.tools:
            assert f"{tool.panel:.3f}" in answer.text and f"{tool.score:.3f}" in answer.text
    assert "comparison = max(a, b)" in answer.text
    assert 'id="edition-state">open<' in answer.text
    assert "frame-src 'self'" in answer.headers["content-security-policy"]


def test_exclude_pin_and_restore_reorder_the_edition_and_are_audited(
    signed_in: TestClient, week: None
) -> None:
    assert act(signed_in, "exclude", slug="quillmate-vs-parsewell").status_code == 303
    assert act(signed_in, "pin", slug="latticeflow-vs-cobaltcode").status_code == 303
    assert ranking(signed_in) == ["latticeflow-vs-cobaltcode", "palettebird-vs-vectorine"]
    assert 'id="excluded-quillmate-vs-parsewell"' in signed_in.get(PAGE).text
    assert act(signed_in, "restore", slug="quillmate-vs-parsewell").status_code == 303
    assert ranking(signed_in)[0] == "latticeflow-vs-cobaltcode"
    assert len(ranking(signed_in)) == 3
    actions = [(actor, action) for actor, action, _ in audit_actions()]
    assert sorted(actions) == sorted(
        [(OPERATOR, "edition.exclude"), (OPERATOR, "edition.pin"), (OPERATOR, "edition.restore")]
    )


def test_markup_in_the_note_is_shown_as_text_in_paragraphs(
    signed_in: TestClient, week: None
) -> None:
    note = "<script>alert(1)</script> first\n\n<img src=x onerror=alert(2)> second"
    assert act(signed_in, "note", value=note).status_code == 303
    html = signed_in.get(PAGE).text
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "<p>&lt;script&gt;alert(1)&lt;/script&gt; first</p>" in html
    assert "<p>&lt;img src=x onerror=alert(2)&gt; second</p>" in html
    assert review().note == note  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("action", "value", "field"),
    [
        ("subject", "Fine\r\nBcc: victim@example.com", "subject"),
        ("preheader", "x" * 151, "preheader"),
        ("note", "x" * 2001, "note"),
        ("pin", "no-such-comparison", "slug"),
    ],
)
def test_refused_input_is_422_beside_its_field_and_changes_nothing(
    signed_in: TestClient, week: None, action: str, value: str, field: str
) -> None:
    key = "slug" if action == "pin" else "value"
    answer = act(signed_in, action, **{key: value})
    assert answer.status_code == 422
    assert f'id="err-{field}" role="alert"' in answer.text
    assert review() is None
    assert audit_actions() == []


def test_a_post_with_a_forged_csrf_token_changes_no_edition(
    signed_in: TestClient, week: None
) -> None:
    edition, _ = edition_of(signed_in)
    answer = signed_in.post(
        f"{PAGE}/exclude",
        data={"csrf_token": "forged", "edition": edition, "slug": "quillmate-vs-parsewell"},
    )
    assert answer.status_code == 403
    assert review() is None and audit_actions() == []


def test_the_email_preview_is_sandboxed_without_scripts_and_framable_only_by_us(
    signed_in: TestClient, week: None
) -> None:
    act(signed_in, "note", value="<script>alert(1)</script>")
    page = signed_in.get(PAGE).text
    assert 'src="/console/editions/next/emails?segment=all"' in page and " sandbox>" in page
    answer = signed_in.get(f"{PAGE}/emails?segment=all")
    assert answer.status_code == 200
    csp = answer.headers["content-security-policy"]
    assert csp.startswith("sandbox;") and "frame-ancestors 'self'" in csp
    assert "script-src" not in csp and "default-src 'none'" in csp
    assert answer.headers["x-frame-options"] == "SAMEORIGIN"
    assert "<script" not in answer.text.lower()
    assert "Latticeflow vs Cobaltcode" in answer.text
    assert "Hi Reader," in answer.text and not re.search(r"-[nup]-[0-9a-f]{12}-", answer.text)
    assert signed_in.get(f"{PAGE}/emails?segment=no-such").status_code == 404


def test_the_preview_toggles_between_375_and_640_pixels_without_script(
    signed_in: TestClient, week: None
) -> None:
    assert 'class="preview w640"' in signed_in.get(PAGE).text
    narrow = signed_in.get(f"{PAGE}?width=375").text
    assert 'class="preview w375"' in narrow
    assert 'class="preview w640"' in signed_in.get(f"{PAGE}?width=9999").text
    odd = signed_in.get(f"{PAGE}?width=wide&copy=%00&segment=%3Cb%3E&notice=%3Cscript%3E")
    assert odd.status_code == 200 and "<b>" not in odd.text and "<script>" not in odd.text
    assert re.search(r"[\d,]+ / [\d,]+ bytes", narrow)


def test_a_test_copy_goes_to_the_signed_in_operator_and_is_audited(
    signed_in: TestClient, week: None, outbox: Path
) -> None:
    act(signed_in, "exclude", slug="quillmate-vs-parsewell")
    answer = act(signed_in, "test-copy")
    assert answer.status_code == 303
    copy_id = int(re.search(r"copy=(\d+)", answer.headers["location"]).group(1))  # type: ignore[union-attr]
    with session_scope() as session:
        digest = session.get(Digest, copy_id)
        assert digest is not None and digest.kind == DigestKind.TEST
    [message] = read_outbox(outbox)
    assert message["To"] == OPERATOR
    assert "Quillmate" not in message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert ("edition.test_copy") in [a for _, a, _ in audit_actions()]


def test_approve_is_shown_and_audited(signed_in: TestClient, week: None) -> None:
    assert act(signed_in, "approve").status_code == 303
    assert 'id="edition-state">approved<' in signed_in.get(PAGE).text
    assert (OPERATOR, "edition.approve") in [(a, b) for a, b, _ in audit_actions()]


def test_with_approval_required_the_page_says_waiting_for_approval(
    signed_in: TestClient, week: None, approval_required: None
) -> None:
    assert 'id="edition-state">waiting for approval<' in signed_in.get(PAGE).text
    act(signed_in, "approve")
    act(signed_in, "subject", value="Changed after approval")
    page = signed_in.get(PAGE).text
    assert 'id="edition-state">waiting for approval<' in page


# --- the ad hoc digest form ---------------------------------------------------------------------


def adhoc(client: TestClient, **fields: object):  # type: ignore[no-untyped-def]
    token = csrf_in(client.get("/console/digests/new").text)
    return client.post(
        "/console/digests/new", data={"csrf_token": token, **fields}, follow_redirects=False
    )


def test_the_adhoc_form_requests_a_digest_and_leads_to_its_page(
    signed_in: TestClient, week: None, outbox: Path
) -> None:
    since = (utcnow() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    answer = adhoc(signed_in, since=since, category=["Design"], subject="Special issue")
    assert answer.status_code == 303
    digest_id = int(answer.headers["location"].rsplit("/", 1)[1])
    with session_scope() as session:
        digest = session.get(Digest, digest_id)
        assert digest is not None and digest.kind == DigestKind.ADHOC
        assert digest.options["segments"] == ["Design"]
    assert signed_in.get(answer.headers["location"]).status_code == 200
    assert {m["Subject"] for m in read_outbox(outbox)} == {"Special issue"}
    assert (OPERATOR, "digest.requested", f"digest {digest_id}") in audit_actions()


def test_an_adhoc_dry_run_sends_nothing(signed_in: TestClient, week: None, outbox: Path) -> None:
    assert adhoc(signed_in, dry_run="true").status_code == 303
    assert read_outbox(outbox) == []


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-01-02T00:00", "until": "2026-01-01T00:00"}, "since"),
        ({"category": ["<b>NoSuch</b>"]}, "segment"),
        ({"subject": "x" * 301}, "subject"),
        ({"to": "not an address"}, "to"),
    ],
)
def test_adhoc_refused_input_is_422_beside_its_field_and_creates_nothing(
    signed_in: TestClient, week: None, fields: dict[str, object], field: str
) -> None:
    answer = adhoc(signed_in, **fields)
    assert answer.status_code == 422, answer.text
    assert f'id="err-{field}" role="alert"' in answer.text
    assert "<b>NoSuch</b>" not in answer.text
    with session_scope() as session:
        assert session.scalars(select(Digest)).all() == []
    assert audit_actions() == []


def test_an_adhoc_subject_with_a_line_break_injects_no_header(
    signed_in: TestClient, week: None, outbox: Path
) -> None:
    assert adhoc(signed_in, subject="Hi\r\nBcc: victim@example.com").status_code == 303
    messages = read_outbox(outbox)
    assert messages and all(m["Bcc"] is None for m in messages)
    assert {m["Subject"] for m in messages} == {"Hi Bcc: victim@example.com"}
