"""What every console page shares: who is signed in, the CSRF check, the page headers.

`signed_in` guards every console route but the sign-in form: without a valid session a GET is
sent to `/console/login?next=…` (an HTMX poll is told to go there too) and any other method is
answered 403 before the route runs, so it changes nothing. `csrf_checked` adds the token check
to every POST.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse

from digest.db import session_scope
from digest.operators import operator_for_session
from digest.web.console.session import CSRF_FIELD, LOGIN_PATH, csrf_matches, read_session
from digest.web.pages import templates

CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
CONSOLE_HEADERS = {
    "Content-Security-Policy": CONSOLE_CSP,
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class Signed:
    """The operator of this request."""

    operator_id: int
    email: str
    csrf: str


def _login_location(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"{LOGIN_PATH}?next={quote(target, safe='/')}"


def signed_in(request: Request) -> Signed:
    """The signed-in operator, or the way to the sign-in form (GET) or 403 (anything else)."""
    claim = read_session(request)
    signed = None
    if claim is not None:
        with session_scope() as session:
            operator = operator_for_session(session, claim.operator_id, claim.session_key)
            if operator is not None:
                signed = Signed(operator.id, operator.email, claim.csrf)
    if signed is not None:
        return signed
    if request.method not in ("GET", "HEAD"):
        raise HTTPException(403, "sign in first", headers=CONSOLE_HEADERS)
    location = _login_location(request)
    if request.headers.get("hx-request"):
        raise HTTPException(401, "sign in first", headers={"HX-Redirect": location})
    raise HTTPException(303, "sign in first", headers={"Location": location})


async def csrf_checked(request: Request, signed: Signed = Depends(signed_in)) -> Signed:
    """The operator, if the form carries their session's CSRF token; 403 otherwise."""
    form = await request.form()
    if not csrf_matches(signed.csrf, form.get(CSRF_FIELD)):
        raise HTTPException(403, "the form's CSRF token is missing or wrong", CONSOLE_HEADERS)
    return signed


def render(
    name: str, signed: Signed | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    html = templates.get_template(f"console/{name}").render(
        signed=signed, csrf_field=CSRF_FIELD, **context
    )
    return HTMLResponse(html, status_code=status_code, headers=CONSOLE_HEADERS)
