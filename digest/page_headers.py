"""Each tool's header, in both layouts: category, name, tagline, [verdict], NN% over "Panel ship",
community votes over "Community", entry price over "Entry", then the description.

In a header the value comes *before* its label ("75%" then "Panel ship"), so each tool's header is
read around its "Panel ship" line.
"""

from __future__ import annotations

import re

from digest.page_lines import (
    Facts,
    Line,
    PageFormatError,
    check_percentage,
    label_is,
    norm_label,
    parse_count,
    state_fact,
    stated_value,
)
from schema.statuses import VerdictLabel

VERDICTS = tuple(v.value for v in VerdictLabel)  # Ship, Mixed, Skip
HEADER_LABELS = {"panel ship", "community", "entry"}
NUMBER = r"\d+(?:,\d{3})*"
DOT = r"\s*[·•]\s*"
PERCENT_RE = re.compile(r"(\d+)\s*%")
VOTES_SPLIT = rf"({NUMBER})\s+ship\s*/\s*({NUMBER})\s+skip"
VOTES_SPLIT_RE = re.compile(VOTES_SPLIT, re.I)
VOTES_PCT_RE = re.compile(rf"(\d+)\s*%\s*(?:ship{DOT}|of\s+)({NUMBER})\s+votes?", re.I)
VOTES_TOTAL_RE = re.compile(rf"({NUMBER})\s+votes?", re.I)


def read_headers(lines: list[Line]) -> list[Facts]:
    """Both tools' headers; what lies between one header's 'Entry' and the next is a description."""
    anchors = [i for i, line in enumerate(lines) if label_is(line, "Panel ship")]
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
            state_fact(facts[position], position, "description", text, paragraphs[0].no)
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
    pct = check_percentage(int(match[1]), f"{prefix}.panel_ship_pct", where.no)
    state_fact(facts, position, "panel_ship_pct", pct, where.no)
    i -= 1
    if i >= floor and lines[i].text in VERDICTS:
        state_fact(facts, position, "verdict", lines[i].text, lines[i].no)
        i -= 1
    if i - 2 < floor:
        raise PageFormatError(
            "expected category, name and tagline lines above the panel percentage",
            field=f"{prefix}.name",
            line=lines[anchor].no,
        )
    category, name, tagline = lines[i - 2], lines[i - 1], lines[i]
    for key, line in (("category", category), ("name", name), ("tagline", tagline)):
        if norm_label(line.text) in HEADER_LABELS:
            raise PageFormatError(
                f"expected the tool's {key}, found the label {line.text!r}",
                field=f"{prefix}.{key}",
                line=line.no,
            )
        state_fact(facts, position, key, stated_value(line.text), line.no)
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
        ship, skip = read_community(community, f"{prefix}.community")
        state_fact(facts, position, "community_ship", ship, community.no)
        state_fact(facts, position, "community_skip", skip, community.no)
    entry, i = _value_above(lines, i, "Entry", f"{prefix}.entry_price")
    if entry is not None:
        state_fact(facts, position, "entry_price", stated_value(entry.text), entry.no)
    return i


def _value_above(lines: list[Line], i: int, label: str, field: str) -> tuple[Line | None, int]:
    """The value shown above `label` (None when the label follows at once) and the next index."""
    if i < len(lines) and label_is(lines[i], label):
        return None, i + 1
    if i + 1 < len(lines) and label_is(lines[i + 1], label):
        return lines[i], i + 2
    near = lines[min(i, len(lines) - 1)]
    raise PageFormatError(f"expected the label {label!r} here", field=field, line=near.no)


def read_community(line: Line, field: str) -> tuple[int | None, int | None]:
    """Community votes as (ship, skip).

    A bare total ("12 votes") cannot be split, so it gives (None, None), except 0 votes.
    A percentage with a total gives ship = pct × total / 100 rounded half up: exact whenever
    the site rounded the true share and the total is at most 100.
    """
    text = " ".join(line.text.split())
    if stated_value(text) is None:
        return None, None
    if norm_label(text) == "no community votes yet":
        return 0, 0
    if match := VOTES_SPLIT_RE.fullmatch(text):
        return parse_count(match[1]), parse_count(match[2])
    if match := VOTES_PCT_RE.fullmatch(text):
        pct = check_percentage(int(match[1]), field, line.no)
        total = parse_count(match[2])
        ship = (pct * total + 50) // 100
        return ship, total - ship
    if match := VOTES_TOTAL_RE.fullmatch(text):
        return (0, 0) if parse_count(match[1]) == 0 else (None, None)
    raise PageFormatError(
        f"expected 'N ship / M skip', 'NN% of N votes', 'N votes' or 'No community votes yet', "
        f"got {text!r}",
        field=field,
        line=line.no,
    )
