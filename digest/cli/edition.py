"""`digest edition`: review the week's edition before the beat sends it (digest/edition_review.py).

`show` (the ranking with each comparison's explanation and the formula's terms), `pin`,
`exclude`, `restore`, `note`, `subject`, `preheader`, `approve`, `emails` (each segment's email
and its size against the budget) and `test-copy`. Every verb acts on the next edition unless
`--edition` names another; every change is made as actor "cli" and printed as what changed (the
same `Change` the console will write to its audit log).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.table import Table

from digest.cli.console import console, err, print_json

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from digest.edition_review import Change, EditionPreview, ReviewState

Result = TypeVar("Result")
ACTOR = "cli"

edition_app = typer.Typer(
    no_args_is_help=True, help="Review the week's edition: pin, exclude, note, approve."
)

EditionOption = Annotated[
    str | None,
    typer.Option("--edition", help="Local slot, e.g. 2026-11-30T09:00:00 (default: the next)"),
]


def _run(fn: Callable[..., Result], edition: str | None) -> Result:
    """Run `fn(session, edition)` in one transaction; a refused input exits 2 naming the field."""
    from datetime import UTC, datetime

    from digest.db import session_scope
    from digest.edition_review import Change, EditionError, next_edition, record_change

    try:
        with session_scope() as session:
            chosen = edition or next_edition(session, datetime.now(UTC)).edition
            result = fn(session, chosen)
            if isinstance(result, Change):
                record_change(session, result)  # the console's audit log shows CLI changes too
            return result
    except EditionError as exc:
        err.print(f"[red]{exc.field}:[/] {exc.message}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc


def _print_change(change: Change) -> None:
    target = f" {change.target}" if change.target else ""
    if not change.changed:
        console.print(f"edition {change.edition}: {change.action}{target}: nothing to change")
        return
    console.print(
        f"edition {change.edition}: {change.action}{target} by {change.actor}", highlight=False
    )
    if change.approval_withdrawn:
        console.print("[yellow]the edition changed after its approval: approve it again[/]")


def _print_state(state: ReviewState) -> None:
    console.print(
        f"edition [bold]{state.edition}[/]: {state.state}"
        f" (first wave {state.first_slot:%Y-%m-%d %H:%M} UTC,"
        f" last {state.last_slot:%Y-%m-%d %H:%M} UTC)",
        highlight=False,
    )
    for label, value in (
        ("subject", state.subject),
        ("preheader", state.preheader),
        ("note", state.note),
        ("approved", f"{state.approved_by} at {state.approved_at}" if state.approved_at else None),
    ):
        if value:
            console.print(f"  {label}: {value}", highlight=False, markup=False)


def _print_preview(preview: EditionPreview) -> None:
    table = Table(title=f"ranking ({preview.since:%Y-%m-%d %H:%M} – {preview.until:%H:%M} UTC)")
    for column in ("rank", "comparison", "score", "terms (P · C · R → tool)", "why"):
        table.add_column(column)
    for item in preview.items:
        terms = "\n".join(
            f"{t.name}: {t.panel:+.3f} · {t.community:+.3f} · {t.reviews:+.3f} → {t.score:+.3f}"
            for t in item.tools
        )
        pin = " (pinned)" if item.pinned else ""
        table.add_row(str(item.rank), item.slug + pin, f"{item.score:.3f}", terms, item.explanation)
    console.print(table)
    for excluded in preview.excluded:
        console.print(f"excluded: {excluded.slug}", highlight=False)
    w = preview.weights
    console.print(
        f"{preview.formula}\n weights: panel {w.panel}, community {w.community}, score {w.score},"
        f" runner-up {w.runner_up}; z {w.confidence_z}, community half-votes"
        f" {w.community_half_votes}",
        highlight=False,
    )


@edition_app.command("show")
def show_command(
    edition: EditionOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable")] = False,
) -> None:
    """The edition's state, overrides and ranking, with the formula's terms."""
    from datetime import UTC, datetime

    from digest.edition_review import preview_ranking, review_state

    def read(session: Session, chosen: str) -> tuple[ReviewState, EditionPreview]:
        now = datetime.now(UTC)
        return review_state(session, chosen, now), preview_ranking(session, chosen, now)

    state, preview = _run(read, edition)
    if as_json:
        print_json({"review": asdict(state), "ranking": asdict(preview)})
        return
    _print_state(state)
    _print_preview(preview)


def _slug_command(action: str) -> Callable[..., None]:
    def command(
        slug: Annotated[str, typer.Argument(help="The comparison's slug")],
        edition: EditionOption = None,
    ) -> None:
        from digest import edition_review

        fn = getattr(edition_review, action)
        _print_change(_run(lambda s, e: fn(s, e, slug, actor=ACTOR), edition))

    command.__doc__ = {
        "pin": "Pin a comparison to the top (after earlier pins), in every wave and segment.",
        "exclude": "Leave a comparison out of every email of the edition.",
        "restore": "Undo a pin or an exclusion.",
    }[action]
    return command


for _action in ("pin", "exclude", "restore"):
    edition_app.command(_action)(_slug_command(_action))


def _read_text(file: str) -> str:
    if file == "-":
        return sys.stdin.read()
    try:
        return Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--file") from exc


@edition_app.command("note")
def note_command(
    text: Annotated[str | None, typer.Argument(help="The note (or use --file)")] = None,
    file: Annotated[
        str | None, typer.Option("--file", help="Read the note from a file, or - for stdin")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the note")] = False,
    edition: EditionOption = None,
) -> None:
    """The editor's note above the items: plain text, blank lines between paragraphs."""
    from digest.edition_review import set_note

    if clear == (text is not None or file is not None) or (text is not None and file):
        raise typer.BadParameter("give the note, --file, or --clear (one of them)")
    value = None if clear else text if text is not None else _read_text(file or "-")
    _print_change(_run(lambda s, e: set_note(s, e, value, actor=ACTOR), edition))


def _line_command(action: str) -> Callable[..., None]:
    def command(
        value: Annotated[str | None, typer.Argument(help="One line")] = None,
        clear: Annotated[bool, typer.Option("--clear", help="Back to the generated one")] = False,
        edition: EditionOption = None,
    ) -> None:
        from digest import edition_review

        if clear == (value is not None):
            raise typer.BadParameter("give the text or --clear")
        fn = getattr(edition_review, f"set_{action}")
        _print_change(_run(lambda s, e: fn(s, e, value, actor=ACTOR), edition))

    command.__doc__ = f"Replace the generated {action} of every email of the edition."
    return command


for _action in ("subject", "preheader"):
    edition_app.command(_action)(_line_command(_action))


@edition_app.command("approve")
def approve_command(edition: EditionOption = None) -> None:
    """Approve the edition as it stands (needed when DIGEST_WEEKLY_APPROVAL=required)."""
    from digest.edition_review import approve

    _print_change(_run(lambda s, e: approve(s, e, actor=ACTOR), edition))


@edition_app.command("test-copy")
def test_copy_command(
    to: Annotated[str, typer.Option("--to", help="The address the test copy goes to")],
    edition: EditionOption = None,
) -> None:
    """Send one test copy of the edition as it will go (pins, exclusions, note, subject)."""
    from digest.cli.digests import dispatch_or_exit, print_plan
    from digest.edition_review import request_test_copy
    from digest.planning import PlanReport, plan_digest
    from schema.models import Digest

    def send(session: Session, chosen: str) -> PlanReport:
        copy = request_test_copy(session, chosen, to, actor=ACTOR)
        digest = session.get(Digest, copy.digest_id)
        assert digest is not None
        return plan_digest(session, digest)

    report = _run(send, edition)
    print_plan(report)
    if report.batch_ids:
        dispatch_or_exit(report.batch_ids, f"test copy {report.digest_id} is planned")


@edition_app.command("emails")
def emails_command(
    out: Annotated[
        Path | None, typer.Option("--out", help="Write each segment's .html and .txt here")
    ] = None,
    edition: EditionOption = None,
) -> None:
    """Each segment's email as it would go, and its size against the byte budget."""
    from datetime import UTC, datetime

    from digest.edition_emails import EmailPreview, preview_emails

    def read(session: Session, chosen: str) -> list[EmailPreview]:
        return preview_emails(session, chosen, datetime.now(UTC))

    previews = _run(read, edition)
    table = Table(title="emails by segment")
    for column in ("segment", "subscribers", "items", "in full", "bytes", "subject"):
        table.add_column(column)
    for n, p in enumerate(previews, start=1):
        table.add_row(
            p.label or p.key,
            str(p.subscribers),
            str(p.items),
            str(p.full),
            f"{p.size:,}" + (" (over)" if p.size > p.budget else ""),
            p.subject,
        )
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / f"segment-{n}.html").write_text(p.html, encoding="utf-8")
            (out / f"segment-{n}.txt").write_text(p.text, encoding="utf-8")
    console.print(table)
    if previews:
        console.print(f"budget: {previews[0].budget:,} bytes (DIGEST_EMAIL_MAX_BYTES)")
    else:
        console.print("no comparisons yet: nothing would be sent")
