"""Digests: send one now, watch it, steer it in flight, and see how it did.

`digest send`, `status`, `cancel`, `resume`, `resend-ambiguous` (digest/planning.py,
digest/progress.py, digest/operations.py) and `process-webhooks` (digest/tracking.py); `stats`
is in digest/cli/results.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.table import Table

from digest.cli.console import console, err, parse_when, print_json

if TYPE_CHECKING:
    from digest.planning import PlanReport
    from digest.progress import DigestReport

Result = TypeVar("Result")

ORPHAN_SWEEP = "beat's orphan sweep queues them again after DIGEST_SEND_ORPHAN_AFTER"


def dispatch_or_exit(batch_ids: list[int], what: str) -> None:
    """Queue batches after the commit; a broker outage ends the command with exit 1 and says
    what was left behind (the rows are committed, so nothing is lost, only delayed)."""
    from workers.publish import BrokerUnavailable
    from workers.tasks import dispatch_batches

    try:
        dispatch_batches(batch_ids)
    except BrokerUnavailable as exc:
        err.print(
            f"[red]task broker unreachable:[/] {what}: {len(batch_ids)} batch(es) are pending "
            f"but not queued; {ORPHAN_SWEEP} ({exc.__cause__})",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from exc


# --- sending a digest now ----------------------------------------------------------------------


def print_plan(report: PlanReport) -> None:
    """What a plan holds: items, segments, recipients and batches, and why nothing goes out."""
    window = ""
    if report.since and report.until:
        window = f", window {report.since:%Y-%m-%d %H:%M} – {report.until:%Y-%m-%d %H:%M} UTC"
    console.print(f"digest {report.digest_id} ({report.kind}{window})")
    if report.items:
        items = Table(title="items")
        for column in ("rank", "comparison", "score", "why"):
            items.add_column(column)
        for rank, title, score, explanation in report.items:
            items.add_row(str(rank), title, f"{score:.3f}", explanation)
        console.print(items)
    if report.segments:
        segments = Table(title="segments")
        for column in ("segment", "items", "recipients", "batches", "rendered"):
            segments.add_column(column)
        for s in report.segments:
            segments.add_row(
                s.label or s.key,
                str(s.items),
                str(s.recipients),
                str(s.batches),
                "yes" if s.rendered else "reused",
            )
        console.print(segments)
    for label, count in report.left_out.items():
        console.print(f"{count} subscriber(s) get nothing: no item in {label}")
    if report.suppressed:
        console.print(f"{report.suppressed} suppressed address(es) skipped")
    console.print(
        f"{report.recipients} recipient(s), {report.batches} batch(es), "
        f"{report.renders} render(s): [bold]{report.status}[/]"
        + (f" — {report.reason}" if report.reason else "")
    )


def wait_for_digest(digest_id: int, poll: float = 0.5) -> str:
    """A progress bar over the digest's batches until the digest ends; returns its status."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from digest.db import session_scope
    from digest.progress import FINAL_STATUSES, sending_progress

    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("recipients"),
        console=console,
    ) as progress:
        task = progress.add_task(f"digest {digest_id}", total=None)
        while True:
            with session_scope() as session:
                now = sending_progress(session, digest_id)
            label = f"digest {digest_id}: {now.status}"
            progress.update(task, total=now.recipients, completed=now.done, description=label)
            if now.status in FINAL_STATUSES:
                break
            time.sleep(poll)
    reason = now.status_reason
    console.print(f"digest {digest_id}: [bold]{now.status}[/]" + (f" — {reason}" if reason else ""))
    return now.status


def send_command(
    since: Annotated[
        str | None, typer.Option(help="Window start, ISO 8601 (default: the next weekly's)")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Window end, ISO 8601 (default: now)")] = None,
    subject: Annotated[str | None, typer.Option(help="Instead of the generated subject")] = None,
    segment: Annotated[
        list[str] | None, typer.Option(help="Only comparisons in this category (repeatable)")
    ] = None,
    to: Annotated[str | None, typer.Option(help="Send one test copy to this address only")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan, render, send nothing")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until it ends")] = False,
) -> None:
    """Send an ad hoc digest now, through the same plan and batch tasks as the weekly one."""
    from digest.db import session_scope
    from digest.planning import PlanError, plan_digest, request_digest
    from schema.statuses import DigestStatus

    try:
        with session_scope() as session:
            digest = request_digest(
                session,
                since=parse_when(since, "--since"),
                until=parse_when(until, "--until"),
                subject=subject,
                segments=segment or [],
                to=to,
                dry_run=dry_run,
            )
            report = plan_digest(session, digest)
    except PlanError as exc:
        err.print(f"[red]--{exc.field}:[/] {exc.message}", highlight=False)
        raise typer.Exit(2) from exc
    print_plan(report)
    if report.batch_ids:
        dispatch_or_exit(report.batch_ids, f"digest {report.digest_id} is planned")
    if wait and report.status == DigestStatus.SENDING:
        status = wait_for_digest(report.digest_id)
        if status in (DigestStatus.FAILED, DigestStatus.PAUSED):
            raise typer.Exit(1)


# --- watching and steering a digest in flight --------------------------------------------------


def _operation(fn: Callable[..., Result], *args: object, **kwargs: object) -> Result:
    """Run one operation in its own transaction; unknown ids and refusals exit 1 with the reason."""
    from digest.db import session_scope
    from digest.operations import DigestNotFound, OperationRefused

    try:
        with session_scope() as session:
            return fn(session, *args, **kwargs)
    except (DigestNotFound, OperationRefused) as exc:
        err.print(f"[red]error[/] {exc}", highlight=False)
        raise typer.Exit(1) from exc


def _print_digest_status(report: DigestReport) -> None:
    batches = ", ".join(f"{n} {s}" for s, n in report.batches.items() if n) or "none"
    deliveries = ", ".join(f"{n} {s}" for s, n in report.deliveries.items() if n) or "none"
    console.print(
        f"digest {report.id} ({report.kind}): [bold]{report.status}[/]"
        + (f" — {report.status_reason}" if report.status_reason else ""),
        highlight=False,
    )
    console.print(f"  batches: {batches}\n  deliveries: {deliveries}", highlight=False)
    if report.stale_sending:
        console.print(
            f"  {report.stale_sending} batch(es) claimed longer than any request may take: "
            "their worker was lost; the reaper (beat, `digest.reap_stale_claims`) will mark "
            "them ambiguous"
        )
    if report.ambiguous:
        table = Table(title="ambiguous batches (SendGrid may or may not have accepted them)")
        for column in ("batch", "seq", "recipients", "attempts", "claimed at", "last error"):
            table.add_column(column)
        for b in report.ambiguous:
            table.add_row(
                str(b.batch_id),
                str(b.seq),
                str(b.recipients),
                str(b.attempts),
                b.claimed_at or "",
                b.error or "",
            )
        console.print(table)
        console.print(
            f"decide with: digest resend-ambiguous {report.id} "
            "--resend | --mark-sent | --mark-failed"
        )


def _print_digest_list(reports: list[DigestReport]) -> None:
    table = Table(title="digests")
    for column in ("id", "kind", "status", "recipients", "sent", "failed", "ambiguous", "created"):
        table.add_column(column)
    for d in reports:
        table.add_row(
            str(d.id),
            d.kind,
            d.status,
            str(d.recipients),
            str(d.deliveries["sent"]),
            str(d.deliveries["failed"]),
            str(len(d.ambiguous)),
            (d.created_at or "")[:16],
        )
    console.print(table)
    for d in reports:
        if d.ambiguous:
            console.print(f"digest {d.id}: {len(d.ambiguous)} ambiguous batch(es)")


def _print_site_webhook() -> None:
    """One line on readers' verdicts sent to the site, when there is anything to say."""
    from digest.site_events import health

    got = _operation(health)
    if not got.enabled and not got.waiting:
        return
    line = f"site webhook: {got.delivered} delivered, {got.waiting} waiting"
    if got.failing:
        line += f", [red]{got.failing} failing[/] (last error: {got.last_error})"
    console.print(line + ("" if got.enabled else " (DIGEST_SITE_WEBHOOK_URL is empty)"))


def status_command(
    digest_id: Annotated[
        int | None, typer.Argument(help="One digest (default: the latest)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
    limit: Annotated[int, typer.Option(help="How many recent digests to list")] = 20,
) -> None:
    """Digests with their batches and deliveries by status, and any ambiguous batches."""
    from digest.progress import digest_report, recent_digests

    if digest_id is None:
        listed = _operation(recent_digests, limit=limit)
        if as_json:
            print_json(listed.as_dict())
        else:
            _print_digest_list(listed.digests)
            _print_site_webhook()
        return
    report = _operation(digest_report, digest_id)
    if as_json:
        print_json(report.as_dict())
    else:
        _print_digest_status(report)


def cancel_command(digest_id: Annotated[int, typer.Argument(help="The digest to stop")]) -> None:
    """Stop a digest: its pending batches are cancelled; requests in flight finish."""
    from digest.operations import cancel_digest

    result = _operation(cancel_digest, digest_id)
    console.print(
        f"digest {digest_id} cancelled: {result.batches_cancelled} batch(es) "
        f"({result.deliveries_cancelled} recipient(s)) will not be sent; "
        f"{result.batches_in_flight} request(s) in flight finish"
    )


def resume_command(digest_id: Annotated[int, typer.Argument(help="A paused digest")]) -> None:
    """Send the rest of a digest paused by SendGrid refusing the API key (401/403)."""
    from digest.operations import resume_digest

    result = _operation(resume_digest, digest_id)
    dispatch_or_exit(result.enqueue, f"digest {digest_id} is resumed")
    console.print(f"digest {digest_id} resumed: {len(result.enqueue)} batch(es) enqueued")


def resend_ambiguous_command(
    digest_id: Annotated[int, typer.Argument(help="The digest with ambiguous batches")],
    batch: Annotated[
        int | None, typer.Option("--batch", help="Only this batch (default: all of the digest's)")
    ] = None,
    resend: Annotated[
        bool, typer.Option("--resend", help="Send again: recipients may get it twice")
    ] = False,
    mark_sent: Annotated[
        bool, typer.Option("--mark-sent", help="Trust SendGrid took it: record it as sent")
    ] = False,
    mark_failed: Annotated[
        bool, typer.Option("--mark-failed", help="Assume it was lost: record it as failed")
    ] = False,
) -> None:
    """Decide what happened to batches whose request got no answer (see `digest status`)."""
    from digest.operations import resend_ambiguous
    from digest.progress import digest_report

    chosen = [
        name
        for name, flag in (
            ("resend", resend),
            ("mark-sent", mark_sent),
            ("mark-failed", mark_failed),
        )
        if flag
    ]
    if len(chosen) != 1:
        report = _operation(digest_report, digest_id)
        if report.ambiguous:
            _print_digest_status(report)
        err.print("choose exactly one of --resend, --mark-sent or --mark-failed")
        raise typer.Exit(2)
    result = _operation(resend_ambiguous, chosen[0], digest_id=digest_id, batch_id=batch)
    dispatch_or_exit(result.enqueue, f"digest {digest_id}: {chosen[0]} recorded")
    ids = ", ".join(str(b) for b in result.batches)
    console.print(f"digest {digest_id}: batch(es) {ids} → {chosen[0]}")


# --- webhook batches by hand ---------------------------------------------------------------------


def process_webhooks_command() -> None:
    """Process stored SendGrid webhook batches that no worker has processed yet."""
    from digest.db import session_scope
    from digest.tracking import pending_batches, process_batch

    with session_scope() as session:
        ids = pending_batches(session)
    for batch_id in ids:
        with session_scope() as session:
            outcome = process_batch(session, batch_id)
        console.print(
            f"batch {batch_id}: {outcome.inserted} new event(s), {outcome.duplicates} duplicate(s)"
        )
    console.print(f"processed {len(ids)} batch(es)")
