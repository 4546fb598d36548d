"""`POST /webhooks/sendgrid`: SendGrid's signed event webhook, verified, stored, queued.

The handler reads the raw bytes itself (FastAPI must not parse JSON first: the signature covers
the exact bytes), refuses anything that fails verification with a bare 403, stores an accepted
body as one row and hands its id to the worker. SendGrid retries any non-2xx for a day, so once a
body is stored the answer is 204 even if queueing fails: the batch waits for
`digest process-webhooks`.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from digest.db import session_scope
from digest.settings import get_settings
from digest.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookRejected,
    count_events,
    store_batch,
    verify_request,
)
from workers.publish import BrokerUnavailable
from workers.publish import enqueue as publish
from workers.tasks import process_webhook_batch

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])
WEBHOOK_PATH = "/webhooks/sendgrid"


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing more than `limit` bytes without reading them all into memory."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def accept(body: bytes, signature: str | None, timestamp: str | None) -> Response:
    """Verify, then store; runs in a worker thread (ECDSA, JSON parsing and the insert block)."""
    settings = get_settings()
    try:
        verify_request(
            body,
            signature,
            timestamp,
            settings.sendgrid_webhook_public_key,
            max_age=settings.webhook_max_age,
            max_future=settings.webhook_max_future,
        )
    except WebhookRejected as exc:
        log.warning("SendGrid webhook refused: %s", exc.reason)
        return JSONResponse({"detail": "webhook signature not accepted"}, status_code=403)
    try:
        events = count_events(body)
    except ValueError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=400)
    with session_scope() as session:
        batch_id = store_batch(session, body, events).id
    queue_processing(batch_id)
    return Response(status_code=204)


def queue_processing(batch_id: int) -> None:
    """Hand the batch to the worker (in-process when there is no broker).

    The web app is an entry point like the CLI, so it may reach the task; the domain never does.
    """
    try:
        publish(process_webhook_batch.s(batch_id))
    except BrokerUnavailable as exc:  # beat queues the stored body again later
        log.error("webhook batch %s stored but not queued yet: %s", batch_id, exc)
    except Exception:  # an in-process run failed: the stored batch is not lost
        log.exception("webhook batch %s stored but not processed yet", batch_id)


@router.post(
    WEBHOOK_PATH,
    status_code=204,
    responses={
        204: {"description": "Verified and stored; processed by a worker"},
        400: {"description": "Signed, but not a JSON array of event objects"},
        403: {"description": "Missing, malformed, stale or wrong signature"},
        413: {"description": "Body larger than DIGEST_WEBHOOK_MAX_BYTES"},
    },
    openapi_extra={
        "parameters": [
            {
                "name": SIGNATURE_HEADER,
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
            },
            {
                "name": TIMESTAMP_HEADER,
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
            },
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"type": "array", "items": {"type": "object"}},
                }
            },
        },
    },
)
async def sendgrid_events(request: Request) -> Response:
    """SendGrid's signed Event Webhook: delivered, bounce, open, click, spam report, unsubscribe."""
    try:
        body = await read_body(request, get_settings().webhook_max_bytes)
    except BodyTooLarge:
        return JSONResponse({"detail": "body too large"}, status_code=413)
    return await run_in_threadpool(
        accept,
        body,
        request.headers.get(SIGNATURE_HEADER),
        request.headers.get(TIMESTAMP_HEADER),
    )
