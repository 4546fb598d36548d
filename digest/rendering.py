"""Render the service's emails: Jinja2 templates of MJML compiled by mjml-python (MRML).

Every email shares `emails/layout.mjml.j2` (and `layout.txt.j2` for its plain-text twin). The
weekly digest and the alert are rendered and compiled once per digest and preference segment;
what differs per recipient (name, unsubscribe and preferences URLs, the reader token of the
Ship it / Skip it links) stays a placeholder, fresh
and unguessable for each render (`digest.substitution`), filled by SendGrid or the outbox backend
at send time. Confirmation, welcome and goodbye emails go to one address at a time, so they are
rendered with real values and carry no placeholder at all.

Comparison text is hostile ground: MJML templates autoescape, so `<script>` shows as text; the
values they show are prepared in `digest.email_views`; subjects and preheaders are one line,
without CR/LF. Digests fit their byte budget through `digest.email_budget`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from mjml import mjml2html

from digest.email_budget import Shown, fit
from digest.email_views import (
    ALERT_UTM,
    KIND_LABELS,
    compact_view,
    entry_view,
    field,
    one_line,
    short_verdict,
    shorten,
    verdict_kind,
)
from digest.mail_headers import header_safe
from digest.settings import get_settings
from digest.substitution import Placeholders, greeting_name
from schema.models import Comparison

SUBJECT_MAX = 120
PREHEADER_MAX = 150

_renders = 0
_renders_lock = threading.Lock()


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    preheader: str
    html: str
    text: str
    # The keys a recipient's values replace; None for an email rendered with real values.
    placeholders: Placeholders | None = None
    # How many comparisons are in full, compact, or only linked (digests; None for the rest).
    shown: Shown | None = None


@dataclass(frozen=True)
class Personal:
    """What the layout shows per recipient: placeholders in a shared render, else real values."""

    greeting: str
    unsubscribe_url: str = ""
    preferences_url: str = ""

    @classmethod
    def placeholders(cls, keys: Placeholders) -> Personal:
        return cls(keys.name, keys.unsubscribe_url, keys.preferences_url)


@dataclass(frozen=True)
class Entry:
    """What the weekly template shows per item."""

    rank: int
    comparison: Comparison
    explanation: str


def mjml_render_count() -> int:
    """Process-wide count of MJML compilations (renders must scale with segments, not people)."""
    return _renders


def compile_mjml(source: str) -> str:
    """MJML to HTML; counted. No web fonts: nothing in the email loads from a third party."""
    global _renders
    html = mjml2html(source, fonts={}, disable_comments=True)
    with _renders_lock:
        _renders += 1
    return html


# --- templates --------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("emails", "."),  # the top-level `emails` package's own files
        autoescape=select_autoescape(enabled_extensions=("mjml.j2",), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env


def vote_base(keys: Placeholders) -> str:
    """The shared start of a render's vote links; the reader token is the recipient's value."""
    return f"{get_settings().public_url.rstrip('/')}/vote/{keys.reader}" if keys.reader else ""


def _render(name: str, personal: Personal, **context: Any) -> tuple[str, str]:
    """The email `name` as (html, text): one Jinja render and one MJML compile, plus the twin."""
    settings = get_settings()
    common = {
        "postal_address": one_line(settings.postal_address),
        "site_url": settings.site_url.rstrip("/"),
        "public_url": settings.public_url.rstrip("/"),
        "greeting_name": personal.greeting,
        "unsubscribe_url": personal.unsubscribe_url,
        "preferences_url": personal.preferences_url,
        "manage_links": bool(personal.unsubscribe_url),
        "view_online_url": None,
        **context,
    }
    env = environment()
    mjml_source = env.get_template(f"{name}.mjml.j2").render(common)
    text = env.get_template(f"{name}.txt.j2").render(common)
    text = re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
    return compile_mjml(mjml_source), text


def weekly_subject(entries: Sequence[Entry]) -> str:
    top = field(entries[0].comparison.title, "title")
    more = len(entries) - 1
    if more == 0:
        subject = f"This week's verdict: {top}"
    else:
        subject = f"This week's verdicts: {top} + {more} more"
    return header_safe(shorten(subject, SUBJECT_MAX))


def weekly_preheader(entries: Sequence[Entry]) -> str:
    parts = []
    for entry in entries[:3]:
        a, b = entry.comparison.tools
        label = KIND_LABELS[verdict_kind(entry.comparison)].lower()
        parts.append(
            f"{one_line(a.name)} ({short_verdict(a)}) vs {one_line(b.name)} ({short_verdict(b)}),"
            f" {label}"
        )
    return header_safe(shorten("; ".join(parts), PREHEADER_MAX))


def note_paragraphs(note: str | None) -> list[str]:
    """An editor's note as paragraphs (split on blank lines), each on one line; markup stays
    text because the templates escape it."""
    if not note:
        return []
    blocks = re.split(r"\n[ \t]*\n", note.replace("\r\n", "\n").replace("\r", "\n"))
    return [" ".join(block.split()) for block in blocks if block.strip()]


def render_weekly(
    entries: Sequence[Entry],
    *,
    segment_label: str | None = None,
    archive_url: str | None = None,
    note: str | None = None,
    subject: str | None = None,
    preheader: str | None = None,
) -> RenderedEmail:
    """The weekly digest for one segment, within `DIGEST_EMAIL_MAX_BYTES`; recipients' values
    stay placeholders, filled at send time. Compiled once when the week fits (the usual case);
    otherwise the lowest-ranked comparisons go compact, then to the web (digest/email_budget.py).
    An editor's `note` is shown above the items; `subject`/`preheader` replace the generated
    ones (an edition's overrides, digest/edition_overrides.py).
    """
    if not entries:
        raise ValueError("entries: a weekly digest needs at least one comparison")
    settings = get_settings()
    subject = header_safe(shorten(subject, SUBJECT_MAX)) if subject else weekly_subject(entries)
    preheader = (
        header_safe(shorten(preheader, PREHEADER_MAX)) if preheader else weekly_preheader(entries)
    )
    paragraphs = note_paragraphs(note)
    keys = Placeholders.fresh()
    votes = vote_base(keys)
    views = [entry_view(e.rank, e.comparison, e.explanation, vote_base=votes) for e in entries]
    online = archive_url or f"{settings.public_url.rstrip('/')}/archive"

    def render(shown: Shown) -> tuple[str, str]:
        return _render(
            "weekly",
            Personal.placeholders(keys),
            subject=subject,
            preheader=preheader,
            segment_label=shorten(segment_label, 80) if segment_label else None,
            note=paragraphs,
            total=len(views),
            entries=views[: shown.full],
            compact=[compact_view(v) for v in views[shown.full : shown.full + shown.compact]],
            more=shown.linked,
            archive_url=online,
            view_online_url=online,
        )

    chosen = fit(len(views), settings.email_max_bytes, render, keys)
    return RenderedEmail(subject, preheader, chosen.html, chosen.text, keys, chosen.shown)


def render_alert(
    comparison: Comparison, explanation: str, *, archive_url: str | None = None
) -> RenderedEmail:
    """One new verdict, for subscribers who want every comparison as it lands."""
    keys = Placeholders.fresh()
    entry = entry_view(None, comparison, explanation, ALERT_UTM, vote_base(keys))
    subject = header_safe(shorten(f"New verdict: {one_line(comparison.title)}", SUBJECT_MAX))
    a, b = comparison.tools
    preheader = header_safe(
        shorten(
            f"{one_line(a.name)} ({short_verdict(a)}) vs {one_line(b.name)} "
            f"({short_verdict(b)}), {entry['kind_label'].lower()}",
            PREHEADER_MAX,
        )
    )
    html, text = _render(
        "alert",
        Personal.placeholders(keys),
        subject=subject,
        preheader=preheader,
        entry=entry,
        view_online_url=archive_url or f"{get_settings().public_url.rstrip('/')}/archive",
    )
    return RenderedEmail(subject, preheader, html, text, keys)


def render_confirmation(*, name: str | None, confirm_url: str) -> RenderedEmail:
    """Double opt-in: rendered for one address, with its real confirmation link."""
    if urlsplit(confirm_url).scheme not in ("http", "https"):
        raise ValueError("confirm_url: must be an http(s) URL")
    subject = "Confirm your subscription to Weekly AI Tool Verdicts"
    preheader = "One click and the weekly verdicts start arriving. Didn't ask? Ignore this email."
    html, text = _render(
        "confirmation",
        Personal(greeting_name(name)),
        subject=subject,
        preheader=preheader,
        confirm_url=confirm_url,
    )
    return RenderedEmail(subject, preheader, html, text)


def render_welcome(
    *, name: str | None, unsubscribe_url: str, preferences_url: str
) -> RenderedEmail:
    """After confirming: rendered for one address, with its real name and links."""
    subject = "Welcome to Weekly AI Tool Verdicts"
    preheader = "You're in: every week, the comparisons worth your afternoon, best first."
    personal = Personal(greeting_name(name), unsubscribe_url, preferences_url)
    html, text = _render("welcome", personal, subject=subject, preheader=preheader)
    return RenderedEmail(subject, preheader, html, text)


def render_goodbye(*, name: str | None) -> RenderedEmail:
    """After unsubscribing: no management links, nothing more will be sent."""
    subject = "You're unsubscribed from Weekly AI Tool Verdicts"
    preheader = "No more weekly verdicts. Changed your mind? You can subscribe again any time."
    html, text = _render(
        "goodbye", Personal(greeting_name(name)), subject=subject, preheader=preheader
    )
    return RenderedEmail(subject, preheader, html, text)


def render_data_link(*, name: str | None, data_url: str, minutes: int) -> RenderedEmail:
    """Export or delete: rendered for one address, with its real, expiring data link."""
    if urlsplit(data_url).scheme not in ("http", "https"):
        raise ValueError("data_url: must be an http(s) URL")
    subject = "Your link to export or delete your Weekly AI Tool Verdicts data"
    preheader = f"The link works for {minutes} minutes. Didn't ask? Ignore this email."
    html, text = _render(
        "data_link",
        Personal(greeting_name(name)),
        subject=subject,
        preheader=preheader,
        data_url=data_url,
        minutes=minutes,
    )
    return RenderedEmail(subject, preheader, html, text)
