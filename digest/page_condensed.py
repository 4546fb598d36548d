"""What only the condensed layout has: a scorecard made only of quoted takes, alternating tool A /
tool B per persona in the order Builder, Skeptic, Futurist, then Founder *or* Creator (the page
does not say which)."""

from __future__ import annotations

from digest.page_lines import NO_TAKE, Line, PageFormatError, Take, label_is

# The condensed scorecard names no persona: takes are in this order, the fourth being Founder or
# Creator, which the page does not tell apart.
CONDENSED_PERSONAS = ("Builder", "Skeptic", "Futurist", None)
OPENING_QUOTES = '“"'
CLOSING_QUOTES = '”"'


def read_quoted_takes(lines: list[Line]) -> tuple[list[Take], list[Take]]:
    """Condensed layout: quoted takes (or 'No panel take'), A then B per persona, in the order
    Builder, Skeptic, Futurist, Founder-or-Creator. Position is all we have, so we insist on
    all eight slots (or none) rather than shift a persona onto the wrong take.
    """
    slots: list[Take | None] = []
    current: Take | None = None  # a quote spanning paragraphs, until its closing mark
    for line in lines:
        if current is None and label_is(line, NO_TAKE):
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
