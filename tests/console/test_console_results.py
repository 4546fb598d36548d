"""A digest's results page (`/console/digests/{id}/results`) and `digest stats --json`: one
function computes both, so they show the same figures. A digest is planned in two segments and
sent (PostgreSQL, Redis, the outbox), its readers' SendGrid events posted signed to the webhook
and processed; the page is then read as a person reads its tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from digest.cli import app as cli
from digest.db import session_scope
from digest.results import digest_results
from schema.models import Comparison
from tests.support.figures import PageFigures, page_figures
from tests.support.results_world import HOUR, WEEK, SentWeek, send_results_week
from tests.support.signed_webhooks import Signer, post_events

FUNNEL = (
    "sent",
    "delivered",
    "human_unique_opens",
    "human_unique_clicks",
    "unique_opens",
    "machine_opens",
    "unique_clicks",
    "machine_clicks",
    "bounced",
    "soft_bounced",
    "complaints",
    "unsubscribes",
    "dropped",
    "deferred",
    "failed_deliveries",
)
SERIES = ("delivered", "human_opens", "human_clicks", "machine_opens", "machine_clicks")
WRITING, DESIGN, DEVTOOLS = (slug for slug, _ in WEEK)


@pytest.fixture
def week(signer: Signer, signed_in: TestClient, outbox: Path) -> SentWeek:
    return send_results_week(outbox)


def post(client: TestClient, signer: Signer, events: list[dict]) -> None:
    assert post_events(client, signer, events).status_code == 204


def readers_act(client: TestClient, signer: Signer, week: SentWeek) -> None:
    """Deliveries, people's opens and clicks, a privacy proxy, a link scanner, a late click,
    a bounce, a complaint and an unsubscribe."""
    ada, bo, cy = week.readers
    picky = week.picky
    events = [week.event("processed", a, 1) for a in (ada, bo, cy, picky)]
    events += [week.event("delivered", a, 5) for a in (ada, bo, picky)]
    events += [
        week.event("bounce", cy, 6, type="bounce", reason="550 no such user"),
        week.event("open", ada, 60, sg_machine_open=True),  # Apple's proxy
        week.event("open", ada, 2 * HOUR),
        week.event("open", ada, 3 * HOUR),
        week.event("open", bo, 5 * HOUR),
        week.event("open", picky, HOUR),
        week.click(ada, WRITING, 2 * HOUR + 10),
        week.click(ada, WRITING, 2 * HOUR + 50, which=1),  # the same item's button
        week.click(ada, DESIGN, 3 * HOUR),
        week.click(bo, DEVTOOLS, 9),  # a scanner: 4 s after delivery
        week.click(picky, DESIGN, HOUR + 30),
        week.click(picky, DEVTOOLS, 50 * HOUR),  # after the first 48 hours
        week.event("spamreport", bo, 6 * HOUR),
        week.event("unsubscribe", picky, 7 * HOUR),
    ]
    post(client, signer, events)


def cli_document(digest_id: int) -> dict:
    result = CliRunner().invoke(cli, ["stats", str(digest_id), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def page(client: TestClient, digest_id: int) -> PageFigures:
    answer = client.get(f"/console/digests/{digest_id}/results")
    assert answer.status_code == 200, answer.text
    return page_figures(answer.text)


def test_the_results_page_shows_the_figures_of_digest_stats_json(
    signer: Signer, signed_in: TestClient, week: SentWeek
) -> None:
    readers_act(signed_in, signer, week)
    document, shown = cli_document(week.digest_id), page(signed_in, week.digest_id)
    assert {name: shown.one(name) for name in FUNNEL} == {name: document[name] for name in FUNNEL}
    assert (document["sent"], document["delivered"], document["bounced"]) == (4, 3, 1)
    assert (document["human_unique_opens"], document["machine_opens"]) == (3, 1)
    assert (document["complaints"], document["unsubscribes"]) == (1, 1)
    for c in document["clicks"]["comparisons"]:
        for name in ("human_clicks", "human_readers", "machine_clicks"):
            assert shown.one(name, "clicks-per-comparison", comparison=c["slug"]) == c[name]
    hours = [[h[name] for name in SERIES] for h in document["activity"]["hours"]]
    assert shown.charts["activity"] == hours
    later = document["activity"]["after_window"]
    assert [shown.one(f"later_{name}") for name in SERIES] == [later[n] for n in SERIES]


def test_machine_clicks_are_not_counted_as_human(
    signer: Signer, signed_in: TestClient, week: SentWeek
) -> None:
    readers_act(signed_in, signer, week)
    shown = page(signed_in, week.digest_id)
    with session_scope() as session:
        results = digest_results(session, week.digest_id)
    devtools = next(c for c in results.clicks.comparisons if c.slug == DEVTOOLS)
    # bo's scanner click is machine; picky's late click is a person's
    assert (devtools.human_clicks, devtools.human_readers, devtools.machine_clicks) == (1, 1, 1)
    assert shown.one("machine_clicks", "clicks-per-comparison", comparison=DEVTOOLS) == 1
    assert results.stats.human_unique_clicks == 2  # ada and picky; not bo
    assert results.stats.machine_clicks == results.clicks.machine_clicks == 1


def test_clicks_per_comparison_add_up_to_the_click_totals(
    signer: Signer, signed_in: TestClient, week: SentWeek
) -> None:
    readers_act(signed_in, signer, week)
    ada = week.readers[0]
    archive = week.event("click", ada, 4 * HOUR, url="http://testserver/archive/x")
    post(signed_in, signer, [archive])
    with session_scope() as session:
        clicks = digest_results(session, week.digest_id).clicks
    items = clicks.comparisons
    assert sum(c.human_clicks for c in items) + clicks.other_links.human_clicks == 6
    assert clicks.human_clicks == 6 and clicks.other_links.human_clicks == 1
    assert sum(c.machine_clicks for c in items) + clicks.other_links.machine_clicks == 1
    for c in items:
        assert sum(s.human_clicks for s in c.segments) == c.human_clicks
        assert sum(s.machine_clicks for s in c.segments) == c.machine_clicks
    shown = page(signed_in, week.digest_id)
    assert shown.one("all_human_clicks", "clicks-per-comparison") == 6
    assert shown.one("human_clicks", "clicks-per-comparison", comparison="") == 1


def test_each_comparison_shows_its_place_in_each_segments_email(
    signer: Signer, signed_in: TestClient, week: SentWeek
) -> None:
    readers_act(signed_in, signer, week)
    with session_scope() as session:
        clicks = digest_results(session, week.digest_id).clicks
    places = {(c.slug, s.segment): s.position for c in clicks.comparisons for s in c.segments}
    assert {places[(slug, "all")] for slug, _ in WEEK} == {1, 2, 3}
    for slug, _ in WEEK:  # in everyone's email the digest's ranking is the order
        assert places[(slug, "all")] == week.ranks[slug]
    picky = {slug: p for (slug, key), p in places.items() if key.startswith("categories:")}
    assert WRITING not in picky  # not in that segment's email, and no click from it
    assert sorted(picky.values()) == [1, 2]
    assert sorted(picky, key=picky.__getitem__) == sorted(
        (DESIGN, DEVTOOLS), key=week.ranks.__getitem__
    )
    segment = next(
        s for c in clicks.comparisons if c.slug == DESIGN for s in c.segments if s.segment != "all"
    )
    assert (segment.label, segment.human_clicks) == ("Design · Developer Tools", 1)


def test_the_48_hour_series_adds_up_to_the_figures(
    signer: Signer, signed_in: TestClient, week: SentWeek
) -> None:
    readers_act(signed_in, signer, week)
    with session_scope() as session:
        results = digest_results(session, week.digest_id)
    stats, activity = results.stats, results.activity
    assert len(activity.hours) == 48
    totals = {
        name: sum(getattr(h, name) for h in activity.hours) + getattr(activity.after_window, name)
        for name in SERIES
    }
    assert totals == {
        "delivered": stats.delivered,
        "human_opens": stats.human_unique_opens,
        "human_clicks": stats.human_unique_clicks,
        "machine_opens": stats.machine_opens,
        "machine_clicks": stats.machine_clicks,
    }
    assert activity.after_window.human_clicks == 0  # picky's late click is not their first
    start = activity.hours[0].starts_at
    assert start.endswith(":00:00+00:00")
    first_open = next(h for h in activity.hours if h.human_opens)
    assert first_open.hour == (week.sent_at + HOUR - _epoch(start)) // HOUR  # picky's, at +1 h


def _epoch(iso: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(iso).timestamp())


def test_a_late_click_counts_after_the_window(
    signer: Signer, signed_in: TestClient, week: SentWeek
) -> None:
    ada = week.readers[0]
    post(signed_in, signer, [week.event("delivered", ada, 5), week.click(ada, WRITING, 60 * HOUR)])
    with session_scope() as session:
        activity = digest_results(session, week.digest_id).activity
    assert sum(h.human_clicks for h in activity.hours) == 0
    assert activity.after_window.human_clicks == 1


def test_a_vote_link_click_counts_for_its_comparison(
    signer: Signer, signed_in: TestClient, week: SentWeek
) -> None:
    ada = week.readers[0]
    vote = next(u for u in week.links[ada][DESIGN] if "/vote/" in u)
    post(signed_in, signer, [week.event("click", ada, 2 * HOUR, url=vote)])
    with session_scope() as session:
        clicks = digest_results(session, week.digest_id).clicks
    design = next(c for c in clicks.comparisons if c.slug == DESIGN)
    assert (design.human_clicks, clicks.other_links.human_clicks) == (1, 0)


def test_a_link_without_utm_content_is_matched_by_its_address(
    signer: Signer, signed_in: TestClient, week: SentWeek
) -> None:
    """Emails rendered before links carried `utm_content`: the page's address names the item."""
    ada = week.readers[0]
    old = week.links[ada][DESIGN][0].split("?")[0] + "?utm_source=newsletter"
    post(signed_in, signer, [week.event("click", ada, 2 * HOUR, url=old)])
    with session_scope() as session:
        clicks = digest_results(session, week.digest_id).clicks
    assert next(c for c in clicks.comparisons if c.slug == DESIGN).human_clicks == 1


def test_reader_verdicts_shown_match_the_tallies(
    signer: Signer, signed_in: TestClient, week: SentWeek
) -> None:
    from digest.votes import tallies_for

    ada, bo, _ = week.readers
    for reader, choice in ((ada, "ship"), (bo, "skip"), (week.picky, "ship")):
        vote = next(u for u in week.links[reader][DESIGN] if u.endswith(f"/0/{choice}"))
        assert signed_in.post(vote.split("testserver", 1)[1]).status_code == 200
    shown = page(signed_in, week.digest_id)
    with session_scope() as session:
        ids = {c.slug: c.id for c in session.query(Comparison)}
        tallies = tallies_for(session, list(ids.values()))
    for slug, _ in WEEK:
        for position, tally in enumerate(tallies[ids[slug]]):
            row = {"comparison": slug, "tool": str(position)}
            assert shown.one("ship", "reader-verdicts", **row) == tally.ship
            assert shown.one("skip", "reader-verdicts", **row) == tally.skip
    assert (tallies[ids[DESIGN]][0].ship, tallies[ids[DESIGN]][0].skip) == (2, 1)
    for verdicts in cli_document(week.digest_id)["reader_verdicts"]:
        for t in verdicts["tools"]:
            row = {"comparison": verdicts["slug"], "tool": str(t["position"])}
            assert shown.one("total", "reader-verdicts", **row) == t["total"]


def test_results_of_an_unknown_digest_are_404(signed_in: TestClient) -> None:
    assert signed_in.get("/console/digests/4242/results").status_code == 404


def test_the_digest_page_and_the_dashboard_link_to_the_results(
    signer: Signer, signed_in: TestClient, week: SentWeek
) -> None:
    target = f'href="/console/digests/{week.digest_id}/results"'
    assert target in signed_in.get(f"/console/digests/{week.digest_id}").text
    assert target in signed_in.get("/console").text


def test_a_hostile_comparison_title_reaches_the_results_page_inert(
    signer: Signer, signed_in: TestClient, week: SentWeek
) -> None:
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    with session_scope() as session:
        session.query(Comparison).filter(Comparison.slug == DESIGN).update({"title": hostile})
    html = signed_in.get(f"/console/digests/{week.digest_id}/results").text
    assert hostile not in html
    assert "&lt;script&gt;alert(" in html
