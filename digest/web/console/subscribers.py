"""`/console/subscribers`: search by address or name prefix (digest/subscriber_search.py), and a
subscriber's page — status, preferences, consent, every digest sent and SendGrid's events
(digest/ledger_lookup.py), reader verdicts (digest/votes.py) — with three actions, each
CSRF-checked and audited in its own transaction (target `subscriber {id}`, never the address):

- unsubscribe: `subscriber_lifecycle.unsubscribe`, as the unsubscribe link (no goodbye email:
  an operator acting on a complaint should not send one more message);
- resend confirmation: `signup_cycles.resend_confirmation` under the public signup's rules
  (pending only, one per resend interval), then `digest.send_confirmation` queued after the
  commit through workers/publish.py (digest/web/email_tasks.py);
- erase: the public "delete me" exactly (`delete_subscriber` + `end_cycle`), after a confirm page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from digest import audit
from digest.db import session_scope
from digest.ledger_lookup import deliveries_to_subscriber
from digest.privacy import erase_subscriber
from digest.signup_cycles import (
    ResendOutcome,
    end_cycle,
    release_confirmation,
    resend_confirmation,
)
from digest.subscriber_lifecycle import UnsubscribeOutcome, unsubscribe
from digest.subscriber_search import MAX_QUERY, search_subscribers, subscriber_profile
from digest.votes import reader_verdicts
from digest.web.console.views import CONSOLE_HEADERS, Signed, csrf_checked, render, signed_in
from digest.web.email_tasks import queue_email
from schema.statuses import SubscriberStatus

log = logging.getLogger(__name__)
router = APIRouter(tags=["console"], include_in_schema=False, dependencies=[Depends(signed_in)])
PAGE = "/console/subscribers"
NOTICES = {
    "unsubscribed": "Unsubscribed: no more digests go to this address.",
    "resent": "Confirmation email queued; the link in it is the subscriber's current one.",
    "broker": "The task broker is unreachable: nothing was sent. Try again in a minute.",
    "erased": "Erased: the address and name are gone from every table; a hashed suppression "
    "entry keeps the address from being added again.",
}
REFUSALS = {
    ResendOutcome.NOT_PENDING: "Only a pending subscriber can be sent a confirmation.",
    ResendOutcome.SUPPRESSED: "The address is suppressed: no confirmation is sent.",
    ResendOutcome.TOO_SOON: "A confirmation went out a few minutes ago; wait before resending.",
    ResendOutcome.MISSING: "No such subscriber.",
    UnsubscribeOutcome.ALREADY: "This subscriber is not subscribed: nothing to stop.",
    UnsubscribeOutcome.MISSING: "No such subscriber.",
}


class Refused(Exception):
    """An action the subscriber's state does not allow: 409 with the reason, nothing changed."""


class SearchQuery(BaseModel):
    """The search form: a prefix of the address or name, a status, a page key."""

    q: str = Field(default="", max_length=4 * MAX_QUERY)
    status: str = Field(default="", max_length=20)
    before: int | None = Field(default=None, ge=0, le=2**62)
    after: int | None = Field(default=None, ge=0, le=2**62)

    @property
    def wanted_status(self) -> SubscriberStatus | None:
        """The form's "any status" is empty; an unknown value counts as any."""
        return SubscriberStatus(self.status) if self.status in set(SubscriberStatus) else None


@router.get(PAGE)
def subscriber_list(
    query: SearchQuery = Depends(), signed: Signed = Depends(signed_in)
) -> HTMLResponse:
    with session_scope() as session:
        found = search_subscribers(
            session, query.q, status=query.wanted_status, before=query.before, after=query.after
        )
    return render(
        "subscribers.html", signed, page="subscribers", found=found, statuses=list(SubscriberStatus)
    )


def _page_of(signed: Signed, subscriber_id: int, notice: str = "", error: str = ""):
    with session_scope() as session:
        profile = subscriber_profile(session, subscriber_id)
        if profile is None:
            raise HTTPException(404, "no such subscriber", CONSOLE_HEADERS)
        deliveries = deliveries_to_subscriber(session, subscriber_id)
        verdicts = reader_verdicts(session, subscriber_id)
    return render(
        "subscriber.html",
        signed,
        409 if error else 200,
        page="subscribers",
        profile=profile,
        deliveries=deliveries,
        verdicts=verdicts,
        notice=NOTICES.get(notice, ""),
        error=error,
    )


@router.get(PAGE + "/{subscriber_id}")
def subscriber_page(
    subscriber_id: int, notice: str = "", signed: Signed = Depends(signed_in)
) -> HTMLResponse:
    return _page_of(signed, subscriber_id, notice)


def _act(
    signed: Signed, subscriber_id: int, action: str, operate: Callable[[Session], str]
) -> Response:
    """One action and its audit entry in one transaction; `operate` returns the entry's detail
    or raises Refused (rolled back: nothing changed, nothing audited)."""
    try:
        with session_scope() as session:
            detail = operate(session)
            audit.record(session, signed.email, action, f"subscriber {subscriber_id}", detail)
    except Refused as exc:
        return _page_of(signed, subscriber_id, error=str(exc))
    return RedirectResponse(
        f"{PAGE}/{subscriber_id}?notice={action.split('.')[-1]}", 303, headers=CONSOLE_HEADERS
    )


@router.post(PAGE + "/{subscriber_id}/unsubscribe")
def unsubscribe_subscriber(subscriber_id: int, signed: Signed = Depends(csrf_checked)) -> Response:
    def operate(session: Session) -> str:
        outcome = unsubscribe(session, subscriber_id)
        if outcome in REFUSALS:
            raise Refused(REFUSALS[outcome])
        return f"was {'active' if outcome == UnsubscribeOutcome.UNSUBSCRIBED else 'pending'}"

    return _act(signed, subscriber_id, "subscriber.unsubscribed", operate)


@router.post(PAGE + "/{subscriber_id}/resend-confirmation")
def resend(subscriber_id: int, signed: Signed = Depends(csrf_checked)) -> Response:
    """Claimed and audited in one transaction, queued after it commits; a broker that cannot
    be reached gives the claim back (the audit entry stays: the operator did ask)."""

    def operate(session: Session) -> str:
        outcome = resend_confirmation(session, subscriber_id)
        if outcome != ResendOutcome.QUEUE:
            raise Refused(REFUSALS[outcome])
        return "confirmation queued"

    answer = _act(signed, subscriber_id, "subscriber.resent", operate)
    if answer.status_code != 303:
        return answer
    try:
        queue_email("confirmation", subscriber_id)
    except Exception:  # BrokerUnavailable, or an in-process send that failed
        log.exception("could not queue the confirmation for subscriber %s", subscriber_id)
        with session_scope() as session:
            release_confirmation(session, subscriber_id)
        return RedirectResponse(
            f"{PAGE}/{subscriber_id}?notice=broker", 303, headers=CONSOLE_HEADERS
        )
    return answer


@router.get(PAGE + "/{subscriber_id}/erase")
def erase_confirm(subscriber_id: int, signed: Signed = Depends(signed_in)) -> HTMLResponse:
    """The confirm step: what erasure does, and the one button that does it."""
    with session_scope() as session:
        profile = subscriber_profile(session, subscriber_id)
    if profile is None:
        raise HTTPException(404, "no such subscriber", CONSOLE_HEADERS)
    return render("subscriber_erase.html", signed, page="subscribers", profile=profile)


@router.post(PAGE + "/{subscriber_id}/erase")
def erase(subscriber_id: int, signed: Signed = Depends(csrf_checked)) -> Response:
    """Exactly the public "delete me" (digest/web/data_links.py): erase, then end the cycle."""

    def operate(session: Session) -> str:
        report = erase_subscriber(session, subscriber_id)
        if not report.erased:
            raise Refused("Nothing to erase: this subscriber was erased before, or never was.")
        end_cycle(session, subscriber_id)
        return "rows changed: " + ", ".join(f"{t} {n}" for t, n in sorted(report.rows.items()))

    return _act(signed, subscriber_id, "subscriber.erased", operate)
