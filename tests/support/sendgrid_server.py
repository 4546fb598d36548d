"""A SendGrid-compatible `/v3/mail/send` server on loopback, for tests and the benchmark.

It validates each request against SendGrid's rules (`tests/sendgrid_rules.py`: the published
OpenAPI schema of `/v3/mail/send` plus every limit its documentation states — 1000 recipients,
no address twice, no `,` or `;` in a recipient's name, substitution and custom_args sizes,
categories, reserved headers, subject, content, total size), answers 202 with an `X-Message-Id`,
and records what it accepted: a counter per address (cheap enough for a million recipients),
optionally the request bodies, optionally one NDJSON line per accepted request in a file.

A request that breaks a rule is answered 400 in SendGrid's error shape AND kept in
`violations`, which `reset()` does not clear: the fixtures fail a test that leaves one behind,
even when the code under test shrugged off the 400. A test that breaks a rule on purpose takes
its violations (`take_violations()`) and asserts on them.

It can be told to misbehave, from Python (`FakeSendGrid` methods) or over HTTP
(`POST /_control {"action": ..., ...}`): answer the next N requests with a status (429 carries
`X-RateLimit-Reset`), reject given addresses with a SendGrid-style 400, stall past the client's
timeout (accepting the message first, the worst case for a sender), slow every request down, or
lower the size limit so a 413 is cheap to trigger.

In a test: `with FakeSendGrid() as server: SendGridAPIClient(server.api_key, host=server.url)`.
As a process: `python -m tests.support.sendgrid_server --port 8025 --record received.ndjson`
(GET /_stats for totals and duplicates, GET /_received for the bodies when kept,
GET /_violations for the broken rules; `--no-schema` skips the OpenAPI schema, e.g. for a
benchmark).
"""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO

import orjson

from tests.support import sendgrid_rules
from tests.support.sendgrid_rules import Violation

DEFAULT_KEY = "SG.test-key"
MAX_BYTES = sendgrid_rules.MAX_MESSAGE_BYTES  # SendGrid's limit for a whole request
_BAD_KEY = "The provided authorization grant is invalid, expired, or revoked"


@dataclass
class _Failure:
    status: int
    remaining: int
    reset_in: float | None = None


@dataclass
class _Stall:
    seconds: float
    remaining: int
    accept: bool


class FakeSendGrid:
    """The server and its state; thread-safe, startable in a thread or served in a process."""

    def __init__(
        self,
        api_key: str | None = DEFAULT_KEY,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_bytes: int = MAX_BYTES,
        keep_bodies: bool = True,
        record: Path | None = None,
        schema: bool = True,
    ) -> None:
        self.api_key = api_key
        self._schema = sendgrid_rules.schema_validator() if schema else None
        self.violations: list[Violation] = []
        self.max_bytes = max_bytes
        self.keep_bodies = keep_bodies
        self._lock = threading.Lock()
        self._record_file: TextIO | None = record.open("a", encoding="utf-8") if record else None
        self._httpd = ThreadingHTTPServer((host, port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False  # a stalled request must not hold up stop()
        self._httpd.fake = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None
        self.reset()

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeSendGrid:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._record_file:
            self._record_file.close()
            self._record_file = None

    def __enter__(self) -> FakeSendGrid:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # --- control -----------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything received and every instruction (between tests)."""
        with self._lock:
            self.counts: Counter[str] = Counter()
            self.bodies: list[dict[str, Any]] = []
            self.statuses: Counter[int] = Counter()
            self.requests = 0
            self.accepted = 0
            self.recipients = 0
            self._failures: deque[_Failure] = deque()
            self._stalls: deque[_Stall] = deque()
            self._rejected: dict[str, str] = {}
            self._delay = 0.0

    def take_violations(self) -> list[Violation]:
        """The rules broken since the last call, forgotten from now on."""
        with self._lock:
            taken, self.violations = self.violations, []
        return taken

    def fail_next(self, status: int, count: int = 1, *, reset_in: float | None = None) -> None:
        """Answer the next `count` requests with `status` (429 gets X-RateLimit-Reset)."""
        with self._lock:
            self._failures.append(_Failure(status, count, reset_in))

    def reject_addresses(self, addresses: list[str] | dict[str, str]) -> None:
        """Answer 400 naming these addresses whenever a request contains one of them."""
        reasons = addresses if isinstance(addresses, dict) else dict.fromkeys(addresses, "")
        with self._lock:
            self._rejected.update({a.lower(): r for a, r in reasons.items()})

    def stall_next(self, seconds: float, count: int = 1, *, accept: bool = True) -> None:
        """Hold the next `count` requests `seconds` before answering. With `accept`, the message
        is recorded as accepted first: SendGrid took it but the client never heard."""
        with self._lock:
            self._stalls.append(_Stall(seconds, count, accept))

    def delay_each(self, seconds: float) -> None:
        """Every request takes at least `seconds` (to land an operator's action mid-send)."""
        with self._lock:
            self._delay = seconds

    def set_max_bytes(self, max_bytes: int) -> None:
        with self._lock:
            self.max_bytes = max_bytes

    def control(self, command: dict[str, Any]) -> None:
        """The HTTP control API's dispatcher: {"action": "fail_next", "status": 429, ...}."""
        action = command.get("action")
        args = {k: v for k, v in command.items() if k != "action"}
        actions = {
            "fail_next": self.fail_next,
            "reject_addresses": self.reject_addresses,
            "stall_next": self.stall_next,
            "delay_each": self.delay_each,
            "set_max_bytes": self.set_max_bytes,
            "reset": self.reset,
        }
        if action not in actions:
            raise ValueError(f"unknown action {action!r}; one of {', '.join(actions)}")
        actions[action](**args)

    # --- what was received -------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        with self._lock:
            duplicated = sorted(a for a, n in self.counts.items() if n > 1)
            return {
                "requests": self.requests,
                "accepted_requests": self.accepted,
                "rejected_requests": self.requests - self.accepted,
                "recipients": self.recipients,
                "unique_addresses": len(self.counts),
                "duplicates": len(duplicated),
                "duplicate_addresses": duplicated[:50],
                "violations": len(self.violations),
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            }

    def received(self) -> list[dict[str, Any]]:
        """Accepted request bodies (when `keep_bodies`), each with its `_message_id`."""
        with self._lock:
            return list(self.bodies)

    def addresses(self) -> Counter[str]:
        """How many accepted requests named each address (lower-cased)."""
        with self._lock:
            return Counter(self.counts)

    # --- the request pipeline (called by the handler) ----------------------------------------

    def _take(self, queue: deque) -> Any:
        with self._lock:
            if not queue:
                return None
            item = queue[0]
            item.remaining -= 1
            if item.remaining <= 0:
                queue.popleft()
            return item

    def handle_send(self, authorization: str | None, raw: bytes) -> tuple[int, dict, Any]:
        """(status, headers, JSON body or None) for one POST /v3/mail/send, counted in the
        statistics as soon as it is decided (a stalled answer must not count in a later test)."""
        status, headers, payload, stall = self._decide(authorization, raw)
        with self._lock:
            self.statuses[status] += 1
        if stall:
            time.sleep(stall)
        return status, headers, payload

    def _decide(self, authorization: str | None, raw: bytes) -> tuple[int, dict, Any, float]:
        """The answer and how long to hold it (a stall, or the `delay_each` slowdown)."""
        status, headers, payload, stall = self._answer_for(authorization, raw)
        with self._lock:
            return status, headers, payload, stall + self._delay

    def _answer_for(self, authorization: str | None, raw: bytes) -> tuple[int, dict, Any, float]:
        with self._lock:
            self.requests += 1
        if not _authorized(authorization, self.api_key):
            return (*_error(401, None, _BAD_KEY), 0)
        too_big = sendgrid_rules.size_violation(len(raw))
        if too_big is not None:  # a documented limit: answered as SendGrid does, and recorded
            self._violated([too_big])
            return (*_error(413, None, too_big.message), 0)
        if len(raw) > self.max_bytes:  # a lower limit a test asked for (set_max_bytes)
            return (*_error(413, None, f"The request is larger than {self.max_bytes} bytes"), 0)
        failure = self._take(self._failures)
        if failure is not None:
            return (*_forced(failure), 0)
        try:
            # orjson: the stdlib parser was a sixth of the stand-in's CPU, which shares the
            # machine's two cores with what the dispatch bench measures (README Benchmarks).
            # It is also stricter, as SendGrid is: NaN, Infinity and lone surrogates are errors.
            body = orjson.loads(raw)
        except ValueError:
            broken = [Violation("json", None, "Bad Request: the body is not valid JSON")]
            addresses = None
        else:
            checked = sendgrid_rules.inspect(body, len(raw), self._schema)
            broken, addresses = checked.violations, checked.addresses
        if broken:
            self._violated(broken)
            return 400, {}, {"errors": [v.as_error() for v in broken]}, 0
        errors = self._rejections(body)
        if errors:
            return 400, {}, {"errors": errors}, 0
        stall = self._take(self._stalls)
        if stall is not None and not stall.accept:
            return (*_error(500, None, "stalled and dropped"), stall.seconds)
        message_id = secrets.token_urlsafe(16)[:22]
        self._record(body, message_id, addresses)
        return 202, {"X-Message-Id": message_id}, None, stall.seconds if stall else 0

    def _violated(self, broken: list[Violation]) -> None:
        with self._lock:
            self.violations.extend(broken)

    def _rejections(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        with self._lock:
            rejected = dict(self._rejected)
        if not rejected:
            return []
        errors = []
        for field, address in _recipients(body):
            reason = rejected.get(address.lower())
            if reason is not None:
                errors.append(
                    {
                        "message": reason or f"Invalid email address {address}",
                        "field": field,
                        "help": None,
                    }
                )
        return errors

    def _record(
        self, body: dict[str, Any], message_id: str, addresses: list[str] | None = None
    ) -> None:
        """Count the accepted request and its recipients. `addresses` (lower-cased) are those the
        rules listed while checking it (`sendgrid_rules.Checked`), saving a walk per request."""
        if addresses is None:
            addresses = [address.lower() for address in _addresses(body)]
        with self._lock:
            self.accepted += 1
            self.recipients += len(addresses)
            self.counts.update(addresses)
            if self.keep_bodies:
                self.bodies.append({**body, "_message_id": message_id})
            if self._record_file:
                line = {"message_id": message_id, "at": time.time(), "recipients": addresses}
                self._record_file.write(_json_line(line))
                self._record_file.flush()


def validate(body: dict[str, Any]) -> list[dict[str, Any]]:
    """SendGrid's checks of a /v3/mail/send body, as `errors` entries (empty when valid)."""
    raw = json.dumps(body).encode()
    broken = sendgrid_rules.check(body, len(raw), sendgrid_rules.schema_validator())
    return [v.as_error() for v in broken]


def _recipients(body: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for i, item in enumerate(body.get("personalizations") or []):
        for kind in ("to", "cc", "bcc"):
            for j, who in enumerate(item.get(kind) or []):
                found.append((f"personalizations.{i}.{kind}.{j}.email", who["email"]))
    return found


def _addresses(body: dict[str, Any]) -> list[str]:
    """Every recipient's address, in order (what `_recipients` gives, without field paths)."""
    return [
        who["email"]
        for item in body.get("personalizations") or []
        for kind in ("to", "cc", "bcc")
        for who in item.get(kind) or []
    ]


def _json_line(entry: dict[str, Any]) -> str:
    """One NDJSON line, as `json.dumps` writes it in substance (ASCII: non-ASCII escaped), by
    orjson when the entry is ASCII (the stdlib encoder was 1.6 % of the stand-in's CPU)."""
    data = orjson.dumps(entry)
    return (data.decode() if data.isascii() else json.dumps(entry)) + "\n"


def _authorized(header: str | None, key: str | None) -> bool:
    if not header or not header.startswith("Bearer "):
        return False
    given = header[len("Bearer ") :].strip()
    return bool(given) and (key is None or secrets.compare_digest(given, key))


def _error(status: int, field: str | None, message: str) -> tuple[int, dict, Any]:
    return status, {}, {"errors": [{"message": message, "field": field, "help": None}]}


def _forced(failure: _Failure) -> tuple[int, dict, Any]:
    headers: dict[str, str] = {}
    if failure.status == 429:
        reset = time.time() + (failure.reset_in if failure.reset_in is not None else 1.0)
        headers = {
            "X-RateLimit-Limit": "600",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(reset) + (1 if reset % 1 else 0)),
        }
        return 429, headers, {"errors": [{"field": None, "message": "too many requests"}]}
    messages = {
        401: _BAD_KEY,
        403: "access forbidden",
        500: "An internal server error occurred.",
        503: "The service is not available.",
    }
    return _error(failure.status, None, messages.get(failure.status, f"forced {failure.status}"))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeSendGrid/1.0"

    @property
    def fake(self) -> FakeSendGrid:
        return self.server.fake  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        chunks, left = [], length
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _answer(self, status: int, headers: dict[str, str], payload: Any) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (stall tests)
            self.close_connection = True

    def do_POST(self) -> None:
        raw = self._body()  # always read it whole: answering early would break the client's write
        if self.path == "/v3/mail/send":
            status, headers, payload = self.fake.handle_send(self.headers.get("Authorization"), raw)
            self._answer(status, headers, payload)
        elif self.path == "/_control":
            try:
                self.fake.control(json.loads(raw or b"{}"))
            except (ValueError, TypeError) as exc:
                self._answer(400, {}, {"error": str(exc)})
                return
            self._answer(200, {}, {"ok": True})
        elif self.path == "/_reset":
            self.fake.reset()
            self._answer(200, {}, {"ok": True})
        else:
            self._answer(404, {}, {"errors": [{"message": "not found", "field": None}]})

    def do_GET(self) -> None:
        if self.path == "/_stats":
            self._answer(200, {}, self.fake.stats())
        elif self.path == "/_violations":
            self._answer(200, {}, [v.as_error() | {"rule": v.rule} for v in self.fake.violations])
        elif self.path == "/_received":
            self._answer(200, {}, self.fake.received())
        else:
            self._answer(404, {}, {"errors": [{"message": "not found", "field": None}]})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback only")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--api-key", default=DEFAULT_KEY, help="'' accepts any Bearer key")
    parser.add_argument("--max-bytes", type=int, default=MAX_BYTES)
    parser.add_argument("--record", type=Path, help="append one NDJSON line per accepted request")
    parser.add_argument("--keep-bodies", action="store_true", help="serve bodies at /_received")
    parser.add_argument(
        "--no-schema", action="store_true", help="skip the OpenAPI schema (documented limits only)"
    )
    args = parser.parse_args(argv)
    if not args.host.startswith("127.") and args.host not in ("localhost", "::1"):
        parser.error("the fake SendGrid listens on loopback only")
    server = FakeSendGrid(
        args.api_key or None,
        host=args.host,
        port=args.port,
        max_bytes=args.max_bytes,
        keep_bodies=args.keep_bodies,
        record=args.record,
        schema=not args.no_schema,
    )

    def stop(*_: object) -> None:
        threading.Thread(target=server.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"fake SendGrid listening on {server.url}", flush=True)
    server.serve_forever()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
