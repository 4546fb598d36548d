"""Every public page in Chromium: axe-core finds no serious or critical violation; the time zone
is pre-filled from the browser and the form still works without JavaScript."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from digest.db import session_scope
from digest.planning import plan_digest, request_digest
from digest.tokens import manage_token
from tests.support.accessibility import blocking_violations
from tests.support.recipients import MONDAY, add_subscribers, publish
from tests.support.subscriber_fixtures import find, link, mails_to

pytestmark = pytest.mark.browser

ADDRESS = "pages.reader@example.com"


def public_paths(server: str, outbox: Path, browser: Browser) -> dict[str, str]:
    """Reach every public page once: sign up in the browser, then follow the emailed links."""
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(server + "/")
    page.get_by_label("Email address").fill(ADDRESS)
    page.get_by_role("button", name="Subscribe").click()
    page.wait_for_url("**/thanks")
    context.close()
    deadline = time.monotonic() + 15
    while not (found := mails_to(outbox, ADDRESS, "confirmation")):
        assert time.monotonic() < deadline, "no confirmation email"
        time.sleep(0.05)
    subscriber = find(ADDRESS)
    assert subscriber is not None
    token = manage_token(subscriber.id)
    with session_scope() as session:
        publish(session, [("quillmate-vs-parsewell", "Writing")], at=MONDAY)
        add_subscribers(session, 1, prefix="archived")
        digest = request_digest(session, now=MONDAY + timedelta(hours=1))
        plan_digest(session, digest, now=MONDAY + timedelta(hours=1))
        edition = f"/archive/adhoc-{digest.id}"
    return {
        "subscription": "/",
        "thank-you": "/thanks",
        "confirm": link(found[0], "confirm").split(server, 1)[-1],
        "unsubscribe": f"/unsubscribe/{token}",
        "preferences": f"/preferences/{token}",
        "archive": "/archive",
        "archive edition": edition,
    }


def test_every_public_page_has_no_serious_or_critical_axe_violation(
    server: str, outbox: Path, chromium: Browser
) -> None:
    paths = public_paths(server, outbox, chromium)
    found = {}
    for scheme in ("light", "dark"):
        context = chromium.new_context(bypass_csp=True, color_scheme=scheme)  # type: ignore[arg-type]
        page = context.new_page()
        for name, path in paths.items():
            response = page.goto(server + path)
            assert response is not None and response.status == 200, name
            assert page.title(), f"{name} has no title"
            if violations := blocking_violations(page):
                found[f"{name} ({scheme})"] = violations
        context.close()
    assert found == {}


def test_time_zone_is_pre_filled_from_the_browser(server: str, chromium: Browser) -> None:
    context = chromium.new_context(timezone_id="Asia/Tokyo")
    page = context.new_page()
    page.goto(server + "/")
    assert page.get_by_label("Time zone").input_value() == "Asia/Tokyo"
    context.close()


def test_a_time_zone_the_person_chose_is_not_overwritten(server: str, chromium: Browser) -> None:
    """A form sent back with an error keeps the zone the person typed, whatever the browser's."""
    context = chromium.new_context(timezone_id="Asia/Tokyo")
    page = context.new_page()
    page.goto(server + "/")
    page.get_by_label("Email address").fill("not an address")
    page.get_by_label("Time zone").fill("Europe/Lisbon")
    page.get_by_role("button", name="Subscribe").click()
    page.wait_for_selector("#email-error")
    assert page.get_by_label("Time zone").input_value() == "Europe/Lisbon"
    context.close()


def test_without_javascript_the_time_zone_is_a_searchable_list_and_the_form_works(
    server: str, chromium: Browser
) -> None:
    context = chromium.new_context(java_script_enabled=False, timezone_id="Asia/Tokyo")
    page = context.new_page()
    page.goto(server + "/")
    field = page.get_by_label("Time zone")
    assert field.input_value() == ""
    assert field.get_attribute("list") == "timezones"
    assert page.locator("#timezones option[value='Europe/Berlin']").count() == 1
    page.get_by_label("Email address").fill("nojs@example.com")
    field.fill("Europe/Berlin")
    page.get_by_role("button", name="Subscribe").click()
    page.wait_for_url("**/thanks")
    subscriber = find("nojs@example.com")
    assert subscriber is not None and subscriber.timezone == "Europe/Berlin"
    context.close()
