"""`digest preview`: the weekly email a window would produce, written to files, sending nothing.

The files show what one sample reader would receive: the render's placeholders are filled with
sample values, and `digest.eml` is the complete MIME message the outbox backend would write
(both parts, Subject, From, To, List-Unsubscribe and List-Unsubscribe-Post).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from digest import tokens
from digest.collect import collect_comparisons, weekly_window
from digest.db import session_scope
from digest.email_backends import Message, OutboxBackend, Recipient, fill_tokens
from digest.ranking import RankedComparison, rank_comparisons
from digest.rendering import Entry, RenderedEmail, render_weekly
from digest.settings import get_settings
from digest.votes import reader_counts

SAMPLE_ADDRESS = "reader@example.com"
SAMPLE_NAME = "Alex"
SAMPLE_SUBSCRIBER_ID = 0  # signs the sample links; no subscriber has id 0


class EmptyWindow(LookupError):
    """No comparison qualifies for the window: there is nothing to preview."""


@dataclass(frozen=True)
class Preview:
    since: datetime
    until: datetime
    ranked: list[RankedComparison]
    email: RenderedEmail
    files: dict[str, Path]


def sample_recipient(email: RenderedEmail) -> Recipient:
    """A sample reader of `email`, its placeholders filled as SendGrid would fill them."""
    unsubscribe, preferences = tokens.manage_urls(SAMPLE_SUBSCRIBER_ID)
    assert email.placeholders is not None  # a weekly render always has them
    return Recipient(
        email=SAMPLE_ADDRESS,
        name=SAMPLE_NAME,
        # "preview": vote links that show the page shape but name no reader (they answer 400)
        substitutions=email.placeholders.values(SAMPLE_NAME, unsubscribe, preferences, "preview"),
        unsubscribe_url=unsubscribe,
    )


def write_preview(
    out: Path, *, since: datetime | None = None, until: datetime | None = None
) -> Preview:
    """Collect the window (default: the next weekly window), rank, render, write three files."""
    now = datetime.now(UTC)
    with session_scope() as session:
        default_since, _ = weekly_window(session, now)
        since = since or default_since
        until = until or now
        if since >= until:
            raise ValueError(f"--since ({since.isoformat()}) must be before --until")
        comparisons = collect_comparisons(session, since, until, kind="weekly")
        if not comparisons:
            raise EmptyWindow(f"no comparisons in window {since.isoformat()} – {until.isoformat()}")
        ranked = rank_comparisons(comparisons, readers=reader_counts(session, comparisons))
        email = render_weekly(
            [Entry(rank, r.comparison, r.explanation) for rank, r in enumerate(ranked, start=1)]
        )
    recipient = sample_recipient(email)
    settings = get_settings()
    message = Message(
        subject=email.subject,
        html=email.html,
        text=email.text,
        recipients=[recipient],
        from_email=settings.from_email,
    )
    mime = OutboxBackend(out, settings.from_email).build(message, recipient)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "html": out / "digest.html",
        "text": out / "digest.txt",
        "eml": out / "digest.eml",
    }
    files["html"].write_text(fill_tokens(email.html, recipient.substitutions), encoding="utf-8")
    files["text"].write_text(fill_tokens(email.text, recipient.substitutions), encoding="utf-8")
    files["eml"].write_bytes(bytes(mime))
    return Preview(since, until, ranked, email, files)
