"""The layers hold: web / CLI → workers → domain → schema, no import cycles (import-linter).

The contracts live in pyproject.toml (`[tool.importlinter]`); imports inside functions count.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


SOURCE_DIRS = ("digest", "workers", "schema")
MODULE_MAX_LINES = 400
FUNCTION_MAX_LINES = 60
REASON = "# long:"  # on the `def` line: why this one may be longer


def python_files() -> list[Path]:
    return [
        path
        for folder in SOURCE_DIRS
        for path in sorted((REPO / folder).rglob("*.py"))
        if "migrations" not in path.parts
    ]


def test_no_module_of_the_domain_workers_or_web_is_over_400_lines() -> None:
    """schema/models.py is exempt: every table side by side is how the data's shape reads best."""
    long = {
        str(path.relative_to(REPO)): n
        for path in python_files()
        if path.parts[len(REPO.parts)] != "schema"
        and (n := len(path.read_text().splitlines())) > MODULE_MAX_LINES
    }
    assert long == {}


def test_no_function_is_over_60_lines_without_a_reason() -> None:
    long = []
    for path in python_files():
        source = path.read_text()
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > FUNCTION_MAX_LINES and REASON not in lines[node.lineno - 1]:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({size})")
    assert long == []
