"""The public archive: every sent edition has a page, linked from its emails; an Atom feed.

Pages show the edition's ranked comparisons and nothing personal, drop retracted comparisons,
and are cheap to serve (ETag, Cache-Control).
"""

from __future__ import annotations

from datetime import timedelta
from xml.etree import ElementTree

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from digest.db import session_scope
from digest.planning import plan_digest, request_digest
from digest.substitution import Placeholders
from digest.weekly import fire_waves
from schema.models import Digest, DigestSegment
from tests.support.factories import store
from tests.support.html import Page
from tests.support.recipients import MONDAY, add_subscribers, publish

WEEK = [("quillmate-vs-parsewell", "Writing"), ("palettebird-vs-vectorine", "Design")]
ATOM = "{http://www.w3.org/2005/Atom}"


@pytest.fixture
def sent_week(client: TestClient) -> list[int]:
    """A weekly edition fired in two timezone waves (one edition, two digests)."""
    with session_scope() as session:
        publish(session, WEEK, at=MONDAY - timedelta(hours=12))
        add_subscribers(session, 2, prefix="berlin", timezone="Europe/Berlin", name="Bea")
        add_subscribers(session, 2, prefix="utc", name="Uli")
    with session_scope() as session:
        reports = fire_waves(session, MONDAY + timedelta(hours=15))
    return [report.digest_id for report in reports]


def view_online_link(digest_id: int) -> str:
    with session_scope() as session:
        segment = session.scalars(
            select(DigestSegment).where(DigestSegment.digest_id == digest_id)
        ).first()
        assert segment is not None
        keys = Placeholders.from_nonce(segment.placeholder_nonce)
        return Page(segment.html.replace(keys.name, "x")).hrefs()[0]


def test_every_email_links_its_editions_page_and_the_page_shows_the_items(
    client: TestClient, sent_week: list[int]
) -> None:
    links = {view_online_link(digest_id) for digest_id in sent_week}
    assert len(sent_week) == 2 and len(links) == 1  # both waves: one edition, one page
    [link] = links
    assert link.startswith("http://testserver/archive/2026-11-23-")
    response = client.get(link.removeprefix("http://testserver"))
    assert response.status_code == 200
    text = Page(response.text).text
    assert "Quillmate vs Parsewell" in text and "Palettebird vs Vectorine" in text
    assert "#1 ·" in text


def test_archive_pages_hold_no_personal_data(client: TestClient, sent_week: list[int]) -> None:
    link = view_online_link(sent_week[0]).removeprefix("http://testserver")
    html = client.get(link).text + client.get("/archive").text
    for personal in ("berlin000000@example.com", "Bea", "Uli", "/unsubscribe/", "/preferences/"):
        assert personal not in html


def test_index_lists_an_edition_once_newest_first(client: TestClient, sent_week: list[int]) -> None:
    with session_scope() as session:
        publish(session, [("tallyhive-vs-minutely", "Writing")], at=MONDAY + timedelta(hours=20))
        digest = request_digest(session, now=MONDAY + timedelta(days=1))
        plan_digest(session, digest, now=MONDAY + timedelta(days=1))
        adhoc = digest.id
    hrefs = [h for h in Page(client.get("/archive").text).hrefs() if h.startswith("/archive/")]
    editions = [h for h in hrefs if h != "/archive/feed.xml"]
    assert editions[0] == f"/archive/adhoc-{adhoc}"
    assert len([h for h in editions if h.startswith("/archive/2026-11-23-")]) == 1


def test_a_retracted_comparison_disappears_from_the_archive(
    client: TestClient, sent_week: list[int]
) -> None:
    link = view_online_link(sent_week[0]).removeprefix("http://testserver")
    with session_scope() as session:
        store(session, {"type": "comparison.retracted", "data": {"slug": "quillmate-vs-parsewell"}})
    text = Page(client.get(link).text).text
    assert "Quillmate vs Parsewell" not in text and "Palettebird vs Vectorine" in text


def test_feed_is_atom_with_one_entry_per_edition(client: TestClient, sent_week: list[int]) -> None:
    response = client.get("/archive/feed.xml")
    assert response.headers["content-type"].startswith("application/atom+xml")
    feed = ElementTree.fromstring(response.content)
    entries = feed.findall(f"{ATOM}entry")
    assert len(entries) == 1
    link = entries[0].find(f"{ATOM}link")
    assert link is not None and link.get("href", "").startswith("http://testserver/archive/2026")
    summary = entries[0].findtext(f"{ATOM}summary") or ""
    assert "Quillmate vs Parsewell" in summary


def test_pages_are_cached_and_revalidate_with_304(client: TestClient, sent_week: list[int]) -> None:
    first = client.get("/archive")
    assert first.headers["cache-control"] == "public, max-age=300"
    again = client.get("/archive", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_unknown_or_hostile_edition_keys_are_404(client: TestClient) -> None:
    for key in ("2026-11-23-0900", "test-1", "adhoc-99", "<script>alert(1)</script>", "weekly-0"):
        response = client.get(f"/archive/{key}")
        assert response.status_code == 404, key
        assert "<script>alert(1)" not in response.text


def test_test_copies_are_not_archived(client: TestClient, sent_week: list[int]) -> None:
    with session_scope() as session:
        digest = request_digest(session, now=MONDAY + timedelta(days=1), to="op@example.com")
        plan_digest(session, digest, now=MONDAY + timedelta(days=1))
        test_id = digest.id
        assert session.get(Digest, test_id).kind == "test"
    assert client.get(f"/archive/test-{test_id}").status_code == 404
    assert f"test-{test_id}" not in client.get("/archive").text
