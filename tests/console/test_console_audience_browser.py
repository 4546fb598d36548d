"""The audience, subscribers, subscriber and suppressions pages in Chromium: at 1280 and 375 px
(screenshots test-artifacts/console-{audience,subscribers,subscriber,suppressions}-*.png), no
horizontal scrolling, no serious or critical axe violation, no CSP violation, the growth chart
drawn on a canvas above its table, and a hostile name inert."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page
from typer.testing import CliRunner

from digest.addresses import suppress
from digest.cli import app as cli
from digest.db import session_scope
from schema.models import Subscriber, utcnow
from schema.statuses import SuppressionReason
from tests.support.accessibility import survey_page
from tests.support.console_fixtures import PASSWORD, sign_in_in_browser
from tests.support.paths import ARTIFACTS
from tests.support.sent_digests import sent_digest

pytestmark = pytest.mark.browser

EMAIL = "audience.operator@example.com"
HOSTILE = "<img src=x onerror=\"document.title='pwned'\">"
WIDTHS = (1280, 375)


@pytest.fixture
def audience_world(server: str) -> dict[str, str]:
    """An operator made with the CLI; readers who signed up, confirmed, left; a sent digest."""
    made = CliRunner().invoke(
        cli, ["operators", "add", EMAIL, "--password-stdin"], input=PASSWORD + "\n"
    )
    assert made.exit_code == 0, made.output
    with session_scope() as session:
        sent = sent_digest(session, ["reader@example.com"], message_id="msg-audience-1")
        reader = session.get(Subscriber, sent.subscribers["reader@example.com"])
        reader.name, reader.confirmed_at, reader.categories = HOSTILE, utcnow(), ["Coding"]
        reader.consent_at, reader.consent_source = utcnow(), "form https://shiporskip.example/"
        reader.consent_ip_hash = "0f" * 32
        session.add_all(
            Subscriber(email=f"reader{n}@example.com", name=f"Reader {n}", status=status,
                       timezone=zone, confirmed_at=utcnow() if status == "active" else None)
            for n, (status, zone) in enumerate(
                [("active", "Europe/Oslo"), ("active", "America/New_York"), ("pending", None),
                 ("unsubscribed", None)]
            )
        )  # fmt: skip
        suppress(session, "gone@example.com", SuppressionReason.COMPLAINED)
        reader_id = reader.id
    return {
        "audience": "/console/audience",
        "subscribers": "/console/subscribers?q=reader",
        "subscriber": f"/console/subscribers/{reader_id}",
        "suppressions": "/console/suppressions",
    }


def _sign_in(page: Page, server: str) -> None:
    sign_in_in_browser(page, server, "/console/audience", EMAIL)


def test_the_growth_chart_is_drawn_under_the_strict_csp_and_search_leads_to_a_subscriber(
    server: str, audience_world: dict[str, str], chromium: Browser
) -> None:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text))
    _sign_in(page, server)
    page.locator("table#growth[data-chart-drawn=true]").wait_for(timeout=10_000)
    canvas = page.locator("figure.chart canvas").first
    assert canvas.is_visible() and canvas.bounding_box()["width"] > 300
    page.get_by_role("link", name="Subscribers").click()
    page.get_by_label("Address or name starts with").fill("READER@")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="reader@example.com").click()
    assert page.get_by_text("msg-audience-1").is_visible()
    assert page.title() != "pwned" and page.locator("img[src=x]").count() == 0
    page.get_by_role("link", name="Suppressions").click()
    page.get_by_label("Email address").fill("Gone@Example.com")
    page.get_by_role("button", name="Look up").click()
    assert page.get_by_text("is suppressed: complained").is_visible()
    assert [m for m in messages if "Content Security Policy" in m] == []
    context.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_each_page_at_width_fits_and_has_no_serious_axe_violation(
    server: str, audience_world: dict[str, str], chromium: Browser, width: int
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    context = chromium.new_context(viewport={"width": width, "height": 900}, bypass_csp=True)
    page = context.new_page()
    _sign_in(page, server)
    overflow, found = {}, {}
    for name, path in audience_world.items():
        response = page.goto(server + path)
        assert response is not None and response.status == 200, name
        if name == "audience":
            page.locator("table#growth[data-chart-drawn=true]").wait_for(timeout=10_000)
        wide, violations = survey_page(page, name, width, ARTIFACTS)
        if wide:
            overflow[name] = wide
        if violations:
            found[name] = violations
    assert overflow == {}
    assert found == {}
    context.close()
