"""The `digest` command: operators' entry point to every job of the service."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True, help="Weekly AI Tool Verdicts: the digest service.")
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
) -> None:
    """Import comparison events or saved comparison pages. Each record commits on its own."""
    from digest.ingest import import_paths

    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        err.print(f"[red]no such file:[/] {', '.join(missing)}")
        raise typer.Exit(2)
    report = import_paths(paths, published_at=parse_when(published_at, "--published-at"))
    for error in report.errors:
        err.print(f"[red]error[/] {error}", highlight=False, soft_wrap=True)
    summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(report.outcomes.items()))
    console.print(f"imported: {summary or 'nothing'}; {len(report.errors)} error(s)")
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
    """Write the weekly email of a window as digest.html, digest.txt and digest.eml; send nothing."""
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
    console.print(
        f"subject: {result.email.subject}", markup=False, highlight=False, soft_wrap=True
    )
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


def print_json(data: object) -> None:
    console.print_json(json.dumps(data, default=str))


if __name__ == "__main__":
    app()
