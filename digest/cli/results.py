"""`digest stats`: how a digest did — the same figures as the console's results page, from the
same function (digest/results.py `digest_results`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from digest.cli.console import console, err

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from digest.results import DigestResults


def _results_of(session: Session, digest_id: int | None) -> DigestResults:
    """The figures of a digest (the latest without an id); exit 1 if there is none."""
    from digest.results import digest_results
    from digest.stats import latest_digest_id

    digest_id = digest_id if digest_id is not None else latest_digest_id(session)
    if digest_id is None:
        err.print("no digests yet")
        raise typer.Exit(1)
    try:
        return digest_results(session, digest_id)
    except LookupError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc


def _print_clicks(results: DigestResults) -> None:
    clicks = results.clicks
    if not clicks.comparisons:
        return
    table = Table(title="clicks per comparison (events; readers: people with a human click)")
    for column in ("rank", "comparison", "human clicks", "readers", "machine clicks"):
        table.add_column(column, justify="left" if column == "comparison" else "right")
    for c in clicks.comparisons:
        table.add_row(
            str(c.rank), c.title, str(c.human_clicks), str(c.human_readers), str(c.machine_clicks)
        )
    other = clicks.other_links
    figures = (other.human_clicks, other.human_readers, other.machine_clicks)
    table.add_row("", "other links", *(str(n) for n in figures))
    console.print(table)


def stats_command(
    digest_id: Annotated[int | None, typer.Argument(help="Digest id (default: the latest)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON")] = False,
) -> None:
    """How a digest did: sends, deliveries, bounces, complaints, opens, clicks, unsubscribes;
    with --json also clicks per comparison, the first 48 hours and readers' verdicts."""
    from digest.db import session_scope
    from digest.stats import FIGURES

    with session_scope() as session:
        results = _results_of(session, digest_id)
    if as_json:
        typer.echo(json.dumps(results.document(), default=str))
        return
    stats = results.stats
    meta = stats.digest
    table = Table(title=f"digest {meta.id} ({meta.kind}, {meta.status})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name in FIGURES:
        table.add_row(name.replace("_", " "), str(getattr(stats, name)))
    for name, count in stats.other_events.items():
        table.add_row(f"other: {name}", str(count))
    console.print(table)
    _print_clicks(results)
