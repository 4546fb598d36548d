"""Fit a digest into its byte budget: Gmail clips an HTML part past ~102 KB.

What disappears behind "View entire message" is the end of the email — the footer with the
unsubscribe link and the postal address that bulk-sender rules expect to see. A ranked digest
knows what matters least, so when a week does not fit in `DIGEST_EMAIL_MAX_BYTES` (measured on
the compiled HTML with the longest per-recipient values filled in), the lowest-ranked
comparisons move to a compact "More this week" list (title, verdict in a few words, link), and
past that into "N more on the web", a link to the edition's archive page. The footer is always
inside the budget: it is part of every candidate that is measured.

The search keeps as many comparisons in full as fit (the top ones) beside a compact list of the
next ones (at most `COMPACT_MAX`: a longer list is a wall of links; the archive page has them
all); it is a binary search over one monotone quantity, so a week of 50 comparisons costs about
seven compilations instead of one, and only when it does not fit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from digest.email_backends import fill_tokens
from digest.substitution import GREETING_MAX, Placeholders
from digest.tokens import manage_urls, reader_token

# Subscriber ids are BIGINT; ten digits is more than any list will reach and signs the longest
# links a recipient can have.
LONGEST_SUBSCRIBER_ID = 9_999_999_999
LONGEST_DIGEST_ID = 9_999_999_999
COMPACT_MAX = 10


@dataclass(frozen=True)
class Shown:
    """How a digest's comparisons were shown: in full, in the compact list, or only counted."""

    full: int
    compact: int
    linked: int


@dataclass(frozen=True)
class Candidate:
    """One compiled try: the HTML and text of a selection, and its measured size."""

    shown: Shown
    html: str
    text: str
    size: int


def longest_values(keys: Placeholders) -> dict[str, str]:
    """The longest values any recipient's placeholders can be filled with."""
    unsubscribe, preferences = manage_urls(LONGEST_SUBSCRIBER_ID)
    reader = reader_token(LONGEST_DIGEST_ID, LONGEST_SUBSCRIBER_ID)
    return keys.values("W" * GREETING_MAX, unsubscribe, preferences, reader)


def filled_size(html: str, keys: Placeholders) -> int:
    """Bytes of the HTML part as the largest recipient receives it."""
    return len(fill_tokens(html, longest_values(keys)).encode())


def fit(
    total: int,
    budget: int,
    render: Callable[[Shown], tuple[str, str]],
    keys: Placeholders,
) -> Candidate:
    """The best selection of `total` ranked comparisons whose HTML fits in `budget` bytes.

    `render(shown)` compiles the email for a selection. Everything in full is tried first (the
    common case: one compilation); otherwise the most in full beside the compact list. If even
    the bare email (no comparison shown, only the "more on the web" link) is over the budget,
    that bare email is returned: the footer must never be cut.
    """

    def attempt(full: int, compact: int) -> Candidate:
        shown = Shown(full, compact, total - full - compact)
        html, text = render(shown)
        return Candidate(shown, html, text, filled_size(html, keys))

    everything = attempt(total, 0)
    if everything.size <= budget:
        return everything
    # As many in full as fit beside a compact list of the next ones (at most COMPACT_MAX).
    best = _largest(0, total - 1, lambda n: attempt(n, min(total - n, COMPACT_MAX)), budget)
    if best is not None:
        return best
    # Not even one comparison in full: the compact list alone, as long as fits.
    compact = _largest(1, min(total, COMPACT_MAX), lambda n: attempt(0, n), budget)
    return compact or attempt(0, 0)


def _largest(
    low: int, high: int, attempt: Callable[[int], Candidate], budget: int
) -> Candidate | None:
    """The candidate for the largest n in [low, high] that fits (size grows with n), if any."""
    found = None
    while low <= high:
        middle = (low + high) // 2
        candidate = attempt(middle)
        if candidate.size <= budget:
            found, low = candidate, middle + 1
        else:
            high = middle - 1
    return found
