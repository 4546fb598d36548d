"""The `digest` command: operators' entry point to every job of the service.

One module per command group: `digests` (send, status, cancel, resume, resend-ambiguous,
process-webhooks), `results` (stats), `subscribers` (CSV lists, erasure), `content` (import,
preview, event schemas), `edition` (review the week's edition before it goes), `service` (db
upgrade, serve, demo) and `operators` (console accounts). Commands import the domain inside
their function, on purpose: `digest --help` and every command start without loading SQLAlchemy
models, the renderer or Celery that only some commands need.

The commands are registered here, in one table, in the order `digest --help` lists them.
"""

from __future__ import annotations

import typer

from digest.cli import content, digests, edition, operators, results, service, subscribers

# Plain tracebacks: Rich's would print local variables, and those can hold secrets.
app = typer.Typer(
    no_args_is_help=True,
    help="Weekly AI Tool Verdicts: the digest service.",
    pretty_exceptions_enable=False,
)

for name, command in (
    ("import", content.import_command),
    ("preview", content.preview_command),
    ("serve", service.serve),
    ("demo", service.demo),
    ("stats", results.stats_command),
    ("process-webhooks", digests.process_webhooks_command),
    ("send", digests.send_command),
    ("status", digests.status_command),
    ("cancel", digests.cancel_command),
    ("resume", digests.resume_command),
    ("resend-ambiguous", digests.resend_ambiguous_command),
):
    app.command(name)(command)

app.add_typer(service.db_app, name="db")
app.add_typer(content.schema_app, name="schema")
app.add_typer(subscribers.subscribers_app, name="subscribers")
app.add_typer(edition.edition_app, name="edition")
app.add_typer(operators.operators_app, name="operators")

__all__ = ["app"]
