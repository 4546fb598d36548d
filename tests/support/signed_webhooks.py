"""SendGrid-style signed event webhooks for tests: our own P-256 key pair and event builders."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from digest.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER

ENDPOINT = "/webhooks/sendgrid"


@dataclass
class Signer:
    """Signs bodies the way SendGrid does: ECDSA P-256 / SHA-256 over timestamp + raw body."""

    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    @property
    def public_key(self) -> str:
        """Base64 DER SubjectPublicKeyInfo, as SendGrid's settings page shows it."""
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: int | str | None = None) -> dict[str, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signature = self.key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            SIGNATURE_HEADER: base64.b64encode(signature).decode(),
            TIMESTAMP_HEADER: stamp,
            "Content-Type": "application/json",
        }


def body_of(events: list[dict[str, Any]]) -> bytes:
    """SendGrid's own framing: compact JSON followed by CRLF."""
    return json.dumps(events, separators=(",", ":")).encode() + b"\r\n"


_serial = iter(range(1, 10**9))


def sg_event(
    event: str,
    email: str,
    *,
    timestamp: int,
    delivery_id: int | None = None,
    digest_id: int | None = None,
    message_id: str = "msg-1",
    **extra: Any,
) -> dict[str, Any]:
    """One event object as SendGrid posts it (custom_args at the top level)."""
    data: dict[str, Any] = {
        "email": email,
        "event": event,
        "timestamp": timestamp,
        "sg_event_id": f"evt-{next(_serial)}",
        "sg_message_id": f"{message_id}.filter0001.{email}.0",
        "smtp-id": f"<{message_id}@example.test>",
    }
    if delivery_id is not None:
        data["delivery_id"] = str(delivery_id)
    if digest_id is not None:
        data["digest_id"] = str(digest_id)
    data.update(extra)
    return data


def post_events(client: Any, signer: Signer, events: list[dict[str, Any]]) -> Any:
    """POST a signed batch to the webhook endpoint (TestClient or httpx.Client)."""
    body = body_of(events)
    return client.post(ENDPOINT, content=body, headers=signer.headers(body))


@contextmanager
def eager_celery() -> Iterator[None]:
    """Run tasks in-process (the embedded default), whatever another test configured."""
    from workers.app import app as celery_app

    keys = ("task_always_eager", "task_eager_propagates")
    saved = {key: celery_app.conf[key] for key in keys}
    celery_app.conf.update(dict.fromkeys(keys, True))
    yield
    celery_app.conf.update(saved)
