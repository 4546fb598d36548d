"""Export and delete: a fresh, expiring link emailed to the address, never the manage link.

The manage link is in every email and gets forwarded, so its old export/delete paths only offer
to email a data link (`/preferences/{token}/data-link`); the data link (`/data/{token}`) shows
buttons, and its POSTs export or erase.
"""

from __future__ import annotations

import json
import logging

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from digest import subscriptions
from digest.db import session_scope
from digest.settings import get_settings
from digest.web.email_tasks import queue_email
from digest.web.links import BadDataLink, DataLink, ManagedWithData
from digest.web.pages import HTML_PAGE, message_page, page
from digest.web.signup_service import SubscribeGuard

log = logging.getLogger(__name__)
router = APIRouter(tags=["subscriptions"])


def _data_link_offer(token: str) -> HTMLResponse:
    """What the manage link's old export/delete paths answer now: offer the emailed link."""
    return page("data_offer.html", token=token)


@router.get(
    "/preferences/{token}/export",
    response_class=HTMLResponse,
    summary="Offers to email a link to export or delete data (no longer exports)",
    responses={400: HTML_PAGE, 404: HTML_PAGE, 410: HTML_PAGE},
)
def export(token: str, _subscriber_id: ManagedWithData) -> HTMLResponse:
    """Kept as a public path. The manage link is in every email and gets forwarded, so it no
    longer exports anything: export needs the expiring link we email to the address."""
    return _data_link_offer(token)


@router.post(
    "/preferences/{token}/delete",
    response_class=HTMLResponse,
    summary="Offers to email a link to export or delete data (no longer deletes)",
    responses={400: HTML_PAGE, 404: HTML_PAGE, 410: HTML_PAGE},
)
def delete(token: str, _subscriber_id: ManagedWithData) -> HTMLResponse:
    """Kept as a public path; deleting now needs the expiring link we email to the address."""
    return _data_link_offer(token)


@router.post(
    "/preferences/{token}/data-link",
    response_class=HTMLResponse,
    summary="Email the address a fresh, expiring link to export or delete its data",
    responses={400: HTML_PAGE, 404: HTML_PAGE, 410: HTML_PAGE, 429: HTML_PAGE},
)
def request_data_link(subscriber_id: ManagedWithData, request: Request) -> HTMLResponse:
    """Rate-limited per subscriber (DIGEST_DATA_LINK_RATE): the button must not become a way
    to flood someone's inbox."""
    guard: SubscribeGuard = request.app.state.subscribe_guard
    limited = guard.limiter.hit(guard.per_data_link, "data-link", str(subscriber_id))
    if limited:
        response = message_page(
            429, "We've just emailed you a link", "Please use that one, or try again later."
        )
        response.headers["Retry-After"] = str(limited.retry_after)
        return response
    try:
        queue_email("data_link", subscriber_id)
    except Exception:
        log.exception("could not queue the data link for subscriber %s", subscriber_id)
        return message_page(
            503, "Please try again in a few minutes", "We could not send the email just now."
        )
    minutes = get_settings().data_link_minutes
    return message_page(
        200,
        "We've emailed you a link",
        f"Open it from your inbox to download or delete your data. It works for {minutes} "
        "minutes, and only once for deleting.",
    )


@router.get(
    "/data/{token}",
    response_class=HTMLResponse,
    summary="Your data: buttons to download or delete it (changes nothing)",
    responses={400: HTML_PAGE, 410: HTML_PAGE},
)
def data_page(token: str, _subscriber_id: DataLink) -> HTMLResponse:
    return page("data.html", token=token, minutes=get_settings().data_link_minutes)


@router.post(
    "/data/{token}/export",
    summary="Download everything stored about this subscriber (JSON)",
    responses={200: {"content": {"application/json": {}}}, 400: HTML_PAGE, 410: HTML_PAGE},
)
def data_export(subscriber_id: DataLink) -> Response:
    """POST, not GET: export changes nothing, but a scanner or proxy that prefetched a GET
    would pull the person's data into its own logs and caches."""
    with session_scope() as session:
        data = subscriptions.export_data(session, subscriber_id)
    if data is None:
        raise BadDataLink("gone")
    return Response(
        json.dumps(data, indent=2, ensure_ascii=False),
        media_type="application/json",
        headers={
            "Content-Disposition": 'attachment; filename="weekly-ai-tool-verdicts-my-data.json"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


@router.post(
    "/data/{token}/delete",
    response_class=HTMLResponse,
    summary="Erase this subscriber's personal data (keeps a hashed suppression entry)",
    responses={400: HTML_PAGE, 410: HTML_PAGE},
)
def data_delete(subscriber_id: DataLink) -> HTMLResponse:
    with session_scope() as session:
        subscriptions.delete_subscriber(session, subscriber_id)
        subscriptions.end_cycle(session, subscriber_id)  # no old confirmation link works again
    return message_page(
        200,
        "Your data has been erased",
        "We deleted your address, name and preferences. We keep only a one-way hash of the "
        "address so that it is never added again by mistake.",
    )
