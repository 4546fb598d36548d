"""The email seam: one `Message` (shared content + per-recipient values) and two backends.

`SendGridBackend` sends a message as one `/v3/mail/send` request with a personalization per
recipient; `OutboxBackend` writes the same message as one `.eml` file per recipient, filling the
substitution tokens itself, so the embedded default shows exactly what SendGrid would deliver.
Backends raise the `SendError` subclasses below; retry policy lives with the caller.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.utils import formataddr, make_msgid, parseaddr
from pathlib import Path
from typing import Any, Protocol

import orjson

from digest import metrics
from digest.mail_headers import display_name, header_safe, one_click_headers
from digest.settings import Settings, get_settings

MIME_POLICY = policy.SMTP.clone(max_line_length=998)
JSON_UTF8 = {"Content-Type": "application/json; charset=utf-8"}


class RequestBytes(bytes):
    """A request body's bytes that print as their size, never as their content."""

    def __str__(self) -> str:
        return f"<{len(self)} bytes of JSON>"

    __repr__ = __str__


class RequestBody:
    """Our encoded JSON, handed to the official client as its `request_body`.

    With a Content-Type other than the bare "application/json" the client sends
    `request_body.encode("utf-8")`: this gives back our bytes as they are. A `str` would be
    decoded from orjson's bytes and encoded again, 1.5 ms per 1000-recipient body (most
    bodies hold non-ASCII text). The bytes print as their size: the client formats
    `PAYLOAD: {data}` for its debug line on every request, DEBUG on or not, and the repr of
    a 600 KB body cost 3.4 ms per batch, a tenth of a worker's CPU (py-spy, README
    Benchmarks); with DEBUG on it would also write every address and signed link to the log.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = RequestBytes(data)

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.data


@dataclass(slots=True)
class Recipient:
    """One addressee of a message and what is theirs alone. The only headers a recipient has
    are the one-click unsubscribe pair, written by the backend from `unsubscribe_url` (None:
    mail to an address that is not on the list, which has no list headers)."""

    email: str
    substitutions: dict[str, str] = field(default_factory=dict)
    custom_args: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    unsubscribe_url: str | None = None


@dataclass
class Message:
    subject: str
    html: str
    text: str
    recipients: list[Recipient]
    from_email: str = ""
    categories: list[str] = field(default_factory=list)
    custom_args: dict[str, str] = field(default_factory=dict)


@dataclass
class SendResult:
    message_id: str | None
    rejected: dict[str, str] = field(default_factory=dict)  # address -> reason


class SendError(Exception):
    """The provider did not accept the request, or cannot say whether it did.

    The subclasses say what a retry may do: `NotTaken` (retrying cannot duplicate the message),
    `DeliveryUnknown` (it may have been accepted: a retry may duplicate it), and the refusals
    `PayloadTooLarge`, `BadRecipients` and `AuthFailed` (retrying the same request cannot help).
    A plain `SendError` is any other refusal.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotTaken(SendError):
    """429, 5xx, or the request never got out whole (refused, DNS, reset or timeout while
    connecting or writing): SendGrid did not take the message, so a retry is safe."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ):
        super().__init__(message, status=status)
        self.retry_after = retry_after


class DeliveryUnknown(SendError):
    """The whole request went out but no answer came back (read timeout, reset, bad reply).

    SendGrid may have accepted it, so a retry may send a second copy. A single transactional
    email may be retried anyway (a duplicate confirmation is harmless: workers/tasks.py names
    this class in its autoretry list); a digest batch is never resent without an operator's
    decision (digest/sending.py makes it `ambiguous`).
    """


class PayloadTooLarge(SendError):
    """413: split the batch and send the halves."""


class BadRecipients(SendError):
    """400 naming addresses: mark them failed and send the rest."""

    def __init__(self, message: str, addresses: dict[str, str]) -> None:
        super().__init__(message, status=400)
        self.addresses = addresses


class AuthFailed(SendError):
    """401/403: retrying cannot help; an operator must fix the key."""


class EmailBackend(Protocol):
    def send(self, message: Message) -> SendResult: ...


def fill_tokens(content: str, substitutions: dict[str, str]) -> str:
    """What SendGrid does with `substitutions`: each key replaced by its value, raw.

    Safe only because of the rule in `digest.substitution`: keys are unguessable per render and
    values can neither carry markup nor contain a key.
    """
    for token, value in substitutions.items():
        content = content.replace(token, value)
    return content


class OutboxBackend:
    """Writes each recipient's finished message as an `.eml` file (the embedded default)."""

    def __init__(self, directory: Path, from_email: str) -> None:
        self.directory = directory
        self.from_email = from_email

    def build(self, message: Message, recipient: Recipient) -> EmailMessage:
        subs = recipient.substitutions
        # Fold only past RFC 5322's hard limit, so a `<url>` header value stays on its line.
        mime = EmailMessage(policy=MIME_POLICY)
        mime["Subject"] = header_safe(fill_tokens(message.subject, subs))
        mime["From"] = header_safe(message.from_email or self.from_email)
        to_name = display_name(recipient.name)
        mime["To"] = formataddr((to_name, recipient.email)) if to_name else recipient.email
        mime["Message-ID"] = make_msgid(domain="verdicts.local")
        if recipient.unsubscribe_url:
            for name, value in one_click_headers(recipient.unsubscribe_url).items():
                mime[name] = value
        if message.custom_args or recipient.custom_args:
            args = {**message.custom_args, **recipient.custom_args}
            mime["X-Digest-Args"] = json.dumps(args, sort_keys=True)
        mime.set_content(fill_tokens(message.text, subs))
        mime.add_alternative(fill_tokens(message.html, subs), subtype="html")
        return mime

    def send(self, message: Message) -> SendResult:
        self.directory.mkdir(parents=True, exist_ok=True)
        message_id = uuid.uuid4().hex
        for recipient in message.recipients:
            digest_part = hashlib.sha256(recipient.email.lower().encode()).hexdigest()[:12]
            path = self.directory / f"{message_id}-{digest_part}.eml"
            path.write_bytes(bytes(self.build(message, recipient)))
        return SendResult(message_id=message_id)


class SendGridBackend:
    """One `/v3/mail/send` request per message through the official client.

    Errors are sorted by what they say about delivery: `NotTaken` means SendGrid did
    not take the message (refused or broken connection before the request was complete, 429,
    5xx) and a retry cannot duplicate it; `DeliveryUnknown` means the request was complete but
    the answer never arrived, so SendGrid may have accepted it.
    """

    def __init__(self, api_key: str, host: str, from_email: str, timeout: float = 30.0) -> None:
        from sendgrid import SendGridAPIClient

        self.client = SendGridAPIClient(api_key, host=host)
        self.client.client.timeout = timeout
        self.from_email = from_email

    def encoded_body(self, message: Message) -> bytes:
        """The request body as UTF-8 JSON, encoded by orjson: the stdlib encoder the client would
        use was 15 % of a worker's CPU on a 1000-recipient batch (py-spy, README Benchmarks).
        What orjson refuses (a lone surrogate) is encoded the stdlib's way."""
        body = self.request_body(message)
        try:
            return orjson.dumps(body)
        except orjson.JSONEncodeError:
            return json.dumps(body).encode()

    def request_body(self, message: Message) -> dict[str, Any]:
        name, address = parseaddr(message.from_email or self.from_email)
        body: dict[str, Any] = {
            "from": {"email": address, **({"name": header_safe(name)} if name else {})},
            "subject": header_safe(message.subject),
            "content": [
                {"type": "text/plain", "value": message.text},
                {"type": "text/html", "value": message.html},
            ],
            "personalizations": [_personalization(r) for r in message.recipients],
        }
        if message.categories:
            body["categories"] = message.categories[:10]
        if message.custom_args:
            body["custom_args"] = message.custom_args
        return body

    def send(self, message: Message) -> SendResult:
        import http.client
        import urllib.error

        from python_http_client import exceptions as http_errors

        body = RequestBody(self.encoded_body(message))
        started, status = time.perf_counter(), "error"
        try:
            # A Content-Type other than the bare "application/json" makes the client send our
            # bytes as they are (RequestBody) instead of encoding the body again.
            response = self.client.client.mail.send.post(
                request_body=body, request_headers=JSON_UTF8
            )
            status = str(response.status_code)
        except http_errors.HTTPError as exc:
            status = str(exc.status_code)
            raise _classify(exc.status_code, exc.body, exc.headers, message) from exc
        except urllib.error.URLError as exc:
            # urllib wraps errors raised while connecting or writing the request: SendGrid
            # never received a complete request, so it cannot have accepted it.
            raise NotTaken(f"SendGrid unreachable: {exc.reason}") from exc
        except (OSError, http.client.HTTPException) as exc:
            # Raised while waiting for or reading the answer: the request was complete.
            raise DeliveryUnknown(
                f"no answer from SendGrid after the request was sent: {exc!r}"
            ) from exc
        finally:
            metrics.recorder().sendgrid_request(time.perf_counter() - started, status)
        if response.status_code != 202:
            raise DeliveryUnknown(f"SendGrid answered {response.status_code}, expected 202")
        message_id = response.headers.get("X-Message-Id") if response.headers else None
        return SendResult(message_id=message_id)


def _personalization(recipient: Recipient) -> dict[str, Any]:
    to: dict[str, str] = {"email": recipient.email}
    name = display_name(recipient.name)
    if name:
        to["name"] = name
    item: dict[str, Any] = {"to": [to]}
    if recipient.substitutions:
        item["substitutions"] = recipient.substitutions
    if recipient.unsubscribe_url:
        item["headers"] = one_click_headers(recipient.unsubscribe_url)
    if recipient.custom_args:
        item["custom_args"] = recipient.custom_args
    return item


def _classify(status: int, body: Any, headers: Any, message: Message | None = None) -> SendError:
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body or "")
    if status == 429 or status >= 500:
        reset = headers.get("X-RateLimit-Reset") if headers else None
        return NotTaken(
            f"SendGrid answered {status}", status=status, retry_after=_seconds_until(reset)
        )
    if status == 413:
        return PayloadTooLarge("SendGrid answered 413: payload too large", status=413)
    if status in (401, 403):
        return AuthFailed(f"SendGrid refused the API key ({status}): {text[:300]}", status=status)
    if status == 400:
        bad = _bad_addresses(text, message)
        if bad:
            return BadRecipients(f"SendGrid rejected {len(bad)} address(es)", bad)
    return SendError(f"SendGrid answered {status}: {text[:500]}", status=status)


def _seconds_until(reset: str | None) -> float | None:
    """`X-RateLimit-Reset` is a Unix time; turn it into a delay."""
    import time

    try:
        return max(0.0, float(reset) - time.time()) if reset else None
    except ValueError:
        return None


_ADDRESS = re.compile(r"[\w.+'-]+@[\w.-]+\w")
_RECIPIENT_FIELD = re.compile(r"personalizations\.(\d+)\.(to|cc|bcc)\.(\d+)\.email")


def _bad_addresses(text: str, message: Message | None = None) -> dict[str, str]:
    """Addresses a 400 names: in the error message, or by the `field` path
    (`personalizations.3.to.0.email`, as SendGrid reports an invalid address) resolved against
    the message that was sent. Errors about anything but an address name none."""
    try:
        errors = json.loads(text).get("errors", [])
    except (ValueError, AttributeError):
        return {}
    found: dict[str, str] = {}
    for error in errors if isinstance(errors, list) else []:
        if not isinstance(error, dict):
            continue
        field_path = str(error.get("field") or "")
        reason = str(error.get("message") or "rejected")
        address = str(error.get("email") or "")
        if not address and "email" in field_path:
            match = _ADDRESS.search(reason)
            address = match.group(0) if match else ""
        if not address and message is not None:
            where = _RECIPIENT_FIELD.search(field_path)
            if where and where.group(2) == "to" and where.group(3) == "0":
                index = int(where.group(1))
                if index < len(message.recipients):
                    address = message.recipients[index].email
        if address:
            found[address] = reason
    return found


def get_backend(settings: Settings | None = None) -> EmailBackend:
    settings = settings or get_settings()
    if settings.email_backend == "sendgrid":
        return SendGridBackend(
            settings.sendgrid_api_key,
            settings.sendgrid_host,
            settings.from_email,
            settings.sendgrid_timeout,
        )
    return OutboxBackend(settings.outbox_dir, settings.from_email)
