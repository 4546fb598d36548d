"""Double opt-in: `GET /confirm/{token}` shows a button, `POST /confirm/{token}` confirms.

GET never changes anything: corporate mail scanners open (and some run) every link in an email,
so a GET that confirmed would subscribe addresses whose owners never clicked.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from digest import metrics, subscriptions
from digest.db import session_scope
from digest.subscriber_lifecycle import ConfirmationState, ConfirmOutcome
from digest.web.email_tasks import queue_email
from digest.web.links import ConfirmLink
from digest.web.pages import HTML_PAGE, message_page, page

log = logging.getLogger(__name__)
router = APIRouter(tags=["subscriptions"])


def _confirm_gone() -> HTMLResponse:
    return message_page(
        410,
        "This link can no longer be used",
        "This subscription is not waiting for confirmation. Sign up again to subscribe.",
    )


@router.get(
    "/confirm/{token}",
    response_class=HTMLResponse,
    summary="Confirmation page with a button (changes nothing)",
    responses={400: HTML_PAGE, 410: HTML_PAGE},
)
def confirm_page(token: str, claim: ConfirmLink) -> HTMLResponse:
    """Shows a button that POSTs to this URL; opening the link changes nothing.

    Corporate mail scanners open (and some run) every link in an email, so a GET that confirmed
    would subscribe addresses whose owners never clicked. The issue allows a small inline script
    to submit the form for people with JavaScript; we do not add one: our Content-Security-Policy
    allows no script, and a scanner that runs scripts would confirm just the same.
    """
    with session_scope() as session:
        state = subscriptions.confirmation_state(session, claim)
    if state == ConfirmationState.UNAVAILABLE:
        return _confirm_gone()
    if state == ConfirmationState.ALREADY:
        return page("confirmed.html", already=True)
    return page("confirm.html", token=token)


@router.post(
    "/confirm/{token}",
    response_class=HTMLResponse,
    summary="Confirm a subscription (idempotent)",
    responses={400: HTML_PAGE, 410: HTML_PAGE},
)
def confirm(claim: ConfirmLink) -> HTMLResponse:
    """The button of the confirmation page: activates, records consent, sends the welcome.

    Only a link of the address's current signup cycle works: one issued before an unsubscribe
    or an erasure answers 410 even after the address signed up again.
    """
    with session_scope() as session:
        outcome = subscriptions.confirm(session, claim)
    if outcome == ConfirmOutcome.CONFIRMED:
        metrics.recorder().confirmation()
        try:
            queue_email("welcome", claim.subscriber_id)
        except Exception:  # the subscription stands; a missing welcome email is not fatal
            log.exception(
                "could not queue the welcome email for subscriber %s", claim.subscriber_id
            )
    if outcome == ConfirmOutcome.UNAVAILABLE:
        return _confirm_gone()
    return page("confirmed.html", already=outcome == ConfirmOutcome.ALREADY)
