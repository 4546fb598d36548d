"""The console's session cookie, its CSRF token, and where a sign-in may send the browser next.

The session is a cookie signed with itsdangerous (DIGEST_SECRET_KEY, its own salt) holding the
operator's id, their current `session_key` and a random CSRF token; it is HttpOnly, SameSite=Lax,
scoped to `/console`, `Secure` when DIGEST_PUBLIC_URL is https, and expires after
DIGEST_CONSOLE_SESSION_HOURS (the signature's timestamp is checked, not only the browser's
Max-Age). Nothing is stored on the server but the operator's `session_key`: removing the
operator or signing out replaces it, and every cookie signed with the old one is refused.

CSRF is a synchronizer token: the token in the signed cookie must equal the hidden
`csrf_token` field of every POST. The sign-in form, before any session exists, gets a signed
short-lived token in its own cookie (`/console/login` only) and the same value in the form.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from fastapi import Request, Response
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from digest.settings import get_settings

COOKIE = "digest_console"
LOGIN_COOKIE = "digest_console_login"
PREFIX = "/console"
LOGIN_PATH = "/console/login"
LOGIN_FORM_SECONDS = 3600
CSRF_FIELD = "csrf_token"
# A local console path: no scheme, no host, no `//`, no backslash, no control characters.
_LOCAL_NEXT = re.compile(r"/console(?:[/?][A-Za-z0-9/_.\-?=&%]*)?")


@dataclass(frozen=True)
class SessionClaim:
    """What a valid session cookie says; the operator is checked against the database after."""

    operator_id: int
    session_key: str
    csrf: str


def _serializer(salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(get_settings().signing_key, salt=salt)


def session_seconds() -> int:
    return int(get_settings().console_session_hours * 3600)


def _secure() -> bool:
    return get_settings().public_url.lower().startswith("https://")


def read_session(request: Request) -> SessionClaim | None:
    """The claim of a well-signed, unexpired cookie; None for a missing, tampered or old one."""
    raw = request.cookies.get(COOKIE)
    if not raw or len(raw) > 4096:
        return None
    try:
        data = _serializer("console-session").loads(raw, max_age=session_seconds())
    except (BadSignature, SignatureExpired):
        return None
    if not isinstance(data, dict):
        return None
    operator_id, key, csrf = data.get("o"), data.get("k"), data.get("c")
    if not isinstance(operator_id, int) or not isinstance(key, str) or not isinstance(csrf, str):
        return None
    return SessionClaim(operator_id, key, csrf)


def start_session(response: Response, operator_id: int, session_key: str) -> None:
    """A fresh cookie (and a fresh CSRF token) at every sign-in: no session fixation."""
    value = _serializer("console-session").dumps(
        {"o": operator_id, "k": session_key, "c": secrets.token_urlsafe(32)}
    )
    response.set_cookie(
        COOKIE,
        value,
        max_age=session_seconds(),
        path=PREFIX,
        secure=_secure(),
        httponly=True,
        samesite="lax",
    )
    response.delete_cookie(LOGIN_COOKIE, path=LOGIN_PATH, secure=_secure(), httponly=True)


def end_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path=PREFIX, secure=_secure(), httponly=True, samesite="lax")


def csrf_matches(expected: str, submitted: object) -> bool:
    return (
        isinstance(submitted, str)
        and bool(submitted)
        and secrets.compare_digest(expected.encode(), submitted.encode())
    )


def login_form_token(request: Request) -> str:
    """The sign-in form's token: the one its cookie already holds, or a new one."""
    existing = _login_cookie_token(request)
    return existing or secrets.token_urlsafe(32)


def set_login_cookie(response: Response, token: str) -> None:
    response.set_cookie(
        LOGIN_COOKIE,
        _serializer("console-login").dumps(token),
        max_age=LOGIN_FORM_SECONDS,
        path=LOGIN_PATH,
        secure=_secure(),
        httponly=True,
        samesite="lax",
    )


def login_csrf_ok(request: Request, submitted: object) -> bool:
    token = _login_cookie_token(request)
    return token is not None and csrf_matches(token, submitted)


def _login_cookie_token(request: Request) -> str | None:
    raw = request.cookies.get(LOGIN_COOKIE)
    if not raw or len(raw) > 1024:
        return None
    try:
        token = _serializer("console-login").loads(raw, max_age=LOGIN_FORM_SECONDS)
    except (BadSignature, SignatureExpired):
        return None
    return token if isinstance(token, str) else None


def safe_next(target: object) -> str:
    """Where to go after signing in: a local console path, else the dashboard."""
    if (
        isinstance(target, str)
        and len(target) <= 500
        and _LOCAL_NEXT.fullmatch(target)
        and "//" not in target
        and "/.." not in target
    ):
        return target
    return PREFIX
