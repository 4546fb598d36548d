"""`GET /metrics`: Prometheus text format for the ops side (README "Metrics").

Off — 404, as if there were no such path — unless DIGEST_METRICS_TOKEN is set; then a bearer
token, checked from the headers alone by `BearerGate` in constant time (401 without it or with a
wrong one) and again here. The figures come from every process of this host
(workers/metrics.py, multiprocess mode) plus the queue depth read from Redis at scrape time.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from digest.settings import get_settings
from digest.web.auth import require_bearer
from workers.app import app as celery_app
from workers.metrics import exposition

METRICS_PATH = "/metrics"
router = APIRouter(tags=["operations"], include_in_schema=False)


def metrics_token() -> str:
    return get_settings().metrics_token


@router.get(METRICS_PATH)
def metrics(request: Request) -> Response:
    if not metrics_token():
        raise HTTPException(404, "Not Found")
    require_bearer(request, metrics_token())
    body, content_type = exposition([celery_app.conf.task_default_queue])
    return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})
