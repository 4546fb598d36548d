"""Console lists for real: uvicorn and a Celery worker as child processes on PostgreSQL and Redis.
A list is posted over a socket, stored, imported by the worker in chunks while the page polls;
in Chromium the same with htmx (and without JavaScript, by reloading), the download, and the
pages at 1280 and 375 px (test-artifacts/console-lists-*.png) with no serious axe violation."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page
from sqlalchemy import func, select
from typer.testing import CliRunner

from digest.cli import app as cli
from digest.db import session_scope
from schema.models import ListImport, Subscriber
from tests.support.accessibility import blocking_violations
from tests.support.console_fixtures import PASSWORD, sign_in_in_browser
from tests.support.live_app import ServeApp, console_client, csrf_of
from tests.support.paths import ARTIFACTS
from tests.support.planning_worker import Launch
from tests.support.recipients import suppress

EMAIL = "lists@example.com"
HEADER = "email,name,categories,frequency,timezone\n"


def operator() -> None:
    made = CliRunner().invoke(
        cli, ["operators", "add", EMAIL, "--password-stdin"], input=PASSWORD + "\n"
    )
    assert made.exit_code == 0, made.output


def big_list(rows: int) -> bytes:
    """`rows` good rows, a bad one every 5,000 lines, and one suppressed address."""
    lines = [HEADER]
    for n in range(rows):
        if n % 5000 == 1234:
            lines.append(f"bad-{n},,,weekly,\n")
        else:
            lines.append(f"list{n:06d}@example.com,Reader {n},,weekly,Europe/Berlin\n")
    lines.append("gone@example.com,,,,\n")
    return "".join(lines).encode()


def test_an_upload_over_a_real_socket_is_imported_by_the_worker_in_chunks(
    serve_app: ServeApp, launch: Launch
) -> None:
    launch("worker", "lists-worker")
    base = serve_app()
    operator()
    with session_scope() as session:
        suppress(session, "gone@example.com")
    client = console_client(base, EMAIL, PASSWORD)
    page = client.get("/console/lists")
    answer = client.post(
        "/console/lists/upload",
        data={"csrf_token": csrf_of(page.text)},
        files={"file": ("big.csv", big_list(20_000), "text/csv")},
    )
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    deadline = time.monotonic() + 90
    seen = set()
    while time.monotonic() < deadline:
        fragment = client.get(location + "/progress", headers={"HX-Request": "true"}).text
        seen.update(s for s in ("queued", "running", "done") if f"status-{s}" in fragment)
        if "status-done" in fragment:
            break
        time.sleep(0.3)
    assert "done" in seen
    with session_scope() as session:
        row = session.scalars(select(ListImport)).one()
        assert (row.added, row.existing, row.suppressed, row.bad) == (19_996, 0, 1, 4)
        assert [e[0] for e in row.errors] == [1236, 6236, 11236, 16236]  # header is line 1
        assert row.lines_done == 20_002
        count = select(func.count()).select_from(Subscriber)
        assert session.scalar(count) == 19_996
    final = client.get(location).text
    assert "<td>1236</td><td>email</td>" in final and "19996" in final


def shoot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    for width in (1280, 375):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(ARTIFACTS / f"console-{name}-{width}.png"), full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= width, (name, width)
        assert blocking_violations(page) == [], (name, width)
    page.set_viewport_size({"width": 1280, "height": 900})


def sign_in(page: Page, base: str) -> None:
    sign_in_in_browser(page, base, "/console/lists", EMAIL)


@pytest.mark.browser
def test_upload_watch_the_progress_and_download_in_chromium(
    serve_app: ServeApp, launch: Launch, chromium: Browser, tmp_path: Path
) -> None:
    launch("worker", "lists-browser-worker")
    base = serve_app()
    operator()
    upload = tmp_path / "readers.csv"
    upload.write_bytes(
        (
            HEADER + "ada@example.com,Ada,Design,weekly,Europe/Berlin\n"
            "not-an-address,Bob,,weekly,\n"
            'cy@example.com,=HYPERLINK("https://evil.example"),,every,\n'
            "di@example.com,Di,,daily,\n"
        ).encode()
    )
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    sign_in(page, base)
    assert page.get_by_role("link", name="Lists").get_attribute("aria-current") == "page"
    page.get_by_label("CSV file").set_input_files(str(upload))
    page.get_by_role("button", name="Upload and import").click()
    page.wait_for_url("**/console/lists/imports/*")
    page.locator(".status-done").wait_for(timeout=60_000)  # htmx polled until the worker ends
    assert page.locator("#count-added").inner_text() == "2"
    assert page.locator("#count-bad").inner_text() == "2"
    bad = page.locator("table.bad-rows tbody tr").all_inner_texts()
    assert [row.split("\t")[:2] for row in bad] == [["3", "email"], ["5", "frequency"]]
    shoot(page, "lists-import")
    page.get_by_role("link", name="Back to lists").click()
    shoot(page, "lists")
    page.get_by_label("Frequency").select_option("every")
    with page.expect_download() as caught:
        page.get_by_role("button", name="Download CSV").click()
    text = Path(caught.value.path()).read_text(encoding="utf-8")
    assert text.splitlines() == [
        "email,name,categories,frequency,timezone,status",
        'cy@example.com,"\'=HYPERLINK(""https://evil.example"")",,every,,pending',
    ]
    context.close()


@pytest.mark.browser
def test_the_lists_page_works_without_javascript(
    serve_app: ServeApp, launch: Launch, chromium: Browser, tmp_path: Path
) -> None:
    launch("worker", "lists-nojs-worker")
    base = serve_app()
    operator()
    upload = tmp_path / "two.csv"
    upload.write_bytes((HEADER + "x@example.com,,,,\nbad,,,,\n").encode())
    context = chromium.new_context(java_script_enabled=False)
    page = context.new_page()
    sign_in(page, base)
    page.get_by_label("CSV file").set_input_files(str(upload))
    page.get_by_role("button", name="Upload and import").click()
    page.wait_for_url("**/console/lists/imports/*")
    page.locator(".status-done").wait_for(timeout=60_000)  # the page reloads itself (noscript)
    assert page.locator("#count-added").inner_text() == "1"
    assert page.get_by_role("cell", name="email", exact=True).is_visible()
    context.close()
