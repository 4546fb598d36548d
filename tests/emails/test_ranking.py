"""Ranking: the panel as evidence, community votes by their number, a symmetric, stable order.

Comparisons here are unsaved ORM objects: ranking reads only their fields, so the properties can
be checked on thousands of generated comparisons without a database.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from digest.ranking import (
    comparison_score,
    explain,
    panel_term,
    rank_comparisons,
)
from digest.settings import Settings
from schema.models import Comparison, Review, Tool

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DEFAULTS = Settings()


def tool(
    name: str,
    ship: int | None = 3,
    skip: int | None = 1,
    *,
    community: tuple[int | None, int | None] = (0, 0),
    scores: list[int | None] | None = None,
    pct: int | None = None,
    label: str | None = None,
    reviews: int | None = None,
) -> Tool:
    """A tool; `pct` defaults to what the split states, reviews to one per panel vote."""
    if pct is None and ship is not None and skip is not None and ship + skip:
        pct = round(100 * ship / (ship + skip))
    count = reviews if reviews is not None else (ship or 0) + (skip or 0)
    scores = scores if scores is not None else [None] * count
    return Tool(
        name=name,
        verdict_label=label,
        panel_ship=ship,
        panel_skip=skip,
        panel_ship_pct=pct,
        community_ship=community[0],
        community_skip=community[1],
        reviews=[
            Review(position=i, persona=None, score=score, text=f"take {i}")
            for i, score in enumerate(scores, start=1)
        ],
    )


def comparison(
    slug: str, a: Tool, b: Tool, *, published_at: datetime = NOW, swap: bool = False
) -> Comparison:
    first, second = (b, a) if swap else (a, b)
    first.position, second.position = 0, 1
    return Comparison(
        slug=slug,
        title=f"{first.name} vs {second.name}",
        published_at=published_at,
        tools=[first, second],
    )


def order(*comparisons: Comparison, settings: Settings = DEFAULTS) -> list[str]:
    return [r.comparison.slug for r in rank_comparisons(comparisons, settings)]


def against_a_fixed_rival(a: Tool, slug: str = "c") -> Comparison:
    return comparison(slug, a, tool("Rival", 0, 4))


# --- the panel is evidence ----------------------------------------------------------------------


def test_three_to_one_counts_for_less_than_thirty_to_ten() -> None:
    few = against_a_fixed_rival(tool("Few", 3, 1), "few")
    many = against_a_fixed_rival(tool("Many", 30, 10), "many")
    assert order(few, many) == ["many", "few"]


def test_unanimous_panel_outranks_three_to_one_outranks_split_outranks_one_to_three() -> None:
    ranked = order(
        against_a_fixed_rival(tool("T", 2, 2), "two-two"),
        against_a_fixed_rival(tool("T", 1, 3), "one-three"),
        against_a_fixed_rival(tool("T", 4, 0), "four-zero"),
        against_a_fixed_rival(tool("T", 3, 1), "three-one"),
    )
    assert ranked == ["four-zero", "three-one", "two-two", "one-three"]


def test_unknown_panel_is_the_neutral_prior_between_one_skip_and_one_ship() -> None:
    unknown = tool("Unknown", None, None, reviews=0)
    assert panel_term(unknown, 1.0) == 0.0
    assert panel_term(tool("Skip", 0, 1), 1.0) < 0.0 < panel_term(tool("Ship", 1, 0), 1.0)


def test_page_stating_only_a_percentage_counts_it_over_its_reviews() -> None:
    stated = tool("Stated", 3, 1)
    percentage_only = tool("Pct", None, None, pct=75, reviews=4)
    assert panel_term(percentage_only, 1.0) == panel_term(stated, 1.0)


def test_reviews_verdicts_stand_in_when_the_page_states_no_panel_figures() -> None:
    by_reviews = tool("Reviews", None, None, reviews=0)
    by_reviews.reviews = [Review(position=i, verdict=v) for i, v in enumerate(["ship"] * 3, 1)]
    assert panel_term(by_reviews, 1.0) == panel_term(tool("Split", 3, 0), 1.0)


def test_higher_confidence_z_penalises_small_panels_more() -> None:
    small = tool("Small", 3, 0)
    assert panel_term(small, 2.0) < panel_term(small, 1.0)


# --- community votes weigh by their number ------------------------------------------------------


def test_zero_community_votes_are_neutral_not_all_skip() -> None:
    none_stated = comparison("x", tool("A", community=(None, None)), tool("B", 2, 2))
    zero = comparison("x", tool("A", community=(0, 0)), tool("B", 2, 2))
    all_skip = comparison("x", tool("A", community=(0, 10)), tool("B", 2, 2))
    all_ship = comparison("x", tool("A", community=(10, 0)), tool("B", 2, 2))
    assert comparison_score(zero, DEFAULTS) == comparison_score(none_stated, DEFAULTS)
    assert (
        comparison_score(all_skip, DEFAULTS)
        < comparison_score(zero, DEFAULTS)
        < comparison_score(all_ship, DEFAULTS)
    )


def test_three_votes_barely_count() -> None:
    panel_favourite = comparison("panel", tool("A", 3, 1), tool("B", 2, 2))
    three_fans = comparison("crowd", tool("C", 2, 2, community=(3, 0)), tool("D", 2, 2))
    assert order(panel_favourite, three_fans) == ["panel", "crowd"]


def test_three_hundred_votes_matter() -> None:
    panel_favourite = comparison("panel", tool("A", 3, 1), tool("B", 2, 2))
    crowd_favourite = comparison("crowd", tool("C", 2, 2, community=(270, 30)), tool("D", 2, 2))
    assert order(panel_favourite, crowd_favourite) == ["crowd", "panel"]


# --- reviewer scores, ties, settings ------------------------------------------------------------


def test_reviewer_scores_break_a_panel_tie() -> None:
    lukewarm = comparison("lukewarm", tool("A", 3, 1, scores=[60, 60, 60, 40]), tool("B", 0, 4))
    keen = comparison("keen", tool("C", 3, 1, scores=[90, 85, 80, 45]), tool("D", 0, 4))
    assert order(lukewarm, keen) == ["keen", "lukewarm"]


def test_equal_scores_put_the_newest_first_then_sort_by_slug() -> None:
    older = comparison("aaa-older", tool("A"), tool("B"), published_at=NOW - timedelta(days=2))
    newer_b = comparison("bbb-newer", tool("A"), tool("B"))
    newer_a = comparison("aab-newer", tool("A"), tool("B"))
    assert order(older, newer_b, newer_a) == ["aab-newer", "bbb-newer", "aaa-older"]


def test_community_weight_setting_zero_ignores_votes() -> None:
    no_votes = Settings(rank_community_weight=0.0)
    panel_favourite = comparison("panel", tool("A", 3, 1), tool("B", 2, 2))
    crowd_favourite = comparison("crowd", tool("C", 2, 2, community=(900, 0)), tool("D", 2, 2))
    assert order(panel_favourite, crowd_favourite, settings=no_votes) == ["panel", "crowd"]


def test_smaller_half_votes_setting_lets_few_votes_count() -> None:
    eager = Settings(rank_community_half_votes=1.0)
    panel_favourite = comparison("panel", tool("A", 3, 1), tool("B", 2, 2))
    three_fans = comparison("crowd", tool("C", 2, 2, community=(3, 0)), tool("D", 2, 2))
    assert order(panel_favourite, three_fans, settings=eager) == ["crowd", "panel"]


def test_a_clear_ship_beside_a_skip_outranks_two_split_panels() -> None:
    clear = comparison("clear", tool("A", 4, 0), tool("B", 0, 4))
    split = comparison("split", tool("C", 2, 2), tool("D", 2, 2))
    assert order(split, clear) == ["clear", "split"]


# --- the explanation ----------------------------------------------------------------------------


def test_explanation_names_panel_split_and_community_share_stronger_tool_first() -> None:
    item = comparison(
        "quillmate-vs-parsewell",
        tool("Parsewell", 2, 2),
        tool("Quillmate", 3, 1, community=(173, 38)),
    )
    assert explain(item, DEFAULTS) == (
        "Quillmate: panel 3–1 ship · community 82 % of 211 votes"
        " | Parsewell: panel 2–2 split · no community votes"
    )


def test_explanation_of_a_percentage_only_page_and_an_unknown_panel() -> None:
    item = comparison(
        "x", tool("Pct", None, None, pct=100, reviews=4), tool("Unknown", None, None, reviews=0)
    )
    assert explain(item, DEFAULTS) == (
        "Pct: panel 100 % ship (4 reviews) · no community votes"
        " | Unknown: panel not stated · no community votes"
    )


def test_explanation_stays_on_one_line_whatever_the_names() -> None:
    item = comparison("x", tool("Line\nbreak"), tool("Tab\tand\r\nCRLF"))
    assert "\n" not in explain(item, DEFAULTS) and "\r" not in explain(item, DEFAULTS)


# --- properties ---------------------------------------------------------------------------------

counts = st.integers(min_value=0, max_value=12) | st.integers(min_value=0, max_value=300)
votes = st.integers(min_value=0, max_value=3000)


@st.composite
def tools(draw: st.DrawFn, name: str, with_votes: bool = True, with_scores: bool = True) -> Tool:
    ship, skip = draw(counts), draw(counts)
    community = (draw(votes), draw(votes)) if with_votes else (0, 0)
    scores = draw(st.lists(st.integers(0, 100), max_size=5)) if with_scores else []
    return tool(name, ship, skip, community=community, scores=scores)


@st.composite
def comparisons(draw: st.DrawFn, slug: str = "c", **kwargs: bool) -> Comparison:
    days = draw(st.integers(0, 6))
    return comparison(
        slug,
        draw(tools("Alpha", **kwargs)),
        draw(tools("Beta", **kwargs)),
        published_at=NOW - timedelta(days=days),
    )


def copy_tool(t: Tool, **changes: int) -> Tool:
    fields = {
        "ship": t.panel_ship,
        "skip": t.panel_skip,
        "community": (t.community_ship, t.community_skip),
        "scores": [r.score for r in t.reviews],
    }
    ship_delta = changes.pop("panel_ship_delta", 0)
    community_delta = changes.pop("community_ship_delta", 0)
    fields["ship"] += ship_delta
    fields["community"] = (fields["community"][0] + community_delta, fields["community"][1])
    return tool(
        t.name,
        fields["ship"],
        fields["skip"],
        community=fields["community"],
        scores=fields["scores"],
    )


@settings(max_examples=300, deadline=None)
@given(comparisons(), st.sampled_from([0, 1]), st.sampled_from(["panel", "community"]))
def test_one_more_ship_vote_never_lowers_a_score(item: Comparison, side: int, kind: str) -> None:
    before = comparison_score(item, DEFAULTS)
    tools_after = [copy_tool(t) for t in item.tools]
    delta = {"panel_ship_delta" if kind == "panel" else "community_ship_delta": 1}
    tools_after[side] = copy_tool(item.tools[side], **delta)
    after = comparison(item.slug, *tools_after, published_at=item.published_at)
    assert comparison_score(after, DEFAULTS) >= before


@settings(max_examples=200, deadline=None)
@given(st.lists(comparisons(), min_size=1, max_size=6), st.lists(st.booleans(), min_size=6))
def test_swapping_a_and_b_changes_nothing(items: list[Comparison], swaps: list[bool]) -> None:
    for number, item in enumerate(items):
        item.slug = f"c{number}"
    swapped = [
        comparison(c.slug, *[copy_tool(t) for t in c.tools], published_at=c.published_at, swap=s)
        for c, s in zip(items, swaps, strict=False)
    ]
    original = rank_comparisons(items, DEFAULTS)
    mirrored = rank_comparisons(swapped, DEFAULTS)
    assert [(r.comparison.slug, r.score, r.explanation) for r in original] == [
        (r.comparison.slug, r.score, r.explanation) for r in mirrored
    ]


def dominates(better: Comparison, worse: Comparison) -> bool:
    """Some pairing of tools where each of `better`'s has ≥ ship and ≤ skip, one strictly."""
    for pairing in itertools.permutations(worse.tools):
        pairs = list(zip(better.tools, pairing, strict=True))
        at_least = all(
            b.panel_ship >= w.panel_ship and b.panel_skip <= w.panel_skip for b, w in pairs
        )
        strictly = any(b.panel_ship > w.panel_ship or b.panel_skip < w.panel_skip for b, w in pairs)
        if at_least and strictly:
            return True
    return False


@settings(max_examples=200, deadline=None)
@given(st.lists(comparisons(with_votes=False, with_scores=False), min_size=2, max_size=8))
def test_with_no_community_votes_order_follows_the_panel(items: list[Comparison]) -> None:
    for number, item in enumerate(items):
        item.slug = f"c{number}"
    position = {r.comparison.slug: n for n, r in enumerate(rank_comparisons(items, DEFAULTS))}
    for x, y in itertools.permutations(items, 2):
        if dominates(x, y):
            assert position[x.slug] < position[y.slug], (x.slug, y.slug)


@settings(max_examples=100, deadline=None)
@given(st.lists(comparisons(), min_size=1, max_size=6), st.randoms())
def test_order_does_not_depend_on_input_order(items: list[Comparison], rng) -> None:
    for number, item in enumerate(items):
        item.slug = f"c{number}"
    shuffled = list(items)
    rng.shuffle(shuffled)
    assert order(*items) == order(*shuffled)
