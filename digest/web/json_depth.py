"""Deeply nested JSON bodies are refused with 422 before any parser sees them (pure ASGI).

Python's JSON parser and much code after it recurse once per level, so a few kilobytes of `[`
used to end in a RecursionError and a 500. For the JSON endpoints listed (ingest, admin,
signup) this middleware buffers the body, which the size limit in front of it has already
bounded, checks its depth with a linear scan (digest/json_limits.py) and hands the same bytes
on. The webhook is not listed: its signature is checked first and its parser enforces the same
limit (digest/webhooks.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digest.json_limits import MAX_JSON_DEPTH, too_deep
from digest.web.body_limit import path_matches


def is_json(content_type: bytes | None) -> bool:
    """What FastAPI parses as JSON: no content type at all, application/json or …+json."""
    if not content_type:
        return True
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


class JsonDepthLimit:
    def __init__(
        self, app: ASGIApp, *, prefixes: Iterable[str], max_depth: int = MAX_JSON_DEPTH
    ) -> None:
        self.app = app
        self.prefixes = tuple(prefixes)
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") in ("GET", "HEAD", "OPTIONS")
            or not any(path_matches(scope["path"], p) for p in self.prefixes)
            or not is_json(dict(scope["headers"]).get(b"content-type"))
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if too_deep(body, self.max_depth):
            await self._refuse(send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: disconnect notices, as the server sends

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        message = f"the JSON body is nested deeper than {self.max_depth} levels"
        body = json.dumps(
            {"detail": [{"loc": ["body"], "msg": message, "type": "json_too_deep"}]}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 422,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
