"""Signing in and out of the console.

Every failed sign-in gets the same answer (status and bytes) whether the address has an account
or not, after the same Argon2 work (digest/operators.py). Attempts are limited per client IP
and per address (DIGEST_CONSOLE_LOGIN_RATE_PER_IP, …_PER_ACCOUNT, moving windows in Redis
when configured); a refused attempt gets 429 with Retry-After and no password check at all.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from digest import audit
from digest.addresses import email_hash
from digest.db import session_scope
from digest.operators import end_sessions, verify_login
from digest.ratelimit import limiter_for, parse_limits
from digest.settings import get_settings
from digest.web.console.session import (
    LOGIN_PATH,
    end_session,
    login_csrf_ok,
    login_form_token,
    safe_next,
    set_login_cookie,
    start_session,
)
from digest.web.console.views import CONSOLE_HEADERS, Signed, csrf_checked, render
from digest.web.signup import client_ip

router = APIRouter(tags=["console"], include_in_schema=False)
FAILED = "That email address and password do not match an operator."


def _limiter(request: Request):  # one per app, built on first use (settings may change in tests)
    limiter = getattr(request.app.state, "console_limiter", None)
    if limiter is None:
        limiter = request.app.state.console_limiter = limiter_for(get_settings().redis_url)
    return limiter


def _form(token: str, next_path: str, status_code: int = 200, error: str = "") -> HTMLResponse:
    response = render(
        "login.html", None, status_code, token=token, next_path=next_path, error=error
    )
    set_login_cookie(response, token)
    return response


@router.get(LOGIN_PATH)
def login_form(request: Request, next: str = "") -> HTMLResponse:
    return _form(login_form_token(request), safe_next(next))


def _too_many(request: Request, email: str, next_path: str) -> Response | None:
    settings = get_settings()
    limiter = _limiter(request)
    checks = (
        (settings.console_login_rate_per_ip, "console-login-ip", client_ip(request)),
        (settings.console_login_rate_per_account, "console-login-account", email_hash(email)),
    )
    for spec, scope, identifier in checks:
        limited = limiter.hit(parse_limits(spec), scope, identifier)
        if limited is not None:
            response = render(
                "login.html",
                None,
                429,
                token=login_form_token(request),
                next_path=next_path,
                error="Too many sign-in attempts. Wait a minute and try again.",
            )
            response.headers["Retry-After"] = str(limited.retry_after)
            return response
    return None


@router.post(LOGIN_PATH)
def login(
    request: Request,
    email: str = Form("", max_length=320),
    password: str = Form("", max_length=4096),
    csrf_token: str = Form(""),
    next: str = Form(""),
) -> Response:
    next_path = safe_next(next)
    if not login_csrf_ok(request, csrf_token):
        return _form(login_form_token(request), next_path, 403, "The form expired. Try again.")
    address, ip = email.strip().lower(), client_ip(request)
    refused = _too_many(request, address, next_path)
    if refused is not None:
        return refused
    with session_scope() as session:
        operator = verify_login(session, address, password)
        if operator is None:  # the same write for an unknown address as for a wrong password
            audit.record(session, address or "(blank)", "console.sign-in-refused", None, ip)
        else:
            audit.record(session, operator.email, "console.sign-in", detail=ip)
            operator_id, key = operator.id, operator.session_key
    if operator is None:
        return _form(csrf_token, next_path, 400, FAILED)
    response = RedirectResponse(next_path, status_code=303, headers=CONSOLE_HEADERS)
    start_session(response, operator_id, key)
    return response


@router.post("/console/logout")
def logout(signed: Signed = Depends(csrf_checked)) -> Response:
    """Ends every session of this operator (the key in their cookies is replaced)."""
    with session_scope() as session:
        end_sessions(session, signed.operator_id)
        audit.record(session, signed.email, "console.sign-out")
    response = RedirectResponse(LOGIN_PATH, status_code=303, headers=CONSOLE_HEADERS)
    end_session(response)
    return response
