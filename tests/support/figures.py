"""Reading the figures a console page shows, as a person would find them in its tables.

Cells marked `data-figure="name"` are figures; the row they sit in may name a comparison
(`data-comparison`), a segment (`data-segment`) or a tool (`data-tool`), and the table its `id`.
A chart's table (`class="chart-data"`, console/_chart.html) is read as its rows of values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass(frozen=True)
class Figure:
    table: str | None
    comparison: str | None
    segment: str | None
    tool: str | None
    name: str
    value: int


@dataclass
class PageFigures(HTMLParser):
    figures: list[Figure] = field(default_factory=list)
    charts: dict[str, list[list[int]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._table: str | None = None
        self._row: dict[str, str | None] = {}
        self._figure: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "table":
            self._table = found.get("id")
            if "chart-data" in (found.get("class") or "") and self._table:
                self.charts[self._table] = []
        elif tag == "tr":
            self._row = found
            if self._table in self.charts and "data-figure" not in found:
                self.charts[self._table].append([])
        elif tag == "td" and self._table in self.charts and found.get("data-value") is not None:
            self.charts[self._table][-1].append(int(found["data-value"] or 0))
        if "data-figure" in found:
            self._figure, self._text = found["data-figure"], []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            if self._table in self.charts:
                self.charts[self._table] = [r for r in self.charts[self._table] if r]
            self._table = None
        elif tag == "tr":
            self._row = {}
        elif self._figure is not None and tag in ("td", "span"):
            text = "".join(self._text).strip().replace(",", "")
            if text.lstrip("-").isdigit():
                self.figures.append(
                    Figure(
                        self._table,
                        self._row.get("data-comparison"),
                        self._row.get("data-segment"),
                        self._row.get("data-tool"),
                        self._figure,
                        int(text),
                    )
                )
            self._figure = None

    def handle_data(self, data: str) -> None:
        if self._figure is not None:
            self._text.append(data)

    def one(self, name: str, table: str | None = None, **row: str | None) -> int:
        """The one figure of this name in this table and row (row: comparison, segment, tool)."""
        matches = [
            f
            for f in self.figures
            if f.name == name
            and f.table == table
            and all(getattr(f, key) == value for key, value in row.items())
        ]
        assert len(matches) == 1, (name, table, row, matches)
        return matches[0].value


def page_figures(html: str) -> PageFigures:
    parsed = PageFigures()
    parsed.feed(html)
    parsed.close()
    return parsed
