"""The `digest` command: operators' entry point to every job of the service."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from digest.planning import PlanReport

# Plain tracebacks: Rich's would print local variables, and those can hold secrets.
app = typer.Typer(
    no_args_is_help=True,
    help="Weekly AI Tool Verdicts: the digest service.",
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
schema_app = typer.Typer(no_args_is_help=True, help="JSON Schemas of inbound events.")
app.add_typer(db_app, name="db")
app.add_typer(schema_app, name="schema")
console = Console()
err = Console(stderr=True)


def parse_when(value: str | None, option: str) -> datetime | None:
    """Dates on the command line: ISO 8601; a date without a zone is in UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 date", param_hint=option) from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


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


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply Alembic migrations to DIGEST_DATABASE_URL."""
    from digest.migrations import upgrade

    upgrade(revision=revision)
    console.print(f"database at [bold]{revision}[/]")


@schema_app.command("export")
def schema_export(
    out: Annotated[Path, typer.Option(help="Folder for the .schema.json files")] = Path(
        "schema/events"
    ),
) -> None:
    """Write the JSON Schema of each inbound event type (generated from schema/events.py)."""
    from digest.event_schemas import write_schemas

    for path in write_schemas(out):
        console.print(f"wrote {path}")


@app.command("import")
def import_command(
    paths: Annotated[list[Path], typer.Argument(help="JSON, NDJSON or saved page (.txt) files")],
    published_at: Annotated[
        str | None,
        typer.Option("--published-at", help="Publication time for pages (default: file mtime)"),
    ] = None,
    alert: Annotated[
        bool,
        typer.Option(
            "--alert",
            help="Send the single-comparison alert for newly published comparisons "
            "(off by default: an import is a backfill)",
        ),
    ] = False,
) -> None:
    """Import comparison events or saved comparison pages. Each record commits on its own."""
    from digest.ingest import import_paths

    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        err.print(f"[red]no such file:[/] {', '.join(missing)}")
        raise typer.Exit(2)
    new: list[int] = []
    report = import_paths(
        paths, published_at=parse_when(published_at, "--published-at"), new_publications=new
    )
    for error in report.errors:
        err.print(f"[red]error[/] {error}", highlight=False, soft_wrap=True)
    summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(report.outcomes.items()))
    console.print(f"imported: {summary or 'nothing'}; {len(report.errors)} error(s)")
    if alert:
        from workers.publish import BrokerUnavailable, enqueue
        from workers.tasks import plan_alert

        try:
            enqueue(*(plan_alert.s(comparison_id) for comparison_id in new))
        except BrokerUnavailable as exc:
            err.print(
                f"[red]task broker unreachable:[/] the comparisons are stored but their "
                f"{len(new)} alert(s) were not queued ({exc.__cause__})",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(1) from exc
        console.print(f"alerts queued: {len(new)}")
    if not report.ok:
        raise typer.Exit(1)


@app.command("preview")
def preview_command(
    since: Annotated[
        str | None, typer.Option("--since", help="Window start, ISO 8601 (default: weekly window)")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="Window end (default: now)")] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for the files")] = Path("var/preview"),
) -> None:
    """Write the weekly email of a window to digest.html, .txt and .eml; send nothing."""
    from digest.preview import EmptyWindow, write_preview

    try:
        result = write_preview(
            out, since=parse_when(since, "--since"), until=parse_when(until, "--until")
        )
    except EmptyWindow:
        err.print("no comparisons in window")
        raise typer.Exit(1) from None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since/--until") from exc
    console.print(
        f"window {result.since.isoformat()} – {result.until.isoformat()}: "
        f"{len(result.ranked)} comparison(s)",
        highlight=False,
    )
    for rank, item in enumerate(result.ranked, start=1):
        console.print(
            f"{rank:>3}. {item.comparison.title}  (score {item.score:.3f})",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        console.print(f"     {item.explanation}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"subject: {result.email.subject}", markup=False, highlight=False, soft_wrap=True)
    for path in result.files.values():
        console.print(f"wrote {path}", markup=False, highlight=False)


@app.command("serve")
def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Run the web app (subscriptions, ingest, admin, webhooks)."""
    import uvicorn

    uvicorn.run("digest.web.app:app", host=host, port=port, workers=workers, proxy_headers=True)


@app.command("demo")
def demo(
    outbox: Annotated[Path | None, typer.Option(help="Where the .eml files go")] = None,
) -> None:
    """Run the weekly digest end to end on the embedded default (SQLite, outbox, in-process)."""
    from digest.demo import run_demo

    summary = run_demo(outbox=outbox)
    table = Table(title="digest demo")
    table.add_column("step")
    table.add_column("result")
    for step, result in summary.items():
        table.add_row(step, str(result))
    console.print(table)


@app.command("stats")
def stats_command(
    digest_id: Annotated[int | None, typer.Argument(help="Digest id (default: the latest)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON")] = False,
) -> None:
    """How a digest did: sends, deliveries, bounces, complaints, opens, clicks, unsubscribes."""
    from digest.db import session_scope
    from digest.stats import FIGURES, digest_stats, latest_digest_id

    with session_scope() as session:
        digest_id = digest_id if digest_id is not None else latest_digest_id(session)
        if digest_id is None:
            err.print("no digests yet")
            raise typer.Exit(1)
        try:
            figures = digest_stats(session, digest_id)
        except LookupError as exc:
            err.print(f"[red]{exc}[/]")
            raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps(figures, default=str))
        return
    meta = figures["digest"]
    table = Table(title=f"digest {meta['id']} ({meta['kind']}, {meta['status']})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name in FIGURES:
        table.add_row(name.replace("_", " "), str(figures[name]))
    for name, count in figures["other_events"].items():
        table.add_row(f"other: {name}", str(count))
    console.print(table)


@app.command("process-webhooks")
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


# --- sending a digest now, and subscriber lists (digest/planning.py, subscriber_lists.py) -------

FINAL_STATUSES = ("sent", "cancelled", "failed", "paused")


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
    from sqlalchemy import func, select

    from digest.db import session_scope
    from schema.models import DeliveryBatch, Digest

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
                digest = session.get(Digest, digest_id)
                sizes = dict(
                    session.execute(
                        select(DeliveryBatch.status, func.sum(DeliveryBatch.size))
                        .where(DeliveryBatch.digest_id == digest_id)
                        .group_by(DeliveryBatch.status)
                    ).all()
                )
                status, reason = digest.status, digest.status_reason  # type: ignore[union-attr]
                total = digest.recipients  # type: ignore[union-attr]
            done = sum(n for s, n in sizes.items() if s not in ("pending", "sending"))
            label = f"digest {digest_id}: {status}"
            progress.update(task, total=total, completed=done, description=label)
            if status in FINAL_STATUSES:
                break
            time.sleep(poll)
    console.print(f"digest {digest_id}: [bold]{status}[/]" + (f" — {reason}" if reason else ""))
    return status


@app.command("send")
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
    if wait and report.status == "sending":
        status = wait_for_digest(report.digest_id)
        if status in ("failed", "paused"):
            raise typer.Exit(1)


subscribers_app = typer.Typer(no_args_is_help=True, help="Subscriber lists as CSV.")
app.add_typer(subscribers_app, name="subscribers")


@subscribers_app.command("import")
def subscribers_import(
    path: Annotated[Path, typer.Argument(help="CSV: email,name,categories,frequency,timezone")],
    confirmed: Annotated[
        bool,
        typer.Option("--confirmed", help="Consent was given before: import as active, not pending"),
    ] = False,
) -> None:
    """Add the list's new addresses; known and suppressed addresses are left alone."""
    from digest.db import session_scope
    from digest.subscriber_lists import ListFormatError, import_subscribers

    if not path.is_file():
        err.print(f"[red]no such file:[/] {path}")
        raise typer.Exit(2)
    try:
        with session_scope() as session:
            report = import_subscribers(session, path, confirmed=confirmed)
    except ListFormatError as exc:
        err.print(f"[red]error[/] {exc}", highlight=False)
        raise typer.Exit(2) from exc
    for error in report.errors:
        err.print(f"[red]error[/] {path.name} {error}", highlight=False, soft_wrap=True)
    status = "active" if confirmed else "pending (no email sent; they cannot receive digests)"
    console.print(
        f"added {report.added} as {status}; {report.existing} already known (unchanged); "
        f"{report.suppressed} suppressed (never re-added); {len(report.errors)} bad row(s)"
    )
    if report.errors:
        raise typer.Exit(1)


@subscribers_app.command("export")
def subscribers_export(
    out: Annotated[Path | None, typer.Option(help="CSV file to write (default: stdout)")] = None,
) -> None:
    """Write subscribers as CSV (email,name,categories,frequency,timezone,status)."""
    import sys

    from digest.db import session_scope
    from digest.subscriber_lists import export_subscribers

    with session_scope() as session:
        if out is None:
            count = export_subscribers(session, sys.stdout)
        else:
            with out.open("w", encoding="utf-8", newline="") as handle:
                count = export_subscribers(session, handle)
    err.print(f"exported {count} subscriber(s)" + (f" to {out}" if out else ""))


@subscribers_app.command("erase")
def subscribers_erase(
    address: Annotated[str, typer.Argument(help="The address to forget")],
) -> None:
    """Erase an address everywhere (as "delete me" does); a hashed suppression entry is kept."""
    from digest.db import session_scope
    from digest.privacy import erase_address

    with session_scope() as session:
        report = erase_address(session, address)
    if not report.erased:
        console.print("nothing held that address; it is suppressed (hashed) from now on")
        return
    rows = ", ".join(f"{table} {count}" for table, count in sorted(report.rows.items()))
    console.print(f"erased: {rows}; a hashed suppression entry is kept")


# --- watching and steering a digest in flight (digest/operations.py) ---------------------------


def _operation(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Run one operation in its own transaction; unknown ids and refusals exit 1 with the reason."""
    from digest.db import session_scope
    from digest.operations import DigestNotFound, OperationRefused

    try:
        with session_scope() as session:
            return fn(session, *args, **kwargs)
    except (DigestNotFound, OperationRefused) as exc:
        err.print(f"[red]error[/] {exc}", highlight=False)
        raise typer.Exit(1) from exc


def _print_digest_status(report: dict) -> None:
    batches = ", ".join(f"{n} {s}" for s, n in report["batches"].items() if n) or "none"
    deliveries = ", ".join(f"{n} {s}" for s, n in report["deliveries"].items() if n) or "none"
    console.print(
        f"digest {report['id']} ({report['kind']}): [bold]{report['status']}[/]"
        + (f" — {report['status_reason']}" if report["status_reason"] else ""),
        highlight=False,
    )
    console.print(f"  batches: {batches}\n  deliveries: {deliveries}", highlight=False)
    if report.get("stale_sending"):
        console.print(
            f"  {report['stale_sending']} batch(es) claimed longer than any request may take: "
            "their worker was lost; the reaper (beat, `digest.reap_stale_claims`) will mark "
            "them ambiguous"
        )
    if report["ambiguous"]:
        table = Table(title="ambiguous batches (SendGrid may or may not have accepted them)")
        for column in ("batch", "seq", "recipients", "attempts", "claimed at", "last error"):
            table.add_column(column)
        for b in report["ambiguous"]:
            table.add_row(
                str(b["batch_id"]),
                str(b["seq"]),
                str(b["recipients"]),
                str(b["attempts"]),
                b["claimed_at"] or "",
                b["error"] or "",
            )
        console.print(table)
        console.print(
            f"decide with: digest resend-ambiguous {report['id']} "
            "--resend | --mark-sent | --mark-failed"
        )


@app.command("status")
def status_command(
    digest_id: Annotated[
        int | None, typer.Argument(help="One digest (default: the latest)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
    limit: Annotated[int, typer.Option(help="How many recent digests to list")] = 20,
) -> None:
    """Digests with their batches and deliveries by status, and any ambiguous batches."""
    from digest.operations import digest_status

    report = _operation(digest_status, digest_id, limit=limit)
    if as_json:
        print_json(report)
        return
    if digest_id is not None:
        _print_digest_status(report)
        return
    table = Table(title="digests")
    for column in ("id", "kind", "status", "recipients", "sent", "failed", "ambiguous", "created"):
        table.add_column(column)
    for d in report["digests"]:
        table.add_row(
            str(d["id"]),
            d["kind"],
            d["status"],
            str(d["recipients"]),
            str(d["deliveries"]["sent"]),
            str(d["deliveries"]["failed"]),
            str(len(d["ambiguous"])),
            (d["created_at"] or "")[:16],
        )
    console.print(table)
    for d in report["digests"]:
        if d["ambiguous"]:
            console.print(f"digest {d['id']}: {len(d['ambiguous'])} ambiguous batch(es)")


@app.command("cancel")
def cancel_command(digest_id: Annotated[int, typer.Argument(help="The digest to stop")]) -> None:
    """Stop a digest: its pending batches are cancelled; requests in flight finish."""
    from digest.operations import cancel_digest

    result = _operation(cancel_digest, digest_id)
    console.print(
        f"digest {digest_id} cancelled: {result['batches_cancelled']} batch(es) "
        f"({result['deliveries_cancelled']} recipient(s)) will not be sent; "
        f"{result['batches_in_flight']} request(s) in flight finish"
    )


@app.command("resume")
def resume_command(digest_id: Annotated[int, typer.Argument(help="A paused digest")]) -> None:
    """Send the rest of a digest paused by SendGrid refusing the API key (401/403)."""
    from digest.operations import resume_digest

    result = _operation(resume_digest, digest_id)
    dispatch_or_exit(result["enqueue"], f"digest {digest_id} is resumed")
    console.print(f"digest {digest_id} resumed: {len(result['enqueue'])} batch(es) enqueued")


@app.command("resend-ambiguous")
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
    from digest.operations import digest_status, resend_ambiguous

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
        report = _operation(digest_status, digest_id)
        if report["ambiguous"]:
            _print_digest_status(report)
        err.print("choose exactly one of --resend, --mark-sent or --mark-failed")
        raise typer.Exit(2)
    result = _operation(resend_ambiguous, chosen[0], digest_id=digest_id, batch_id=batch)
    dispatch_or_exit(result["enqueue"], f"digest {digest_id}: {chosen[0]} recorded")
    ids = ", ".join(str(b) for b in result["batches"])
    console.print(f"digest {digest_id}: batch(es) {ids} → {chosen[0]}")


def print_json(data: object) -> None:
    console.print_json(json.dumps(data, default=str))


if __name__ == "__main__":
    app()
