"""The console in Chromium: sign in, the dashboard, a digest page, cancel it; every page at 1280
and 375 px (screenshots in test-artifacts/console-*.png), without horizontal scrolling, with
htmx from our own origin under the strict CSP, and no serious or critical axe violation."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page
from sqlalchemy import select
from typer.testing import CliRunner

from digest.cli import app as cli
from digest.db import session_scope
from schema.models import DeliveryBatch, Digest
from tests.support.accessibility import blocking_violations, survey_page
from tests.support.console_fixtures import PASSWORD, sign_in_in_browser
from tests.support.paths import ARTIFACTS
from tests.support.planned_rows import plan_rows
from tests.support.sent_digests import sent_digest

pytestmark = pytest.mark.browser

EMAIL = "first.operator@example.com"
WIDTHS = (1280, 375)


def _sign_in(page: Page, server: str, path: str = "/console") -> None:
    sign_in_in_browser(page, server, path, EMAIL)


@pytest.fixture
def console_world(server: str) -> dict[str, str]:
    """An operator made with the CLI, a digest sending and one sent."""
    made = CliRunner().invoke(
        cli, ["operators", "add", EMAIL, "--password-stdin"], input=PASSWORD + "\n"
    )
    assert made.exit_code == 0, made.output
    with session_scope() as session:
        sending = plan_rows(session, 3, batch_size=2)
        sent = sent_digest(session, ["reader@example.com"], message_id="msg-browser-1")
    return {
        "login": "/console/login",
        "dashboard": "/console",
        "edition": "/console/editions/next",
        "adhoc": "/console/digests/new",
        "digests": "/console/digests",
        "digest": f"/console/digests/{sending.digest_id}",
        "ledger": f"/console/digests/{sent.digest_id}?address=reader@example.com",
        "audit": "/console/audit",
    }


def test_sign_in_open_the_dashboard_and_a_digest_and_cancel_it(
    server: str, console_world: dict[str, str], chromium: Browser
) -> None:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    blocked: list[str] = []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security" in m.text else None)
    _sign_in(page, server)
    assert page.get_by_role("heading", name="Dashboard").is_visible()
    assert page.evaluate("typeof htmx") == "object"  # our own copy, allowed by script-src 'self'
    page.get_by_role("link", name="Digests", exact=True).click()
    digest_path = console_world["digest"]
    digest_id = int(digest_path.rsplit("/", 1)[1])
    page.locator(f'a[href="{digest_path}"]').first.click()
    page.wait_for_url(f"**{digest_path}")
    assert page.get_by_text("0 of 3 recipients done").is_visible()
    with session_scope() as session:  # a worker finishes the first batch of two recipients
        first = session.scalars(
            select(DeliveryBatch).where(DeliveryBatch.digest_id == digest_id).order_by("seq")
        ).first()
        first.status = "sent"
    page.get_by_text("2 of 3 recipients done").wait_for(timeout=10_000)  # htmx polled, no reload
    page.get_by_role("button", name="Cancel this digest").click()
    page.wait_for_url(lambda url: url.endswith("notice=cancelled"))
    assert page.get_by_text("Cancelled: pending batches").is_visible()
    with session_scope() as session:
        assert session.get(Digest, digest_id).status == "cancelled"
    page.get_by_role("link", name="Audit").click()
    assert page.get_by_role("cell", name="digest.cancelled").is_visible()
    assert blocked == []
    context.close()


def test_the_console_works_without_javascript(
    server: str, console_world: dict[str, str], chromium: Browser
) -> None:
    context = chromium.new_context(java_script_enabled=False)
    page = context.new_page()
    _sign_in(page, server, console_world["ledger"].split("?")[0])
    page.get_by_label("Email address").fill("reader@example.com")
    page.get_by_role("button", name="Search").click()
    assert page.get_by_text("msg-browser-1").is_visible()
    context.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_every_console_page_at_width_fits_and_has_no_serious_axe_violation(
    server: str, console_world: dict[str, str], chromium: Browser, width: int
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    context = chromium.new_context(viewport={"width": width, "height": 900}, bypass_csp=True)
    page = context.new_page()
    page.goto(server + "/console/login")
    page.screenshot(path=str(ARTIFACTS / f"console-login-{width}.png"), full_page=True)
    found = {"login": blocking_violations(page)}
    _sign_in(page, server)
    overflow = {}
    for name, path in console_world.items():
        if name == "login":
            continue
        response = page.goto(server + path)
        assert response is not None and response.status == 200, name
        wide, violations = survey_page(page, name, width, ARTIFACTS)
        if wide:
            overflow[name] = wide
        if violations:
            found[name] = violations
    assert overflow == {}
    assert {k: v for k, v in found.items() if v} == {}
    context.close()
