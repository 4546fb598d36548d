"""Which of a digest's comparisons a link points at: a click event's URL, or a link in the email.

SendGrid reports a click with the link's original URL. Every link to a comparison carries
`utm_content=<slug>` (digest/email_views.py `tracked_url`), which names the frozen item whatever
the comparison's page address is by the time anyone looks; a Ship it / Skip it link names it in
its path (`/vote/<reader token>/<slug>/<tool>/<choice>`). A link from an email rendered before
`utm_content` existed is matched by its address without the query, when exactly one item has
that address. Anything else (the archive, preferences, unsubscribe) is no item's.

Where an item stood in a segment's email is read from that segment's stored HTML with the same
matching: the order in which its links first appear is the order the reader saw.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from digest.email_views import tracked_url
from schema.models import Comparison

_HREF = re.compile(r'href="([^"]*)"')
VOTE_SEGMENTS = 5  # vote, reader token, slug, tool position, choice


@dataclass(frozen=True)
class ItemLinks:
    """The digest's items by slug and by page address (None where two items share one)."""

    by_slug: dict[str, int]  # slug -> comparison id
    by_address: dict[str, int | None]  # "host/path" -> comparison id

    def item_of(self, url: str | None) -> int | None:
        """The comparison id a link points at, or None for any other link."""
        if not url:
            return None
        try:
            parts = urlsplit(url.strip())
        except ValueError:
            return None
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key == "utm_content" and value in self.by_slug:
                return self.by_slug[value]
        segments = parts.path.split("/")
        if len(segments) >= VOTE_SEGMENTS and segments[-VOTE_SEGMENTS] == "vote":
            found = self.by_slug.get(unquote(segments[-3]))
            if found is not None:
                return found
        return self.by_address.get(_address(parts.netloc, parts.path))

    def positions_in(self, email_html: str) -> dict[int, int]:
        """Comparison id -> its place (1, 2, …) in an email, in the order its links appear."""
        positions: dict[int, int] = {}
        for raw in _HREF.findall(email_html):
            found = self.item_of(html.unescape(raw))
            if found is not None and found not in positions:
                positions[found] = len(positions) + 1
        return positions


def _address(netloc: str, path: str) -> str:
    return f"{netloc.lower()}{unquote(path).rstrip('/')}"


def item_links(comparisons: Sequence[Comparison]) -> ItemLinks:
    """The matcher for these comparisons (a digest's frozen items)."""
    by_slug = {c.slug: c.id for c in comparisons}
    by_address: dict[str, int | None] = {}
    for c in comparisons:
        parts = urlsplit(tracked_url(c))
        key = _address(parts.netloc, parts.path)
        by_address[key] = c.id if key not in by_address else None
    return ItemLinks(by_slug, by_address)
