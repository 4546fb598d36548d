"""What a manage link (in every email) does: unsubscribe, and the preferences page.

The unsubscribe POST also serves mail clients' RFC 8058 one-click unsubscribe (no cookies, no
page). Changing preferences never re-subscribes.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from digest import subscriptions
from digest.db import session_scope
from digest.settings import get_settings
from digest.subscriber_lifecycle import UnsubscribeOutcome
from digest.subscriptions import InvalidField
from digest.web.email_tasks import queue_email
from digest.web.forms import (
    PREFERENCES_BODY,
    UNSUBSCRIBE_BODY,
    PreferencesForm,
    form_fields,
    form_pairs,
    validated,
)
from digest.web.links import ManageLink, SubscriptionNotFound, ensure_live
from digest.web.pages import HTML_PAGE, page
from schema.models import Subscriber

log = logging.getLogger(__name__)
router = APIRouter(tags=["subscriptions"])

NOTHING_TO_UNSUBSCRIBE = "There is nothing to unsubscribe."
SIGN_UP_AGAIN = "Sign up again to subscribe."


@router.get(
    "/unsubscribe/{token}",
    response_class=HTMLResponse,
    summary="Unsubscribe page with a button (changes nothing)",
    responses={400: HTML_PAGE, 404: HTML_PAGE},
)
def unsubscribe_page(token: str, subscriber_id: ManageLink) -> HTMLResponse:
    with session_scope() as session:
        subscriber = subscriptions.get_subscriber(session, subscriber_id)
        status = subscriber.status if subscriber else None
    if status is None:
        raise SubscriptionNotFound(NOTHING_TO_UNSUBSCRIBE)
    return page("unsubscribe.html", token=token, status=status)


@router.post(
    "/unsubscribe/{token}",
    response_class=HTMLResponse,
    summary="Unsubscribe (also RFC 8058 one-click)",
    openapi_extra=UNSUBSCRIBE_BODY,
    responses={400: HTML_PAGE, 404: HTML_PAGE},
)
def unsubscribe(token: str, subscriber_id: ManageLink) -> HTMLResponse:
    """Works with the page's button and with mail clients' one-click POST (no cookies)."""
    with session_scope() as session:
        outcome = subscriptions.unsubscribe(session, subscriber_id)
    if outcome == UnsubscribeOutcome.MISSING:
        raise SubscriptionNotFound(NOTHING_TO_UNSUBSCRIBE)
    if outcome == UnsubscribeOutcome.UNSUBSCRIBED and get_settings().send_goodbye:
        try:
            queue_email("goodbye", subscriber_id)
        except Exception:  # unsubscribing must not fail because a goodbye could not be queued
            log.exception("could not queue the goodbye email for subscriber %s", subscriber_id)
    return page("unsubscribed.html", token=token)


# --- preferences ---------------------------------------------------------------------------


def _masked(address: str) -> str:
    """a•••@example.com: enough to recognise, little to leak if the link is forwarded."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}•••@{domain}"


def _preferences_page(
    token: str,
    subscriber: Subscriber,
    categories: list[str],
    *,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    saved: bool = False,
    values: dict[str, Any] | None = None,
) -> HTMLResponse:
    chosen = values["categories"] if values else list(subscriber.categories or [])
    return page(
        "preferences.html",
        status_code,
        token=token,
        masked_email=_masked(subscriber.email),
        status=subscriber.status,
        categories=sorted(set(categories) | set(subscriber.categories or [])),
        chosen={c.lower() for c in chosen},
        frequency=(values or {}).get("frequency") or subscriber.frequency,
        timezone=(values or {}).get("timezone", subscriber.timezone) or "",
        paused=bool((values or {}).get("paused")) if values else subscriber.paused,
        timezones=subscriptions.timezone_names(),
        errors=errors or {},
        saved=saved,
    )


@router.get(
    "/preferences/{token}",
    response_class=HTMLResponse,
    summary="Preferences page",
    responses={400: HTML_PAGE, 404: HTML_PAGE, 410: HTML_PAGE},
)
def preferences_page(token: str, subscriber_id: ManageLink) -> HTMLResponse:
    with session_scope() as session:
        subscriber = subscriptions.get_subscriber(session, subscriber_id)
        ensure_live(subscriber.status if subscriber else None, SIGN_UP_AGAIN)
        assert subscriber is not None
        return _preferences_page(token, subscriber, subscriptions.available_categories(session))


@router.post(
    "/preferences/{token}",
    response_class=HTMLResponse,
    summary="Save preferences (categories, frequency, time zone, pause)",
    openapi_extra=PREFERENCES_BODY,
    responses={400: HTML_PAGE, 404: HTML_PAGE, 410: HTML_PAGE, 422: HTML_PAGE},
)
def save_preferences(
    token: str,
    pairs: list[tuple[str, str]] = Depends(form_pairs),  # read before the link is checked
    *,
    subscriber_id: ManageLink,
) -> HTMLResponse:
    values = form_fields(pairs)
    with session_scope() as session:
        subscriber = subscriptions.get_subscriber(session, subscriber_id)
        ensure_live(subscriber.status if subscriber else None, SIGN_UP_AGAIN)
        assert subscriber is not None
        categories = subscriptions.available_categories(session)
        try:
            form = validated(PreferencesForm, values, session)
        except InvalidField as error:  # nothing is saved; the form comes back with the error
            return _preferences_page(
                token,
                subscriber,
                categories,
                status_code=422,
                errors={error.field: error.message},
                values=values,
            )
        subscriptions.update_preferences(
            session,
            subscriber_id,
            categories=form.categories,
            frequency=form.frequency,
            timezone=form.timezone,
            paused=bool(form.paused),
        )
        return _preferences_page(token, subscriber, categories, saved=True)
