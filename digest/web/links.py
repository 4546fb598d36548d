"""Signed links as FastAPI dependencies: one per token kind, each answering its own errors.

A route declares what its link must be (`ConfirmLink`, `ManageLink`, `DataLink`, `ReaderLink`, or
`ManagedWithData` for a manage link whose subscriber still has data) and receives the claim or
the subscriber id; a forged, cut-short or expired link never reaches the route. The exceptions
raised here become the 400/404/410 pages through the handlers `install_handlers` registers.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse

from digest import subscriptions
from digest.db import session_scope
from digest.tokens import (
    ConfirmClaim,
    DataClaim,
    InvalidToken,
    ReaderClaim,
    read_confirm_token,
    read_data_token,
    read_manage_token,
    read_reader_token,
)
from digest.web.pages import gone_page, message_page
from schema.statuses import SubscriberStatus


class BadConfirmLink(Exception):
    """A confirmation token that is forged, cut short or expired; the message says which."""


class BadManageLink(Exception):
    """An unsubscribe or preferences token that was cut short, changed or forged."""


class BadDataLink(Exception):
    """A data token that is forged, expired, of another kind, or no longer names a person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BadReaderLink(Exception):
    """A vote link whose reader token is forged, cut short or of another kind."""


class SubscriptionNotFound(Exception):
    """A valid manage link whose subscriber row is gone; the message is the page's text."""


class SubscriptionGone(Exception):
    """A valid manage link whose subscriber was erased (410)."""


async def confirm_claim(token: str) -> ConfirmClaim:
    """The claim of a confirmation link (signature and age only: no database)."""
    try:
        return read_confirm_token(token)
    except InvalidToken as exc:
        raise BadConfirmLink(str(exc)) from exc


async def manage_subscriber_id(token: str) -> int:
    """The subscriber a manage link names (signature only: no database)."""
    try:
        return read_manage_token(token)
    except InvalidToken as exc:
        raise BadManageLink from exc


async def reader_claim(token: str) -> ReaderClaim:
    """The claim of a vote link's reader token (signature only: no database)."""
    try:
        return read_reader_token(token)
    except InvalidToken as exc:
        raise BadReaderLink from exc


def ensure_live(status: str | None, missing: str) -> None:
    """404 (with `missing` as its text) for no subscriber, 410 for an erased one."""
    if status is None:
        raise SubscriptionNotFound(missing)
    if status == SubscriberStatus.DELETED:
        raise SubscriptionGone


def subscriber_with_data(subscriber_id: Annotated[int, Depends(manage_subscriber_id)]) -> int:
    """The subscriber of a manage link who still has data (the data-offer paths)."""
    with session_scope() as session:
        subscriber = subscriptions.get_subscriber(session, subscriber_id)
        status = subscriber.status if subscriber else None
    ensure_live(status, "There is no data for this link.")
    return subscriber_id


def data_subject(token: str) -> int:
    """The subscriber a data link still names.

    The link is bound to the address it was emailed to: once the person is erased (their
    address replaced), it names nobody, so it stops working after a delete.
    """
    try:
        claim: DataClaim = read_data_token(token)
    except InvalidToken as exc:
        raise BadDataLink(str(exc)) from exc
    with session_scope() as session:
        if subscriptions.data_link_subject(session, claim) is None:
            raise BadDataLink("gone")
    return claim.subscriber_id


ConfirmLink = Annotated[ConfirmClaim, Depends(confirm_claim)]
ManageLink = Annotated[int, Depends(manage_subscriber_id)]
ManagedWithData = Annotated[int, Depends(subscriber_with_data)]
DataLink = Annotated[int, Depends(data_subject)]
ReaderLink = Annotated[ReaderClaim, Depends(reader_claim)]


# --- the pages of a bad link -----------------------------------------------------------------


def _bad_confirm_link(_request: Request, exc: Exception) -> HTMLResponse:
    return message_page(
        400,
        "This confirmation link does not work",
        f"{str(exc).capitalize()}. You can sign up again on the subscription page.",
    )


def _bad_manage_link(_request: Request, _exc: Exception) -> HTMLResponse:
    return message_page(
        400,
        "This link does not work",
        "It may have been cut short or changed. Use the link from your latest email.",
    )


def _not_found(_request: Request, exc: Exception) -> HTMLResponse:
    return message_page(404, "Subscription not found", str(exc))


def _gone(_request: Request, _exc: Exception) -> HTMLResponse:
    return gone_page()


def _bad_data_link(_request: Request, exc: Exception) -> HTMLResponse:
    if isinstance(exc, BadDataLink) and exc.reason == "gone":
        return message_page(
            410,
            "This link can no longer be used",
            "There is no data left for it. If you still get our email, ask for a new link on "
            "your preferences page.",
        )
    reason = str(exc).capitalize() if isinstance(exc, BadDataLink) else "This link is not valid"
    return message_page(
        400,
        "This link does not work",
        f"{reason}. Ask for a new one on your preferences page (the link in any of our emails).",
    )


def _bad_reader_link(_request: Request, _exc: Exception) -> HTMLResponse:
    return message_page(
        400,
        "This vote link does not work",
        "It may have been cut short or changed. Use the Ship it or Skip it link in your email.",
    )


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(BadConfirmLink, _bad_confirm_link)
    app.add_exception_handler(BadManageLink, _bad_manage_link)
    app.add_exception_handler(SubscriptionNotFound, _not_found)
    app.add_exception_handler(SubscriptionGone, _gone)
    app.add_exception_handler(BadDataLink, _bad_data_link)
    app.add_exception_handler(BadReaderLink, _bad_reader_link)
