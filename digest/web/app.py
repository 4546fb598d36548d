"""The FastAPI application: `digest serve`, `uvicorn digest.web.app:app`, or the Procfile."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from digest.settings import get_settings
from digest.web import (
    admin_api,
    console,
    health,
    ingest_api,
    log_redaction,
    metrics_api,
    signup,
    subscribe_pages,
    webhooks_api,
)
from digest.web.auth import BearerGate
from digest.web.body_limit import BodySizeLimit
from digest.web.console.lists import UPLOAD_PATH as LIST_UPLOAD_PATH
from digest.web.json_depth import JsonDepthLimit
from digest.web.pages import STATIC_DIR

INGEST_PATH = ingest_api.EVENTS_PATH
ADMIN_PREFIX = "/admin"  # every operator route, present and future
# JSON bodies whose depth is checked before parsing (the webhook checks its own after the
# signature: an unsigned body must get 403 whatever it holds).
JSON_PREFIXES = (INGEST_PATH, ADMIN_PREFIX, "/subscribe")


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    """Serving processes only (uvicorn runs this; importing the module does not)."""
    tune_garbage_collector()
    yield


class DigestAPI(FastAPI):
    """FastAPI, except that POST /subscribe goes straight into `signup_path`: the app's own
    request guards (CORS, bearer gate, size and JSON depth limits, the same instances' classes
    and options, in the same order) around the route's function.

    Under load FastAPI's and Starlette's layers around the user middleware (telemetry check,
    server error and body-limit wrappers, the exception middleware) held the interpreter for 3 %
    of a web process's samples (py-spy --gil), 1 % after; the router was already skipped. They
    add nothing to this route: an exception still ends in uvicorn's 500, as
    ServerErrorMiddleware's would, and FastAPI's telemetry spans (off unless configured) do not
    cover it.
    """

    signup_path: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.signup_path is not None
            and scope["type"] == "http"
            and scope["path"] == signup.SIGNUP_PATH
            and scope["method"] == "POST"
        ):
            scope["app"] = self  # what Starlette sets: the route reads app.state
            await self.signup_path(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def request_guards() -> list[tuple[type, dict[str, Any]]]:
    """The middleware every request passes, outermost first, with their options."""
    settings = get_settings()
    guards: list[tuple[type, dict[str, Any]]] = []
    if settings.cors_origins:  # fetch-based signup forms on these origins
        cors = {
            "allow_origins": settings.cors_origins,
            "allow_methods": ["GET", "POST"],
            "allow_headers": ["Content-Type"],
            "max_age": 600,
        }
        guards.append((CORSMiddleware, cors))
    tokens = {
        INGEST_PATH: lambda: get_settings().ingest_token,
        ADMIN_PREFIX: lambda: get_settings().admin_token,
        metrics_api.METRICS_PATH: metrics_api.metrics_token,
    }
    guards.append((BearerGate, {"tokens": tokens, "hidden_when_off": [metrics_api.METRICS_PATH]}))
    limits = {
        **dict.fromkeys(subscribe_pages.PUBLIC_PREFIXES, settings.max_body_bytes),
        INGEST_PATH: settings.ingest_max_bytes,
        webhooks_api.WEBHOOK_PATH: settings.webhook_max_bytes,
        LIST_UPLOAD_PATH: settings.list_upload_max_bytes,
    }
    guards.append((BodySizeLimit, {"default": settings.default_max_bytes, "limits": limits}))
    guards.append((JsonDepthLimit, {"prefixes": JSON_PREFIXES}))
    return guards


def create_app() -> DigestAPI:
    log_redaction.install()  # request paths carry tokens: the access log must not
    app = DigestAPI(
        lifespan=lifespan,
        title="Weekly AI Tool Verdicts",
        version="0.1.0",
        description="Subscriptions, ingest, operator and webhook endpoints of the digest service.",
    )
    app.include_router(health.router)
    # our own scripts and files, from the package (no CDN): the time-zone pre-fill
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(ingest_api.router)
    app.include_router(admin_api.router)
    app.include_router(webhooks_api.router)
    app.include_router(metrics_api.router)  # 404 unless DIGEST_METRICS_TOKEN is set
    subscribe_pages.install(app)
    console.install(app)  # /console: operators' pages (signed session, CSRF)
    # Guards run before any route reads a body; the last added is the outermost. Order of a
    # request: CORS, bearer token (401 from the headers alone), size (413 from Content-Length or
    # while streaming), JSON depth (422), then the route.
    guards = request_guards()
    for guard, options in reversed(guards):
        app.add_middleware(guard, **options)
    # POST /subscribe, the hottest path: the same guards, in the same order, in front of
    # FastAPI's and Starlette's own layers and the router (see DigestAPI).
    endpoint: ASGIApp = signup.signup_endpoint
    for guard, options in reversed(guards):
        endpoint = guard(endpoint, **options)
    app.signup_path = endpoint
    return app


_GC_TUNED = False


def tune_garbage_collector() -> None:
    """For a serving process: the objects of start-up (modules, the app, settings) live as long
    as the process, so they are frozen out of the collector's scans; and a request allocates
    thousands of short-lived objects, so the youngest generation is collected every 50,000
    allocations instead of every 700. Measured on POST /subscribe (bench/subscribe.py): about a
    fifth less CPU per request and a shorter p99. Once per process: freezing again later would
    pin whatever garbage is alive at that moment (test clients start the app many times)."""
    global _GC_TUNED
    if _GC_TUNED:
        return
    _GC_TUNED = True
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


app = create_app()
