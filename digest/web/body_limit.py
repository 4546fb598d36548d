"""A request body size limit on every path (pure ASGI, no buffering).

Each path gets the limit of its longest matching prefix (public forms, ingest, the webhook), or
the default. A declared Content-Length over the limit is refused before the app runs; a chunked
body is counted as it streams and refused once it passes the limit. Either way the answer is 413.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class _TooLarge(Exception):
    pass


def path_matches(path: str, prefix: str) -> bool:
    """`/admin` matches `/admin` and `/admin/…`, never `/administrator`."""
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


class BodySizeLimit:
    def __init__(self, app: ASGIApp, *, default: int, limits: Mapping[str, int]) -> None:
        self.app = app
        self.default = default
        # longest prefix first, so /api/events can differ from a hypothetical /api
        self.limits = sorted(limits.items(), key=lambda item: len(item[0]), reverse=True)

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.limits:
            if path_matches(path, prefix):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.limit_for(scope["path"])
        if declared_length(scope) > max_bytes:
            await refuse(send, max_bytes)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await refuse(send, max_bytes)


def declared_length(scope: Scope) -> int:
    """The largest Content-Length the request declares (0 if none or unreadable)."""
    declared = 0
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = max(declared, int(value))
            except ValueError:
                continue
    return declared


async def refuse(send: Send, max_bytes: int) -> None:
    """413, and close the connection: the rest of the body is never read."""
    body = json.dumps({"detail": f"request body larger than {max_bytes} bytes"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
