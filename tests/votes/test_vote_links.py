"""Ship it / Skip it links of a sent digest: GET shows, POST records, the latest verdict counts.

Real PostgreSQL and Redis; the digest is planned and sent to the outbox as SendGrid fills it.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from digest import tokens
from digest.db import reset_caches, session_scope
from schema.models import Digest, Subscriber, utcnow
from tests.support.factories import comparison, published, store
from tests.support.subscriber_fixtures import find
from tests.support.votes import (
    SLUGS,
    SentWeek,
    html_links,
    link_for,
    send_week,
    text_links,
    vote_rows,
)


@pytest.fixture
def week(client: TestClient) -> SentWeek:
    return send_week()


def test_every_tool_has_ship_and_skip_links_in_html_and_text(week: SentWeek, outbox: Path) -> None:
    links = html_links(outbox, week.addresses[0])
    assert len(links) == 2 * 2 * len(SLUGS)
    assert sorted(links) == sorted(text_links(outbox, week.addresses[0]))
    other = html_links(outbox, week.addresses[1])
    assert set(links).isdisjoint(other)  # one reader token per recipient


def test_a_get_by_a_link_scanner_records_nothing(
    client: TestClient, week: SentWeek, outbox: Path
) -> None:
    for address in week.addresses:
        for url in html_links(outbox, address):
            answer = client.get(link_for([url], *url.rsplit("/", 3)[1:]))
            assert answer.status_code == 200
            assert '<form method="post"' in answer.text
            assert "<script" not in answer.text
    assert vote_rows() == []


def test_cast_repeat_and_change_counts_once_and_the_latest_wins(
    client: TestClient, week: SentWeek, outbox: Path
) -> None:
    links = html_links(outbox, week.addresses[0])
    ship, skip = (link_for(links, SLUGS[0], 1, c) for c in ("ship", "skip"))
    first = client.post(ship)
    assert first.status_code == 200
    assert "You and 0 readers: 100 % ship Beta0" in first.text
    assert "https://shiporskip.example/compare/" + SLUGS[0] in first.text
    assert client.post(ship).status_code == 200
    assert [row[3] for row in vote_rows()] == ["ship"]
    assert client.post(skip).status_code == 200
    rows = vote_rows()
    assert len(rows) == 1 and rows[0][2:] == (1, "skip")


def test_the_tally_counts_other_readers(client: TestClient, week: SentWeek, outbox: Path) -> None:
    first = html_links(outbox, week.addresses[0])
    second = html_links(outbox, week.addresses[1])
    client.post(link_for(first, SLUGS[1], 0, "ship"))
    answer = client.post(link_for(second, SLUGS[1], 0, "skip"))
    assert "You and 1 reader: 50 % ship Alpha1" in answer.text


def test_a_forged_token_changes_nothing(client: TestClient, week: SentWeek, outbox: Path) -> None:
    link = link_for(html_links(outbox, week.addresses[0]), SLUGS[0], 0, "ship")
    token = link.split("/")[2]
    forged = link.replace(token, token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB"))
    assert client.post(forged).status_code == 400
    subscriber = find(week.addresses[0])
    assert subscriber is not None
    # a validly signed token of another purpose (the manage link's) is no vote token either
    other = link.replace(token, tokens.manage_token(subscriber.id))
    assert client.post(other).status_code == 400
    assert vote_rows() == []


def test_an_expired_link_changes_nothing(client: TestClient, week: SentWeek, outbox: Path) -> None:
    with session_scope() as session:
        session.execute(
            update(Digest)
            .where(Digest.id == week.digest_id)
            .values(
                started_at=utcnow() - timedelta(days=31), created_at=utcnow() - timedelta(days=31)
            )
        )
    link = link_for(html_links(outbox, week.addresses[0]), SLUGS[0], 0, "ship")
    assert client.post(link).status_code == 410
    assert vote_rows() == []


def test_an_unsubscribed_reader_changes_nothing(
    client: TestClient, week: SentWeek, outbox: Path
) -> None:
    with session_scope() as session:
        session.execute(
            update(Subscriber)
            .where(Subscriber.email == week.addresses[0])
            .values(status="unsubscribed")
        )
    link = link_for(html_links(outbox, week.addresses[0]), SLUGS[0], 0, "ship")
    assert client.post(link).status_code == 403
    assert vote_rows() == []


def test_a_token_cannot_vote_on_a_comparison_of_another_digest(
    client: TestClient, week: SentWeek, outbox: Path
) -> None:
    with session_scope() as session:
        store(session, published(comparison("not-in-that-digest")))
    link = link_for(html_links(outbox, week.addresses[0]), SLUGS[0], 0, "ship")
    crossed = link.replace(f"/{SLUGS[0]}/", "/not-in-that-digest/")
    assert client.get(crossed).status_code == 404
    assert client.post(crossed).status_code == 404
    assert vote_rows() == []


def test_a_token_of_an_unknown_digest_changes_nothing(client: TestClient, week: SentWeek) -> None:
    subscriber = find(week.addresses[0])
    assert subscriber is not None
    token = tokens.reader_token(week.digest_id + 1000, subscriber.id)
    assert client.post(f"/vote/{token}/{SLUGS[0]}/0/ship").status_code == 404
    assert vote_rows() == []


def test_votes_beyond_the_readers_rate_limit_are_refused(
    client: TestClient, week: SentWeek, outbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_VOTE_RATE_PER_READER", "2/minute")
    reset_caches()
    from digest.web.app import create_app

    links = html_links(outbox, week.addresses[0])
    with TestClient(create_app()) as limited:
        assert limited.post(link_for(links, SLUGS[0], 0, "ship")).status_code == 200
        assert limited.post(link_for(links, SLUGS[0], 1, "ship")).status_code == 200
        refused = limited.post(link_for(links, SLUGS[1], 0, "ship"))
    assert refused.status_code == 429 and refused.headers["Retry-After"]
    assert len(vote_rows()) == 2


SEGMENT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="/?#"), min_size=1, max_size=40
)


@given(
    token=SEGMENT,
    slug=SEGMENT,
    position=SEGMENT,
    choice=SEGMENT,
    method=st.sampled_from(["GET", "POST"]),
)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_arbitrary_path_segments_get_a_4xx_never_a_5xx(
    week: SentWeek,
    client: TestClient,
    token: str,
    slug: str,
    position: str,
    choice: str,
    method: str,
) -> None:
    from urllib.parse import quote

    path = "/vote/" + "/".join(quote(s, safe="") for s in (token, slug, position, choice))
    answer = client.request(method, path)
    assert 400 <= answer.status_code < 500
    assert vote_rows() == []


@given(slug=SEGMENT, position=SEGMENT, choice=SEGMENT, method=st.sampled_from(["GET", "POST"]))
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_a_valid_token_with_arbitrary_segments_gets_a_4xx_never_a_5xx(
    week: SentWeek, client: TestClient, slug: str, position: str, choice: str, method: str
) -> None:
    from urllib.parse import quote

    subscriber = find(week.addresses[0])
    assert subscriber is not None
    token = tokens.reader_token(week.digest_id, subscriber.id)
    path = f"/vote/{token}/" + "/".join(quote(s, safe="") for s in (slug, position, choice))
    answer = client.request(method, path)
    assert 400 <= answer.status_code < 500 or (
        answer.status_code == 200 and slug in SLUGS and choice in ("ship", "skip")
    )
    if answer.status_code != 200:
        assert all(row[3] in ("ship", "skip") for row in vote_rows())


def test_the_access_log_never_holds_a_reader_token() -> None:
    from digest.web.log_redaction import redact

    token = tokens.reader_token(12, 34)
    assert redact(f'"POST /vote/{token}/{SLUGS[0]}/0/ship HTTP/1.1" 200') == (
        f'"POST /vote/[redacted]/{SLUGS[0]}/0/ship HTTP/1.1" 200'
    )
