"""`digest db upgrade` prepares the embedded default on a fresh checkout."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from digest.cli import app
from digest.db import reset_caches


def test_db_upgrade_creates_the_sqlite_file_and_its_folder(
    base_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "fresh" / "var" / "digest.db"
    monkeypatch.setenv("DIGEST_DATABASE_URL", f"sqlite:///{database}")
    reset_caches()
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert database.is_file()
