"""The FastAPI application: `digest serve`, `uvicorn digest.web.app:app`, or the Procfile."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from digest.settings import get_settings
from digest.web import admin_api, health, ingest_api, subscribe_pages, webhooks_api
from digest.web.body_limit import BodySizeLimit


def create_app() -> FastAPI:
    app = FastAPI(
        title="Weekly AI Tool Verdicts",
        version="0.1.0",
        description="Subscriptions, ingest, operator and webhook endpoints of the digest service.",
    )
    app.include_router(health.router)
    app.include_router(ingest_api.router)
    app.include_router(admin_api.router)
    app.include_router(webhooks_api.router)
    subscribe_pages.install(app)
    settings = get_settings()
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        prefixes=subscribe_pages.PUBLIC_PREFIXES,
    )
    if settings.cors_origins:  # fetch-based signup forms on these origins (added last: outermost)
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type"],
            max_age=600,
        )
    return app


app = create_app()
