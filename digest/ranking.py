"""Rank a window's comparisons by panel split and community votes, and say why in one line.

The formula (weights are settings, `DIGEST_RANK_*`):

Per tool, three pieces of evidence, each centred so that "nothing known" adds exactly 0:

* **Panel** `P = wilson_lower(ship + 1, ship + skip + 2, z) - wilson_lower(1, 2, z)`.
  Four reviewers are a small sample, so the panel counts as the Wilson lower bound (z =
  `rank_confidence_z`) of the ship share, after one ship and one skip pseudo-vote as a neutral
  prior: 3 ship / 1 skip scores below 75 %, 4 / 0 above 3 / 1, and an unknown panel scores 0.
  Evidence, in order of preference: the stated split; else a page that states only the
  percentage and its reviews counts as `pct × reviews` ship and `(1 - pct) × reviews` skip
  (at least one review's worth); else the ship/skip verdicts of the reviews; else none.
* **Community** `C = (ship + h/2) / (n + h) - 1/2` with `n = ship + skip` and
  `h = rank_community_half_votes`: the Beta posterior mean of the ship share under a neutral
  prior worth `h` votes. The votes' weight is `n / (n + h)`: zero votes are neutral (not
  "all skip"), 3 votes barely count, 300 votes matter.
* **Reviewer scores** `R = mean(score) / 100 - 1/2` over the reviews that carry a score
  (0 when none do); a small refinement.

`tool = rank_panel_weight·P + rank_community_weight·C + rank_score_weight·R`

Readers' verdicts from our own Ship it / Skip it links (digest/votes.py) join the community
counts with weight `w = rank_reader_weight` (default 0: off, since the site's totals will come
to include the verdicts we forward): `C = (ship + w·r_ship + h/2) / (n + w·r_n + h) - 1/2`. The
explanation names them ("readers 71 % of 133 verdicts") only when they count.

The comparison scores `max(a, b) + rank_runner_up_weight·min(a, b)` of its two tool scores:
symmetric in the two tools, strictly increasing in each. A comparison earns its place mainly from
its best tool, because a clear "ship this" is what a reader can act on; the runner-up adds a
little, so a pair of good tools beats a good tool beside a poor one. Split decisions are not
boosted: they are labelled as such in the email instead.

Ties break deterministically: score descending, then `published_at` newest first, then slug.
One more ship vote (panel or community) never lowers a score; swapping the tools changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from digest.settings import Settings, get_settings
from schema.models import Comparison, Tool


@dataclass(frozen=True)
class RankedComparison:
    comparison: Comparison
    score: float
    explanation: str  # one line, e.g. "Panel 3–1 ship · community 82 % of 211 votes"


@dataclass(frozen=True)
class ReaderCount:
    """Readers' ship and skip verdicts on one tool, from the digest's own links."""

    ship: int = 0
    skip: int = 0


# Readers' verdicts by (comparison id, tool position); missing keys count as none.
ReaderCounts = Mapping[tuple[int, int], ReaderCount]
NO_READERS = ReaderCount()


@dataclass(frozen=True)
class PanelEvidence:
    """Ship and skip counts the panel term rests on, and how they were obtained."""

    ship: float
    skip: float
    source: str  # "split" | "percentage" | "reviews" | "none"


def wilson_lower(successes: float, trials: float, z: float) -> float:
    """Lower bound of the Wilson score interval for a proportion (0 for no trials)."""
    if trials <= 0:
        return 0.0
    p = successes / trials
    z2 = z * z
    centre = p + z2 / (2 * trials)
    margin = z * math.sqrt(max(p * (1 - p) / trials + z2 / (4 * trials * trials), 0.0))
    return (centre - margin) / (1 + z2 / trials)


def panel_evidence(tool: Tool) -> PanelEvidence:
    if tool.panel_ship is not None and tool.panel_skip is not None:
        return PanelEvidence(tool.panel_ship, tool.panel_skip, "split")
    if tool.panel_ship_pct is not None:
        reviews = max(len(tool.reviews), 1)
        share = tool.panel_ship_pct / 100
        return PanelEvidence(share * reviews, (1 - share) * reviews, "percentage")
    verdicts = [r.verdict for r in tool.reviews if r.verdict]
    if verdicts:
        return PanelEvidence(verdicts.count("ship"), verdicts.count("skip"), "reviews")
    return PanelEvidence(0, 0, "none")


def panel_term(tool: Tool, z: float) -> float:
    evidence = panel_evidence(tool)
    trials = evidence.ship + evidence.skip + 2
    return wilson_lower(evidence.ship + 1, trials, z) - wilson_lower(1, 2, z)


def community_term(
    tool: Tool, half_votes: float, readers: ReaderCount = NO_READERS, reader_weight: float = 0.0
) -> float:
    ship = (tool.community_ship or 0) + reader_weight * readers.ship
    skip = (tool.community_skip or 0) + reader_weight * readers.skip
    return (ship + half_votes / 2) / (ship + skip + half_votes) - 0.5


def review_term(tool: Tool) -> float:
    scores = [r.score for r in tool.reviews if r.score is not None]
    return sum(scores) / len(scores) / 100 - 0.5 if scores else 0.0


def tool_score(tool: Tool, settings: Settings, readers: ReaderCount = NO_READERS) -> float:
    community = community_term(
        tool, settings.rank_community_half_votes, readers, settings.rank_reader_weight
    )
    return (
        settings.rank_panel_weight * panel_term(tool, settings.rank_confidence_z)
        + settings.rank_community_weight * community
        + settings.rank_score_weight * review_term(tool)
    )


def _readers(tool: Tool, readers: ReaderCounts | None) -> ReaderCount:
    return (readers or {}).get((tool.comparison_id, tool.position), NO_READERS)


def comparison_score(
    comparison: Comparison, settings: Settings | None = None, readers: ReaderCounts | None = None
) -> float:
    settings = settings or get_settings()
    a, b = (tool_score(t, settings, _readers(t, readers)) for t in comparison.tools)
    return max(a, b) + settings.rank_runner_up_weight * min(a, b)


def rank_comparisons(
    comparisons: Sequence[Comparison],
    settings: Settings | None = None,
    readers: ReaderCounts | None = None,
) -> list[RankedComparison]:
    """Best first; ties by newest `published_at`, then slug. Each item explains itself.
    `readers`: readers' verdicts by (comparison id, tool position), used when their weight
    (`DIGEST_RANK_READER_WEIGHT`) is above 0."""
    settings = settings or get_settings()
    scored = [
        RankedComparison(c, comparison_score(c, settings, readers), explain(c, settings, readers))
        for c in comparisons
    ]
    return sorted(scored, key=tie_break)


def tie_break(ranked: RankedComparison) -> tuple[float, float, str]:
    """Score descending, then newest `published_at`, then slug."""
    return (-ranked.score, -ranked.comparison.published_at.timestamp(), ranked.comparison.slug)


# --- the one-line explanation -----------------------------------------------------------------


def describe_panel(tool: Tool) -> str:
    """ "panel 3–1 ship", "panel 2–2 split", "panel 100 % ship (4 reviews)", "panel not stated"."""
    evidence = panel_evidence(tool)
    if evidence.source in ("split", "reviews"):
        ship, skip = int(evidence.ship), int(evidence.skip)
        lean = "ship" if ship > skip else "skip" if skip > ship else "split"
        return f"panel {ship}–{skip} {lean}"
    if evidence.source == "percentage":
        count = len(tool.reviews)
        reviews = f" ({count} review{'s' if count != 1 else ''})" if count else ""
        return f"panel {tool.panel_ship_pct} % ship{reviews}"
    return "panel not stated"


def describe_community(tool: Tool) -> str:
    """ "community 82 % of 211 votes", "no community votes" or "community not stated"."""
    if tool.community_ship is None or tool.community_skip is None:
        return "community not stated"
    ship, skip = tool.community_ship, tool.community_skip
    total = ship + skip
    if total == 0:
        return "no community votes"
    vote = "vote" if total == 1 else "votes"
    return f"community {round(100 * ship / total)} % of {total:,} {vote}"


def describe_readers(count: ReaderCount) -> str:
    """ " · readers 71 % of 133 verdicts" when readers' verdicts count, else ""."""
    total = count.ship + count.skip
    if not total:
        return ""
    verdicts = "verdict" if total == 1 else "verdicts"
    return f" · readers {round(100 * count.ship / total)} % of {total:,} {verdicts}"


def explain(
    comparison: Comparison, settings: Settings | None = None, readers: ReaderCounts | None = None
) -> str:
    """One line, the stronger tool first:
    "Quillmate: panel 4–0 ship · community 85 % of 211 votes | Parsewell: panel 2–2 split · …",
    with " · readers 71 % of 133 verdicts" when readers' verdicts count (weight above 0).
    """
    settings = settings or get_settings()
    counted = readers if settings.rank_reader_weight > 0 else None
    tools = sorted(
        comparison.tools,
        key=lambda t: (
            -tool_score(t, settings, _readers(t, counted)),
            t.name.casefold(),
            t.position,
        ),
    )
    parts = [
        f"{t.name}: {describe_panel(t)} · {describe_community(t)}"
        + describe_readers(_readers(t, counted))
        for t in tools
    ]
    line = " | ".join(parts)
    return " ".join(line.split())  # one line, whatever the names contain
