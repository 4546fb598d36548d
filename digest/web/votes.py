"""Ship it / Skip it: `GET /vote/...` shows the choice with one button, `POST` records it.

The link is `/vote/{reader token}/{comparison slug}/{tool position}/{ship|skip}`. Link scanners
fetch every link of an email and some run the page's scripts: the GET reads and changes nothing,
and the page has no script at all (CSP `default-src 'none'`), so a scanner records nothing and a
person presses one button. The POST needs no CSRF token: the unguessable reader token is in its
path, so a forged cross-site form can only cast the verdict its own link already names.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse
from starlette.background import BackgroundTask

from digest import votes
from digest.db import session_scope
from digest.email_views import tracked_url
from digest.ratelimit import RateLimiter, parse_limits
from digest.settings import get_settings
from digest.web.links import ReaderLink
from digest.web.pages import HTML_PAGE, message_page, page
from schema.models import Comparison
from workers import tasks
from workers.publish import enqueue

log = logging.getLogger(__name__)
router = APIRouter(tags=["verdicts"])

VOTE_PATH = "/vote/{token}/{slug}/{position}/{choice}"
Position = Annotated[int, Path(ge=-(2**31), le=2**31)]
ANSWERS = {400: HTML_PAGE, 403: HTML_PAGE, 404: HTML_PAGE, 410: HTML_PAGE, 429: HTML_PAGE}


class VoteGuard:
    """The vote endpoints' rate limits: per reader (token's subscriber) and per client IP."""

    def __init__(self, limiter: RateLimiter) -> None:
        settings = get_settings()
        self.limiter = limiter
        self.per_reader = parse_limits(settings.vote_rate_per_reader)
        self.per_ip = parse_limits(settings.vote_rate_per_ip)

    def refused(self, request: Request, subscriber_id: int | None) -> HTMLResponse | None:
        ip = request.client.host if request.client else "unknown"
        hit = self.limiter.hit(self.per_ip, "vote-ip", ip)
        if hit is None and subscriber_id is not None:
            hit = self.limiter.hit(self.per_reader, "vote-reader", str(subscriber_id))
        if hit is None:
            return None
        response = message_page(429, "Too many votes", "Please wait a moment and try again.")
        response.headers["Retry-After"] = str(hit.retry_after)
        return response


def _refused(exc: votes.VoteRefused) -> HTMLResponse:
    return message_page(exc.status, "This vote cannot be counted", str(exc))


@router.get(
    VOTE_PATH,
    response_class=HTMLResponse,
    summary="The verdict a link names, with one button (records nothing)",
    responses=ANSWERS,
)
def vote_page(
    request: Request, claim: ReaderLink, slug: str, position: Position, choice: str
) -> HTMLResponse:
    """Reads the link and shows the verdict with a button that POSTs it; changes nothing."""
    if (limited := request.app.state.vote_guard.refused(request, None)) is not None:
        return limited
    if choice not in votes.CHOICES:
        return message_page(404, "This vote cannot be counted", "A verdict is ship or skip.")
    try:
        with session_scope() as session:
            target = votes.find_target(session, claim, slug, position)
    except votes.VoteRefused as exc:
        return _refused(exc)
    return page("vote.html", target=target, choice=choice, action=request.url.path)


@router.post(
    VOTE_PATH,
    response_class=HTMLResponse,
    summary="Record a reader's verdict (the latest counts)",
    responses=ANSWERS,
)
def cast_vote(
    request: Request, claim: ReaderLink, slug: str, position: Position, choice: str
) -> HTMLResponse:
    """Records the verdict, shows the readers' tally, and sends the event to the site."""
    guard: VoteGuard = request.app.state.vote_guard
    if (limited := guard.refused(request, claim.subscriber_id)) is not None:
        return limited
    try:
        with session_scope() as session:
            outcome = votes.cast(session, claim, slug, position, choice)
        # the comparison's page, UTM-tagged, from the columns already read (no tools loaded)
        url = tracked_url(Comparison(slug=outcome.target.slug, url=outcome.target.url))
    except votes.VoteRefused as exc:
        return _refused(exc)
    tally = outcome.tallies[position] if position < len(outcome.tallies) else None
    response = page("vote_recorded.html", outcome=outcome, tally=tally, comparison_url=url)
    if outcome.event_row_id is not None:
        response.background = BackgroundTask(_queue_event, outcome.event_row_id)
    return response


def _queue_event(event_row_id: int) -> None:
    """After the answer: a lost publish is found by beat's sweeper (the row is committed)."""
    try:
        enqueue(tasks.deliver_site_event.s(event_row_id))
    except Exception:
        log.exception("could not queue site event %s; the sweeper will", event_row_id)
