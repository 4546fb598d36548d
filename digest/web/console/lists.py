"""`/console/lists`: upload a subscriber list (CSV) and download a filtered one — the code of
`digest subscribers import|export` (digest/subscriber_lists.py).

An upload is stored in the database and imported by the `digest.import_list` task in chunks
(digest/list_imports.py): a large list never holds a web worker, and the import's page polls its
progress. A download is streamed a page at a time. Both are in the audit log with counts and
filters, never addresses.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, File, Form, HTTPException, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from digest import audit
from digest.db import session_scope
from digest.list_imports import PART_BYTES, create_import, import_view, recent_imports
from digest.settings import get_settings
from digest.signup_fields import InvalidField, available_categories, clean_timezone
from digest.subscriber_lists import ListFilter, ListFormatError, export_chunks
from digest.web.console.views import CONSOLE_HEADERS, Signed, csrf_checked, render, signed_in
from schema.statuses import Frequency, SubscriberStatus
from workers.publish import BrokerUnavailable, enqueue
from workers.tasks import import_list

router = APIRouter(tags=["console"], include_in_schema=False, dependencies=[Depends(signed_in)])
PATH = "/console/lists"
UPLOAD_PATH = f"{PATH}/upload"
NOTICES = {
    "broker": "Stored, but the task broker is unreachable: beat queues the import again "
    "once it answers (DIGEST_LIST_IMPORT_REQUEUE_AFTER).",
}


def _lists_page(
    signed: Signed, errors: dict[str, str] | None = None, wanted: ListFilter | None = None
) -> HTMLResponse:
    with session_scope() as session:
        imports = recent_imports(session)
        categories = available_categories(session)
    return render(
        "lists.html",
        signed,
        422 if errors else 200,
        page="lists",
        imports=imports,
        categories=categories,
        statuses=[s for s in SubscriberStatus if s != SubscriberStatus.DELETED],
        frequencies=list(Frequency),
        wanted=wanted or ListFilter(),
        errors=errors or {},
        max_bytes=get_settings().list_upload_max_bytes,
    )


@router.get(PATH)
def lists_page(signed: Signed = Depends(signed_in)) -> HTMLResponse:
    return _lists_page(signed)


def _pieces(upload: UploadFile) -> Iterator[bytes]:
    """The uploaded file (spooled by the form parser) in parts, never whole in memory."""
    while piece := upload.file.read(PART_BYTES):
        yield piece


@router.post(UPLOAD_PATH)
def upload(
    file: UploadFile = File(...),
    confirmed: bool = Form(False),
    signed: Signed = Depends(csrf_checked),
) -> Response:
    """Store the list (checked: UTF-8, a header naming `email`), audit, then queue its import."""
    try:
        with session_scope() as session:
            import_id = create_import(
                session, signed.email, file.filename or "list.csv", confirmed, _pieces(file)
            )
    except ListFormatError as exc:
        return _lists_page(signed, {"file": str(exc)})
    notice = ""
    try:
        enqueue(import_list.s(import_id))
    except BrokerUnavailable:
        notice = "?notice=broker"
    return RedirectResponse(f"{PATH}/imports/{import_id}{notice}", 303, headers=CONSOLE_HEADERS)


def _import_of(import_id: int):  # type: ignore[no-untyped-def]
    with session_scope() as session:
        view = import_view(session, import_id)
    if view is None:
        raise HTTPException(404, "no such list import", CONSOLE_HEADERS)
    return view


@router.get(PATH + "/imports/{import_id}")
def import_page(
    import_id: int, notice: str = "", signed: Signed = Depends(signed_in)
) -> HTMLResponse:
    view = _import_of(import_id)
    return render(
        "list_import.html", signed, page="lists", item=view, notice=NOTICES.get(notice, "")
    )


@router.get(PATH + "/imports/{import_id}/progress")
def import_progress(import_id: int, signed: Signed = Depends(signed_in)) -> HTMLResponse:
    return render("_list_import.html", signed, item=_import_of(import_id))


def _filter(status: str, category: str, frequency: str, timezone: str) -> ListFilter:
    """The download's filter from the form; InvalidField names a value that is not one."""
    with session_scope() as session:
        categories = available_categories(session)
    if status and status not in {s.value for s in SubscriberStatus}:
        raise InvalidField("status", "not a subscriber status")
    if frequency and frequency not in {f.value for f in Frequency}:
        raise InvalidField("frequency", "not a frequency")
    if category and category not in categories:
        raise InvalidField("category", "not a known category")
    return ListFilter(
        SubscriberStatus(status) if status else None,
        category or None,
        Frequency(frequency) if frequency else None,
        clean_timezone(timezone.strip()),
    )


def _stream(wanted: ListFilter) -> Iterator[bytes]:
    with session_scope() as session:
        for text, _rows in export_chunks(session, wanted):
            yield text.encode("utf-8")


@router.post(PATH + "/export")
def export(
    status: str = Form(""),
    category: str = Form(""),
    frequency: str = Form(""),
    timezone: str = Form(""),
    signed: Signed = Depends(csrf_checked),
) -> Response:
    """The filtered list as CSV, streamed; the download is audited with its filter."""
    try:
        wanted = _filter(status[:20], category[:100], frequency[:20], timezone[:64])
    except InvalidField as exc:
        return _lists_page(signed, {exc.field: exc.message})
    with session_scope() as session:
        audit.record(session, signed.email, "list.exported", "subscribers", wanted.describe())
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    headers = {
        **CONSOLE_HEADERS,
        "Content-Disposition": f'attachment; filename="subscribers-{stamp}.csv"',
    }
    return StreamingResponse(_stream(wanted), media_type="text/csv; charset=utf-8", headers=headers)
