"""The public archive: `/archive` (editions, newest first), `/archive/{key}`, `/archive/feed.xml`.

Every digest email links its edition here ("view in browser", "N more on the web"). Pages carry
no personal data (no greeting, no manage links; readers' Ship/Skip verdicts only as tallies), are
the same for everyone, and are cheap to serve: a strong ETag over the rendered body answers a
revalidation with 304, and
`Cache-Control: public, max-age=300` lets browsers and proxies keep them for five minutes.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from digest import archive, votes
from digest.db import session_scope
from digest.email_views import entry_view
from digest.settings import get_settings
from digest.web.pages import HTML_PAGE, PAGE_HEADERS, message_page, templates

router = APIRouter(tags=["archive"])

ARCHIVE_UTM = {"utm_source": "newsletter", "utm_medium": "web", "utm_campaign": "archive"}
CACHE = "public, max-age=300"
FEED_SIZE = 50


def cached(request: Request, body: str, media_type: str) -> Response:
    """The body with its ETag, or 304 when the client already has this version."""
    tag = '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'
    headers = {**PAGE_HEADERS, "Cache-Control": CACHE, "ETag": tag}
    if tag in {t.strip() for t in request.headers.get("if-none-match", "").split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


@router.get("/archive", response_class=HTMLResponse, summary="Every sent edition, newest first")
def archive_index(request: Request) -> Response:
    with session_scope() as session:
        editions = archive.list_editions(session)
    html = templates.get_template("archive_index.html").render(editions=editions)
    return cached(request, html, "text/html; charset=utf-8")


@router.get(
    "/archive/feed.xml",
    summary="The archive as an Atom feed",
    responses={200: {"content": {"application/atom+xml": {}}}},
)
def archive_feed(request: Request) -> Response:
    base = get_settings().public_url.rstrip("/")
    with session_scope() as session:
        editions = archive.list_editions(session, limit=FEED_SIZE)
        entries = []
        for summary in editions:
            edition = archive.find_edition(session, summary.key)
            titles = [item.comparison.title for item in edition.items] if edition else []
            entries.append({"summary": summary, "titles": titles})
    updated = max(
        (e.sent_at for e in editions if e.sent_at), default=datetime(2026, 1, 1, tzinfo=UTC)
    )
    xml = templates.get_template("archive_feed.xml").render(
        base=base, entries=entries, updated=updated.astimezone(UTC)
    )
    return cached(request, xml, "application/atom+xml; charset=utf-8")


@router.get(
    "/archive/{key}",
    response_class=HTMLResponse,
    summary="One edition: its ranked comparisons",
    responses={404: HTML_PAGE},
)
def archive_edition(request: Request, key: str) -> Response:
    with session_scope() as session:
        edition = archive.find_edition(session, key)
        if edition is None:
            return message_page(404, "No such edition", "It may have been a test copy.")
        views = [
            entry_view(i.rank, i.comparison, i.explanation, ARCHIVE_UTM) for i in edition.items
        ]
        # readers' Ship/Skip verdicts from the emails' links, per tool (digest/votes.py)
        tallies = votes.tallies_for(session, [i.comparison.id for i in edition.items])
        for view, item in zip(views, edition.items, strict=True):
            for tool, tally in zip(
                view["tools"], tallies.get(item.comparison.id, []), strict=False
            ):
                tool["readers"] = tally
    html = templates.get_template("archive_edition.html").render(
        summary=edition.summary, entries=views
    )
    return cached(request, html, "text/html; charset=utf-8")
