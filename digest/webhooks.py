"""SendGrid's Signed Event Webhook: verify a request, then store its body for the worker.

SendGrid signs `timestamp + raw body` with ECDSA (P-256, SHA-256) and sends the base64 DER
signature and the timestamp in two headers. Verification runs on the exact bytes received, before
any JSON parsing: re-serialised JSON would not match. A request that fails any check is refused as
a whole (`WebhookRejected`, answered 403); one that passes is stored as a single `WebhookBatch`
row, so accepting even thousands of events is one insert, and `tracking.process_batch` does the
rest in a worker.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Callable
from functools import lru_cache

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.orm import Session

from digest import json_limits
from schema.models import WebhookBatch

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


class WebhookRejected(Exception):
    """The request is not a fresh, authentic SendGrid webhook; `reason` says which check failed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidWebhookKey(ValueError):
    """`DIGEST_SENDGRID_WEBHOOK_PUBLIC_KEY` is not a P-256 public key."""


@lru_cache(maxsize=4)
def load_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """Parse the key as SendGrid shows it (base64 DER SubjectPublicKeyInfo) or as PEM."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error, UnsupportedAlgorithm) as exc:
        raise InvalidWebhookKey(f"webhook public key is not a valid public key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise InvalidWebhookKey("webhook public key must be an ECDSA P-256 key")
    return key


def verify_request(
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    public_key: str,
    *,
    max_age: int = 600,
    max_future: int = 300,
    now: Callable[[], float] = time.time,
) -> None:
    """Raise `WebhookRejected` unless `signature` signs `timestamp + body` and is fresh.

    `max_age` 0 turns both clock checks off (replaying recorded requests, SendGrid's examples).
    An empty or unusable configured key rejects everything: the endpoint is off, never open.
    """
    if not public_key:
        raise WebhookRejected("no webhook public key configured")
    try:
        key = load_public_key(public_key)
    except InvalidWebhookKey as exc:
        log.error("%s", exc)
        raise WebhookRejected("webhook public key is unusable") from exc
    if not signature or not timestamp:
        raise WebhookRejected("missing signature or timestamp header")
    timestamp = timestamp.strip()
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise WebhookRejected("timestamp is not a Unix time")
    if max_age:
        age = now() - int(timestamp)
        if age > max_age:
            raise WebhookRejected("timestamp is too old")
        if -age > max_future:
            raise WebhookRejected("timestamp is in the future")
    try:
        der = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WebhookRejected("signature is not base64") from exc
    try:
        key.verify(der, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError) as exc:  # ValueError: not a DER ECDSA signature
        raise WebhookRejected("signature does not match") from exc


def count_events(body: bytes) -> int:
    """The number of events in a verified body; refuses anything but a JSON array of objects."""
    try:
        events = json_limits.loads(body.decode("utf-8"))  # JSONTooDeep is a ValueError
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"body is not JSON: {exc}") from exc
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise ValueError("body must be a JSON array of event objects")
    return len(events)


def store_batch(session: Session, body: bytes, events: int) -> WebhookBatch:
    """Keep a verified body as received; the worker normalises it later."""
    batch = WebhookBatch(body=body.decode("utf-8"), events=events)
    session.add(batch)
    session.flush()
    return batch
