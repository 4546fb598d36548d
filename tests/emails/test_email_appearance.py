"""The weekly email in Chromium: light and dark colour schemes, 375 and 640 px, axe-core.

Clients that honour `prefers-color-scheme` get the dark palette; the text everywhere keeps a
WCAG contrast of at least 4.5:1 in both schemes, and axe-core finds no serious or critical
violation. The four screenshots are kept in `test-artifacts/` for a person to look at.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser

from bench.email_size import long_text, maximal_comparison
from digest.email_backends import fill_tokens
from digest.rendering import Entry, RenderedEmail, render_weekly
from tests.support.accessibility import blocking_violations, low_contrast_text
from tests.support.factories import comparison, published, store, tool
from tests.support.paths import ARTIFACTS

pytestmark = pytest.mark.browser

SCHEMES = ("light", "dark")
WIDTHS = (375, 640)


def filled(email: RenderedEmail) -> str:
    assert email.placeholders is not None
    values = email.placeholders.values(
        "Alex", "https://news.example/unsubscribe/t", "https://news.example/preferences/t"
    )
    return fill_tokens(email.html, values)


@pytest.fixture
def email_file(pg: str, tmp_path: Path) -> Path:
    """A week with a clear verdict, a split decision, an unstated panel and a long one."""
    from digest.db import session_scope
    from digest.ranking import rank_comparisons
    from schema.models import Comparison

    with session_scope() as session:
        store(
            session,
            published(comparison("clear", a=tool("Sortwell", ship=4, skip=0),
                                 b=tool("Agendrift", ship=1, skip=3, community=(80, 20)))),
            published(comparison("split", a=tool("Stackwise", ship=3, skip=1),
                                 b=tool("Gridkettle", ship=2, skip=2))),
        )  # fmt: skip
        ranked = rank_comparisons(list(session.query(Comparison)))
        entries = [Entry(n, r.comparison, r.explanation) for n, r in enumerate(ranked, 1)]
        entries.append(Entry(3, maximal_comparison(3), long_text(300, 3)))
        email = render_weekly(entries, archive_url="https://news.example/archive/2026-11-23")
    path = tmp_path / "weekly.html"
    path.write_text(filled(email), encoding="utf-8")
    return path


@pytest.mark.parametrize("scheme", SCHEMES)
def test_body_text_keeps_4_5_to_1_contrast_at_375_and_640_pixels(
    chromium: Browser, email_file: Path, scheme: str
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    for width in WIDTHS:
        context = chromium.new_context(
            viewport={"width": width, "height": 900},
            color_scheme=scheme,  # type: ignore[arg-type]
        )
        page = context.new_page()
        page.goto(email_file.as_uri())
        shot = ARTIFACTS / f"email-{scheme}-{width}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 0
        assert low_contrast_text(page) == [], f"{scheme} at {width}px"
        context.close()


def test_dark_scheme_really_changes_the_card_background(
    chromium: Browser, email_file: Path
) -> None:
    colours = {}
    for scheme in SCHEMES:
        context = chromium.new_context(color_scheme=scheme)  # type: ignore[arg-type]
        page = context.new_page()
        page.goto(email_file.as_uri())
        colours[scheme] = page.evaluate(
            "getComputedStyle(document.querySelector('table.c')).backgroundColor"
        )
        context.close()
    assert colours["light"] == "rgb(255, 255, 255)"
    assert colours["dark"] != colours["light"]


def test_email_declares_its_colour_schemes(email_file: Path) -> None:
    html = email_file.read_text(encoding="utf-8")
    assert '<meta name="color-scheme" content="light dark"' in html
    assert '<meta name="supported-color-schemes" content="light dark"' in html
    assert "@media (prefers-color-scheme: dark)" in html


@pytest.mark.parametrize("scheme", SCHEMES)
def test_email_has_no_serious_or_critical_axe_violation(
    chromium: Browser, email_file: Path, scheme: str
) -> None:
    context = chromium.new_context(color_scheme=scheme)  # type: ignore[arg-type]
    page = context.new_page()
    page.goto(email_file.as_uri())
    assert blocking_violations(page) == []
    context.close()
