"""`/console/digests/{id}/results`: how a digest did — the funnel, bounces and complaints,
clicks per comparison, the first 48 hours as a chart, readers' verdicts. Read through
digest/results.py `digest_results`, the function behind `digest stats --json`."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import HTMLResponse

from digest.db import session_scope
from digest.results import digest_results
from digest.web.console.views import CONSOLE_HEADERS, Signed, render, signed_in

router = APIRouter(tags=["console"], include_in_schema=False, dependencies=[Depends(signed_in)])

ACTIVITY_NAMES = ("delivered", "human opens", "human clicks", "machine opens", "machine clicks")


def share(part: int, whole: int) -> str:
    """A percentage for the funnel ("—" when there is nothing to divide by)."""
    return f"{100 * part / whole:.1f} %" if whole else "—"


@router.get("/console/digests/{digest_id}/results")
def results_page(digest_id: int, signed: Signed = Depends(signed_in)) -> HTMLResponse:
    with session_scope() as session:
        try:
            results = digest_results(session, digest_id)
        except LookupError as exc:
            raise HTTPException(404, str(exc), CONSOLE_HEADERS) from exc
    activity_rows = [
        (
            datetime.fromisoformat(h.starts_at).strftime("%a %H:%M"),
            int(datetime.fromisoformat(h.starts_at).timestamp()),
            [h.delivered, h.human_opens, h.human_clicks, h.machine_opens, h.machine_clicks],
        )
        for h in results.activity.hours
    ]
    clicks_by_rank = [
        (f"#{c.rank}", None, [c.human_clicks, c.machine_clicks]) for c in results.clicks.comparisons
    ]
    return render(
        "results.html",
        signed,
        page="digests",
        results=results,
        stats=results.stats,
        share=share,
        activity_names=ACTIVITY_NAMES,
        activity_rows=activity_rows,
        clicks_by_rank=clicks_by_rank,
    )
