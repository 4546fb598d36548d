"""A console page's tables and links as a person reads them: cell text by table id, link targets
by their text (the console tests compare figures, not markup)."""

from __future__ import annotations

from html.parser import HTMLParser


class Tables(HTMLParser):
    """`rows(table_id)`: each body row's cells (th and td) as text; `links(text)`: hrefs."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self._tables: dict[str, list[list[str]]] = {}
        self._links: list[tuple[str, str]] = []
        self._table: str | None = None
        self._in_body = False
        self._cell: list[str] | None = None
        self._href: str | None = None
        self._link_text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "table":
            self._table = found.get("id") or ""
            self._tables.setdefault(self._table, [])
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body and self._table is not None:
            self._tables[self._table].append([])
        elif tag in ("td", "th") and self._in_body:
            self._cell = []
        elif tag == "a":
            self._href, self._link_text = found.get("href") or "", []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table, self._in_body = None, False
        elif tag == "tbody":
            self._in_body = False
        elif tag in ("td", "th") and self._cell is not None and self._table is not None:
            self._tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "a" and self._href is not None:
            self._links.append((" ".join("".join(self._link_text).split()), self._href))
            self._href = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._href is not None:
            self._link_text.append(data)

    def rows(self, table_id: str) -> list[list[str]]:
        return self._tables.get(table_id, [])

    def links(self, text: str) -> list[str]:
        return [href for label, href in self._links if label == text]
