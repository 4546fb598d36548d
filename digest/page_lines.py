"""The shared vocabulary of page reading: lines, facts with the line they came from, and the
error that names a field and a line. Used by every part of `digest.pages`."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from schema.statuses import Persona

PERSONAS = tuple(p.value for p in Persona)  # Builder, Skeptic, Futurist, Founder, Creator
NO_TAKE = "No panel take"
NOT_STATED = {"", "—", "–", "-"}


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


def norm_label(text: str) -> str:
    """Label comparison ignores case and runs of whitespace."""
    return " ".join(text.split()).casefold()


def label_is(line: Line, label: str) -> bool:
    return norm_label(line.text) == norm_label(label)


def index_of(lines: list[Line], label: str) -> int | None:
    return next((i for i, line in enumerate(lines) if label_is(line, label)), None)


def fact_value(facts: Facts, key: str) -> Any:
    return facts[key][0] if key in facts else None


def stated_value(text: str) -> str | None:
    """'—' or an empty value means the page does not state the fact."""
    return None if text.strip() in NOT_STATED else text.strip()


def check_percentage(value: int, field: str, line: int) -> int:
    if value > 100:
        raise PageFormatError(f"{value}% is not between 0 and 100", field=field, line=line)
    return value


def parse_count(text: str) -> int:
    return int(text.replace(",", ""))


def state_fact(facts: Facts, position: int, key: str, value: Any, line: int) -> None:
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
