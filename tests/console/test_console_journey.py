"""The operator's journey in Chromium, end to end and for real: the app under uvicorn and a
Celery worker (both child processes) on PostgreSQL and Redis, mailing the SendGrid-compatible
stand-in. An operator made with the CLI signs in, reviews the edition (exclude, pin, note),
previews it at 375 px, sends a test copy to themselves, approves; the weekly tick fires it, the
worker sends it, the digest page shows "sent" and the ledger finds a recipient. Screenshots of
each page at 1280 and 375 px land in test-artifacts/console-*.png."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from playwright.sync_api import Browser, Page
from sqlalchemy import select
from typer.testing import CliRunner

from bench.procs import Proc, free_port, port_open, wait_for
from digest.cli import app as cli
from digest.db import reset_caches, session_scope
from digest.edition_review import next_edition
from digest.weekly import fire_weekly_slots
from schema.models import Digest, utcnow
from schema.statuses import DigestKind
from tests.support.accessibility import blocking_violations
from tests.support.console_fixtures import PASSWORD, sign_in_in_browser
from tests.support.paths import ARTIFACTS
from tests.support.planning_worker import Launch
from tests.support.recipients import add_subscribers, publish
from tests.support.sendgrid_server import FakeSendGrid
from tests.support.waiting import eventually

pytestmark = pytest.mark.browser

EMAIL = "editor@example.com"
WEEK = [
    ("quillmate-vs-parsewell", "Writing"),  # ranked 1st: excluded in the journey
    ("palettebird-vs-vectorine", "Design"),
    ("latticeflow-vs-cobaltcode", "Developer Tools"),  # ranked 3rd: pinned to the top
]
EXCLUDED, PINNED = "Quillmate vs Parsewell", "Latticeflow vs Cobaltcode"
NOTE = "Three tools this week.\n\nOne <em>surprise</em> at the top."


@pytest.fixture
def web(
    worker_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The app under uvicorn in a child process, publishing tasks to this test's Redis."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("DIGEST_PUBLIC_URL", base)
    monkeypatch.setenv("DIGEST_WEEKLY_APPROVAL", "required")
    reset_caches()
    argv = [sys.executable, "-m", "uvicorn", "digest.web.app:app", f"--port={port}"]
    env = {**worker_env, "DIGEST_PUBLIC_URL": base, "DIGEST_WEEKLY_APPROVAL": "required"}
    proc = Proc("journey-web", argv, env=env, log_dir=tmp_path).start()
    try:
        wait_for(lambda: port_open(port) or not proc.alive, 60, what="uvicorn to listen")
        assert proc.alive, proc.log_tail()
        yield base
    finally:
        proc.stop(timeout=10)
        reset_caches()


def shoot(page: Page, name: str) -> None:
    """The page at 1280 and at 375 px, with no serious axe violation at either."""
    ARTIFACTS.mkdir(exist_ok=True)
    if page.locator("iframe.preview").count():  # the email preview loaded before the picture
        page.frame_locator("iframe.preview").locator("body").wait_for()
    for width in (1280, 375):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(ARTIFACTS / f"console-{name}-{width}.png"), full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= width, (name, width)
        assert blocking_violations(page) == [], (name, width)
    page.set_viewport_size({"width": 1280, "height": 900})


def html_of(body: dict[str, Any]) -> str:
    return next(c["value"] for c in body["content"] if c["type"] == "text/html")


def to_of(body: dict[str, Any]) -> list[str]:
    return [to["email"] for p in body["personalizations"] for to in p["to"]]


def world() -> list[str]:
    """The week's comparisons, its readers, and an operator made with the CLI."""
    with session_scope() as session:
        publish(session, WEEK, at=utcnow())
        readers = add_subscribers(session, 3, prefix="reader")
        readers += add_subscribers(
            session, 1, prefix="picky", categories=["Design", "Developer Tools"]
        )
    made = CliRunner().invoke(
        cli, ["operators", "add", EMAIL, "--password-stdin"], input=PASSWORD + "\n"
    )
    assert made.exit_code == 0, made.output
    return readers


def sign_in(page: Page, web: str) -> None:
    sign_in_in_browser(page, web, "/console/editions/next", EMAIL)


def review(page: Page) -> None:
    """Exclude one comparison, pin another, write a note; then the preview at 375 px."""
    page.get_by_role("button", name=f"Exclude: {EXCLUDED}").click()
    page.wait_for_url("**notice=exclude")
    page.get_by_role("button", name=f"Pin to top: {PINNED}").click()
    page.wait_for_url("**notice=pin")
    page.get_by_role("textbox", name="Editor's note").fill(NOTE)
    page.get_by_role("button", name="Save note").click()
    page.wait_for_url("**notice=note")
    assert page.locator("ol.ranking > li h3").first.inner_text().startswith(PINNED)
    note = page.locator(".note-preview p").nth(2).inner_text()
    assert note == "One <em>surprise</em> at the top."
    shoot(page, "edition-review")
    page.get_by_role("link", name="375 px").click()
    page.wait_for_url("**width=375**")
    frame = page.locator("iframe.preview")
    assert frame.bounding_box()["width"] == pytest.approx(375, abs=2)  # type: ignore[index]
    assert PINNED in page.frame_locator("iframe.preview").locator("body").inner_text()
    frame.scroll_into_view_if_needed()
    frame.screenshot(path=str(ARTIFACTS / "console-edition-preview-375.png"))


def send_test_copy(page: Page, sendgrid: FakeSendGrid) -> None:
    page.get_by_role("button", name=f"Send a test copy to me ({EMAIL})").click()
    page.wait_for_url("**notice=test-copy**")
    copy = eventually(
        lambda: [b for b in sendgrid.received() if EMAIL in to_of(b)], "the test copy"
    )[0]
    assert copy["subject"].startswith("[Test]")
    assert EXCLUDED not in html_of(copy) and PINNED in html_of(copy)
    assert "One &lt;em&gt;surprise&lt;/em&gt; at the top." in html_of(copy)


def fire(in_slot: datetime, redis_url: str) -> int:
    """The beat's tick in the slot, its batches handed to the real worker through Redis."""
    reports = fire_weekly_slots(in_slot)
    assert len(reports) == 1
    producer = Celery("journey", broker=redis_url)
    for batch_id in reports[0].batch_ids:
        producer.send_task("digest.send_batch", args=[batch_id])
    return reports[0].digest_id


def assert_edition_emails(sendgrid: FakeSendGrid, readers: list[str]) -> None:
    """Every reader once; in every segment the excluded one nowhere, the pinned one first."""
    edition = [b for b in sendgrid.received() if EMAIL not in to_of(b)]
    assert sorted(a for b in edition for a in to_of(b)) == sorted(readers)
    for body in edition:
        html = html_of(body)
        assert EXCLUDED not in html
        assert html.index(PINNED) < html.find("Palettebird vs Vectorine")
    with session_scope() as session:
        kinds = session.scalars(select(Digest.kind).order_by(Digest.id)).all()
    assert kinds == [DigestKind.TEST, DigestKind.WEEKLY]


def test_review_the_edition_send_a_test_copy_approve_and_watch_it_land(
    web: str,
    launch: Launch,
    redis_url: str,
    sendgrid_env: FakeSendGrid,
    chromium: Browser,
) -> None:
    launch("worker", "journey-worker")
    readers = world()
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    sign_in(page, web)
    assert page.locator("#edition-state").inner_text() == "waiting for approval"
    with session_scope() as session:
        in_slot = next_edition(session, utcnow()).first_slot + timedelta(seconds=30)
    assert fire_weekly_slots(in_slot) == []  # approval required, none given: nothing fires

    review(page)
    send_test_copy(page, sendgrid_env)
    page.get_by_role("button", name="Approve this edition").click()
    page.wait_for_url("**notice=approve")
    assert page.locator("#edition-state").inner_text() == "approved"

    page.goto(f"{web}/console/digests/{fire(in_slot, redis_url)}")
    page.locator(".status-sent").first.wait_for(timeout=60_000)  # htmx polls until it is sent
    shoot(page, "journey-digest")
    page.get_by_label("Email address").fill(readers[0])
    page.get_by_role("button", name="Search").click()
    assert page.get_by_text("delivery sent").first.is_visible()
    shoot(page, "journey-ledger")
    assert_edition_emails(sendgrid_env, readers)

    page.goto(web + "/console/digests/new")
    shoot(page, "adhoc")
    page.goto(web + "/console/audit")
    for action in ("edition.exclude", "edition.pin", "edition.note", "edition.approve"):
        assert page.get_by_role("cell", name=action, exact=True).first.is_visible()
    context.close()
