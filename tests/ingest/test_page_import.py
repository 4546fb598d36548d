"""`digest import` of saved comparison pages into PostgreSQL: both layouts, idempotent."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select
from typer.testing import CliRunner

from digest.cli import app
from digest.db import session_scope
from schema.models import Comparison, InboundEvent, Review, Tool
from tests.support.page_fixtures import condensed_page, full_page, parsewell, quillmate, write_page

runner = CliRunner()


def tool_named(session, slug: str, name: str) -> Tool:
    return session.scalar(
        select(Tool).join(Comparison).where(Comparison.slug == slug, Tool.name == name)
    )


def row_counts() -> tuple[int, ...]:
    with session_scope() as s:
        return tuple(
            s.scalar(select(func.count()).select_from(m))
            for m in (Comparison, Tool, Review, InboundEvent)
        )


def test_full_and_condensed_pages_land_with_what_they_state(pg: str, tmp_path: Path) -> None:
    full = write_page(tmp_path, "quillmate-vs-parsewell.txt", full_page(quillmate(), parsewell()))
    short = write_page(
        tmp_path, "parsewell-vs-quillmate.txt", condensed_page(parsewell(), quillmate())
    )
    result = runner.invoke(
        app, ["import", str(full), str(short), "--published-at", "2026-11-20T10:00:00Z"]
    )
    assert result.exit_code == 0, result.output
    with session_scope() as s:
        stated = tool_named(s, "quillmate-vs-parsewell", "Quillmate")
        assert stated.verdict_label is not None
        assert stated.panel_ship is not None
        assert stated.pricing is not None
        condensed = tool_named(s, "parsewell-vs-quillmate", "Quillmate")
        assert condensed.verdict_label is None  # the condensed layout does not state it
        assert condensed.panel_ship is None
        assert condensed.pricing is None
        assert condensed.panel_ship_pct == stated.panel_ship_pct
        published = s.scalar(
            select(Comparison.published_at).where(Comparison.slug == "quillmate-vs-parsewell")
        )
        assert published.isoformat() == "2026-11-20T10:00:00+00:00"


def test_page_without_date_takes_the_file_time(pg: str, tmp_path: Path) -> None:
    import os

    page = write_page(tmp_path, "quillmate-vs-parsewell.txt", full_page(quillmate(), parsewell()))
    os.utime(page, (1_763_000_000, 1_763_000_000))
    assert runner.invoke(app, ["import", str(page)]).exit_code == 0
    with session_scope() as s:
        assert s.scalar(select(Comparison.published_at)).timestamp() == 1_763_000_000


def test_reimporting_pages_changes_nothing(pg: str, tmp_path: Path) -> None:
    page = write_page(tmp_path, "quillmate-vs-parsewell.txt", full_page(quillmate(), parsewell()))
    runner.invoke(app, ["import", str(page)])
    before = row_counts()
    result = runner.invoke(app, ["import", str(page)])
    assert result.exit_code == 0
    assert "1 duplicate" in result.output
    assert row_counts() == before


def test_broken_page_is_reported_by_file_and_field_and_others_land(pg: str, tmp_path: Path) -> None:
    good = write_page(tmp_path, "quillmate-vs-parsewell.txt", full_page(quillmate(), parsewell()))
    broken_text = full_page(parsewell(), quillmate()).replace("Panel ship", "Panel shipp", 1)
    broken = write_page(tmp_path, "parsewell-vs-quillmate.txt", broken_text)
    result = runner.invoke(app, ["import", str(good), str(broken)])
    assert result.exit_code == 1
    assert "parsewell-vs-quillmate.txt" in result.output
    assert row_counts()[0] == 1


def test_seed_pages_import_with_their_stated_figures(pg: str, seeds_dir: Path) -> None:
    pages = sorted(seeds_dir.glob("*.txt"))
    result = runner.invoke(
        app, ["import", *map(str, pages), "--published-at", "2026-11-20T10:00:00Z"]
    )
    assert result.exit_code == 0, result.output
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Comparison)) == len(pages)
        smol = tool_named(s, "smollm3-vs-openrouter-model-fusion", "SmolLM3")
        assert (smol.verdict_label, smol.panel_ship_pct) == ("Ship", 75)
        assert (smol.panel_ship, smol.panel_skip) == (3, 1)
        assert (smol.community_ship, smol.community_skip) == (0, 0)  # "No community votes yet"
        builder = next(r for r in smol.reviews if r.persona == "Builder")
        assert (builder.score, builder.verdict) == (87, "ship")
        sky = tool_named(
            s, "openrouter-model-fusion-vs-skypilot-research-agents", "SkyPilot Research Agents"
        )
        assert (sky.verdict_label, sky.panel_ship, sky.panel_skip) == ("Mixed", 2, 2)
    again = runner.invoke(app, ["import", *map(str, pages)])
    assert again.exit_code == 0
    assert f"{len(pages)} duplicate" in again.output
