"""DIGEST_RANK_READER_WEIGHT: readers' verdicts join the community term as the formula says."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from digest.db import reset_caches, session_scope
from digest.ranking import comparison_score, panel_term, rank_comparisons, review_term, tool_score
from digest.settings import get_settings
from digest.votes import reader_counts
from schema.models import Comparison
from tests.support.votes import SLUGS, html_links, link_for, send_week


def ranked_slugs_and_lines() -> tuple[list[str], dict[str, str], dict[str, float]]:
    with session_scope() as session:
        comparisons = list(session.scalars(select(Comparison).where(Comparison.slug.in_(SLUGS))))
        ranked = rank_comparisons(comparisons, readers=reader_counts(session, comparisons))
        return (
            [r.comparison.slug for r in ranked],
            {r.comparison.slug: r.explanation for r in ranked},
            {r.comparison.slug: r.score for r in ranked},
        )


def test_with_the_weight_on_readers_move_a_comparison_as_the_formula_says(
    client: TestClient, outbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    week = send_week(readers=3)
    before, lines, _ = ranked_slugs_and_lines()
    assert before == list(SLUGS)  # equal panels: the newer comparison leads
    assert all("readers" not in line for line in lines.values())  # weight 0: not counted
    for address in week.addresses:  # three readers ship the second comparison's Beta1
        client.post(link_for(html_links(outbox, address), SLUGS[1], 1, "ship"))
    assert ranked_slugs_and_lines()[0] == list(SLUGS)  # still off

    monkeypatch.setenv("DIGEST_RANK_READER_WEIGHT", "20")
    reset_caches()
    after, lines, scores = ranked_slugs_and_lines()
    assert after == [SLUGS[1], SLUGS[0]]
    assert (
        "Beta1: panel 2–2 split · no community votes · readers 100 % of 3 verdicts"
        in lines[SLUGS[1]]
    )
    settings = get_settings()
    with session_scope() as session:
        item = session.scalar(select(Comparison).where(Comparison.slug == SLUGS[1]))
        assert item is not None
        a, b = item.tools
        h, w = settings.rank_community_half_votes, settings.rank_reader_weight
        ship, skip = b.community_ship + w * 3, b.community_skip  # the formula, by hand
        beta = (
            settings.rank_panel_weight * panel_term(b, settings.rank_confidence_z)
            + settings.rank_community_weight * ((ship + h / 2) / (ship + skip + h) - 0.5)
            + settings.rank_score_weight * review_term(b)
        )
        alpha = tool_score(a, settings)  # Alpha1 has no readers' verdicts
        unweighted = comparison_score(item, settings)
    expected = max(alpha, beta) + settings.rank_runner_up_weight * min(alpha, beta)
    assert scores[SLUGS[1]] == pytest.approx(expected)
    assert expected > unweighted
