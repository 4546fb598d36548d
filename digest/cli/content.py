"""Content: `digest import` (comparisons), `digest preview` (the weekly email as files),
`digest schema export` (JSON Schemas of inbound events)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from digest.cli.console import console, err, parse_when

schema_app = typer.Typer(no_args_is_help=True, help="JSON Schemas of inbound events.")


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
