"""`/console/editions/next`: the week's edition as it will go — the ranking and why, its state,
each segment's email — and the operator's changes to it, through digest/edition_review.py like
`digest edition …`, each written to the audit log (`record_change`) in the transaction that
makes it. A refused change (`EditionError`) is answered 422 with the page and the message beside
its field; nothing changes.

The email preview is its own GET route, framed by the page: `Content-Security-Policy: sandbox`
(no scripts, no forms, an opaque origin) and `frame-ancestors 'self'` for that route only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Form, HTTPException
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from digest import audit
from digest.db import session_scope
from digest.edition_emails import EmailPreview, preview_emails
from digest.edition_review import (
    Change,
    EditionError,
    approve,
    exclude,
    next_edition,
    pin,
    preview_ranking,
    record_change,
    request_test_copy,
    restore,
    review_state,
    set_note,
    set_preheader,
    set_subject,
)
from digest.planning import plan_digest
from digest.rendering import PREHEADER_MAX, SUBJECT_MAX, note_paragraphs
from digest.substitution import ANY_PLACEHOLDER
from digest.web.console.views import CONSOLE_HEADERS, Signed, csrf_checked, render, signed_in
from schema.models import Digest, utcnow
from workers.publish import BrokerUnavailable
from workers.tasks import dispatch_batches

router = APIRouter(tags=["console"], include_in_schema=False, dependencies=[Depends(signed_in)])
PAGE = "/console/editions/next"
WIDTHS = (375, 640)
PREVIEW_CSP = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
)
PREVIEW_HEADERS = {
    **CONSOLE_HEADERS,
    "Content-Security-Policy": PREVIEW_CSP,
    "X-Frame-Options": "SAMEORIGIN",
}
NOTICES = {
    "pin": "Pinned to the top.",
    "exclude": "Excluded from every wave and segment.",
    "restore": "Restored to its ranked place.",
    "note": "Editor's note saved.",
    "subject": "Subject saved.",
    "preheader": "Preheader saved.",
    "approve": "Approved: the edition goes as it stands.",
    "withdrawn": "Saved; this change withdrew the approval — approve again.",
    "test-copy": "Test copy sent to you.",
    "broker": "Test copy planned, but the task broker is unreachable: beat's orphan sweep "
    "sends it later.",
}


@dataclass(frozen=True)
class Shown:
    """The page's preview choice: which segment, at which width."""

    segment: str
    width: int


def _context(session: Session, now: Any, shown: Shown) -> dict[str, Any]:
    slot = next_edition(session, now)
    previews: list[EmailPreview] = preview_emails(session, slot.edition, now)
    keys = [p.key for p in previews]
    return {
        "slot": slot,
        "ranking": preview_ranking(session, slot.edition, now),
        "review": review_state(session, slot.edition, now),
        "previews": previews,
        "shown": Shown(shown.segment if shown.segment in keys else (keys or [""])[0], shown.width),
        "note_paragraphs": note_paragraphs,
        "subject_max": SUBJECT_MAX,
        "preheader_max": PREHEADER_MAX,
        "widths": WIDTHS,
    }


def _page(
    signed: Signed,
    shown: Shown,
    *,
    notice: str = "",
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    copy_id: int | None = None,
) -> HTMLResponse:
    with session_scope() as session:
        context = _context(session, utcnow(), shown)
    return render(
        "edition.html",
        signed,
        422 if errors else 200,
        page="edition",
        notice=NOTICES.get(notice, ""),
        errors=errors or {},
        values=values or {},
        copy_id=copy_id,
        **context,
    )


@router.get(PAGE)
def edition_page(
    segment: str = "",
    width: str = "640",
    notice: str = "",
    copy: str = "",
    signed: Signed = Depends(signed_in),
) -> HTMLResponse:
    """Any query string is answered with the page: unknown values fall back to the defaults."""
    chosen = int(width) if width in {str(w) for w in WIDTHS} else 640
    copy_id = int(copy) if copy.isdigit() and len(copy) < 12 else None
    return _page(signed, Shown(segment[:100], chosen), notice=notice, copy_id=copy_id)


def _as_a_reader_sees_it(html: str) -> str:
    """The recipient placeholders filled for a sample reader: "Hi Reader,", links to nowhere."""
    return ANY_PLACEHOLDER.sub(
        lambda m: "Reader" if m.group(0).startswith(("-n-", "-name-")) else "#", html
    )


@router.get(PAGE + "/emails")
def email_preview(segment: str = "all", signed: Signed = Depends(signed_in)) -> HTMLResponse:
    """One segment's email exactly as rendered, for the page's sandboxed iframe."""
    with session_scope() as session:
        slot = next_edition(session, utcnow())
        found = [p for p in preview_emails(session, slot.edition, utcnow()) if p.key == segment]
    if not found:
        raise HTTPException(404, "no such segment in this edition", CONSOLE_HEADERS)
    return HTMLResponse(_as_a_reader_sees_it(found[0].html), headers=PREVIEW_HEADERS)


def _change(signed: Signed, act: Callable[[Session], Change], values: dict[str, str]) -> Response:
    """One edition change and its audit entry in one transaction; 422 with the page if refused."""
    try:
        with session_scope() as session:
            change = act(session)
            record_change(session, change)
    except EditionError as exc:
        return _page(signed, Shown("", 640), errors={exc.field: exc.message}, values=values)
    notice = "withdrawn" if change.approval_withdrawn else change.action
    return RedirectResponse(f"{PAGE}?notice={notice}", 303, headers=CONSOLE_HEADERS)


def _moving(action: Callable[..., Change]) -> Callable[..., Response]:
    def post(
        edition: str = Form(""),
        slug: str = Form(""),
        signed: Signed = Depends(csrf_checked),
    ) -> Response:
        return _change(
            signed, lambda s: action(s, edition, slug, actor=signed.email), {"slug": slug}
        )

    return post


def _setting(action: Callable[..., Change], field: str) -> Callable[..., Response]:
    def post(
        edition: str = Form(""),
        value: str = Form(""),
        signed: Signed = Depends(csrf_checked),
    ) -> Response:
        return _change(
            signed, lambda s: action(s, edition, value, actor=signed.email), {field: value}
        )

    return post


for _name, _action in (("pin", pin), ("exclude", exclude), ("restore", restore)):
    router.post(f"{PAGE}/{_name}")(_moving(_action))
for _name, _action in (("note", set_note), ("subject", set_subject), ("preheader", set_preheader)):
    router.post(f"{PAGE}/{_name}")(_setting(_action, _name))


@router.post(PAGE + "/approve")
def approve_edition(edition: str = Form(""), signed: Signed = Depends(csrf_checked)) -> Response:
    return _change(signed, lambda s: approve(s, edition, actor=signed.email), {})


@router.post(PAGE + "/test-copy")
def test_copy(edition: str = Form(""), signed: Signed = Depends(csrf_checked)) -> Response:
    """The edition as it stands, to the signed-in operator's own address, planned here and
    its batch queued after the commit (as `digest edition test-copy` does)."""
    try:
        with session_scope() as session:
            copy = request_test_copy(session, edition, signed.email, actor=signed.email)
            digest = session.get(Digest, copy.digest_id)
            assert digest is not None
            report = plan_digest(session, digest)
            audit.record(
                session,
                signed.email,
                "edition.test_copy",
                f"{copy.edition} digest {copy.digest_id}",
                f"to {copy.to}",
            )
    except EditionError as exc:
        return _page(signed, Shown("", 640), errors={exc.field: exc.message})
    notice = "test-copy"
    if report.batch_ids:
        try:
            dispatch_batches(report.batch_ids)
        except BrokerUnavailable:
            notice = "broker"
    return RedirectResponse(
        f"{PAGE}?notice={notice}&copy={copy.digest_id}", 303, headers=CONSOLE_HEADERS
    )
