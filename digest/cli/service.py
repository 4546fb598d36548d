"""Running the service: `digest db upgrade`, `digest serve`, `digest demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from digest.cli.console import console

db_app = typer.Typer(no_args_is_help=True, help="Database schema.")


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply Alembic migrations to DIGEST_DATABASE_URL."""
    from digest.migrations import upgrade

    upgrade(revision=revision)
    console.print(f"database at [bold]{revision}[/]")


def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Run the web app (subscriptions, ingest, admin, webhooks)."""
    import uvicorn

    uvicorn.run("digest.web.app:app", host=host, port=port, workers=workers, proxy_headers=True)


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
