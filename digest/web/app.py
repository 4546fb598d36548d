"""The FastAPI application: `digest serve`, `uvicorn digest.web.app:app`, or the Procfile."""

from __future__ import annotations

from fastapi import FastAPI

from digest.web import health, ingest_api, webhooks_api


def create_app() -> FastAPI:
    app = FastAPI(
        title="Weekly AI Tool Verdicts",
        version="0.1.0",
        description="Subscriptions, ingest, operator and webhook endpoints of the digest service.",
    )
    app.include_router(health.router)
    app.include_router(ingest_api.router)
    app.include_router(webhooks_api.router)
    return app


app = create_app()
