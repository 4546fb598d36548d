"""Subscribers: `digest subscribers import|export` (CSV lists) and `erase` (forget an address)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from digest.cli.console import console, err
from schema.statuses import Frequency, SubscriberStatus

subscribers_app = typer.Typer(no_args_is_help=True, help="Subscriber lists as CSV.")


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
    status: Annotated[
        SubscriberStatus | None, typer.Option(help="Only subscribers with this status")
    ] = None,
    category: Annotated[
        str | None, typer.Option(help="Only those who receive it (chose it, or chose none)")
    ] = None,
    frequency: Annotated[Frequency | None, typer.Option(help="Only this frequency")] = None,
    timezone: Annotated[str | None, typer.Option(help="Only this time zone (IANA name)")] = None,
) -> None:
    """Write subscribers as CSV (email,name,categories,frequency,timezone,status)."""
    import sys

    from digest.db import session_scope
    from digest.subscriber_lists import ListFilter, export_subscribers

    wanted = ListFilter(status, category, frequency, timezone)
    with session_scope() as session:
        if out is None:
            count = export_subscribers(session, sys.stdout, wanted)
        else:
            with out.open("w", encoding="utf-8", newline="") as handle:
                count = export_subscribers(session, handle, wanted)
    err.print(
        f"exported {count} subscriber(s) ({wanted.describe()})" + (f" to {out}" if out else ""),
        highlight=False,
    )


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
