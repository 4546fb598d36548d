"""`/console/digests/new`: an ad hoc digest (or a dry run, or one test copy) from a form, through
the same path as `digest send` and `POST /admin/digests`: `request_digest` validates and
creates it, the planning task is queued after the commit (`_queue_plan`'s pattern: a broker that
cannot be reached withdraws the digest so that nothing is sent twice), and the request is in the
audit log. A refused field is answered 422 with the form and the message beside it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Form
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from digest import audit
from digest.db import session_scope
from digest.operations import withdraw_unqueued_digest
from digest.plan_requests import PlanError, request_digest
from digest.signup_fields import available_categories
from digest.web.console.views import CONSOLE_HEADERS, Signed, csrf_checked, render, signed_in
from workers.publish import BrokerUnavailable, enqueue
from workers.tasks import plan_digest

router = APIRouter(tags=["console"], include_in_schema=False, dependencies=[Depends(signed_in)])
PATH = "/console/digests/new"
FIELD_MAX = 320


@dataclass(frozen=True)
class AdhocForm:
    """What the operator typed, kept to show the form again beside an error."""

    since: str = ""
    until: str = ""
    subject: str = ""
    to: str = ""
    dry_run: bool = False
    categories: list[str] = field(default_factory=list)


def _form_page(signed: Signed, form: AdhocForm, errors: dict[str, str]) -> HTMLResponse:
    with session_scope() as session:
        categories = available_categories(session)
    return render(
        "adhoc.html",
        signed,
        422 if errors else 200,
        page="digests",
        form=form,
        errors=errors,
        categories=categories,
    )


def _when(value: str, name: str) -> datetime | None:
    """A `datetime-local` value read as UTC; empty is the default window's edge."""
    if not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip()[:40])
    except ValueError as exc:
        raise PlanError(name, "not a date and time (YYYY-MM-DDTHH:MM, UTC)") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


@router.get(PATH)
def adhoc_form(signed: Signed = Depends(signed_in)) -> HTMLResponse:
    return _form_page(signed, AdhocForm(), {})


@router.post(PATH)
def adhoc_send(
    since: str = Form(""),
    until: str = Form(""),
    subject: str = Form(""),
    to: str = Form(""),
    dry_run: bool = Form(False),
    category: list[str] = Form([]),
    signed: Signed = Depends(csrf_checked),
) -> Response:
    form = AdhocForm(
        since[:FIELD_MAX], until[:FIELD_MAX], subject[:FIELD_MAX], to[:FIELD_MAX], dry_run,
        [c[:100] for c in category[:50]],
    )  # fmt: skip
    try:
        with session_scope() as session:
            digest = request_digest(
                session,
                since=_when(since, "since"),
                until=_when(until, "until"),
                subject=subject if subject.strip() else None,
                segments=form.categories,
                to=to.strip() if to.strip() else None,
                dry_run=dry_run,
            )
            digest_id = digest.id
            detail = f"{digest.kind}{' dry run' if dry_run else ''}" + (
                f" to {to.strip()}" if to.strip() else ""
            )
            audit.record(session, signed.email, "digest.requested", f"digest {digest_id}", detail)
    except PlanError as exc:
        return _form_page(signed, form, {exc.field: exc.message})
    try:
        enqueue(plan_digest.s(digest_id))
    except BrokerUnavailable:
        with session_scope() as session:
            withdrawn = withdraw_unqueued_digest(
                session, digest_id, "not queued: the task broker was unreachable; request it again"
            )
        if withdrawn:
            return _form_page(
                signed, form, {"send": "the task queue is unavailable; nothing was sent"}
            )
    return RedirectResponse(f"/console/digests/{digest_id}", 303, headers=CONSOLE_HEADERS)
