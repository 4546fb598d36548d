"""`/console/audience`: how the list grew week by week, the confirmation rate, and who is
active by frequency, category and timezone — read through digest/audience.py."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from digest.audience import SERIES, audience, totals
from digest.db import session_scope
from digest.web.console.views import Signed, render, signed_in

router = APIRouter(tags=["console"], include_in_schema=False, dependencies=[Depends(signed_in)])


@router.get("/console/audience")
def audience_page(signed: Signed = Depends(signed_in)) -> HTMLResponse:
    with session_scope() as session:
        found = audience(session)
    rows = [(week.label, None, week.values) for week in found.weeks]
    return render(
        "audience.html",
        signed,
        page="audience",
        audience=found,
        series=[name.capitalize() for name in SERIES],
        growth_rows=rows,
        totals=totals(found.weeks),
    )
