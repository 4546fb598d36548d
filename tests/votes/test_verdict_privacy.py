"""Verdicts are the subscriber's personal data: exported, and forgotten on erasure (the tally
keeps the count, not the person)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from digest import votes
from digest.db import session_scope
from digest.privacy import erase_subscriber, export_data
from tests.support.html import Page
from tests.support.subscriber_fixtures import find, mails_to
from tests.support.votes import SLUGS, html_links, link_for, path_of, send_week, vote_rows


def test_export_lists_the_readers_verdicts(client: TestClient, outbox: Path) -> None:
    week = send_week()
    client.post(link_for(html_links(outbox, week.addresses[0]), SLUGS[0], 1, "skip"))
    subscriber = find(week.addresses[0])
    assert subscriber is not None
    with session_scope() as session:
        exported = export_data(session, subscriber.id)
    assert exported is not None
    [verdict] = exported["verdicts"]
    assert (verdict["comparison"], verdict["tool"], verdict["choice"]) == (
        SLUGS[0],
        "Beta0",
        "skip",
    )


def test_erasure_removes_the_verdicts_but_keeps_the_tally(client: TestClient, outbox: Path) -> None:
    week = send_week()
    for address in week.addresses:
        client.post(link_for(html_links(outbox, address), SLUGS[0], 0, "ship"))
    subscriber = find(week.addresses[0])
    assert subscriber is not None
    with session_scope() as session:
        report = erase_subscriber(session, subscriber.id)
    assert report.rows["reader_votes"] == 1
    assert subscriber.id not in [row[0] for row in vote_rows()]
    with session_scope() as session:
        assert votes.verdicts_of(session, subscriber.id) == []
        comparison_id = vote_rows()[0][1]
        assert votes.tallies(session, comparison_id)[0].ship == 2


def test_the_archive_page_shows_the_readers_tallies_and_no_reader(
    client: TestClient, outbox: Path
) -> None:
    week = send_week(readers=3)
    for address, choice in zip(week.addresses, ("ship", "ship", "skip"), strict=True):
        client.post(link_for(html_links(outbox, address), SLUGS[0], 0, choice))
    [message] = mails_to(outbox, week.addresses[0])
    archive = next(
        u for u in Page(message.get_body(("html",)).get_content()).hrefs() if "/archive/" in u
    )
    page = client.get(path_of(archive))
    assert page.status_code == 200
    assert "Our readers: 67 % ship · 3 verdicts" in page.text
    assert week.addresses[0] not in page.text and "/vote/" not in page.text
