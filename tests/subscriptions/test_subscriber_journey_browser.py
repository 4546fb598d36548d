"""A subscriber's whole journey in real headless Chromium against the app served by uvicorn."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.subscriber_fixtures import find, link, mail, mails_to

pytestmark = pytest.mark.browser

ADDRESS = "journey.reader@example.com"


def wait_for_mail(outbox: Path, kind: str):  # type: ignore[no-untyped-def]
    """Under uvicorn the embedded default sends the confirmation just after the answer."""
    deadline = time.monotonic() + 15
    while not (found := mails_to(outbox, ADDRESS, kind)):
        assert time.monotonic() < deadline, f"no {kind} email"
        time.sleep(0.05)
    return found[0]


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    context = chromium.new_context(java_script_enabled=False)  # the pages work without JS
    yield context.new_page()
    context.close()


def test_signup_confirm_and_unsubscribe_in_a_browser(server: str, page: Page, outbox: Path) -> None:
    page.goto(server + "/")
    expect(page).to_have_title("Weekly AI Tool Verdicts — get the next comparison in your inbox")
    page.get_by_label("Email address").fill(ADDRESS)
    page.get_by_label("Name").fill("Jo Reader")
    page.get_by_label("Writing").check()
    page.get_by_label("Every comparison as it is published").check()
    page.get_by_label("Time zone").fill("Europe/Lisbon")
    page.get_by_role("button", name="Subscribe").click()

    expect(page).to_have_url(server + "/thanks")
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
    row = find(ADDRESS)
    assert (row.status, row.categories, row.frequency, row.timezone) == (
        "pending",
        ["Writing"],
        "every",
        "Europe/Lisbon",
    )
    assert row.consent_source == server  # the Origin of the form

    page.goto(link(wait_for_mail(outbox, "confirmation"), "confirm"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm your subscription")
    assert find(ADDRESS).status == "pending"  # opening the link changed nothing
    page.get_by_role("button", name="Confirm my subscription").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Subscription confirmed")
    assert "confirmed" in page.content()
    assert find(ADDRESS).status == "active"

    page.goto(link(mail(outbox, ADDRESS, "welcome"), "unsubscribe"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Unsubscribe")
    assert find(ADDRESS).status == "active"  # opening the page changed nothing
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You're unsubscribed")
    assert find(ADDRESS).status == "unsubscribed"
    assert mail(outbox, ADDRESS, "goodbye")


def test_invalid_address_shows_the_error_next_to_the_field(server: str, page: Page) -> None:
    page.goto(server + "/")
    page.get_by_label("Email address").fill("not-an-address")
    page.get_by_role("button", name="Subscribe").click()
    email = page.get_by_label("Email address")
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(email).to_have_value("not-an-address")
    expect(page.locator("#email-error")).to_be_visible()
    assert find("not-an-address") is None


def test_keyboard_focus_is_visible_on_the_form(server: str, page: Page) -> None:
    page.goto(server + "/")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.id")
    assert focused == "email"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"


def test_preferences_page_saves_choices_in_a_browser(server: str, page: Page, outbox: Path) -> None:
    page.goto(server + "/")
    page.get_by_label("Email address").fill(ADDRESS)
    page.get_by_role("button", name="Subscribe").click()
    page.goto(link(wait_for_mail(outbox, "confirmation"), "confirm"))
    page.get_by_role("button", name="Confirm my subscription").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Subscription confirmed")
    page.goto(link(mail(outbox, ADDRESS, "welcome"), "preferences"))
    page.get_by_label("Research").check()
    page.get_by_label("Pause all email for now").check()
    page.get_by_role("button", name="Save preferences").click()
    expect(page.get_by_role("status")).to_have_text("Saved.")
    row = find(ADDRESS)
    assert (row.categories, row.paused) == (["Research"], True)


def test_export_and_delete_through_the_emailed_data_link_in_a_browser(
    server: str, page: Page, outbox: Path
) -> None:
    page.goto(server + "/")
    page.get_by_label("Email address").fill(ADDRESS)
    page.get_by_role("button", name="Subscribe").click()
    page.goto(link(wait_for_mail(outbox, "confirmation"), "confirm"))
    page.get_by_role("button", name="Confirm my subscription").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Subscription confirmed")
    page.goto(link(mail(outbox, ADDRESS, "welcome"), "preferences"))
    page.get_by_role("button", name="Email me a link to export or delete my data").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("We've emailed you a link")

    page.goto(link(mail(outbox, ADDRESS, "data_link"), "data"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Your data")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download my data").click()
    assert ADDRESS in Path(download.value.path()).read_text()
    page.get_by_role("button", name="Delete me").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your data has been erased")
    assert find(ADDRESS) is None
