"""POST /webhooks/sendgrid verifies SendGrid's Signed Event Webhook before storing anything."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from digest.db import reset_caches, session_scope
from digest.web.app import create_app
from digest.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER
from schema.models import EmailEvent, WebhookBatch
from tests.support.signed_webhooks import ENDPOINT, Signer, body_of, eager_celery, sg_event

# SendGrid's published test vector, from the sendgrid-python library's own event-webhook tests
# (github.com/sendgrid/sendgrid-python, test/unit/test_eventwebhook.py): public key, signature,
# timestamp and payload exactly as published. The payload is compact, key-sorted JSON + CRLF.
SENDGRID_PUBLIC_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw"
    "+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
)
SENDGRID_SIGNATURE = (
    "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+l"
    "uQAbPIqHh89M15TluLtEZtM="
)
SENDGRID_TIMESTAMP = "1600112502"
SENDGRID_PAYLOAD = (
    json.dumps(
        [
            {
                "email": "hello@world.com",
                "event": "dropped",
                "reason": "Bounced Address",
                "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
                "sg_message_id": (
                    "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0"
                ),
                "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",
                "timestamp": 1600112492,
            }
        ],
        sort_keys=True,
        separators=(",", ":"),
    )
    + "\r\n"
).encode()


def stored_batches() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(WebhookBatch)) or 0


def flip(text: str, index: int) -> str:
    """Change one character, keeping the text in the same alphabet."""
    char = text[index]
    replacement = "1" if char != "1" else "2"
    return text[:index] + replacement + text[index + 1 :]


@pytest.fixture
def sendgrid_example(pg: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The app with SendGrid's sample key; the age check off, since the sample is from 2020."""
    monkeypatch.setenv("DIGEST_SENDGRID_WEBHOOK_PUBLIC_KEY", SENDGRID_PUBLIC_KEY)
    monkeypatch.setenv("DIGEST_WEBHOOK_MAX_AGE", "0")
    reset_caches()
    with eager_celery():
        yield TestClient(create_app())


def post_example(
    client: TestClient,
    body: bytes = SENDGRID_PAYLOAD,
    signature: str = SENDGRID_SIGNATURE,
    timestamp: str = SENDGRID_TIMESTAMP,
):
    return client.post(
        ENDPOINT,
        content=body,
        headers={
            SIGNATURE_HEADER: signature,
            TIMESTAMP_HEADER: timestamp,
            "Content-Type": "application/json",
        },
    )


def test_sendgrid_published_example_is_accepted_and_stored(sendgrid_example: TestClient) -> None:
    response = post_example(sendgrid_example)
    assert response.status_code == 204, response.text
    with session_scope() as session:
        batch = session.scalars(select(WebhookBatch)).one()
        assert batch.body.encode() == SENDGRID_PAYLOAD
        assert batch.events == 1
        assert batch.processed_at is not None  # eager worker ran
        event = session.scalars(select(EmailEvent)).one()
        assert (event.event, event.email) == ("dropped", "hello@world.com")
        assert event.sg_event_id == "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA"


@pytest.mark.parametrize("index", [0, 20, len(SENDGRID_PAYLOAD) // 2, len(SENDGRID_PAYLOAD) - 3])
def test_one_changed_payload_byte_is_403(sendgrid_example: TestClient, index: int) -> None:
    body = bytearray(SENDGRID_PAYLOAD)
    body[index] = ord("X") if body[index] != ord("X") else ord("Y")
    assert post_example(sendgrid_example, body=bytes(body)).status_code == 403
    assert stored_batches() == 0


def test_payload_without_its_trailing_crlf_is_403(sendgrid_example: TestClient) -> None:
    assert post_example(sendgrid_example, body=SENDGRID_PAYLOAD.rstrip()).status_code == 403


@pytest.mark.parametrize("index", [0, 5, 9])
def test_one_changed_timestamp_digit_is_403(sendgrid_example: TestClient, index: int) -> None:
    response = post_example(sendgrid_example, timestamp=flip(SENDGRID_TIMESTAMP, index))
    assert response.status_code == 403
    assert stored_batches() == 0


@pytest.mark.parametrize("index", [10, 40, 70])
def test_one_changed_signature_byte_is_403(sendgrid_example: TestClient, index: int) -> None:
    der = bytearray(base64.b64decode(SENDGRID_SIGNATURE))
    der[index] ^= 0x01
    response = post_example(sendgrid_example, signature=base64.b64encode(bytes(der)).decode())
    assert response.status_code == 403
    assert stored_batches() == 0


def test_sendgrid_bad_signature_from_their_tests_is_403(sendgrid_example: TestClient) -> None:
    other = (
        "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDW"
        "YNH3j/0="
    )
    assert post_example(sendgrid_example, signature=other).status_code == 403


def test_unsigned_request_is_403(sendgrid_example: TestClient) -> None:
    response = sendgrid_example.post(ENDPOINT, content=SENDGRID_PAYLOAD)
    assert response.status_code == 403
    assert stored_batches() == 0


def test_signature_without_timestamp_is_403(sendgrid_example: TestClient) -> None:
    response = sendgrid_example.post(
        ENDPOINT, content=SENDGRID_PAYLOAD, headers={SIGNATURE_HEADER: SENDGRID_SIGNATURE}
    )
    assert response.status_code == 403


@pytest.mark.parametrize(
    "signature",
    [
        "not base64 at all!",
        "MEUCIGHQ",  # valid base64 alphabet, wrong padding
        base64.b64encode(b"\x30\x03\x02\x01").decode(),  # truncated DER
        base64.b64encode(b"definitely not DER").decode(),
        "",
    ],
)
def test_malformed_signature_is_403(sendgrid_example: TestClient, signature: str) -> None:
    assert post_example(sendgrid_example, signature=signature).status_code == 403


@pytest.mark.parametrize(
    "timestamp", ["timestamp", "-1600112502", "1600112502.5", "", "1e9", "99999999999999999999"]
)
def test_malformed_timestamp_is_403(sendgrid_example: TestClient, timestamp: str) -> None:
    assert post_example(sendgrid_example, timestamp=timestamp).status_code == 403


@pytest.fixture
def signer(pg: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Signer]:
    """Our own key pair configured as the webhook key, with the default 600 s age limit."""
    signer = Signer()
    monkeypatch.setenv("DIGEST_SENDGRID_WEBHOOK_PUBLIC_KEY", signer.public_key)
    reset_caches()
    with eager_celery():
        yield signer


def own_body() -> bytes:
    return body_of([sg_event("delivered", "ada@example.test", timestamp=int(time.time()))])


def test_freshly_signed_request_is_accepted(signer: Signer) -> None:
    body = own_body()
    response = TestClient(create_app()).post(ENDPOINT, content=body, headers=signer.headers(body))
    assert response.status_code == 204
    assert stored_batches() == 1


def test_request_older_than_max_age_is_403(signer: Signer) -> None:
    body = own_body()
    stale = signer.headers(body, timestamp=int(time.time()) - 601)
    response = TestClient(create_app()).post(ENDPOINT, content=body, headers=stale)
    assert response.status_code == 403
    assert stored_batches() == 0


def test_request_from_far_future_is_403(signer: Signer) -> None:
    body = own_body()
    ahead = signer.headers(body, timestamp=int(time.time()) + 3600)
    response = TestClient(create_app()).post(ENDPOINT, content=body, headers=ahead)
    assert response.status_code == 403


def test_max_age_zero_turns_the_age_check_off(
    signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_WEBHOOK_MAX_AGE", "0")
    reset_caches()
    body = own_body()
    old = signer.headers(body, timestamp=int(time.time()) - 30 * 86400)
    assert TestClient(create_app()).post(ENDPOINT, content=body, headers=old).status_code == 204


def test_body_signed_by_another_key_is_403(signer: Signer) -> None:
    body = own_body()
    response = TestClient(create_app()).post(ENDPOINT, content=body, headers=Signer().headers(body))
    assert response.status_code == 403


def test_no_configured_key_refuses_everything(pg: str) -> None:
    body = own_body()
    response = TestClient(create_app()).post(ENDPOINT, content=body, headers=Signer().headers(body))
    assert response.status_code == 403
    assert stored_batches() == 0


def test_unusable_configured_key_is_403_not_500(pg: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SENDGRID_WEBHOOK_PUBLIC_KEY", "bm90IGEga2V5")  # "not a key"
    reset_caches()
    body = own_body()
    response = TestClient(create_app()).post(ENDPOINT, content=body, headers=Signer().headers(body))
    assert response.status_code == 403


def test_pem_form_of_the_key_is_accepted_too(pg: str, monkeypatch: pytest.MonkeyPatch) -> None:
    signer = Signer()
    pem = f"-----BEGIN PUBLIC KEY-----\n{signer.public_key}\n-----END PUBLIC KEY-----\n"
    monkeypatch.setenv("DIGEST_SENDGRID_WEBHOOK_PUBLIC_KEY", pem)
    reset_caches()
    body = own_body()
    response = TestClient(create_app()).post(ENDPOINT, content=body, headers=signer.headers(body))
    assert response.status_code == 204


def test_signed_body_that_is_not_an_event_array_is_400(signer: Signer) -> None:
    body = b'{"event": "delivered"}'
    response = TestClient(create_app()).post(ENDPOINT, content=body, headers=signer.headers(body))
    assert response.status_code == 400
    assert stored_batches() == 0


def test_body_over_the_size_limit_is_413(signer: Signer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_WEBHOOK_MAX_BYTES", "2048")
    reset_caches()
    events = [
        sg_event("delivered", f"u{i}@example.test", timestamp=int(time.time())) for i in range(40)
    ]
    body = body_of(events)
    assert len(body) > 2048
    response = TestClient(create_app()).post(ENDPOINT, content=body, headers=signer.headers(body))
    assert response.status_code == 413
    assert stored_batches() == 0


HEADER_CHARS = st.characters(min_codepoint=32, max_codepoint=126)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    signature=st.text(alphabet=HEADER_CHARS, max_size=120),
    timestamp=st.text(alphabet=HEADER_CHARS, max_size=20),
    body=st.binary(max_size=300),
)
def test_arbitrary_headers_and_bodies_get_403_never_an_error(
    sendgrid_example: TestClient, signature: str, timestamp: str, body: bytes
) -> None:
    headers = {SIGNATURE_HEADER: signature, TIMESTAMP_HEADER: timestamp}
    response = sendgrid_example.post(ENDPOINT, content=body, headers=headers)
    assert response.status_code == 403
