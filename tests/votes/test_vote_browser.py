"""A headless browser that only loads a vote page (as a script-running link scanner does)
records nothing; pressing the one button records the verdict."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser

from tests.support.accessibility import blocking_violations, low_contrast_text
from tests.support.votes import html_links, send_week, vote_rows


def test_a_browser_that_loads_every_vote_page_records_nothing(
    server: str, chromium: Browser, outbox: Path
) -> None:
    week = send_week()
    links = html_links(outbox, week.addresses[0])
    assert all(link.startswith(server) for link in links)
    page = chromium.new_page()
    for link in links:
        answer = page.goto(link, wait_until="networkidle")
        assert answer is not None and answer.status == 200
        page.wait_for_timeout(50)  # time for any script to run (there is none)
    assert vote_rows() == []
    page.goto(links[0])
    page.get_by_role("button").click()
    page.wait_for_load_state()
    assert "Your verdict is in" in page.content()
    assert len(vote_rows()) == 1
    page.close()


@pytest.mark.parametrize("width", [1280, 375])
def test_vote_pages_are_accessible_and_fit(
    server: str, chromium: Browser, outbox: Path, width: int
) -> None:
    week = send_week()
    link = html_links(outbox, week.addresses[0])[0]
    # bypass_csp only lets the test inject axe-core; the page itself has no script
    context = chromium.new_context(bypass_csp=True, viewport={"width": width, "height": 800})
    page = context.new_page()
    page.goto(link)
    assert blocking_violations(page) == [] and low_contrast_text(page) == []
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.get_by_role("button").click()
    page.wait_for_load_state()
    assert blocking_violations(page) == [] and low_contrast_text(page) == []
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    context.close()
