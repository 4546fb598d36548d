"""Every digest email fits its byte budget, with its footer, however busy the week.

Gmail clips an HTML part past ~102 KB and hides what comes last: the unsubscribe link and postal
address. `DIGEST_EMAIL_MAX_BYTES` (90,000) holds for the compiled HTML with the longest
per-recipient values filled in; the lowest-ranked comparisons go to a compact list, then to a
"more on the web" link (digest/email_budget.py).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from bench.email_size import long_text, maximal_comparison
from digest.db import reset_caches, session_scope
from digest.email_backends import fill_tokens
from digest.email_budget import longest_values
from digest.planning import plan_digest, request_digest
from digest.rendering import Entry, render_alert, render_weekly
from digest.substitution import Placeholders
from schema.models import DigestSegment
from tests.support.factories import comparison, published, store, tool
from tests.support.html import Page
from tests.support.recipients import MONDAY, add_subscribers

NOW = MONDAY + timedelta(hours=9)
CATEGORIES = ("Writing", "Design", "Developer Tools")
BUDGET = 90_000


def maximal_event(index: int) -> dict:
    """A comparison with every shown field longer than the templates show, as an event."""

    def maximal_tool(seed: int, name: str) -> dict:
        return tool(
            (name + " " + long_text(150, seed))[:190],
            tagline=long_text(400, seed + 1),
            pricing=long_text(400, seed + 2),
            entry_price=long_text(45, seed + 3)[:50],
            best_for=long_text(400, seed + 4),
            community=(123_456, 65_432),
            category=CATEGORIES[index % 3],
            reviews=[{"persona": "Skeptic", "score": 3, "verdict": "skip",
                      "text": long_text(600, seed)}],
        )  # fmt: skip

    data = comparison(
        f"maximal-{index:03d}",
        a=maximal_tool(index * 10, "Alpha"),
        b=maximal_tool(index * 10 + 5, "Beta"),
        published_at=NOW - timedelta(hours=index + 1),
        url="https://shiporskip.example/compare/" + "x" * 900,
    )
    data["title"] = long_text(280, index)[:290]
    return published(data)


@pytest.fixture
def busy_week(pg: str) -> None:
    """50 maximal comparisons in three categories; readers of each category and of all."""
    with session_scope() as session:
        store(session, *(maximal_event(i) for i in range(50)))
        for n, category in enumerate(CATEGORIES):
            add_subscribers(session, 2, prefix=f"cat{n}-", categories=[category])
        add_subscribers(session, 2, prefix="all-")


def planned_segments() -> list[DigestSegment]:
    with session_scope() as session:
        digest = request_digest(session, now=NOW)
        plan_digest(session, digest, now=NOW)
    with session_scope() as session:
        rows = session.scalars(select(DigestSegment).order_by(DigestSegment.id)).all()
        session.expunge_all()
        return list(rows)


def as_received(segment: DigestSegment) -> tuple[str, str, dict[str, str]]:
    keys = Placeholders.from_nonce(segment.placeholder_nonce)
    values = longest_values(keys)
    return fill_tokens(segment.html, values), fill_tokens(segment.text, values), values


def test_fifty_maximal_comparisons_fit_the_budget_in_every_segment(busy_week: None) -> None:
    segments = planned_segments()
    assert len(segments) == 4  # three categories and everything
    for segment in segments:
        html, _text, _values = as_received(segment)
        assert len(html.encode()) <= BUDGET, segment.segment_key


def test_every_segment_keeps_its_footer_unsubscribe_and_preferences_links(
    busy_week: None,
) -> None:
    for segment in planned_segments():
        html, text, values = as_received(segment)
        keys = Placeholders.from_nonce(segment.placeholder_nonce)
        unsubscribe, preferences = values[keys.unsubscribe_url], values[keys.preferences_url]
        hrefs = Page(html).hrefs()
        assert unsubscribe in hrefs and preferences in hrefs
        assert "1 Example Street" in Page(html).text  # the postal address
        assert unsubscribe in text and preferences in text and "1 Example Street" in text


def test_a_busy_week_shows_the_top_in_full_then_a_compact_list_then_the_web(
    busy_week: None,
) -> None:
    [*_, everything] = planned_segments()  # the "all" segment has all 50
    html, text, _values = as_received(everything)
    page = Page(html)
    assert "#1 · " in page.text and "More this week" in page.text
    assert "more comparisons on the web" in page.text
    assert "MORE THIS WEEK" in text and "more comparisons on the web:" in text


def test_text_part_follows_the_html_selection(busy_week: None) -> None:
    [*_, everything] = planned_segments()
    html, text, _values = as_received(everything)
    full_in_html = Page(html).text.count("Read the full comparison")
    assert text.count("Read the full comparison:") == full_in_html


def test_a_week_that_fits_is_shown_whole_and_compiled_once(pg: str) -> None:
    with session_scope() as session:
        store(session, *(published(comparison(f"small-{i}")) for i in range(3)))
    from digest.rendering import mjml_render_count

    with session_scope() as session:
        from schema.models import Comparison

        items = session.scalars(select(Comparison)).all()
        before = mjml_render_count()
        email = render_weekly([Entry(n, c, "why") for n, c in enumerate(items, start=1)])
    assert mjml_render_count() - before == 1
    assert email.shown is not None and (email.shown.full, email.shown.linked) == (3, 0)
    assert "More this week" not in email.html


def test_smaller_budget_setting_is_honoured(pg: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_EMAIL_MAX_BYTES", "30000")
    reset_caches()
    entries = [Entry(n, maximal_comparison(n), long_text(320, n)) for n in range(1, 11)]
    email = render_weekly(entries, archive_url="https://p.example/archive/e")
    assert email.placeholders is not None and email.shown is not None
    html = fill_tokens(email.html, longest_values(email.placeholders))
    assert len(html.encode()) <= 30_000
    assert (
        email.shown.full < 10 and email.shown.full + email.shown.compact + email.shown.linked == 10
    )
    assert "https://p.example/archive/e" in Page(html).hrefs()


def test_a_single_maximal_alert_fits(pg: str) -> None:
    email = render_alert(maximal_comparison(1), long_text(320, 1))
    assert email.placeholders is not None
    html = fill_tokens(email.html, longest_values(email.placeholders))
    assert len(html.encode()) <= BUDGET


def test_every_digest_email_starts_with_a_view_in_browser_link(pg: str) -> None:
    email = render_weekly(
        [Entry(1, maximal_comparison(1), "why")], archive_url="https://p.example/archive/e1"
    )
    page = Page(email.html)
    assert page.hrefs()[0] == "https://p.example/archive/e1"
    assert "View this email in your browser" in page.text
    assert "View this email in your browser: https://p.example/archive/e1" in email.text
