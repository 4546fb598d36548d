"""What every command shares: the two consoles and how dates are read from the command line."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import typer
from rich.console import Console

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


def print_json(data: object) -> None:
    console.print_json(json.dumps(data, default=str))
