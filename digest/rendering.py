"""Render the service's emails: Jinja2 templates of MJML compiled by mjml-python (MRML).

Every email shares `emails/layout.mjml.j2` (and `layout.txt.j2` for its plain-text twin). The
weekly digest and the alert are rendered and compiled once per digest and preference segment;
what differs per recipient (name, unsubscribe and preferences URLs) stays a placeholder, fresh
and unguessable for each render (`digest.substitution`), filled by SendGrid or the outbox backend
at send time. Confirmation, welcome and goodbye emails go to one address at a time, so they are
rendered with real values and carry no placeholder at all.

Comparison text is hostile ground: MJML templates autoescape, so `<script>` shows as text; every
field is cut at a word boundary with "…" before it can stretch a layout; subjects and preheaders
are one line, without CR/LF.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from mjml import mjml2html

from digest.email_backends import header_safe
from digest.email_budget import Shown, fit
from digest.settings import get_settings
from digest.substitution import Placeholders, greeting_name
from schema.models import Comparison, Review, Tool

UTM = {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "weekly-verdicts"}
ALERT_UTM = {**UTM, "utm_campaign": "verdict-alert"}
# Characters a URL may keep as they are; anything else in an ingested URL is percent-encoded.
URL_SAFE = "/%:@!$&'()*+,;=-._~[]"
SUBJECT_MAX = 120
PREHEADER_MAX = 150
# Longest text each field may show, in characters, before it is cut at a word boundary.
LIMITS = {
    "title": 160,
    "name": 80,
    "tagline": 160,
    "pricing": 140,
    "entry_price": 40,
    "best_for": 200,
    "quote": 280,
    "explanation": 300,
}
# A tool's panel counts as split when its ship share lies strictly between these.
SPLIT_LOW, SPLIT_HIGH = 0.25, 0.75

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


# --- text helpers -----------------------------------------------------------------------------


# C0 and C1 control characters that are not whitespace: MRML refuses a document holding one,
# so a single stray byte in an ingested tagline would stop every digest from being planned.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def one_line(value: str | None) -> str:
    """Collapse all whitespace, CR/LF included, to single spaces; drop control characters."""
    text = value or ""
    if not text.isprintable():
        text = _CONTROL.sub("", text)
    return " ".join(text.split())


def shorten(value: str | None, limit: int) -> str:
    """At most `limit` characters, cut at a word boundary and marked with "…"."""
    text = one_line(value)
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-–—") + "…"


def field(value: str | None, kind: str) -> str:
    return shorten(value, LIMITS[kind])


def tracked_url(comparison: Comparison, utm: dict[str, str] = UTM) -> str:
    """The comparison's page (or DIGEST_SITE_URL/compare/<slug>) with the UTM tags merged in."""
    base = comparison.url
    if not base or urlsplit(base).scheme not in ("http", "https"):
        base = f"{get_settings().site_url.rstrip('/')}/compare/{comparison.slug}"
    parts = urlsplit(base)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in utm]
    return urlunsplit(
        parts._replace(
            netloc=quote(parts.netloc, safe=URL_SAFE),
            path=quote(parts.path, safe=URL_SAFE),
            query=urlencode([*query, *utm.items()]),
            fragment=quote(parts.fragment, safe=URL_SAFE),
        )
    )


# --- what the templates show ------------------------------------------------------------------


def ship_share(tool: Tool) -> float | None:
    if tool.panel_ship is not None and tool.panel_skip is not None:
        total = tool.panel_ship + tool.panel_skip
        return tool.panel_ship / total if total else None
    return tool.panel_ship_pct / 100 if tool.panel_ship_pct is not None else None


def panel_is_split(tool: Tool) -> bool | None:
    """True for a split panel ("Mixed", or a ship share between 25 % and 75 %); None if unknown."""
    if tool.verdict_label is not None:
        return tool.verdict_label == "Mixed"
    share = ship_share(tool)
    return None if share is None else SPLIT_LOW < share < SPLIT_HIGH


def verdict_kind(comparison: Comparison) -> str:
    """ "split" when the panel split on either tool, "clear" when it did not, else "unstated"."""
    splits = [panel_is_split(t) for t in comparison.tools]
    if any(splits):
        return "split"
    return "clear" if any(s is False for s in splits) else "unstated"


KIND_LABELS = {"clear": "Clear verdict", "split": "Split decision", "unstated": "Panel pending"}


def panel_line(tool: Tool) -> str:
    """The panel as the page states it: "Ship · 3 ship / 1 skip · 75% panel ship"."""
    parts = []
    if tool.verdict_label:
        parts.append(tool.verdict_label)
    if tool.panel_ship is not None and tool.panel_skip is not None:
        parts.append(f"{tool.panel_ship} ship / {tool.panel_skip} skip")
    if tool.panel_ship_pct is not None:
        parts.append(f"{tool.panel_ship_pct}% panel ship")
    return " · ".join(parts) or "No panel verdict yet"


def community_line(tool: Tool) -> str:
    if tool.community_ship is None or tool.community_skip is None:
        return "Community votes not stated"  # the page did not say; never guess "none"
    ship, skip = tool.community_ship, tool.community_skip
    total = ship + skip
    if not total:
        return "No community votes yet"
    votes = "vote" if total == 1 else "votes"
    return f"{round(100 * ship / total)}% ship · {total:,} {votes}"


def short_verdict(tool: Tool) -> str:
    """For subject lines and preheaders: "Ship", else "75%", else "no verdict yet"."""
    if tool.verdict_label:
        return tool.verdict_label
    if tool.panel_ship_pct is not None:
        return f"{tool.panel_ship_pct}%"
    return "no verdict yet"


def pull_quote(comparison: Comparison) -> tuple[Tool, Review] | None:
    """The most decisive take: the score furthest from 50, then one with a verdict, then order."""
    candidates = [(t, r) for t in comparison.tools for r in t.reviews if one_line(r.text)]
    if not candidates:
        return None

    def decisiveness(pair: tuple[Tool, Review]) -> tuple[int, int, int, int, int]:
        tool, review = pair
        scored = review.score is not None
        distance = abs(review.score - 50) if review.score is not None else -1
        return (
            int(scored),
            distance,
            int(review.verdict is not None),
            -tool.position,
            -review.position,
        )

    return max(candidates, key=decisiveness)


def tool_view(tool: Tool) -> dict[str, Any]:
    split = panel_is_split(tool)
    tone = {"Ship": "ship", "Skip": "skip", "Mixed": "mixed"}.get(tool.verdict_label or "")
    if tone is None:
        share = ship_share(tool)
        tone = "none" if share is None else "mixed" if split else "ship" if share >= 0.5 else "skip"
    return {
        "name": field(tool.name, "name"),
        "tagline": field(tool.tagline, "tagline"),
        "panel": panel_line(tool),
        "short": short_verdict(tool),
        "tone": tone,
        "split": bool(split),
        "community": community_line(tool),
        "entry_price": field(tool.entry_price, "entry_price"),
        "pricing": field(tool.pricing, "pricing"),
        # pages often repeat the tagline as "best for": say it once
        "best_for": ""
        if one_line(tool.best_for).casefold() == one_line(tool.tagline).casefold()
        else field(tool.best_for, "best_for"),
    }


def entry_view(
    rank: int | None, comparison: Comparison, explanation: str, utm: dict[str, str] = UTM
) -> dict[str, Any]:
    kind = verdict_kind(comparison)
    quote = pull_quote(comparison)
    quote_view = None
    if quote is not None:
        tool, review = quote
        details = []
        if review.score is not None:
            details.append(f"{review.score}/100")
        if review.verdict:
            details.append(review.verdict)
        quote_view = {
            "text": field(review.text, "quote"),
            "persona": review.persona or "Panel",
            "tool": field(tool.name, "name"),
            "details": " · ".join(details),
        }
    return {
        "rank": rank,
        "title": field(comparison.title, "title"),
        "kind": kind,
        "kind_label": KIND_LABELS[kind],
        "explanation": field(explanation, "explanation"),
        "tools": [tool_view(t) for t in comparison.tools],
        "quote": quote_view,
        "url": tracked_url(comparison, utm),
    }


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


def render_weekly(
    entries: Sequence[Entry],
    *,
    segment_label: str | None = None,
    archive_url: str | None = None,
) -> RenderedEmail:
    """The weekly digest for one segment, within `DIGEST_EMAIL_MAX_BYTES`; recipients' values
    stay placeholders, filled at send time. Compiled once when the week fits (the usual case);
    otherwise the lowest-ranked comparisons go compact, then to the web (digest/email_budget.py).
    """
    if not entries:
        raise ValueError("entries: a weekly digest needs at least one comparison")
    settings = get_settings()
    subject, preheader = weekly_subject(entries), weekly_preheader(entries)
    keys = Placeholders.fresh()
    views = [entry_view(e.rank, e.comparison, e.explanation) for e in entries]
    online = archive_url or f"{settings.public_url.rstrip('/')}/archive"

    def render(shown: Shown) -> tuple[str, str]:
        return _render(
            "weekly",
            Personal.placeholders(keys),
            subject=subject,
            preheader=preheader,
            segment_label=shorten(segment_label, 80) if segment_label else None,
            total=len(views),
            entries=views[: shown.full],
            compact=[compact_view(v) for v in views[shown.full : shown.full + shown.compact]],
            more=shown.linked,
            archive_url=online,
            view_online_url=online,
        )

    chosen = fit(len(views), settings.email_max_bytes, render, keys)
    return RenderedEmail(subject, preheader, chosen.html, chosen.text, keys, chosen.shown)


def compact_view(view: dict[str, Any]) -> dict[str, Any]:
    """A comparison in the "More this week" list: rank, title, link, its verdict in a few words."""
    tools = view["tools"]
    words = "; ".join(f"{shorten(t['name'], 30)}: {t['short']}" for t in tools)
    return {**view, "verdict_words": f"{view['kind_label']} · {words}"}


def render_alert(
    comparison: Comparison, explanation: str, *, archive_url: str | None = None
) -> RenderedEmail:
    """One new verdict, for subscribers who want every comparison as it lands."""
    entry = entry_view(None, comparison, explanation, ALERT_UTM)
    subject = header_safe(shorten(f"New verdict: {one_line(comparison.title)}", SUBJECT_MAX))
    a, b = comparison.tools
    preheader = header_safe(
        shorten(
            f"{one_line(a.name)} ({short_verdict(a)}) vs {one_line(b.name)} "
            f"({short_verdict(b)}), {entry['kind_label'].lower()}",
            PREHEADER_MAX,
        )
    )
    keys = Placeholders.fresh()
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
