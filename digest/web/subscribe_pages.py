"""Subscribers' pages and the public signup endpoint.

`POST /subscribe` takes plain HTML forms (often cross-origin, no JavaScript) and JSON, and
answers the same whatever the address's state, so it cannot be used to probe who subscribed.
Confirm, unsubscribe, preferences and data links carry signed tokens, one kind per purpose
(digest/tokens.py). GET never changes anything: mail scanners prefetch links, so every change
(confirm, unsubscribe, export, delete) is a POST behind a button. Emails are queued as Celery
tasks only after the database commit; on the embedded default (no broker) the confirmation is
sent after the response, so a new address is not slower to answer than a known one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, Field
from sqlalchemy.exc import OperationalError
from starlette.background import BackgroundTask

from digest import subscriptions
from digest.db import session_scope
from digest.ratelimit import Limited, RateLimiter, limiter_for, parse_limits
from digest.settings import get_settings
from digest.subscriptions import InvalidField
from digest.tokens import (
    ConfirmClaim,
    DataClaim,
    InvalidToken,
    read_confirm_token,
    read_data_token,
    read_manage_token,
)
from digest.web.batching import MicroBatcher

log = logging.getLogger(__name__)
router = APIRouter(tags=["subscriptions"])

TITLE = "Weekly AI Tool Verdicts — get the next comparison in your inbox"
HONEYPOT = "website"
# Paths whose bodies the size limit covers (see digest/web/body_limit.py).
PUBLIC_PREFIXES = ("/subscribe", "/confirm", "/unsubscribe", "/preferences", "/data")

templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"], default_for_string=True, default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",  # token pages must not leak their URL to other sites
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


class SubscribeRequest(BaseModel):
    """A signup, as JSON or as form fields (categories: repeated field or comma-separated)."""

    email: str = Field(description="The address to subscribe (validated, normalised).")
    name: str | None = Field(default=None, max_length=200)
    categories: list[str] = Field(
        default_factory=list, description="Categories to receive; empty means all."
    )
    frequency: str = Field(
        default="weekly", description="`weekly` digest or `every` comparison as it is published."
    )
    timezone: str | None = Field(default=None, description="IANA time zone, e.g. Europe/Berlin.")
    website: str | None = Field(default=None, description="Leave empty (bot trap).")
    redirect: str | None = Field(
        default=None,
        description="Form posts only: where to go after submitting, on an allowlisted origin.",
    )


class PreferencesForm(BaseModel):
    categories: list[str] = Field(default_factory=list)
    frequency: str = "weekly"
    timezone: str | None = None
    paused: str | None = Field(default=None, description="Present (any value) to pause mail.")


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema.pop("title", None)
    return schema


SUBSCRIBE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _schema(SubscribeRequest)},
            "application/x-www-form-urlencoded": {"schema": _schema(SubscribeRequest)},
        },
    }
}
PREFERENCES_BODY = {
    "requestBody": {
        "required": False,
        "content": {"application/x-www-form-urlencoded": {"schema": _schema(PreferencesForm)}},
    }
}
UNSUBSCRIBE_BODY = {
    "requestBody": {
        "required": False,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "List-Unsubscribe": {
                            "type": "string",
                            "enum": ["One-Click"],
                            "description": "RFC 8058 one-click unsubscribe.",
                        }
                    },
                }
            }
        },
    }
}
HTML_PAGE = {"content": {"text/html": {}}}


class SubscribeGuard:
    """The rate limits of POST /subscribe, built once per app from the settings."""

    def __init__(
        self, limiter: RateLimiter, per_ip: str, per_email: str, per_data_link: str = ""
    ) -> None:
        self.limiter = limiter
        self.per_ip = parse_limits(per_ip)
        self.per_email = parse_limits(per_email)
        self.per_data_link = parse_limits(per_data_link)  # data-link emails per subscriber
        self.batcher: MicroBatcher[SignupAttempt, Response] = MicroBatcher(
            partial(handle_signups, self), max_batch=64, concurrency=1, name="signups"
        )


def install(app: FastAPI) -> None:
    """Add the router and its per-app state (rate limiter) to the app."""
    settings = get_settings()
    app.state.subscribe_guard = SubscribeGuard(
        limiter_for(settings.redis_url),
        settings.subscribe_rate_per_ip,
        settings.subscribe_rate_per_email,
        settings.data_link_rate,
    )
    app.add_exception_handler(BadManageLink, _bad_manage_link)
    app.add_exception_handler(BadDataLink, _bad_data_link)
    app.include_router(router)


# --- helpers -------------------------------------------------------------------------------


def page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = templates.get_template(name).render(title=TITLE, **context)
    return HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)


def public_page(response: HTMLResponse) -> HTMLResponse:
    """Pages without a token may tell our own endpoints where a form was (consent source)."""
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def message_page(status_code: int, heading: str, text: str) -> HTMLResponse:
    return page("message.html", status_code, heading=heading, text=text)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def queue_email(kind: str, subscriber_id: int) -> None:
    """Queue a transactional email task (runs in-process when no broker is configured).

    The web layer is the entry point that may talk to Celery; the domain in `digest/` does not.
    """
    from workers import tasks
    from workers.publish import enqueue

    task = {
        "confirmation": tasks.send_confirmation,
        "welcome": tasks.send_welcome,
        "goodbye": tasks.send_goodbye,
        "data_link": tasks.send_data_link,
    }[kind]
    enqueue(task.s(subscriber_id))


def _consent_source(request: Request, is_json: bool) -> str:
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


def _allowed_redirect(target: object) -> str | None:
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


class SignupFields:
    """The raw fields of a POST /subscribe, whichever encoding they came in."""

    def __init__(self, is_json: bool, data: dict[str, Any]) -> None:
        self.is_json = is_json
        self.data = data


def _form_fields(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    categories: list[str] = []
    for key, value in pairs:
        if key == "categories":
            categories.append(value)
        else:
            data.setdefault(key, value)  # the first of a repeated single field wins
    data["categories"] = categories
    return data


def _json_error(status: int, field: str | None, message: str, kind: str) -> JSONResponse:
    loc = ["body", field] if field else ["body"]
    return JSONResponse({"detail": [{"loc": loc, "msg": message, "type": kind}]}, status)


async def signup_fields(request: Request) -> SignupFields | Response:
    """Parse the body in the event loop; the handler then runs in the thread pool."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _json_error(422, None, "the body is not valid JSON", "json_invalid")
        if not isinstance(data, dict):
            return _json_error(422, None, "the body must be a JSON object", "model_type")
        return SignupFields(True, data)
    if content_type == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100)
        except (ValueError, UnicodeDecodeError):
            return _json_error(422, None, "the form body is not valid", "form_invalid")
        return SignupFields(False, _form_fields(pairs))
    if content_type == "multipart/form-data":
        try:
            form = await request.form(max_files=0, max_fields=100)
        except Exception:  # python-multipart's parse errors and Starlette's limits
            return _json_error(422, None, "the form body is not valid", "form_invalid")
        pairs = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
        return SignupFields(False, _form_fields(pairs))
    return JSONResponse(
        {"detail": "send application/x-www-form-urlencoded, multipart/form-data or JSON"}, 415
    )


def _too_many(limited: Limited, is_json: bool) -> Response:
    headers = {"Retry-After": str(limited.retry_after)}
    if is_json:
        return JSONResponse({"detail": "too many requests, try again later"}, 429, headers)
    response = message_page(429, "Too many requests", "Please wait a little and try again.")
    response.headers.update(headers)
    return response


def _accepted(fields: SignupFields) -> Response:
    """The one answer to every accepted (or silently dropped) signup."""
    if fields.is_json:
        return JSONResponse({"status": "pending"}, status_code=202)
    target = _allowed_redirect(fields.data.get("redirect")) or "/thanks"
    return RedirectResponse(target, status_code=303)


def _invalid(fields: SignupFields, error: InvalidField) -> Response:
    if fields.is_json:
        return _json_error(422, error.field, error.message, "value_error")
    return public_page(
        subscribe_form(status_code=422, errors={error.field: error.message}, values=fields.data)
    )


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


# --- signup --------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse, summary="The subscription page")
def home() -> HTMLResponse:
    return public_page(subscribe_form(categories=_categories_or_known()))


def _categories_or_known() -> list[str]:
    """Categories of stored comparisons plus the known ones; the known ones if the DB is down."""
    try:
        with session_scope() as session:
            return subscriptions.available_categories(session)
    except Exception:  # the signup page should still render; POST /subscribe will say more
        log.exception("could not read categories for the subscription page")
        return list(subscriptions.KNOWN_CATEGORIES)


@router.post(
    "/subscribe",
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
    parsed = await signup_fields(request)
    if isinstance(parsed, Response):
        return parsed
    guard: SubscribeGuard = request.app.state.subscribe_guard
    attempt = SignupAttempt(parsed, client_ip(request), _consent_source(request, parsed.is_json))
    return await guard.batcher.submit(attempt)


@dataclass(frozen=True)
class SignupAttempt:
    """One POST /subscribe, parsed, waiting for its batch."""

    fields: SignupFields
    ip: str
    source: str


def _per_ip_limits(guard: SubscribeGuard, attempts: list[SignupAttempt]) -> dict[int, Limited]:
    """The per-IP limit for a batch: one counter update for all of an IP's attempts when they
    all fit (the usual case), else attempt by attempt, so exactly those over the limit are
    refused. Returns the refused attempts' indexes."""
    by_ip: dict[str, list[int]] = {}
    for index, attempt in enumerate(attempts):
        by_ip.setdefault(attempt.ip, []).append(index)
    refused: dict[int, Limited] = {}
    for ip, indexes in by_ip.items():
        cost = len(indexes)
        if (
            cost > 1
            and guard.limiter.fits(guard.per_ip, "subscribe-ip", ip, cost)
            and not guard.limiter.hit(guard.per_ip, "subscribe-ip", ip, cost=cost)
        ):
            continue
        for index in indexes:
            limited = guard.limiter.hit(guard.per_ip, "subscribe-ip", ip)
            if limited:
                refused[index] = limited
    return refused


def handle_signups(guard: SubscribeGuard, attempts: list[SignupAttempt]) -> list[Response]:
    """Answer a batch of signups: limits, honeypot and validation per attempt, then one
    transaction for all of them, then their confirmation tasks in one broker round trip.

    Addresses are written in sorted order, so concurrent batches take row locks in the same
    order and cannot deadlock. One failing statement would fail the whole batch; the statements
    here (insert-or-nothing, guarded updates) do not fail on any input.
    """
    answers: list[Response | None] = [None] * len(attempts)
    ready: list[tuple[str, int]] = []
    refused = _per_ip_limits(guard, attempts)
    for index, attempt in enumerate(attempts):
        fields = attempt.fields
        limited = refused.get(index)
        if limited:
            answers[index] = _too_many(limited, fields.is_json)
            continue
        if fields.data.get(HONEYPOT):
            answers[index] = _accepted(fields)
            continue
        try:
            email = subscriptions.normalise_email(fields.data.get("email"))
        except InvalidField as error:
            answers[index] = _invalid(fields, error)
            continue
        limited = guard.limiter.hit(
            guard.per_email, "subscribe-email", subscriptions.email_hash(email)
        )
        if limited:
            answers[index] = _too_many(limited, fields.is_json)
            continue
        ready.append((email, index))
    to_confirm: list[tuple[int, int]] = []
    if ready:
        ready.sort(key=lambda pair: (pair[0].lower(), pair[1]))
        try:
            to_confirm = _write_signups(attempts, ready, answers)
        except OperationalError:  # a deadlock victim or a dropped connection: all rolled back
            log.warning("signup batch of %d rolled back; trying once more", len(ready))
            to_confirm = _write_signups(attempts, ready, answers)
    if to_confirm and tasks_run_in_process():
        for index, subscriber_id in to_confirm:  # after each answer is sent, never before
            answer = answers[index]
            assert answer is not None
            answer.background = BackgroundTask(send_confirmation_after_response, subscriber_id)
    elif to_confirm:
        queue_confirmations([subscriber_id for _, subscriber_id in to_confirm])
    assert all(answer is not None for answer in answers)
    return answers  # type: ignore[return-value]


def _write_signups(
    attempts: list[SignupAttempt], ready: list[tuple[str, int]], answers: list[Response | None]
) -> list[int]:
    """One transaction for the batch's valid signups; fills their answers and returns (answer
    index, subscriber id) of each confirmation to queue (after the commit, by the caller)."""
    to_confirm: list[tuple[int, int]] = []
    with session_scope() as session:
        valid: list[tuple[subscriptions.Signup, subscriptions.Consent]] = []
        valid_indexes: list[int] = []
        for email, index in ready:
            attempt = attempts[index]
            data = attempt.fields.data
            try:
                signup = subscriptions.make_signup(
                    email=email,
                    name=data.get("name"),
                    categories=data.get("categories"),
                    frequency=data.get("frequency"),
                    timezone=data.get("timezone"),
                    session=session,  # consulted only for a category outside the known list
                )
            except InvalidField as error:
                answers[index] = _invalid(attempt.fields, error)
                continue
            consent = subscriptions.Consent(attempt.source, subscriptions.ip_hash(attempt.ip))
            valid.append((signup, consent))
            valid_indexes.append(index)
        if valid:
            results = subscriptions.subscribe_many(session, valid)
            for index, result in zip(valid_indexes, results, strict=True):
                if result.send_confirmation and result.subscriber_id is not None:
                    to_confirm.append((index, result.subscriber_id))
                answers[index] = _accepted(attempts[index].fields)
    return to_confirm


def tasks_run_in_process() -> bool:
    """True on the embedded default: no broker, so Celery runs a task inside `.delay()`."""
    from workers.app import app as celery_app

    return bool(celery_app.conf.task_always_eager)


def send_confirmation_after_response(subscriber_id: int) -> None:
    """The embedded default's confirmation, run by Starlette once the answer has gone out.

    Sending in the request would make a new address measurably slower to answer than a known
    one, telling a prober who is subscribed. A failure releases the claim, as a broker outage
    does in `queue_confirmations`, so the next signup of the address sends.
    """
    from workers import tasks

    try:
        tasks.send_confirmation.delay(subscriber_id)
    except Exception:
        log.exception("could not send the confirmation for subscriber %s", subscriber_id)
        with session_scope() as session:
            subscriptions.release_confirmation(session, subscriber_id)


def queue_confirmations(subscriber_ids: list[int]) -> None:
    """Queue confirmation tasks after the commit, pipelined in one broker round trip.

    If the broker is down the answer stays the same as an active address's (anything else would
    reveal who is subscribed); the claims are released so that the next try sends, and the outage
    shows in the log and in /healthz.
    """
    from workers import tasks
    from workers.publish import enqueue

    try:
        enqueue(
            *(tasks.send_confirmation.s(subscriber_id) for subscriber_id in subscriber_ids),
            declare_once=True,
        )
    except Exception:  # BrokerUnavailable, or an in-process send that failed
        log.exception("could not queue confirmations for subscribers %s", subscriber_ids)
        with session_scope() as session:
            for subscriber_id in subscriber_ids:
                subscriptions.release_confirmation(session, subscriber_id)


@router.get("/thanks", response_class=HTMLResponse, summary="Thank-you page after signing up")
def thanks() -> HTMLResponse:
    return page("thanks.html")


# --- double opt-in -------------------------------------------------------------------------


def _confirm_claim(token: str) -> ConfirmClaim | HTMLResponse:
    """The claim of a confirmation link, or the 400 page for a bad or expired one."""
    try:
        return read_confirm_token(token)
    except InvalidToken as exc:
        return message_page(
            400,
            "This confirmation link does not work",
            f"{str(exc).capitalize()}. You can sign up again on the subscription page.",
        )


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
def confirm_page(token: str) -> HTMLResponse:
    """Shows a button that POSTs to this URL; opening the link changes nothing.

    Corporate mail scanners open (and some run) every link in an email, so a GET that confirmed
    would subscribe addresses whose owners never clicked. The issue allows a small inline script
    to submit the form for people with JavaScript; we do not add one: our Content-Security-Policy
    allows no script, and a scanner that runs scripts would confirm just the same.
    """
    claim = _confirm_claim(token)
    if isinstance(claim, HTMLResponse):
        return claim
    with session_scope() as session:
        state = subscriptions.confirmation_state(session, claim)
    if state == "unavailable":
        return _confirm_gone()
    if state == "already":
        return page("confirmed.html", already=True)
    return page("confirm.html", token=token)


@router.post(
    "/confirm/{token}",
    response_class=HTMLResponse,
    summary="Confirm a subscription (idempotent)",
    responses={400: HTML_PAGE, 410: HTML_PAGE},
)
def confirm(token: str) -> HTMLResponse:
    """The button of the confirmation page: activates, records consent, sends the welcome.

    Only a link of the address's current signup cycle works: one issued before an unsubscribe
    or an erasure answers 410 even after the address signed up again.
    """
    claim = _confirm_claim(token)
    if isinstance(claim, HTMLResponse):
        return claim
    with session_scope() as session:
        outcome = subscriptions.confirm(session, claim)
    if outcome == "confirmed":
        try:
            queue_email("welcome", claim.subscriber_id)
        except Exception:  # the subscription stands; a missing welcome email is not fatal
            log.exception(
                "could not queue the welcome email for subscriber %s", claim.subscriber_id
            )
    if outcome == "unavailable":
        return _confirm_gone()
    return page("confirmed.html", already=outcome == "already")


# --- unsubscribe ---------------------------------------------------------------------------


class BadManageLink(Exception):
    """An unsubscribe or preferences token that was cut short, changed or forged."""


def _manage_id(token: str) -> int:
    """The subscriber a manage link names; a bad link becomes the 400 page (see `install`)."""
    try:
        return read_manage_token(token)
    except InvalidToken as exc:
        raise BadManageLink from exc


def _bad_manage_link(_request: Request, _exc: Exception) -> HTMLResponse:
    return message_page(
        400,
        "This link does not work",
        "It may have been cut short or changed. Use the link from your latest email.",
    )


@router.get(
    "/unsubscribe/{token}",
    response_class=HTMLResponse,
    summary="Unsubscribe page with a button (changes nothing)",
    responses={400: HTML_PAGE, 404: HTML_PAGE},
)
def unsubscribe_page(token: str) -> HTMLResponse:
    subscriber_id = _manage_id(token)
    with session_scope() as session:
        subscriber = subscriptions.get_subscriber(session, subscriber_id)
        status = subscriber.status if subscriber else None
    if status is None:
        return message_page(404, "Subscription not found", "There is nothing to unsubscribe.")
    return page("unsubscribe.html", token=token, status=status)


@router.post(
    "/unsubscribe/{token}",
    response_class=HTMLResponse,
    summary="Unsubscribe (also RFC 8058 one-click)",
    openapi_extra=UNSUBSCRIBE_BODY,
    responses={400: HTML_PAGE, 404: HTML_PAGE},
)
def unsubscribe(token: str) -> HTMLResponse:
    """Works with the page's button and with mail clients' one-click POST (no cookies)."""
    subscriber_id = _manage_id(token)
    with session_scope() as session:
        outcome = subscriptions.unsubscribe(session, subscriber_id)
    if outcome == "missing":
        return message_page(404, "Subscription not found", "There is nothing to unsubscribe.")
    if outcome == "unsubscribed" and get_settings().send_goodbye:
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
    subscriber: Any,
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


def _gone() -> HTMLResponse:
    return message_page(
        410, "This subscription was deleted", "We keep no personal data for it any more."
    )


@router.get(
    "/preferences/{token}",
    response_class=HTMLResponse,
    summary="Preferences page",
    responses={400: HTML_PAGE, 404: HTML_PAGE, 410: HTML_PAGE},
)
def preferences_page(token: str) -> HTMLResponse:
    subscriber_id = _manage_id(token)
    with session_scope() as session:
        subscriber = subscriptions.get_subscriber(session, subscriber_id)
        if subscriber is None:
            return message_page(404, "Subscription not found", "Sign up again to subscribe.")
        if subscriber.status == "deleted":
            return _gone()
        return _preferences_page(token, subscriber, subscriptions.available_categories(session))


async def form_pairs(request: Request) -> list[tuple[str, str]]:
    """Urlencoded form fields, in the event loop; anything unparseable reads as no fields."""
    body = await request.body()
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
    except (ValueError, UnicodeDecodeError):
        return []


@router.post(
    "/preferences/{token}",
    response_class=HTMLResponse,
    summary="Save preferences (categories, frequency, time zone, pause)",
    openapi_extra=PREFERENCES_BODY,
    responses={400: HTML_PAGE, 404: HTML_PAGE, 410: HTML_PAGE, 422: HTML_PAGE},
)
def save_preferences(
    token: str, pairs: list[tuple[str, str]] = Depends(form_pairs)
) -> HTMLResponse:
    subscriber_id = _manage_id(token)
    values = _form_fields(pairs)
    try:
        with session_scope() as session:
            subscriber = subscriptions.get_subscriber(session, subscriber_id)
            if subscriber is None:
                return message_page(404, "Subscription not found", "Sign up again to subscribe.")
            if subscriber.status == "deleted":
                return _gone()
            categories = subscriptions.available_categories(session)
            subscriptions.update_preferences(
                session,
                subscriber_id,
                categories=values["categories"],
                frequency=values.get("frequency"),
                timezone=values.get("timezone"),
                paused=bool(values.get("paused")),
            )
            return _preferences_page(token, subscriber, categories, saved=True)
    except InvalidField as error:
        with session_scope() as session:
            subscriber = subscriptions.get_subscriber(session, subscriber_id)
            return _preferences_page(
                token,
                subscriber,
                subscriptions.available_categories(session),
                status_code=422,
                errors={error.field: error.message},
                values={
                    **values,
                    "categories": [c for c in values["categories"] if isinstance(c, str)],
                },
            )


# --- export and delete: a fresh, expiring link emailed to the address ----------------------


def _data_link_offer(token: str) -> HTMLResponse:
    """What the manage link's old export/delete paths answer now: offer the emailed link."""
    return page("data_offer.html", token=token)


def _manage_subject_or_page(token: str) -> int | HTMLResponse:
    """The subscriber of a manage link who still has data, or the 404/410 page."""
    subscriber_id = _manage_id(token)
    with session_scope() as session:
        subscriber = subscriptions.get_subscriber(session, subscriber_id)
        status = subscriber.status if subscriber else None
    if status is None:
        return message_page(404, "Subscription not found", "There is no data for this link.")
    if status == "deleted":
        return _gone()
    return subscriber_id


@router.get(
    "/preferences/{token}/export",
    response_class=HTMLResponse,
    summary="Offers to email a link to export or delete data (no longer exports)",
    responses={400: HTML_PAGE, 404: HTML_PAGE, 410: HTML_PAGE},
)
def export(token: str) -> HTMLResponse:
    """Kept as a public path. The manage link is in every email and gets forwarded, so it no
    longer exports anything: export needs the expiring link we email to the address."""
    found = _manage_subject_or_page(token)
    return found if isinstance(found, HTMLResponse) else _data_link_offer(token)


@router.post(
    "/preferences/{token}/delete",
    response_class=HTMLResponse,
    summary="Offers to email a link to export or delete data (no longer deletes)",
    responses={400: HTML_PAGE, 404: HTML_PAGE, 410: HTML_PAGE},
)
def delete(token: str) -> HTMLResponse:
    """Kept as a public path; deleting now needs the expiring link we email to the address."""
    found = _manage_subject_or_page(token)
    return found if isinstance(found, HTMLResponse) else _data_link_offer(token)


@router.post(
    "/preferences/{token}/data-link",
    response_class=HTMLResponse,
    summary="Email the address a fresh, expiring link to export or delete its data",
    responses={400: HTML_PAGE, 404: HTML_PAGE, 410: HTML_PAGE, 429: HTML_PAGE},
)
def request_data_link(token: str, request: Request) -> HTMLResponse:
    """Rate-limited per subscriber (DIGEST_DATA_LINK_RATE): the button must not become a way
    to flood someone's inbox."""
    found = _manage_subject_or_page(token)
    if isinstance(found, HTMLResponse):
        return found
    guard: SubscribeGuard = request.app.state.subscribe_guard
    limited = guard.limiter.hit(guard.per_data_link, "data-link", str(found))
    if limited:
        response = message_page(
            429, "We've just emailed you a link", "Please use that one, or try again later."
        )
        response.headers["Retry-After"] = str(limited.retry_after)
        return response
    try:
        queue_email("data_link", found)
    except Exception:
        log.exception("could not queue the data link for subscriber %s", found)
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


class BadDataLink(Exception):
    """A data token that is forged, expired, of another kind, or no longer names a person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _data_subject(token: str) -> int:
    """The subscriber a data link still names; BadDataLink (400/410, see `install`) otherwise.

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


@router.get(
    "/data/{token}",
    response_class=HTMLResponse,
    summary="Your data: buttons to download or delete it (changes nothing)",
    responses={400: HTML_PAGE, 410: HTML_PAGE},
)
def data_page(token: str) -> HTMLResponse:
    _data_subject(token)
    return page("data.html", token=token, minutes=get_settings().data_link_minutes)


@router.post(
    "/data/{token}/export",
    summary="Download everything stored about this subscriber (JSON)",
    responses={200: {"content": {"application/json": {}}}, 400: HTML_PAGE, 410: HTML_PAGE},
)
def data_export(token: str) -> Response:
    """POST, not GET: export changes nothing, but a scanner or proxy that prefetched a GET
    would pull the person's data into its own logs and caches."""
    subscriber_id = _data_subject(token)
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
def data_delete(token: str) -> HTMLResponse:
    subscriber_id = _data_subject(token)
    with session_scope() as session:
        subscriptions.delete_subscriber(session, subscriber_id)
        subscriptions.end_cycle(session, subscriber_id)  # no old confirmation link works again
    return message_page(
        200,
        "Your data has been erased",
        "We deleted your address, name and preferences. We keep only a one-way hash of the "
        "address so that it is never added again by mistake.",
    )
