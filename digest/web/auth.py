"""Bearer-token checks for the machine-facing endpoints (ingest, admin)."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Collection, Mapping

from fastapi import HTTPException, Request, status
from starlette.types import ASGIApp, Receive, Scope, Send

from digest.web.body_limit import path_matches


def require_bearer(request: Request, expected: str) -> None:
    """401 unless the request carries exactly `Bearer <expected>` (constant-time compare).

    An empty expected token means the endpoint is switched off, never open.
    """
    if not bearer_matches(request.headers.get("authorization", ""), expected):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or wrong bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )


UNAUTHORIZED_BODY = json.dumps({"detail": "missing or wrong bearer token"}).encode()


def bearer_matches(header: str, expected: str) -> bool:
    """True when `header` is exactly `Bearer <expected>` (constant time); never for an empty
    expected token (an endpoint without a token is switched off, not open)."""
    scheme, _, token = header.partition(" ")
    return (
        bool(expected)
        and scheme.lower() == "bearer"
        and hmac.compare_digest(token.strip().encode(), expected.encode())
    )


class BearerGate:
    """Checks the bearer token of machine-facing paths BEFORE anything reads the body.

    FastAPI reads and parses a declared body before it runs a route's dependencies, so without
    this an unauthenticated client could make us buffer and parse a large body just to be told
    401. Pure ASGI: a request without the right token is answered 401 from its headers alone and
    its connection closed; the body is never received. The routes keep `require_bearer` too.

    `tokens` maps a path prefix to a function giving the expected token (read per request, so
    settings reloaded in tests apply). A prefix in `hidden_when_off` whose token is empty is
    passed on to the app, which answers 404 (an endpoint switched off does not exist).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        tokens: Mapping[str, Callable[[], str]],
        hidden_when_off: Collection[str] = (),
    ) -> None:
        self.app = app
        self.tokens = dict(tokens)
        self.hidden_when_off = frozenset(hidden_when_off)

    def _expected(self, path: str) -> Callable[[], str] | None:
        for prefix, token in self.tokens.items():
            if path_matches(path, prefix):
                if prefix in self.hidden_when_off and not token():
                    return None
                return token
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        expected = self._expected(scope["path"]) if scope["type"] == "http" else None
        if expected is None:
            await self.app(scope, receive, send)
            return
        header = next(
            (
                value.decode("latin-1")
                for name, value in scope["headers"]
                if name == b"authorization"
            ),
            "",
        )
        if bearer_matches(header, expected()):
            await self.app(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": status.HTTP_401_UNAUTHORIZED,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(UNAUTHORIZED_BODY)).encode()),
                    (b"www-authenticate", b"Bearer"),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": UNAUTHORIZED_BODY})
