"""What only the full layout has: the "Decision" table, and a "Reviewer scorecard" of persona
headings, each followed by one "NN/100 · ship" take (or "No panel take") per tool."""

from __future__ import annotations

import re

from digest.page_headers import DOT, VOTES_SPLIT, read_community
from digest.page_lines import (
    NO_TAKE,
    PERSONAS,
    Facts,
    Line,
    PageFormatError,
    Take,
    label_is,
    norm_label,
    parse_count,
    state_fact,
    stated_value,
)

# Decision table row label -> the fact it states.
DECISION_ROWS = {
    "panel verdict": "verdict",
    "community": "community",
    "pricing": "pricing",
    "best for": "best_for",
    "category": "category",
}
PANEL_RE = re.compile(rf"(ship|mixed|skip)(?:{DOT}{VOTES_SPLIT})?", re.I)
SCORE_RE = re.compile(r"(\d+)\s*/\s*100(?:\s*[·•]\s*(\S+))?")


# --- Decision table ---------------------------------------------------------------------------


def read_decision(
    lines: list[Line], names: tuple[str, str]
) -> dict[str, tuple[Line | None, Line | None]]:
    """Rows of the Decision table by fact: a label line, then one value line per tool."""
    starts = [i for i, line in enumerate(lines) if norm_label(line.text) in DECISION_ROWS]
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
        key = DECISION_ROWS[norm_label(label.text)]
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


def apply_decision(
    rows: dict[str, tuple[Line | None, Line | None]], facts: list[Facts]
) -> str | None:
    """Add the table's facts to each tool's; returns the category when both tools share it."""
    for position, tool in enumerate(facts):
        prefix = f"tools.{position}"
        for key, values in rows.items():
            line = values[position]
            if line is None or stated_value(line.text) is None:
                continue
            if key == "verdict":
                verdict, ship, skip = _panel(line, f"{prefix}.verdict")
                state_fact(tool, position, "verdict", verdict, line.no)
                state_fact(tool, position, "panel_ship", ship, line.no)
                state_fact(tool, position, "panel_skip", skip, line.no)
            elif key == "community":
                ship, skip = read_community(line, f"{prefix}.community")
                state_fact(tool, position, "community_ship", ship, line.no)
                state_fact(tool, position, "community_skip", skip, line.no)
            else:
                state_fact(tool, position, key, line.text, line.no)
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
    return verdict, parse_count(match[2]), parse_count(match[3])


# --- Reviewer scorecard with persona headings --------------------------------------------------


def read_named_takes(lines: list[Line]) -> tuple[list[Take], list[Take]]:
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
        if score_match or label_is(line, NO_TAKE):
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
