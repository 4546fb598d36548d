"""Write comparison pages in the site's two layouts, about invented tools, for the page tests.

The layouts follow the published pages described in the shared seeds README; every sentence here
is our own. Tests start from `quillmate()` and `parsewell()` and change one thing with
`dataclasses.replace`, so each test shows only the fact it is about.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

PERSONA_ORDER = ("Builder", "Skeptic", "Futurist", "Founder", "Creator")


@dataclass(frozen=True)
class Take:
    """One persona's take as printed on the full layout: '84/100 · ship' and a paragraph."""

    persona: str
    score_line: str
    text: str


@dataclass(frozen=True)
class ToolPage:
    """Everything one tool contributes to a page, as the page prints it."""

    name: str
    tagline: str
    category: str
    description: str
    verdict: str = "Ship"  # label above the percentage; full layout only
    pct: str = "75%"
    header_community: str = ""  # value above "Community" in the header ("" prints nothing)
    entry: str = "Free"
    panel: str = "Ship · 3 ship / 1 skip"  # Decision table rows, full layout only
    community: str = "No community votes yet"
    pricing: str = "Free"
    best_for: str = ""
    decision_category: str | None = None  # None: same as the header category
    takes: tuple[Take, ...] = field(default_factory=tuple)

    def take_for(self, persona: str) -> Take | None:
        return next((take for take in self.takes if take.persona == persona), None)


def quillmate() -> ToolPage:
    """A Ship tool with community votes and four scored takes (Builder … Founder)."""
    return ToolPage(
        name="Quillmate",
        tagline="Drafts grant proposals from your lab notebook",
        category="Writing Tools",
        description=(
            "Quillmate reads a research group's notebook exports and drafts the boilerplate "
            "sections of a grant proposal: aims, timeline and budget justification."
        ),
        verdict="Ship",
        pct="75%",
        entry="Paid",
        panel="Ship · 3 ship / 1 skip",
        community="14 ship / 6 skip",
        pricing="$12 per seat per month",
        best_for="Small labs that apply for many small grants",
        takes=(
            Take(
                "Builder", "84/100 · ship", "The export importer handled every notebook we fed it."
            ),
            Take("Skeptic", "40/100 · skip", "Funders can spot templated aims from a mile away."),
            Take("Futurist", "71/100 · ship", "Grant writing is the first paperwork to fall."),
            Take(
                "Founder", "66/100 · ship", "Per-seat pricing fits how labs already buy software."
            ),
        ),
    )


def parsewell() -> ToolPage:
    """A Mixed tool, 2 ship / 2 skip, no community votes, no Futurist take, a Creator take."""
    return ToolPage(
        name="Parsewell",
        tagline="Turns scanned invoices into clean JSON",
        category="Document AI",
        description=(
            "Parsewell is a hosted extraction API for scanned invoices and receipts.\n\n"
            "It returns line items with a confidence score for each field."
        ),
        verdict="Mixed",
        pct="50%",
        entry="Free",
        panel="Mixed · 2 ship / 2 skip",
        community="No community votes yet",
        pricing="Free up to 500 pages, then metered",
        best_for="Bookkeepers drowning in paper receipts",
        takes=(
            Take("Builder", "77/100 · ship", "One POST request and the JSON is already typed."),
            Take("Skeptic", "38/100 · skip", "Confidence scores hide the totals it misses."),
            Take("Creator", "58/100 · skip", "Little here for people who make rather than file."),
        ),
    )


def full_page(
    a: ToolPage, b: ToolPage, *, blank_lines: bool = True, newline: str = "\n", trailing: str = ""
) -> str:
    """The full layout: headers with avatar and verdict label, Decision table, named scorecard."""
    lines = [
        f"Compare/{a.name} vs {b.name}",
        "AI tool comparison",
        f"{a.name} vs {b.name}",
        "Two tools, one panel: read the split before you pick.",
    ]
    for tool in (a, b):
        lines += [tool.name[0], *_header(tool, with_verdict=True)]
    lines += _decision(a, b)
    lines += ["Reviewer scorecard"]
    for persona in PERSONA_ORDER:
        if a.take_for(persona) is None and b.take_for(persona) is None:
            continue
        lines.append(persona)
        for tool in (a, b):
            take = tool.take_for(persona)
            lines += ["No panel take"] if take is None else [take.score_line, take.text]
    lines += [*_footer(), f"{a.name} vs {b.name}: Which AI Tool Should You Ship? — Ship or Skip"]
    return _join(lines, blank_lines=blank_lines, newline=newline, trailing=trailing)


def condensed_page(
    a: ToolPage,
    b: ToolPage,
    *,
    quotes: tuple[str, str] = ("“", "”"),
    blank_lines: bool = False,
    newline: str = "\n",
) -> str:
    """The condensed layout: no avatar, verdict label or Decision table; quoted takes only."""
    lines = [
        "AI tool comparison",
        f"{a.name} vs {b.name}",
        "Two tools, one panel: read the split before you pick.",
    ]
    for tool in (a, b):
        lines += _header(tool, with_verdict=False)
    lines.append("Reviewer scorecard")
    for personas in (("Builder",), ("Skeptic",), ("Futurist",), ("Founder", "Creator")):
        for tool in (a, b):
            take = next(filter(None, map(tool.take_for, personas)), None)
            lines.append("No panel take" if take is None else f"{quotes[0]}{take.text}{quotes[1]}")
    lines += _footer()
    return _join(lines, blank_lines=blank_lines, newline=newline)


def write_page(directory: Path, name: str, text: str) -> Path:
    """Save a page as the importer would find it: the bytes as given, newlines untranslated."""
    path = directory / name
    path.write_bytes(text.encode("utf-8"))
    return path


def _header(tool: ToolPage, *, with_verdict: bool) -> list[str]:
    lines = [tool.category, tool.name, tool.tagline]
    if with_verdict:
        lines.append(tool.verdict)
    lines += [tool.pct, "Panel ship"]
    if tool.header_community:
        lines.append(tool.header_community)
    return [*lines, "Community", tool.entry, "Entry", tool.description]


def _decision(a: ToolPage, b: ToolPage) -> list[str]:
    rows = {
        "Panel verdict": (a.panel, b.panel),
        "Community": (a.community, b.community),
        "Pricing": (a.pricing, b.pricing),
        "Best for": (a.best_for or a.tagline, b.best_for or b.tagline),
        "Category": (a.decision_category or a.category, b.decision_category or b.category),
    }
    lines = ["Decision", a.name, b.name]
    for label, values in rows.items():
        lines += [label, *(value for value in values if value)]
    return lines


def _footer() -> list[str]:
    return [
        "Weekly AI Tool Verdicts",
        "Get the next comparison in your inbox",
        "Fresh verdicts every Friday, before your standup.",
        "Bookmarks",
        "Nothing saved here yet",
    ]


def _join(lines: list[str], *, blank_lines: bool, newline: str, trailing: str = "") -> str:
    separator = (trailing + newline) * (2 if blank_lines else 1)
    return separator.join(lines)
