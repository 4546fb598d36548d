"""`/console/suppressions`: how many addresses each reason holds, and "is this address
suppressed, and why?" — both read through digest/addresses.py, the suppression list's one
reader (the list keeps hashes, so the typed address is hashed as stored, never stored).

The lookup is a POST (CSRF-checked, changing nothing): an address typed here stays out of URLs,
so out of access logs, browser history and Referer headers.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form
from fastapi.responses import HTMLResponse

from digest.addresses import suppression_counts, suppression_of
from digest.db import session_scope
from digest.web.console.views import Signed, csrf_checked, render, signed_in

router = APIRouter(tags=["console"], include_in_schema=False, dependencies=[Depends(signed_in)])
PAGE = "/console/suppressions"
MAX_ADDRESS = 320


def _page(signed: Signed, address: str = "", looked_up: bool = False) -> HTMLResponse:
    with session_scope() as session:
        counts = suppression_counts(session)
        found = suppression_of(session, address) if looked_up and address else None
    return render(
        "suppressions.html",
        signed,
        page="suppressions",
        counts=counts,
        total=sum(c.addresses for c in counts),
        address=address,
        looked_up=looked_up and bool(address),
        found=found,
    )


@router.get(PAGE)
def suppressions_page(signed: Signed = Depends(signed_in)) -> HTMLResponse:
    return _page(signed)


@router.post(PAGE)
def lookup(address: str = Form(""), signed: Signed = Depends(csrf_checked)) -> HTMLResponse:
    """Any text is answered (hashing cannot fail); only the first MAX_ADDRESS characters."""
    return _page(signed, address.strip()[:MAX_ADDRESS], looked_up=True)
