"""Read a published comparison page, saved as plain text, into a `ComparisonIn`.

The site publishes each comparison of two AI tools in one of two layouts:

* full: per tool a header (avatar letter, category, name, tagline, verdict label, "NN%" over
  "Panel ship", community value over "Community", entry price over "Entry", description), then a
  "Decision" table (panel split, community, pricing, best for, category), then a "Reviewer
  scorecard" of persona headings, each followed by one "NN/100 · ship" take per tool;
* condensed: the same headers without avatar or verdict label, no Decision table, and a
  scorecard made only of quoted takes, alternating tool A / tool B per persona in the order
  Builder, Skeptic, Futurist, then Founder *or* Creator (the page does not say which).

In a header the value comes *before* its label ("75%" then "Panel ship"), so each tool's header is
read around its "Panel ship" line. Whatever the page does not state stays None: we never derive a
panel split from the percentage, nor a persona the page does not name. Where the structure cannot
be read with certainty (not two tools, a percentage over 100, a table row with three values, two
places disagreeing on one fact) we raise `PageFormatError` naming the field and line instead of
guessing.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import ValidationError

from digest.page_condensed import read_quoted_takes
from digest.page_full import SCORE_RE, apply_decision, read_decision, read_named_takes
from digest.page_headers import read_headers
from digest.page_lines import (
    PERSONAS,
    Facts,
    Line,
    PageFormatError,
    Take,
    fact_value,
    index_of,
    norm_label,
)
from schema.events import ComparisonIn

__all__ = ["PageFormatError", "looks_like_page", "parse_page"]

FOOTER_LINES = {"weekly ai tool verdicts", "get the next comparison in your inbox", "bookmarks"}
FOOTER_TITLE_SUFFIX = ": which ai tool should you ship? — ship or skip"


def looks_like_page(text: str) -> bool:
    """True when the text is a comparison page, so the importer can tell pages from JSON/NDJSON.

    Both markers must be whole lines: a JSON document quoting them is not a page.
    """
    seen = {norm_label(line) for line in text.splitlines()}
    return "ai tool comparison" in seen and "panel ship" in seen


def parse_page(
    text: str, *, slug: str, published_at: datetime, path: str | None = None
) -> ComparisonIn:
    """Extract every fact the page states; leave what it doesn't state as None. Never guess.

    Pages carry no date or address, hence `published_at` from the caller and `url=None`.
    """
    try:
        return _parse(text, slug=slug, published_at=published_at)
    except PageFormatError as err:
        if path is None:
            raise
        raise PageFormatError(err.message, field=err.field, line=err.line, path=path) from None


def _parse(text: str, *, slug: str, published_at: datetime) -> ComparisonIn:
    lines = _page_lines(text)
    start = index_of(lines, "AI tool comparison")
    if start is None:
        raise PageFormatError("no 'AI tool comparison' line: not a comparison page", field="title")
    if start + 1 >= len(lines):
        raise PageFormatError(
            "expected the title after 'AI tool comparison'", field="title", line=lines[start].no
        )
    title = lines[start + 1]
    body = _without_footer(lines[start + 2 :])

    decision_at = index_of(body, "Decision")
    scorecard_at = index_of(body, "Reviewer scorecard")
    sections = sorted(at for at in (decision_at, scorecard_at) if at is not None)
    header_end = sections[0] if sections else len(body)

    facts = read_headers(body[:header_end])
    names = (facts[0]["name"][0], facts[1]["name"][0])
    if names[0].casefold() == names[1].casefold():
        raise PageFormatError(
            f"both tools are named {names[1]!r}", field="tools.1.name", line=facts[1]["name"][1]
        )

    shared_category = None
    if decision_at is not None:
        rows = read_decision(_section(body, decision_at, sections), names)
        shared_category = apply_decision(rows, facts)

    takes: tuple[list[Take], list[Take]] = ([], [])
    if scorecard_at is not None:
        takes = _read_scorecard(_section(body, scorecard_at, sections))

    return _build(
        slug=slug,
        published_at=published_at,
        title=title,
        category=shared_category or fact_value(facts[0], "category"),
        facts=facts,
        takes=takes,
    )


def _page_lines(text: str) -> list[Line]:
    """Non-blank lines, stripped: blank lines, line endings and trailing spaces vary by export."""
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return [Line(no, raw.strip()) for no, raw in enumerate(text.split("\n"), 1) if raw.strip()]


def _without_footer(lines: list[Line]) -> list[Line]:
    """Cut the site's footer (newsletter call to action, bookmarks, the page's <title>)."""
    for i, line in enumerate(lines):
        norm = norm_label(line.text)
        if norm in FOOTER_LINES or norm.endswith(FOOTER_TITLE_SUFFIX):
            return lines[:i]
    return lines


def _section(body: list[Line], at: int, starts: list[int]) -> list[Line]:
    """The lines under the heading at `at`, up to the next section heading."""
    end = next((s for s in starts if s > at), len(body))
    return body[at + 1 : end]


# --- Reviewer scorecard ---------------------------------------------------------------------


def _read_scorecard(lines: list[Line]) -> tuple[list[Take], list[Take]]:
    """Each tool's takes. Persona headings or 'NN/100' lines mean the full layout."""
    named = any(line.text in PERSONAS or SCORE_RE.fullmatch(line.text) for line in lines)
    first, second = read_named_takes(lines) if named else read_quoted_takes(lines)
    return sorted(first, key=persona_rank), sorted(second, key=persona_rank)


def persona_rank(take: Take) -> int:
    """Builder, Skeptic, Futurist, then Founder or Creator (or the unnamed fourth take)."""
    return min(PERSONAS.index(take.persona), 3) if take.persona else 3


# --- result ---------------------------------------------------------------------------------


def _build(
    *,
    slug: str,
    published_at: datetime,
    title: Line,
    category: str | None,
    facts: list[Facts],
    takes: tuple[list[Take], list[Take]],
) -> ComparisonIn:
    """Validate against the event schema, reporting any failure with the line it came from."""
    lines_of: dict[str, int] = {"title": title.no}
    tools = []
    for position, (tool_facts, tool_takes) in enumerate(zip(facts, takes, strict=True)):
        tool = {key: value for key, (value, _) in tool_facts.items()}
        tool["reviews"] = [take.as_review() for take in tool_takes]
        tools.append(tool)
        prefix = f"tools.{position}"
        lines_of.update({f"{prefix}.{key}": line for key, (_, line) in tool_facts.items()})
        lines_of.update({f"{prefix}.reviews.{n}": take.line for n, take in enumerate(tool_takes)})
    data = {
        "slug": slug,
        "title": title.text,
        "url": None,
        "category": category,
        "published_at": published_at,
        "tools": tools,
    }
    try:
        return ComparisonIn.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "page"
        raise PageFormatError(first["msg"], field=field, line=_line_of(field, lines_of)) from None


def _line_of(field: str, lines_of: dict[str, int]) -> int | None:
    """The line of the field, or of the nearest enclosing one we read (a review for its score)."""
    parts = field.split(".")
    while parts:
        if ".".join(parts) in lines_of:
            return lines_of[".".join(parts)]
        parts.pop()
    return None
