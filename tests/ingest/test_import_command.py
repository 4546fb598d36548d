"""`digest import`: event files record by record, with errors that say where."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select
from typer.testing import CliRunner

from digest.cli import app
from digest.db import session_scope
from schema.models import Comparison
from tests.support.factories import comparison, published
from tests.support.paths import SAMPLE_COMPARISONS

runner = CliRunner()


def comparison_count() -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Comparison))


def write_ndjson(path: Path, events: list[object]) -> Path:
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    return path


def test_ndjson_file_imports_every_record(pg: str, tmp_path: Path) -> None:
    events = [published(comparison(f"tool{i}-vs-other{i}")) for i in range(3)]
    result = runner.invoke(app, ["import", str(write_ndjson(tmp_path / "e.ndjson", events))])
    assert result.exit_code == 0, result.output
    assert "3 created" in result.output
    assert comparison_count() == 3


def test_bad_record_is_reported_by_line_and_field_and_good_ones_land(
    pg: str, tmp_path: Path
) -> None:
    good, bad = published(comparison("a-vs-b")), published(comparison("c-vs-d"))
    bad["data"]["tools"][0]["panel_ship_pct"] = 175
    path = write_ndjson(tmp_path / "mixed.ndjson", [good, bad])
    result = runner.invoke(app, ["import", str(path)])
    assert result.exit_code == 1
    assert "mixed.ndjson line 2" in result.output
    assert "data.tools.0.panel_ship_pct" in result.output
    assert comparison_count() == 1


def test_invalid_json_line_is_reported_and_the_rest_lands(pg: str, tmp_path: Path) -> None:
    path = tmp_path / "broken.ndjson"
    path.write_text('{"type": "comparison.published", \n' + json.dumps(published()) + "\n")
    result = runner.invoke(app, ["import", str(path)])
    assert result.exit_code == 1
    assert "broken.ndjson line 1" in result.output
    assert comparison_count() == 1


def test_json_array_file_is_accepted(pg: str, tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    path.write_text(json.dumps([published(comparison("e-vs-f")), published(comparison("g-vs-h"))]))
    result = runner.invoke(app, ["import", str(path)])
    assert result.exit_code == 0, result.output
    assert comparison_count() == 2


def test_reimporting_a_file_changes_nothing(pg: str, tmp_path: Path) -> None:
    path = write_ndjson(tmp_path / "e.ndjson", [published()])
    runner.invoke(app, ["import", str(path)])
    result = runner.invoke(app, ["import", str(path)])
    assert result.exit_code == 0
    assert "1 duplicate" in result.output
    assert comparison_count() == 1


def test_missing_file_is_a_clear_error(pg: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["import", str(tmp_path / "nope.ndjson")])
    assert result.exit_code == 2
    assert "no such file" in result.output


def test_sample_data_imports_cleanly(pg: str) -> None:
    sample = SAMPLE_COMPARISONS
    result = runner.invoke(app, ["import", str(sample)])
    assert result.exit_code == 0, result.output
    assert comparison_count() >= 8


def test_sqlite_embedded_default_imports_and_dedupes(sqlite: str, tmp_path: Path) -> None:
    path = write_ndjson(tmp_path / "e.ndjson", [published()])
    assert runner.invoke(app, ["import", str(path)]).exit_code == 0
    assert runner.invoke(app, ["import", str(path)]).exit_code == 0
    assert comparison_count() == 1
