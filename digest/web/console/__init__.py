"""The operator console: server-rendered pages under `/console` (README "Console").

Routers are thin: they read through digest/progress.py, digest/results.py, digest/schedule.py and
digest/audit.py, and act through digest/operations.py and workers/publish.py — the functions
the CLI and the admin API use.
"""

from __future__ import annotations

from fastapi import FastAPI

from digest.web.console import (
    adhoc,
    audience,
    audit_page,
    dashboard,
    digest_pages,
    edition,
    lists,
    login,
    results_page,
    subscribers,
    suppressions,
)

# adhoc before digest_pages: `/console/digests/new` before `/console/digests/{digest_id}`
ROUTERS = (
    login.router,
    dashboard.router,
    edition.router,
    adhoc.router,
    digest_pages.router,
    results_page.router,
    lists.router,
    audience.router,
    subscribers.router,
    suppressions.router,
    audit_page.router,
)


def install(app: FastAPI) -> None:
    for router in ROUTERS:
        app.include_router(router)
