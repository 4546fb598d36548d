"""Celery tasks: thin, explicitly named wrappers that take ids and call one domain function.

Every task here opens its own database session through the domain function it calls; retry
policy is declared on the task, business rules live in `digest/`.
"""

from __future__ import annotations

from workers.app import app

__all__ = ["app"]
