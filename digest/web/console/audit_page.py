"""`/console/audit`: who did what, when, to what — newest first, a page at a time."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from digest.audit import recent
from digest.db import session_scope
from digest.web.console.views import Signed, render, signed_in

router = APIRouter(tags=["console"], include_in_schema=False, dependencies=[Depends(signed_in)])


@router.get("/console/audit")
def audit_log(page: int = 1, signed: Signed = Depends(signed_in)) -> HTMLResponse:
    with session_scope() as session:
        found = recent(session, page)
    return render("audit.html", signed, page="audit", log=found)
