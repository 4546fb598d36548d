"""Console operators: `digest operators add|list|remove` (digest/operators.py, digest/audit.py).

The first operator can only be created here: the console has no sign-up. Each change is written
to the audit log with the actor `cli` (whoever holds a shell on the server).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from digest.cli.console import console, err

operators_app = typer.Typer(no_args_is_help=True, help="Who may sign in to the web console.")
CLI_ACTOR = "cli"


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


@operators_app.command("add")
def add_command(
    email: Annotated[str, typer.Argument(help="The operator's email address (their sign-in)")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input")
    ] = False,
) -> None:
    """Create an operator; the password comes from a hidden prompt or --password-stdin."""
    from digest import audit
    from digest.db import session_scope
    from digest.operators import OperatorError, create_operator

    password = _read_password(password_stdin)
    try:
        with session_scope() as session:
            created = create_operator(session, email, password)
            audit.record(session, CLI_ACTOR, "operator.add", created.email)
    except OperatorError as exc:
        err.print(f"[red]error[/] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    console.print(f"operator {created.email} added", highlight=False)


@operators_app.command("list")
def list_command() -> None:
    """Every operator, with when they last signed in."""
    from digest.db import session_scope
    from digest.operators import list_operators

    with session_scope() as session:
        found = list_operators(session)
    table = Table(title="operators")
    for column in ("email", "created", "last sign-in"):
        table.add_column(column)
    for o in found:
        table.add_row(o.email, o.created_at[:16], (o.last_login_at or "never")[:16])
    console.print(table)


@operators_app.command("remove")
def remove_command(
    email: Annotated[str, typer.Argument(help="The operator to remove")],
) -> None:
    """Delete an operator: their sessions end at their next request."""
    from digest import audit
    from digest.db import session_scope
    from digest.operators import remove_operator

    with session_scope() as session:
        removed = remove_operator(session, email)
        if removed:
            audit.record(session, CLI_ACTOR, "operator.remove", email.strip().lower())
    if not removed:
        err.print(f"[red]error[/] no operator {email}", highlight=False)
        raise typer.Exit(1)
    console.print(f"operator {email} removed", highlight=False)
