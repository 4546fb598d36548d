"""`digest preview`: the weekly email of a window as files, through the real CLI."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from typer.testing import CliRunner

from digest.cli import app
from digest.db import session_scope
from digest.substitution import ANY_PLACEHOLDER as PLACEHOLDER
from tests.support.factories import NOW, comparison, published, store, tool
from tests.support.html import Page
from tests.support.services import seeds_folder

WINDOW = ["--since", "2026-11-20", "--until", "2026-11-24"]


def run(*args: str) -> object:
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def two_comparisons(pg: str) -> None:
    with session_scope() as session:
        store(
            session,
            published(
                comparison(
                    "sortwell-vs-agendrift",
                    a=tool("Sortwell", ship=4, skip=0),
                    b=tool("Agendrift", ship=1, skip=3),
                )
            ),
            published(
                comparison(
                    "stackwise-vs-gridkettle",
                    a=tool("Stackwise"),
                    b=tool("Gridkettle", ship=2, skip=2),
                )
            ),
        )


def read_eml(path: Path) -> EmailMessage:
    return message_from_bytes(path.read_bytes(), policy=policy.default)  # type: ignore[return-value]


def test_preview_writes_html_text_and_eml(two_comparisons: None, tmp_path: Path) -> None:
    result = run("preview", *WINDOW, "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digest.eml", "digest.html", "digest.txt"]
    for name in ("digest.html", "digest.txt"):
        content = (tmp_path / name).read_text(encoding="utf-8")
        assert "Sortwell vs Agendrift" in content and "Stackwise vs Gridkettle" in content


def test_preview_eml_is_a_complete_message(two_comparisons: None, tmp_path: Path) -> None:
    assert run("preview", *WINDOW, "--out", str(tmp_path)).exit_code == 0
    message = read_eml(tmp_path / "digest.eml")
    # long headers are folded onto a continuation line: compare the unfolded values
    assert message["Subject"].strip() == "This week's verdicts: Sortwell vs Agendrift + 1 more"
    assert message["From"] == "Weekly AI Tool Verdicts <verdicts@example.com>"
    assert message["To"] == "Alex <reader@example.com>"
    unsubscribe = re.fullmatch(
        r"<(http://testserver/unsubscribe/\S+)>", message["List-Unsubscribe"].strip()
    )
    assert unsubscribe
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Sortwell vs Agendrift" in text and "Sortwell vs Agendrift" in Page(html).text
    # the sample reader's values are filled in, in both parts
    for part in (text, html):
        assert "Hi Alex," in part
        assert not PLACEHOLDER.search(part)
    assert unsubscribe.group(1) in Page(html).hrefs()
    assert f"Unsubscribe: {unsubscribe.group(1)}" in text


def test_preview_prints_the_ranked_list_with_explanations(
    two_comparisons: None, tmp_path: Path
) -> None:
    result = run("preview", *WINDOW, "--out", str(tmp_path))
    lines = result.stdout.splitlines()
    first = next(n for n, line in enumerate(lines) if line.strip().startswith("1. "))
    assert "Sortwell vs Agendrift" in lines[first]
    assert "Sortwell: panel 4–0 ship · no community votes" in lines[first + 1]
    assert "2. Stackwise vs Gridkettle" in lines[first + 2]
    assert "Stackwise: panel 3–1 ship" in lines[first + 3]


def test_preview_defaults_to_the_current_weekly_window(pg: str, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    with session_scope() as session:
        store(
            session,
            published(
                comparison(
                    "recent",
                    a=tool("Freshly"),
                    b=tool("Newish"),
                    published_at=now - timedelta(hours=1),
                )
            ),
            published(
                comparison(
                    "old",
                    a=tool("Oldster"),
                    b=tool("Ancient"),
                    published_at=now - timedelta(days=30),
                )
            ),
        )
    result = run("preview", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    text = (tmp_path / "digest.txt").read_text(encoding="utf-8")
    assert "Freshly vs Newish" in text and "Oldster vs Ancient" not in text


def test_preview_of_an_empty_window_says_so_and_exits_1(two_comparisons: None, tmp_path: Path):
    result = run(
        "preview", "--since", "2020-01-01", "--until", "2020-01-08", "--out", str(tmp_path)
    )
    assert result.exit_code == 1
    assert "no comparisons in window" in result.stderr
    assert not (tmp_path / "digest.html").exists()


def test_preview_refuses_since_after_until(pg: str, tmp_path: Path) -> None:
    result = run(
        "preview", "--since", "2026-11-24", "--until", "2026-11-20", "--out", str(tmp_path)
    )
    assert result.exit_code == 2
    assert "--since" in result.stderr


def test_preview_refuses_a_date_that_is_not_iso_8601(pg: str, tmp_path: Path) -> None:
    result = run("preview", "--since", "last tuesday", "--out", str(tmp_path))
    assert result.exit_code == 2
    assert "--since" in result.stderr and "ISO 8601" in result.stderr


# --- the shared seed pages, imported and previewed ----------------------------------------------


def stated_figures(page: str) -> tuple[str, list[str]]:
    """A page's title and the panel and community figures it states, read off the page text."""
    lines = [line.strip() for line in page.splitlines() if line.strip()]
    title = lines[lines.index("AI tool comparison") + 1]
    figures = [
        line
        for n, line in enumerate(lines[:-1])
        if re.fullmatch(r"\d+%", line) and lines[n + 1] == "Panel ship"
    ]
    figures += re.findall(r"\b(?:Ship|Mixed|Skip) · \d+ ship / \d+ skip", page)
    figures += re.findall(r"\d+ ship / \d+ skip", page)
    if "No community votes yet" in page:
        figures.append("No community votes yet")
    return title, figures


def sections(text: str, titles: list[str]) -> dict[str, str]:
    """Each title's stretch of `text`, asserting the titles appear in this order."""
    starts = [text.index(title) for title in titles]
    assert starts == sorted(starts), "entries are not in rank order"
    ends = [*starts[1:], len(text)]
    return {title: text[s:e] for title, s, e in zip(titles, starts, ends, strict=True)}


def test_preview_of_imported_seed_pages_lists_each_in_rank_order_with_its_stated_figures(
    pg: str, tmp_path: Path
) -> None:
    pages = sorted(seeds_folder().glob("*.txt"))
    imported = run("import", "--published-at", "2026-11-20T10:00:00Z", *map(str, pages))
    assert imported.exit_code == 0, imported.output

    result = run(
        "preview",
        "--since",
        "2026-11-20T00:00:00Z",
        "--until",
        "2026-11-21T00:00:00Z",
        "--out",
        str(tmp_path),
    )
    assert result.exit_code == 0, result.output
    stated = dict(stated_figures(p.read_text(encoding="utf-8")) for p in pages)
    printed = re.findall(r"^\s*\d+\. (.+?)  \(score", result.stdout, flags=re.M)
    assert sorted(printed) == sorted(stated)  # every imported comparison, once

    text = (tmp_path / "digest.txt").read_text(encoding="utf-8")
    html = Page((tmp_path / "digest.html").read_text(encoding="utf-8")).text
    for part in (text, html):
        for title, section in sections(part, printed).items():
            for figure in stated[title]:
                assert figure in section, (title, figure)


def test_seed_pages_rank_the_split_decision_below_the_clear_verdicts(
    pg: str, tmp_path: Path
) -> None:
    pages = sorted(seeds_folder().glob("*.txt"))
    assert run("import", "--published-at", "2026-11-20T10:00:00Z", *map(str, pages)).exit_code == 0
    result = run(
        "preview",
        "--since",
        "2026-11-20T00:00:00Z",
        "--until",
        "2026-11-21T00:00:00Z",
        "--out",
        str(tmp_path),
    )
    printed = re.findall(r"^\s*\d+\. (.+?)  \(score", result.stdout, flags=re.M)
    skypilot = "OpenRouter Model Fusion vs SkyPilot Research Agents"
    if skypilot not in printed:
        pytest.fail(f"the seed page for {skypilot} was not imported")
    clear = ["SmolAgents 2.0 vs OpenRouter Model Fusion", "SmolLM3 vs OpenRouter Model Fusion"]
    assert all(printed.index(c) < printed.index(skypilot) for c in clear if c in printed)
    text = (tmp_path / "digest.txt").read_text(encoding="utf-8")
    assert re.search(re.escape(skypilot) + r" +\[Split decision\]", text)


def test_preview_window_uses_utc_for_dates_without_a_zone(pg: str, tmp_path: Path) -> None:
    with session_scope() as session:
        store(session, published(comparison("edge", published_at=NOW.replace(hour=23, minute=30))))
    inside = run(
        "preview", "--since", "2026-11-23T23:00", "--until", "2026-11-24", "--out", str(tmp_path)
    )
    assert inside.exit_code == 0, inside.output
    outside = run(
        "preview", "--since", "2026-11-24", "--until", "2026-11-25", "--out", str(tmp_path)
    )
    assert outside.exit_code == 1
