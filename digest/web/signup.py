"""The subscription page and `POST /subscribe` (double opt-in), and the thank-you page.

`POST /subscribe` takes plain HTML forms (often cross-origin, no JavaScript) and JSON, and
answers the same whatever the address's state, so it cannot be used to probe who subscribed.
The body is parsed here, in the event loop; limits, the database and the task queue are the
signup service's (digest/web/signup_service.py), a batch of requests at a time.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.background import BackgroundTask
from starlette.types import Receive, Scope, Send

from digest import subscriptions
from digest.db import session_scope
from digest.ratelimit import Limited
from digest.settings import get_settings
from digest.subscriptions import InvalidField
from digest.web.email_tasks import send_confirmation_after_response
from digest.web.forms import SUBSCRIBE_BODY, ParsedBody, json_error, parse_signup_body
from digest.web.pages import message_page, page, public_page
from digest.web.signup_service import (
    Accepted,
    Rejected,
    SignupAttempt,
    SignupOutcome,
    SubscribeGuard,
)

log = logging.getLogger(__name__)
router = APIRouter(tags=["subscriptions"])
SIGNUP_PATH = "/subscribe"


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def consent_source(request: Request, is_json: bool) -> str:
    """Where consent was given: the page's origin (and path, never its query) or "api"."""
    origin = request.headers.get("origin")
    if origin and origin != "null":
        return origin[:500]
    referer = request.headers.get("referer")
    if referer:
        parts = urlsplit(referer)
        if parts.scheme in ("http", "https") and parts.netloc:
            return f"{parts.scheme}://{parts.netloc}{parts.path}"[:500]
    return "api" if is_json else "form"


def allowed_redirect(target: object) -> str | None:
    """The redirect URL if it is absolute http(s) on an allowlisted origin, else None."""
    if not isinstance(target, str) or not target or len(target) > 2000:
        return None
    try:
        parts = urlsplit(target)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    if any(c in target for c in "\r\n\t\\"):
        return None
    origin = f"{parts.scheme}://{parts.netloc}".lower()
    allowed = {o.rstrip("/").lower() for o in get_settings().redirect_origins}
    return target if origin in allowed else None


def subscribe_form(
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    categories: list[str] | None = None,
) -> HTMLResponse:
    values = values or {}
    chosen = subscriptions.split_categories(values.get("categories")) if values else []
    return page(
        "subscribe.html",
        status_code,
        errors=errors or {},
        values={k: v for k, v in values.items() if isinstance(v, str)},
        chosen={c.lower() for c in chosen if isinstance(c, str)},
        categories=categories or subscriptions.KNOWN_CATEGORIES,
        timezones=subscriptions.timezone_names(),
    )


# --- outcomes as answers -------------------------------------------------------------------


def _too_many(limited: Limited, is_json: bool) -> Response:
    headers = {"Retry-After": str(limited.retry_after)}
    if is_json:
        return JSONResponse({"detail": "too many requests, try again later"}, 429, headers)
    response = message_page(429, "Too many requests", "Please wait a little and try again.")
    response.headers.update(headers)
    return response


PENDING_JSON = b'{"status":"pending"}'


def _accepted(fields: ParsedBody) -> Response:
    """The one answer to every accepted (or silently dropped) signup."""
    if fields.is_json:  # the very bytes JSONResponse renders, without rendering them each time
        return Response(PENDING_JSON, 202, media_type="application/json")
    target = allowed_redirect(fields.data.get("redirect")) or "/thanks"
    return RedirectResponse(target, status_code=303)


def _invalid(fields: ParsedBody, error: InvalidField) -> Response:
    if fields.is_json:
        return json_error(422, error.field, error.message, "value_error")
    return public_page(
        subscribe_form(status_code=422, errors={error.field: error.message}, values=fields.data)
    )


def answer(fields: ParsedBody, outcome: SignupOutcome) -> Response:
    if isinstance(outcome, Rejected):
        return _invalid(fields, outcome.error)
    if isinstance(outcome, Accepted):
        response = _accepted(fields)
        if outcome.confirm_after_response is not None:  # after the answer is sent, never before
            response.background = BackgroundTask(
                send_confirmation_after_response, outcome.confirm_after_response
            )
        return response
    return _too_many(outcome, fields.is_json)


# --- routes --------------------------------------------------------------------------------


def _categories_or_known() -> list[str]:
    """Categories of stored comparisons plus the known ones; the known ones if the DB is down."""
    try:
        with session_scope() as session:
            return subscriptions.available_categories(session)
    except Exception:  # the signup page should still render; POST /subscribe will say more
        log.exception("could not read categories for the subscription page")
        return list(subscriptions.KNOWN_CATEGORIES)


@router.get("/", response_class=HTMLResponse, summary="The subscription page")
def home() -> HTMLResponse:
    return public_page(subscribe_form(categories=_categories_or_known()))


@router.post(
    SIGNUP_PATH,
    summary="Subscribe an address (double opt-in)",
    status_code=202,
    openapi_extra=SUBSCRIBE_BODY,
    responses={
        202: {
            "description": "JSON: the address will get a confirmation email if it can.",
            "content": {"application/json": {"example": {"status": "pending"}}},
        },
        303: {"description": "Form: go to the thank-you page (or the allowlisted redirect)."},
        413: {"description": "Body too large"},
        415: {"description": "Unsupported content type"},
        422: {"description": "A field is invalid; the error names it"},
        429: {"description": "Too many requests; see Retry-After"},
    },
)
async def subscribe(request: Request) -> Response:
    """Sign up. The answer is identical for new, pending, active and suppressed addresses.

    The body is parsed here, in the event loop; rate limits, the database and the task queue
    are blocking calls, made for a batch of requests at a time (digest/web/batching.py).
    """
    parsed = await parse_signup_body(request)
    if isinstance(parsed, Response):
        return parsed
    guard: SubscribeGuard = request.app.state.subscribe_guard
    attempt = SignupAttempt(parsed, client_ip(request), consent_source(request, parsed.is_json))
    return answer(parsed, await guard.batcher.submit(attempt))


async def signup_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """`POST /subscribe` as a bare ASGI app: the route's own function, without the router.

    The app calls it behind its request guards (digest/web/app.py, DigestAPI). Under load the
    router's machinery (included-router matching, dependency solving, exception and exit-stack
    wrappers) cost about a third of the web process's CPU per signup, more than the handler.
    Same function, same request object, same answers; the route stays in the router for the
    OpenAPI description.
    """
    response = await subscribe(Request(scope, receive))
    await response(scope, receive, send)


@router.get("/thanks", response_class=HTMLResponse, summary="Thank-you page after signing up")
def thanks() -> HTMLResponse:
    return page("thanks.html")
