"""`python -m bench.email_size` (`make bench-email`): how big the weekly email gets, and how fast.

    python -m bench.email_size [--counts 1 5 10 20 50] [--repeat 3]

For each count N, N comparisons with every field at its longest (titles, names, taglines,
pricing, best-for, quotes and explanations past the lengths the templates cut them to) are
rendered as one weekly email, in memory (no database), and the per-recipient placeholders are
filled with the longest values a recipient can have (a 60-character greeting, unsubscribe and
preferences links of a large subscriber id). It prints the HTML and text bytes, how many
comparisons are shown in full / in the compact list / only counted in the "more on the web"
link, and the median compile time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, datetime, timedelta

from digest.email_backends import fill_tokens
from digest.email_budget import longest_values
from digest.rendering import Entry, render_weekly
from digest.settings import get_settings
from schema.models import Comparison, Review, Tool

LONG_WORDS = ["verdict", "panel", "community", "pricing", "workflow", "assistant", "integration"]


def long_text(length: int, seed: int) -> str:
    """Plain words past `length` characters, different per seed (no two fields alike)."""
    words, size, n = [], 0, seed
    while size <= length + 40:
        word = LONG_WORDS[n % len(LONG_WORDS)] + str(n % 97)
        words.append(word)
        size += len(word) + 1
        n += 7
    return " ".join(words)


def maximal_comparison(index: int) -> Comparison:
    """A comparison whose every shown field is longer than the template shows."""
    tools = []
    for position in (0, 1):
        seed = index * 10 + position
        tool = Tool(
            position=position,
            name=long_text(90, seed),
            tagline=long_text(170, seed + 1),
            category="Developer Tools",
            pricing=long_text(150, seed + 2),
            entry_price=long_text(45, seed + 3)[:50],
            best_for=long_text(210, seed + 4),
            verdict_label="Mixed" if index % 2 else "Ship",
            panel_ship=3,
            panel_skip=1,
            panel_ship_pct=75,
            community_ship=123_456,
            community_skip=65_432,
        )
        review = Review(position=0, persona="Skeptic", score=12, verdict="skip")
        review.text = long_text(300, seed)
        tool.reviews = [review]
        tools.append(tool)
    comparison = Comparison(
        slug=f"maximal-comparison-{index:03d}-" + "x" * 150,
        title=long_text(170, index),
        url="https://shiporskip.example/compare/" + "y" * 200 + f"-{index}",
        category="Developer Tools",
        published_at=datetime(2026, 11, 20, tzinfo=UTC) - timedelta(hours=index),
    )
    comparison.tools = tools
    return comparison


def measure(count: int, repeat: int) -> dict[str, object]:
    entries = [Entry(n, maximal_comparison(n), long_text(320, n)) for n in range(1, count + 1)]
    timings, email = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        email = render_weekly(entries)
        timings.append(time.perf_counter() - started)
    assert email is not None
    assert email.placeholders is not None
    values = longest_values(email.placeholders)
    html = fill_tokens(email.html, values).encode()
    text = fill_tokens(email.text, values).encode()
    shown = email.shown
    return {
        "comparisons": count,
        "html_bytes": len(html),
        "text_bytes": len(text),
        "full": shown.full if shown else count,
        "compact": shown.compact if shown else 0,
        "linked": shown.linked if shown else 0,
        "compile_ms": statistics.median(timings) * 1000,
    }


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DIGEST_ENV", "development")  # a bench run needs no secrets
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 5, 10, 20, 50])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"budget (DIGEST_EMAIL_MAX_BYTES): {get_settings().email_max_bytes:,}")
    print("| comparisons | HTML bytes | text bytes | full | compact list | linked | compile |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for count in args.counts:
        row = measure(count, args.repeat)
        print(
            f"| {row['comparisons']} | {row['html_bytes']:,} | {row['text_bytes']:,} "
            f"| {row['full']} | {row['compact']} | {row['linked']} | {row['compile_ms']:.0f} ms |"
        )


if __name__ == "__main__":
    main()
