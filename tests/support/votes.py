"""Helpers of the reader-verdict tests: a sent week, its vote links, a loopback site receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from digest import sending
from digest.db import session_scope
from digest.planning import plan_digest, request_digest
from schema.models import ReaderVote, SiteEvent
from tests.support.factories import comparison, published, store, tool
from tests.support.html import Page
from tests.support.recipients import MONDAY, add_subscribers
from tests.support.subscriber_fixtures import body_text, mails_to

NOW = MONDAY + timedelta(hours=9)
SLUGS = ("smollm3-vs-fusion", "quillmate-vs-parsewell")
VOTE_LINK = re.compile(r"https?://[^\s\"'<>]+/vote/[^\s\"'<>]+")


@dataclass
class SentWeek:
    digest_id: int
    addresses: list[str]


def send_week(readers: int = 2, slugs: tuple[str, ...] = SLUGS) -> SentWeek:
    """Two comparisons, `readers` active subscribers, a weekly digest planned and sent to the
    outbox as SendGrid would deliver it (placeholders filled per recipient)."""
    with session_scope() as session:
        for n, slug in enumerate(slugs):
            data = comparison(
                slug,
                a=tool(f"Alpha{n}"),
                b=tool(f"Beta{n}", ship=2, skip=2),
                published_at=NOW - timedelta(days=1, hours=n),
            )
            store(session, published(data))
        addresses = add_subscribers(session, readers, prefix="reader")
    with session_scope() as session:
        digest = request_digest(session, now=NOW)
        report = plan_digest(session, digest, now=NOW)
        digest_id = digest.id
    for batch_id in report.batch_ids:
        assert sending.send_batch(batch_id).status == "sent"
    return SentWeek(digest_id, addresses)


def html_links(outbox: Path, address: str) -> list[str]:
    [message] = mails_to(outbox, address)
    part = message.get_body(("html",))
    assert part is not None
    return [h for h in Page(part.get_content()).hrefs() if "/vote/" in h]


def text_links(outbox: Path, address: str) -> list[str]:
    [message] = mails_to(outbox, address)
    return VOTE_LINK.findall(body_text(message))


def path_of(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def link_for(links: list[str], slug: str, position: int, choice: str) -> str:
    [found] = [u for u in links if u.endswith(f"/{slug}/{position}/{choice}")]
    return path_of(found)


def vote_rows() -> list[tuple[int | None, int, int, str]]:
    with session_scope() as session:
        return [
            tuple(r)
            for r in session.execute(
                select(
                    ReaderVote.subscriber_id,
                    ReaderVote.comparison_id,
                    ReaderVote.tool_position,
                    ReaderVote.choice,
                ).order_by(ReaderVote.id)
            )
        ]


def count_site_events() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(SiteEvent)) or 0


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A loopback site: records every POST, answers 500 to the first `fail_first` of them."""

    fail_first: int = 0
    # while set to an unset Event, every request waits for it (a site that hangs)
    hold: threading.Event | None = None
    arrived: int = 0  # requests that reached the site, answered or not
    received: list[Received] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> str:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.arrived += 1
                if receiver.hold is not None:
                    receiver.hold.wait(60)
                with receiver.lock:
                    receiver.received.append(Received(dict(self.headers.items()), body))
                    status = 500 if len(receiver.received) <= receiver.fail_first else 204
                    receiver.answered.append(status)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/verdicts"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def verify(secret: str, received: Received) -> bool:
    """What the site does (README): recompute the signature over timestamp + "." + body."""
    timestamp = received.headers["X-Verdicts-Timestamp"]
    expected = hmac.new(
        secret.encode(), timestamp.encode() + b"." + received.body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest("v1=" + expected, received.headers["X-Verdicts-Signature"])
