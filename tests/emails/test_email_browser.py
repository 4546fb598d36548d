"""The weekly email in a real browser: headless Chromium at phone and desktop-client widths.

Screenshots are kept in test-artifacts/ (gitignored) for a person to look at.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import Browser
from sqlalchemy import select
from typer.testing import CliRunner

from digest.cli import app
from digest.db import session_scope
from schema.models import Comparison
from tests.support.paths import ARTIFACTS, SAMPLE_COMPARISONS
from tests.support.services import seeds_folder

pytestmark = pytest.mark.browser

ARTIFACTS = ARTIFACTS
SAMPLE = SAMPLE_COMPARISONS
WIDTHS = (375, 640)
# Markup in a comparison must arrive as text: if any of it ran, window.__pwned would be set.
HOSTILE_TITLE = "Tagwolf <script>window.__pwned=1</script> vs Plainly"
HOSTILE_EVENT = {
    "type": "comparison.published",
    "data": {
        "slug": "tagwolf-vs-plainly",
        "title": HOSTILE_TITLE,
        "url": 'https://shiporskip.example/compare/x"><img src=x onerror="window.__pwned=2">',
        "published_at": "2026-11-18T08:00:00Z",
        "tools": [
            {
                "name": "Tagwolf",
                "tagline": '"><img src=x onerror="window.__pwned=3"> bites',
                "pricing": "<b>Free</b> " + "averyveryverylongunbrokenpricingword" * 4,
                "verdict": "Ship",
                "panel_ship": 3,
                "panel_skip": 1,
                "panel_ship_pct": 75,
                "reviews": [
                    {
                        "persona": "Skeptic",
                        "score": 20,
                        "verdict": "skip",
                        "text": "<iframe src=x></iframe> no.",
                    }
                ],
            },
            {"name": "Plainly", "tagline": "Plain text only", "panel_ship_pct": 50},
        ],
    },
}


def preview(out: Path, *sources: Path, published_at: str | None = None) -> list[str]:
    """Import `sources`, run `digest preview` over their week; the titles of what got in."""
    runner = CliRunner()
    extra = ["--published-at", published_at] if published_at else []
    imported = runner.invoke(app, ["import", *extra, *map(str, sources)])
    assert imported.exit_code == 0, imported.output
    result = runner.invoke(
        app,
        ["preview", "--since", "2026-11-01", "--until", "2026-12-01", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    with session_scope() as session:
        return list(session.scalars(select(Comparison.title).where(~Comparison.retracted)))


def check_layout(chromium: Browser, html: Path, titles: list[str], name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    dialogs: list[str] = []
    for width in WIDTHS:
        page = chromium.new_page(viewport={"width": width, "height": 800})
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(html.as_uri())
        shot = ARTIFACTS / f"{name}-{width}.png"
        shot.unlink(missing_ok=True)
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 0
        scroll_width = page.evaluate(
            "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        )
        assert scroll_width <= width, f"{name} overflows at {width}px: {scroll_width}px wide"
        for title in titles:
            heading = page.get_by_role("link", name=title, exact=True)
            assert heading.count() == 1, title
            assert heading.is_visible(), f"{title!r} hidden at {width}px"
            box = heading.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
        assert page.evaluate("window.__pwned") is None
        assert page.locator("img, script, iframe").count() == 0
        assert dialogs == []
        page.close()


def test_sample_digest_fits_375_and_640_pixels_with_every_title_visible(
    pg: str, chromium: Browser, tmp_path: Path
) -> None:
    hostile = tmp_path / "hostile.ndjson"
    hostile.write_text(json.dumps(HOSTILE_EVENT) + "\n", encoding="utf-8")
    titles = preview(tmp_path / "out", SAMPLE, hostile)
    assert HOSTILE_TITLE in titles and len(titles) >= 10
    check_layout(chromium, tmp_path / "out" / "digest.html", titles, "email-sample")


def test_seed_pages_digest_fits_375_and_640_pixels_with_every_title_visible(
    pg: str, chromium: Browser, tmp_path: Path
) -> None:
    pages = sorted(seeds_folder().glob("*.txt"))
    titles = preview(tmp_path / "out", *pages, published_at="2026-11-20T10:00:00Z")
    assert len(titles) == len(pages)
    check_layout(chromium, tmp_path / "out" / "digest.html", titles, "email-seeds")
