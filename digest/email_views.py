"""What the email templates show of a comparison: its fields cut to size, its verdicts in words.

Comparison text is hostile ground: every field passes through `field` (one line, no control
characters, cut at a word boundary with "…") before a template sees it, and links to comparisons
are rebuilt by `tracked_url` (http(s) only, percent-encoded, UTM-tagged, the comparison's slug in
`utm_content` so a click names its item: digest/item_links.py). Rendering and
compiling live in `digest.rendering`; this module only prepares the values.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit
from urllib.parse import quote as url_quote

from digest.settings import get_settings
from schema.models import Comparison, Review, Tool

UTM = {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "weekly-verdicts"}
ALERT_UTM = {**UTM, "utm_campaign": "verdict-alert"}
# Characters a URL may keep as they are; anything else in an ingested URL is percent-encoded.
URL_SAFE = "/%:@!$&'()*+,;=-._~[]"
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
    """The comparison's page (or DIGEST_SITE_URL/compare/<slug>) with the UTM tags merged in,
    `utm_content` its slug: a click event's URL then names the item, whatever the page's
    address becomes later (and a `utm_content` of the page's own cannot name another)."""
    utm = {**utm, "utm_content": comparison.slug}
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
        "position": int(tool.position),
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
    rank: int | None,
    comparison: Comparison,
    explanation: str,
    utm: dict[str, str] = UTM,
    vote_base: str = "",
) -> dict[str, Any]:
    """What a comparison's card shows; `vote_base` (`{public_url}/vote/{reader placeholder}`)
    turns on the Ship it / Skip it links, `{vote}/{tool position}/{ship|skip}`."""
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
        # the slug percent-encoded to one path segment: safe raw in an attribute
        "vote": f"{vote_base}/{url_quote(comparison.slug, safe='')}" if vote_base else "",
    }


def compact_view(view: dict[str, Any]) -> dict[str, Any]:
    """A comparison in the "More this week" list: rank, title, link, its verdict in a few words."""
    tools = view["tools"]
    words = "; ".join(f"{shorten(t['name'], 30)}: {t['short']}" for t in tools)
    return {**view, "verdict_words": f"{view['kind_label']} · {words}"}
