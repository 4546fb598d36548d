"""The subscriber-facing pages, installed together: signup, confirmation, manage, data links.

Confirm, unsubscribe, preferences and data links carry signed tokens, one kind per purpose
(digest/tokens.py), checked by one dependency per kind (digest/web/links.py). GET never changes
anything: mail scanners prefetch links, so every change (confirm, unsubscribe, export, delete)
is a POST behind a button. Emails are queued as Celery tasks only after the database commit.
"""

from __future__ import annotations

from fastapi import FastAPI

from digest.ratelimit import limiter_for
from digest.settings import get_settings
from digest.web import archive_pages, confirm, data_links, links, manage, signup, votes
from digest.web.signup_service import SubscribeGuard

# Paths whose bodies the size limit covers (see digest/web/body_limit.py).
PUBLIC_PREFIXES = ("/subscribe", "/confirm", "/unsubscribe", "/preferences", "/data", "/vote")


def install(app: FastAPI) -> None:
    """Add the routers, the link error pages and the per-app state (rate limiter) to the app."""
    settings = get_settings()
    app.state.subscribe_guard = SubscribeGuard(
        limiter_for(settings.redis_url),
        settings.subscribe_rate_per_ip,
        settings.subscribe_rate_per_email,
        settings.data_link_rate,
    )
    app.state.vote_guard = votes.VoteGuard(limiter_for(settings.redis_url))
    links.install_handlers(app)
    for module in (signup, confirm, manage, data_links, archive_pages, votes):
        app.include_router(module.router)
