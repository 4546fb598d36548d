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

import functools
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from pydantic import ValidationError

from schema.events import ComparisonIn

PERSONAS = ("Builder", "Skeptic", "Futurist", "Founder", "Creator")
VERDICTS = ("Ship", "Mixed", "Skip")
# The condensed scorecard names no persona: takes are in this order, the fourth being Founder or
# Creator, which the page does not tell apart.
CONDENSED_PERSONAS = ("Builder", "Skeptic", "Futurist", None)
NO_TAKE = "No panel take"
NOT_STATED = {"", "—", "–", "-"}
FOOTER_LINES = {"weekly ai tool verdicts", "get the next comparison in your inbox", "bookmarks"}
FOOTER_TITLE_SUFFIX = ": which ai tool should you ship? — ship or skip"
# Decision table row label -> the fact it states.
DECISION_ROWS = {
    "panel verdict": "verdict",
    "community": "community",
    "pricing": "pricing",
    "best for": "best_for",
    "category": "category",
}
HEADER_LABELS = {"panel ship", "community", "entry"}

NUMBER = r"\d+(?:,\d{3})*"
DOT = r"\s*[·•]\s*"
PERCENT_RE = re.compile(r"(\d+)\s*%")
VOTES_SPLIT = rf"({NUMBER})\s+ship\s*/\s*({NUMBER})\s+skip"
PANEL_RE = re.compile(rf"(ship|mixed|skip)(?:{DOT}{VOTES_SPLIT})?", re.I)
VOTES_SPLIT_RE = re.compile(VOTES_SPLIT, re.I)
VOTES_PCT_RE = re.compile(rf"(\d+)\s*%\s*(?:ship{DOT}|of\s+)({NUMBER})\s+votes?", re.I)
VOTES_TOTAL_RE = re.compile(rf"({NUMBER})\s+votes?", re.I)
SCORE_RE = re.compile(r"(\d+)\s*/\s*100(?:\s*[·•]\s*(\S+))?")
OPENING_QUOTES = '“"'
CLOSING_QUOTES = '”"'


class PageFormatError(ValueError):
    """Names the file (if known), the line number (1-based) and the field that could not be read."""

    def __init__(
        self, message: str, *, field: str, line: int | None = None, path: str | None = None
    ) -> None:
        self.message = message
        self.field = field
        self.line = line
        self.path = path
        where = " ".join(part for part in (path, f"line {line}" if line else None) if part)
        super().__init__(f"{where}: {field}: {message}" if where else f"{field}: {message}")

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        """Keep the keyword-only fields through pickling (task queues pickle exceptions)."""
        rebuild = functools.partial(
            PageFormatError, field=self.field, line=self.line, path=self.path
        )
        return rebuild, (self.message,)


class Line(NamedTuple):
    """A non-blank line of the page: its 1-based number in the file and its stripped text."""

    no: int
    text: str


@dataclass
class Take:
    """One reviewer's take on one tool, as read from the scorecard."""

    line: int
    persona: str | None
    score: int | None = None
    verdict: str | None = None
    paragraphs: list[str] = field(default_factory=list)

    def as_review(self) -> dict[str, Any]:
        text = "\n\n".join(self.paragraphs) or None
        return {"persona": self.persona, "score": self.score, "verdict": self.verdict, "text": text}


# A tool's facts by schema field name, each with the line it was read from.
Facts = dict[str, tuple[Any, int]]


def looks_like_page(text: str) -> bool:
    """True when the text is a comparison page, so the importer can tell pages from JSON/NDJSON.

    Both markers must be whole lines: a JSON document quoting them is not a page.
    """
    seen = {_norm(line) for line in text.splitlines()}
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
    start = _index_of(lines, "AI tool comparison")
    if start is None:
        raise PageFormatError("no 'AI tool comparison' line: not a comparison page", field="title")
    if start + 1 >= len(lines):
        raise PageFormatError(
            "expected the title after 'AI tool comparison'", field="title", line=lines[start].no
        )
    title = lines[start + 1]
    body = _without_footer(lines[start + 2 :])

    decision_at = _index_of(body, "Decision")
    scorecard_at = _index_of(body, "Reviewer scorecard")
    sections = sorted(at for at in (decision_at, scorecard_at) if at is not None)
    header_end = sections[0] if sections else len(body)

    facts = _read_headers(body[:header_end])
    names = (facts[0]["name"][0], facts[1]["name"][0])
    if names[0].casefold() == names[1].casefold():
        raise PageFormatError(
            f"both tools are named {names[1]!r}", field="tools.1.name", line=facts[1]["name"][1]
        )

    shared_category = None
    if decision_at is not None:
        rows = _read_decision(_section(body, decision_at, sections), names)
        shared_category = _apply_decision(rows, facts)

    takes: tuple[list[Take], list[Take]] = ([], [])
    if scorecard_at is not None:
        takes = _read_scorecard(_section(body, scorecard_at, sections))

    return _build(
        slug=slug,
        published_at=published_at,
        title=title,
        category=shared_category or _fact(facts[0], "category"),
        facts=facts,
        takes=takes,
    )


def _page_lines(text: str) -> list[Line]:
    """Non-blank lines, stripped: blank lines, line endings and trailing spaces vary by export."""
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return [Line(no, raw.strip()) for no, raw in enumerate(text.split("\n"), 1) if raw.strip()]


def _norm(text: str) -> str:
    """Label comparison ignores case and runs of whitespace."""
    return " ".join(text.split()).casefold()


def _is(line: Line, label: str) -> bool:
    return _norm(line.text) == _norm(label)


def _index_of(lines: list[Line], label: str) -> int | None:
    return next((i for i, line in enumerate(lines) if _is(line, label)), None)


def _fact(facts: Facts, key: str) -> Any:
    return facts[key][0] if key in facts else None


def _stated(text: str) -> str | None:
    """'—' or an empty value means the page does not state the fact."""
    return None if text.strip() in NOT_STATED else text.strip()


def _without_footer(lines: list[Line]) -> list[Line]:
    """Cut the site's footer (newsletter call to action, bookmarks, the page's <title>)."""
    for i, line in enumerate(lines):
        norm = _norm(line.text)
        if norm in FOOTER_LINES or norm.endswith(FOOTER_TITLE_SUFFIX):
            return lines[:i]
    return lines


def _section(body: list[Line], at: int, starts: list[int]) -> list[Line]:
    """The lines under the heading at `at`, up to the next section heading."""
    end = next((s for s in starts if s > at), len(body))
    return body[at + 1 : end]


def _check_percentage(value: int, field: str, line: int) -> int:
    if value > 100:
        raise PageFormatError(f"{value}% is not between 0 and 100", field=field, line=line)
    return value


def _count(text: str) -> int:
    return int(text.replace(",", ""))


# --- tool headers ---------------------------------------------------------------------------


def _read_headers(lines: list[Line]) -> list[Facts]:
    """Both tools' headers; what lies between one header's 'Entry' and the next is a description."""
    anchors = [i for i, line in enumerate(lines) if _is(line, "Panel ship")]
    if len(anchors) != 2:
        extra = lines[anchors[2]].no if len(anchors) > 2 else None
        raise PageFormatError(
            f"expected two tools (two 'Panel ship' lines), found {len(anchors)}",
            field="tools",
            line=extra,
        )
    facts: list[Facts] = [{}, {}]
    floor = 0
    spans: list[tuple[int, int]] = []  # (first header line, first line after 'Entry')
    for position, anchor in enumerate(anchors):
        first = _read_header_top(lines, anchor, floor, position, facts[position])
        after = _read_header_bottom(lines, anchor, position, facts[position])
        spans.append((first, after))
        floor = after
    ends = [spans[1][0], len(lines)]
    for position, ((_, after), end) in enumerate(zip(spans, ends, strict=True)):
        paragraphs = lines[after:end]
        if paragraphs:
            text = "\n\n".join(line.text for line in paragraphs)
            _state(facts[position], position, "description", text, paragraphs[0].no)
    return facts


def _read_header_top(
    lines: list[Line], anchor: int, floor: int, position: int, facts: Facts
) -> int:
    """Read backwards from 'Panel ship': NN%, [verdict], tagline, name, category, [avatar].

    Returns the index of the header's first line.
    """
    prefix = f"tools.{position}"
    i = anchor - 1
    where = lines[i] if i >= floor else lines[anchor]
    match = PERCENT_RE.fullmatch(where.text)
    if match is None:
        raise PageFormatError(
            "expected 'NN%' before 'Panel ship'", field=f"{prefix}.panel_ship_pct", line=where.no
        )
    pct = _check_percentage(int(match[1]), f"{prefix}.panel_ship_pct", where.no)
    _state(facts, position, "panel_ship_pct", pct, where.no)
    i -= 1
    if i >= floor and lines[i].text in VERDICTS:
        _state(facts, position, "verdict", lines[i].text, lines[i].no)
        i -= 1
    if i - 2 < floor:
        raise PageFormatError(
            "expected category, name and tagline lines above the panel percentage",
            field=f"{prefix}.name",
            line=lines[anchor].no,
        )
    category, name, tagline = lines[i - 2], lines[i - 1], lines[i]
    for key, line in (("category", category), ("name", name), ("tagline", tagline)):
        if _norm(line.text) in HEADER_LABELS:
            raise PageFormatError(
                f"expected the tool's {key}, found the label {line.text!r}",
                field=f"{prefix}.{key}",
                line=line.no,
            )
        _state(facts, position, key, _stated(line.text), line.no)
    if "name" not in facts:
        raise PageFormatError("the tool has no name", field=f"{prefix}.name", line=name.no)
    first = i - 2
    if first - 1 >= floor and _is_avatar(lines[first - 1], name.text):
        first -= 1
    return first


def _is_avatar(line: Line, name: str) -> bool:
    """The full layout shows the tool's initial as a placeholder logo above its category."""
    text = line.text
    return len(text) <= 2 and text.isalnum() and text[0].casefold() == name[0].casefold()


def _read_header_bottom(lines: list[Line], anchor: int, position: int, facts: Facts) -> int:
    """Read forwards from 'Panel ship': [community] 'Community' [entry] 'Entry'.

    Returns the index of the first line after 'Entry'.
    """
    prefix = f"tools.{position}"
    community, i = _value_above(lines, anchor + 1, "Community", f"{prefix}.community")
    if community is not None:
        ship, skip = _community(community, f"{prefix}.community")
        _state(facts, position, "community_ship", ship, community.no)
        _state(facts, position, "community_skip", skip, community.no)
    entry, i = _value_above(lines, i, "Entry", f"{prefix}.entry_price")
    if entry is not None:
        _state(facts, position, "entry_price", _stated(entry.text), entry.no)
    return i


def _value_above(lines: list[Line], i: int, label: str, field: str) -> tuple[Line | None, int]:
    """The value shown above `label` (None when the label follows at once) and the next index."""
    if i < len(lines) and _is(lines[i], label):
        return None, i + 1
    if i + 1 < len(lines) and _is(lines[i + 1], label):
        return lines[i], i + 2
    near = lines[min(i, len(lines) - 1)]
    raise PageFormatError(f"expected the label {label!r} here", field=field, line=near.no)


def _community(line: Line, field: str) -> tuple[int | None, int | None]:
    """Community votes as (ship, skip).

    A bare total ("12 votes") cannot be split, so it gives (None, None), except 0 votes.
    A percentage with a total gives ship = pct × total / 100 rounded half up: exact whenever
    the site rounded the true share and the total is at most 100.
    """
    text = " ".join(line.text.split())
    if _stated(text) is None:
        return None, None
    if _norm(text) == "no community votes yet":
        return 0, 0
    if match := VOTES_SPLIT_RE.fullmatch(text):
        return _count(match[1]), _count(match[2])
    if match := VOTES_PCT_RE.fullmatch(text):
        pct = _check_percentage(int(match[1]), field, line.no)
        total = _count(match[2])
        ship = (pct * total + 50) // 100
        return ship, total - ship
    if match := VOTES_TOTAL_RE.fullmatch(text):
        return (0, 0) if _count(match[1]) == 0 else (None, None)
    raise PageFormatError(
        f"expected 'N ship / M skip', 'NN% of N votes', 'N votes' or 'No community votes yet', "
        f"got {text!r}",
        field=field,
        line=line.no,
    )


def _state(facts: Facts, position: int, key: str, value: Any, line: int) -> None:
    """Record a stated fact. Stated twice (header and Decision table), it must agree: we won't
    pick one of two contradicting statements."""
    if value is None:
        return
    if key in facts and facts[key][0] != value:
        earlier, earlier_line = facts[key]
        raise PageFormatError(
            f"{value!r} contradicts {earlier!r} on line {earlier_line}",
            field=f"tools.{position}.{key}",
            line=line,
        )
    facts.setdefault(key, (value, line))


# --- Decision table (full layout) -----------------------------------------------------------


def _read_decision(
    lines: list[Line], names: tuple[str, str]
) -> dict[str, tuple[Line | None, Line | None]]:
    """Rows of the Decision table by fact: a label line, then one value line per tool."""
    starts = [i for i, line in enumerate(lines) if _norm(line.text) in DECISION_ROWS]
    columns = lines[: starts[0] if starts else len(lines)]
    if [line.text.casefold() for line in columns] != [name.casefold() for name in names]:
        raise PageFormatError(
            f"expected the columns {names[0]!r} and {names[1]!r}, "
            f"found {[line.text for line in columns]!r}",
            field="decision",
            line=columns[0].no if columns else None,
        )
    rows: dict[str, tuple[Line | None, Line | None]] = {}
    for n, start in enumerate(starts):
        label = lines[start]
        key = DECISION_ROWS[_norm(label.text)]
        values = lines[start + 1 : starts[n + 1] if n + 1 < len(starts) else len(lines)]
        if key in rows:
            raise PageFormatError(
                f"the row {label.text!r} appears twice", field=f"decision.{key}", line=label.no
            )
        if len(values) not in (0, 2):
            raise PageFormatError(
                f"expected one value per tool after {label.text!r}, found {len(values)}",
                field=f"decision.{key}",
                line=label.no,
            )
        rows[key] = (values[0], values[1]) if values else (None, None)
    return rows


def _apply_decision(
    rows: dict[str, tuple[Line | None, Line | None]], facts: list[Facts]
) -> str | None:
    """Add the table's facts to each tool's; returns the category when both tools share it."""
    for position, tool in enumerate(facts):
        prefix = f"tools.{position}"
        for key, values in rows.items():
            line = values[position]
            if line is None or _stated(line.text) is None:
                continue
            if key == "verdict":
                verdict, ship, skip = _panel(line, f"{prefix}.verdict")
                _state(tool, position, "verdict", verdict, line.no)
                _state(tool, position, "panel_ship", ship, line.no)
                _state(tool, position, "panel_skip", skip, line.no)
            elif key == "community":
                ship, skip = _community(line, f"{prefix}.community")
                _state(tool, position, "community_ship", ship, line.no)
                _state(tool, position, "community_skip", skip, line.no)
            else:
                _state(tool, position, key, line.text, line.no)
    first, second = rows.get("category", (None, None))
    if first and second and first.text == second.text:
        return first.text
    return None


def _panel(line: Line, field: str) -> tuple[str, int | None, int | None]:
    """'Ship · 3 ship / 1 skip' -> ('Ship', 3, 1); a bare 'Mixed' states no split."""
    match = PANEL_RE.fullmatch(" ".join(line.text.split()))
    if match is None:
        raise PageFormatError(
            f"expected 'Ship|Mixed|Skip · N ship / M skip', got {line.text!r}",
            field=field,
            line=line.no,
        )
    verdict = match[1].capitalize()
    if match[2] is None:
        return verdict, None, None
    return verdict, _count(match[2]), _count(match[3])


# --- Reviewer scorecard ---------------------------------------------------------------------


def _read_scorecard(lines: list[Line]) -> tuple[list[Take], list[Take]]:
    """Each tool's takes. Persona headings or 'NN/100' lines mean the full layout."""
    named = any(line.text in PERSONAS or SCORE_RE.fullmatch(line.text) for line in lines)
    first, second = _read_named_takes(lines) if named else _read_quoted_takes(lines)
    return sorted(first, key=_persona_rank), sorted(second, key=_persona_rank)


def _persona_rank(take: Take) -> int:
    """Builder, Skeptic, Futurist, then Founder or Creator (or the unnamed fourth take)."""
    return min(PERSONAS.index(take.persona), 3) if take.persona else 3


def _read_named_takes(lines: list[Line]) -> tuple[list[Take], list[Take]]:
    """Full layout: a persona heading, then tool A's take, then tool B's.

    A take is 'NN/100 · ship' followed by its paragraphs, or 'No panel take'.
    """
    takes: tuple[list[Take], list[Take]] = ([], [])
    heading: Line | None = None
    slot = 0  # takes read under the current heading
    current: Take | None = None
    for line in lines:
        if line.text in PERSONAS:
            _check_two_takes(heading, slot)
            heading, slot, current = line, 0, None
            continue
        score_match = SCORE_RE.fullmatch(line.text)
        if heading is None:
            raise PageFormatError(
                f"expected a persona heading ({', '.join(PERSONAS)}), got {line.text[:40]!r}",
                field="reviews",
                line=line.no,
            )
        if score_match or _is(line, NO_TAKE):
            if slot == 2:
                raise PageFormatError(
                    f"a third take under {heading.text!r}: expected one per tool",
                    field="reviews",
                    line=line.no,
                )
            tool, slot, current = slot, slot + 1, None
            if score_match:
                current = _scored_take(line, score_match, heading.text, takes[tool], tool)
                takes[tool].append(current)
            continue
        if current is None:
            raise PageFormatError(
                "review text without an 'NN/100 · ship' line above it",
                field=f"tools.{max(slot - 1, 0)}.reviews",
                line=line.no,
            )
        current.paragraphs.append(line.text)
    _check_two_takes(heading, slot)
    return takes


def _check_two_takes(heading: Line | None, slot: int) -> None:
    if heading is not None and slot != 2:
        raise PageFormatError(
            f"expected one take per tool under {heading.text!r} "
            f"(a score line or {NO_TAKE!r}), found {slot}",
            field="reviews",
            line=heading.no,
        )


def _scored_take(
    line: Line, match: re.Match[str], persona: str, earlier: list[Take], tool: int
) -> Take:
    """'87/100 · ship' under a persona heading; `earlier` are the tool's takes so far."""
    field = f"tools.{tool}.reviews.{len(earlier)}"
    if any(take.persona == persona for take in earlier):
        raise PageFormatError(
            f"a second {persona} take for this tool", field=f"{field}.persona", line=line.no
        )
    score = int(match[1])
    if score > 100:
        raise PageFormatError(f"score {score} is over 100", field=f"{field}.score", line=line.no)
    verdict = match[2].casefold() if match[2] else None
    if verdict not in (None, "ship", "skip"):
        raise PageFormatError(
            f"expected 'ship' or 'skip' after the score, got {match[2]!r}",
            field=f"{field}.verdict",
            line=line.no,
        )
    return Take(line=line.no, persona=persona, score=score, verdict=verdict)


def _read_quoted_takes(lines: list[Line]) -> tuple[list[Take], list[Take]]:
    """Condensed layout: quoted takes (or 'No panel take'), A then B per persona, in the order
    Builder, Skeptic, Futurist, Founder-or-Creator. Position is all we have, so we insist on
    all eight slots (or none) rather than shift a persona onto the wrong take.
    """
    slots: list[Take | None] = []
    current: Take | None = None  # a quote spanning paragraphs, until its closing mark
    for line in lines:
        if current is None and _is(line, NO_TAKE):
            slots.append(None)
            continue
        if current is None:
            if line.text[0] not in OPENING_QUOTES:
                raise PageFormatError(
                    f"expected a quoted take or {NO_TAKE!r}, got {line.text[:40]!r}",
                    field="reviews",
                    line=line.no,
                )
            current = Take(line=line.no, persona=None)
        current.paragraphs.append(line.text)
        if _closes_quote(current.paragraphs):
            slots.append(current)
            current = None
    if current is not None:
        raise PageFormatError("this quote is never closed", field="reviews", line=current.line)
    expected = 2 * len(CONDENSED_PERSONAS)
    if len(slots) not in (0, expected):
        raise PageFormatError(
            f"expected {expected} takes (4 personas × 2 tools), found {len(slots)}",
            field="reviews",
            line=lines[0].no,
        )
    takes: tuple[list[Take], list[Take]] = ([], [])
    for n, take in enumerate(slots):
        if take is not None:
            take.persona = CONDENSED_PERSONAS[n // 2]
            take.paragraphs[0] = take.paragraphs[0][1:]
            take.paragraphs[-1] = take.paragraphs[-1][:-1]
            take.paragraphs = [p.strip() for p in take.paragraphs if p.strip()]
            takes[n % 2].append(take)
    return takes


def _closes_quote(paragraphs: list[str]) -> bool:
    """A quote ends on a closing mark, not counting the opening mark of a one-character line."""
    last = paragraphs[-1]
    return last[-1] in CLOSING_QUOTES and (len(paragraphs) > 1 or len(last) > 1)


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
