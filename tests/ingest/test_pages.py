"""`digest.pages`: reading published comparison pages saved as text.

Pages written here are about invented tools (see `page_fixtures`); the published samples in the
shared seeds folder are read at test time and never copied into the repository.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.pages import PageFormatError, looks_like_page, parse_page
from schema.events import ComparisonIn, ToolIn
from tests.support.page_fixtures import (
    Take,
    condensed_page,
    full_page,
    parsewell,
    quillmate,
    write_page,
)

PUBLISHED = datetime(2025, 3, 7, 9, 0, tzinfo=UTC)


def parse(text: str, path: str | None = None) -> ComparisonIn:
    return parse_page(text, slug="quillmate-vs-parsewell", published_at=PUBLISHED, path=path)


def line_of(text: str, content: str) -> int:
    """1-based number of the first line reading `content`, as an editor would show it."""
    lines = text.replace("\r\n", "\n").split("\n")
    return next(no for no, line in enumerate(lines, 1) if line.strip() == content)


def review(tool: ToolIn, persona: str | None) -> tuple[int | None, str | None, str | None]:
    (found,) = [r for r in tool.reviews if r.persona == persona]
    return found.score, found.verdict, found.text


def parse_error(text: str, path: str | None = None) -> PageFormatError:
    with pytest.raises(PageFormatError) as caught:
        parse(text, path=path)
    return caught.value


# --- full layout ----------------------------------------------------------------------------


def test_full_page_title_comes_from_the_line_after_ai_tool_comparison() -> None:
    page = parse(full_page(quillmate(), parsewell()))
    assert page.title == "Quillmate vs Parsewell"
    assert page.slug == "quillmate-vs-parsewell"
    assert page.published_at == PUBLISHED


def test_url_is_none_because_pages_do_not_state_it() -> None:
    assert parse(full_page(quillmate(), parsewell())).url is None


def test_full_page_reads_each_tool_header_in_page_order() -> None:
    quill, parse_well = parse(full_page(quillmate(), parsewell())).tools
    assert quill.name == "Quillmate"
    assert quill.tagline == "Drafts grant proposals from your lab notebook"
    assert quill.category == "Writing Tools"
    assert quill.entry_price == "Paid"
    assert quill.description == quillmate().description
    assert parse_well.name == "Parsewell"
    assert parse_well.entry_price == "Free"


def test_multi_paragraph_description_keeps_its_paragraphs() -> None:
    parse_well = parse(full_page(quillmate(), parsewell())).tools[1]
    assert parse_well.description == (
        "Parsewell is a hosted extraction API for scanned invoices and receipts.\n\n"
        "It returns line items with a confidence score for each field."
    )


def test_avatar_letter_is_not_read_into_the_previous_description() -> None:
    quill, parse_well = parse(full_page(quillmate(), parsewell())).tools
    assert quill.description == quillmate().description  # the "P" avatar follows it
    assert parse_well.category == "Document AI"


def test_panel_verdict_percentage_and_split_are_read() -> None:
    quill, parse_well = parse(full_page(quillmate(), parsewell())).tools
    assert (quill.verdict, quill.panel_ship_pct, quill.panel_ship, quill.panel_skip) == (
        "Ship",
        75,
        3,
        1,
    )
    assert (
        parse_well.verdict,
        parse_well.panel_ship_pct,
        parse_well.panel_ship,
        parse_well.panel_skip,
    ) == ("Mixed", 50, 2, 2)


def test_skip_verdict_is_read() -> None:
    skipped = replace(parsewell(), verdict="Skip", pct="25%", panel="Skip · 1 ship / 3 skip")
    tool = parse(full_page(quillmate(), skipped)).tools[1]
    assert (tool.verdict, tool.panel_ship_pct, tool.panel_ship, tool.panel_skip) == (
        "Skip",
        25,
        1,
        3,
    )


def test_pricing_and_best_for_come_from_the_decision_table() -> None:
    quill, parse_well = parse(full_page(quillmate(), parsewell())).tools
    assert quill.pricing == "$12 per seat per month"
    assert quill.best_for == "Small labs that apply for many small grants"
    assert parse_well.pricing == "Free up to 500 pages, then metered"
    assert parse_well.best_for == "Bookkeepers drowning in paper receipts"


def test_comparison_category_is_the_decision_category_both_tools_share() -> None:
    shared = replace(parsewell(), category="Writing Tools")
    assert parse(full_page(quillmate(), shared)).category == "Writing Tools"


def test_comparison_category_falls_back_to_the_first_tools_category() -> None:
    assert parse(full_page(quillmate(), parsewell())).category == "Writing Tools"


def test_full_page_reviews_carry_persona_score_verdict_and_text() -> None:
    quill = parse(full_page(quillmate(), parsewell())).tools[0]
    assert [r.persona for r in quill.reviews] == ["Builder", "Skeptic", "Futurist", "Founder"]
    assert review(quill, "Builder") == (
        84,
        "ship",
        "The export importer handled every notebook we fed it.",
    )
    assert review(quill, "Skeptic") == (
        40,
        "skip",
        "Funders can spot templated aims from a mile away.",
    )


def test_no_panel_take_means_no_review_for_that_persona() -> None:
    parse_well = parse(full_page(quillmate(), parsewell())).tools[1]
    assert [r.persona for r in parse_well.reviews] == ["Builder", "Skeptic", "Creator"]


def test_a_persona_only_one_tool_has_is_read_for_that_tool_alone() -> None:
    quill, parse_well = parse(full_page(quillmate(), parsewell())).tools
    assert "Creator" not in [r.persona for r in quill.reviews]
    assert "Founder" not in [r.persona for r in parse_well.reviews]
    assert review(parse_well, "Creator")[:2] == (58, "skip")


def test_review_text_may_span_paragraphs() -> None:
    long_take = Take("Builder", "90/100 · ship", "First point.\n\nSecond point.")
    tool = replace(quillmate(), takes=(long_take,))
    assert review(parse(full_page(tool, parsewell())).tools[0], "Builder")[2] == (
        "First point.\n\nSecond point."
    )


def test_footer_is_not_read_into_the_last_review() -> None:
    parse_well = parse(full_page(quillmate(), parsewell())).tools[1]
    assert review(parse_well, "Creator")[2] == ("Little here for people who make rather than file.")


# --- community votes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stated", "ship", "skip"),
    [
        pytest.param("No community votes yet", 0, 0, id="no-votes-yet-is-zero"),
        pytest.param("14 ship / 6 skip", 14, 6, id="split"),
        pytest.param("1,204 ship / 96 skip", 1204, 96, id="split-thousands"),
        pytest.param("70% ship · 20 votes", 14, 6, id="pct-ship-dot-votes"),
        pytest.param("70% of 20 votes", 14, 6, id="pct-of-votes"),
        pytest.param("67% of 3 votes", 2, 1, id="pct-rounded"),
        pytest.param("12 votes", None, None, id="total-only-cannot-split"),
        pytest.param("0 votes", 0, 0, id="zero-total"),
        pytest.param("—", None, None, id="dash-not-stated"),
        pytest.param("", None, None, id="empty-not-stated"),
    ],
)
def test_decision_community_row_forms(stated: str, ship: int | None, skip: int | None) -> None:
    page = full_page(replace(quillmate(), community=stated), replace(parsewell(), community=stated))
    for tool in parse(page).tools:
        assert (tool.community_ship, tool.community_skip) == (ship, skip)


@pytest.mark.parametrize(
    ("stated", "ship", "skip"),
    [
        pytest.param("14 ship / 6 skip", 14, 6, id="split"),
        pytest.param("25% ship · 8 votes", 2, 6, id="pct-ship-dot-votes"),
        pytest.param("25% of 8 votes", 2, 6, id="pct-of-votes"),
        pytest.param("8 votes", None, None, id="total-only-cannot-split"),
        pytest.param("No community votes yet", 0, 0, id="no-votes-yet-is-zero"),
        pytest.param("—", None, None, id="dash-not-stated"),
    ],
)
def test_header_community_value_forms(stated: str, ship: int | None, skip: int | None) -> None:
    page = condensed_page(replace(quillmate(), header_community=stated), parsewell())
    tool = parse(page).tools[0]
    assert (tool.community_ship, tool.community_skip) == (ship, skip)


def test_a_vote_total_without_a_split_leaves_both_counts_unknown() -> None:
    tool = parse(full_page(replace(quillmate(), community="12 votes"), parsewell())).tools[0]
    assert tool.community_ship is None
    assert tool.community_skip is None


def test_empty_header_community_defers_to_the_decision_table() -> None:
    quill, parse_well = parse(full_page(quillmate(), parsewell())).tools
    assert (quill.community_ship, quill.community_skip) == (14, 6)
    assert (parse_well.community_ship, parse_well.community_skip) == (0, 0)


# --- condensed layout -----------------------------------------------------------------------


def test_condensed_page_reads_headers() -> None:
    page = parse(condensed_page(quillmate(), parsewell()))
    quill, parse_well = page.tools
    assert page.title == "Quillmate vs Parsewell"
    assert (quill.name, quill.tagline, quill.category) == (
        "Quillmate",
        "Drafts grant proposals from your lab notebook",
        "Writing Tools",
    )
    assert (quill.panel_ship_pct, parse_well.panel_ship_pct) == (75, 50)
    assert (quill.entry_price, parse_well.entry_price) == ("Paid", "Free")
    assert quill.description == quillmate().description


def test_condensed_page_leaves_what_it_does_not_state_as_none() -> None:
    quill = parse(condensed_page(quillmate(), parsewell())).tools[0]
    assert quill.verdict is None
    assert (quill.panel_ship, quill.panel_skip) == (None, None)
    assert (quill.community_ship, quill.community_skip) == (None, None)
    assert quill.pricing is None
    assert quill.best_for is None  # the tagline is not "best for" unless the page says so


def test_condensed_takes_alternate_tools_and_leave_the_fourth_persona_unnamed() -> None:
    quill, parse_well = parse(condensed_page(quillmate(), parsewell())).tools
    assert [r.persona for r in quill.reviews] == ["Builder", "Skeptic", "Futurist", None]
    assert [r.text for r in quill.reviews] == [take.text for take in quillmate().takes]
    assert review(parse_well, "Builder")[2] == "One POST request and the JSON is already typed."


def test_condensed_takes_have_no_score_or_verdict() -> None:
    for tool in parse(condensed_page(quillmate(), parsewell())).tools:
        assert all(r.score is None and r.verdict is None for r in tool.reviews)


def test_condensed_no_panel_take_holds_its_slot() -> None:
    parse_well = parse(condensed_page(quillmate(), parsewell())).tools[1]
    assert [r.persona for r in parse_well.reviews] == ["Builder", "Skeptic", None]
    assert review(parse_well, None)[2] == ("Little here for people who make rather than file.")


def test_condensed_take_may_span_paragraphs() -> None:
    long_take = Take("Builder", "", "First point.\n\nSecond point.")
    tool = replace(quillmate(), takes=(long_take, *quillmate().takes[1:]))
    quill = parse(condensed_page(tool, parsewell(), blank_lines=True)).tools[0]
    assert review(quill, "Builder")[2] == "First point.\n\nSecond point."


def test_condensed_straight_quotes_are_stripped_too() -> None:
    quill = parse(condensed_page(quillmate(), parsewell(), quotes=('"', '"'))).tools[0]
    assert review(quill, "Futurist")[2] == "Grant writing is the first paperwork to fall."


# --- tolerance ------------------------------------------------------------------------------


def test_blank_lines_windows_endings_and_trailing_spaces_do_not_change_a_full_page() -> None:
    plain = parse(full_page(quillmate(), parsewell()))
    messy = full_page(quillmate(), parsewell(), blank_lines=False, newline="\r\n", trailing=" \t")
    assert parse(messy) == plain


def test_blank_lines_do_not_change_a_condensed_page() -> None:
    plain = parse(condensed_page(quillmate(), parsewell()))
    spaced = condensed_page(quillmate(), parsewell(), blank_lines=True, newline="\r\n")
    assert parse(spaced) == plain


def test_page_read_from_disk_with_windows_endings(tmp_path: Path) -> None:
    text = full_page(quillmate(), parsewell(), newline="\r\n")
    path = write_page(tmp_path, "quillmate-vs-parsewell.txt", text)
    raw = path.read_bytes().decode("utf-8")
    assert parse(raw, path=str(path)).tools[0].panel_ship == 3


# --- telling pages from events --------------------------------------------------------------


def test_looks_like_page_accepts_both_layouts() -> None:
    assert looks_like_page(full_page(quillmate(), parsewell()))
    assert looks_like_page(condensed_page(quillmate(), parsewell()))


def test_looks_like_page_rejects_json_and_ndjson_even_quoting_the_markers() -> None:
    event = {"type": "comparison.published", "data": {"title": "AI tool comparison\nPanel ship"}}
    assert not looks_like_page(json.dumps(event, indent=2))
    assert not looks_like_page(json.dumps(event) + "\n" + json.dumps(event) + "\n")


# --- malformed pages ------------------------------------------------------------------------


def test_panel_percentage_over_100_names_field_and_line() -> None:
    text = full_page(replace(quillmate(), pct="120%"), parsewell())
    err = parse_error(text, path="page.txt")
    assert err.field == "tools.0.panel_ship_pct"
    assert err.line == line_of(text, "120%")
    assert str(err).startswith(f"page.txt line {err.line}: tools.0.panel_ship_pct: ")


def test_missing_percentage_before_panel_ship_is_reported() -> None:
    text = condensed_page(quillmate(), replace(parsewell(), pct="half"))
    err = parse_error(text, path="page.txt")
    assert err.field == "tools.1.panel_ship_pct"
    assert str(err) == (
        f"page.txt line {line_of(text, 'half')}: tools.1.panel_ship_pct: "
        "expected 'NN%' before 'Panel ship'"
    )


def test_page_with_one_tool_is_rejected() -> None:
    text = condensed_page(quillmate(), parsewell())
    one_tool = text.replace("50%\nPanel ship\n", "50%\n")
    err = parse_error(one_tool)
    assert err.field == "tools"
    assert "found 1" in err.message


def test_text_without_the_comparison_heading_is_not_a_page() -> None:
    assert parse_error("just some notes\nPanel ship\n").field == "title"


def test_two_tools_with_one_name_are_rejected() -> None:
    text = condensed_page(quillmate(), replace(parsewell(), name="Quillmate"))
    err = parse_error(text)
    assert err.field == "tools.1.name"


def test_review_score_over_100_names_the_review() -> None:
    takes = (Take("Builder", "140/100 · ship", "Too keen."),)
    text = full_page(replace(quillmate(), takes=takes), parsewell())
    err = parse_error(text)
    assert (err.field, err.line) == ("tools.0.reviews.0.score", line_of(text, "140/100 · ship"))


def test_unreadable_community_value_is_rejected() -> None:
    text = full_page(replace(quillmate(), community="lots of love"), parsewell())
    err = parse_error(text)
    assert (err.field, err.line) == ("tools.0.community", line_of(text, "lots of love"))


def test_community_percentage_over_100_is_rejected() -> None:
    err = parse_error(full_page(replace(quillmate(), community="130% of 10 votes"), parsewell()))
    assert err.field == "tools.0.community"


def test_decision_row_with_a_value_for_one_tool_only_is_rejected() -> None:
    text = full_page(replace(quillmate(), pricing=""), parsewell())
    err = parse_error(text)
    assert (err.field, err.line) == ("decision.pricing", line_of(text, "Pricing"))


def test_header_and_decision_table_must_agree() -> None:
    text = full_page(replace(quillmate(), verdict="Skip"), parsewell())
    err = parse_error(text)
    assert err.field == "tools.0.verdict"
    assert err.line == line_of(text, "Ship · 3 ship / 1 skip")


def test_condensed_scorecard_with_a_missing_slot_is_rejected() -> None:
    text = condensed_page(quillmate(), parsewell())
    err = parse_error(text.replace("No panel take\n", "", 1))
    assert err.field == "reviews"
    assert "found 7" in err.message


def test_full_scorecard_needs_a_take_or_no_panel_take_for_each_tool() -> None:
    text = full_page(quillmate(), parsewell())
    text = text.replace("No panel take", "", 1)  # Parsewell's Futurist slot
    err = parse_error(text)
    assert (err.field, err.line) == ("reviews", line_of(text, "Futurist"))


def test_unterminated_condensed_quote_is_rejected() -> None:
    text = condensed_page(quillmate(), parsewell())
    text = text.replace("rather than file.”", "rather than file.")  # the last take
    err = parse_error(text)
    assert (err.field, err.message) == ("reviews", "this quote is never closed")
    assert err.line == line_of(text, "“Little here for people who make rather than file.")


def test_error_without_a_path_starts_at_the_line() -> None:
    err = PageFormatError("expected 'NN%'", field="tools.0.panel_ship_pct", line=12)
    assert str(err) == "line 12: tools.0.panel_ship_pct: expected 'NN%'"


def test_page_format_error_is_a_value_error_that_survives_pickling() -> None:
    err = PageFormatError("bad", field="tools", line=3, path="p.txt")
    copy = pickle.loads(pickle.dumps(err))
    assert isinstance(copy, ValueError)
    assert (str(copy), copy.field, copy.line, copy.path) == (str(err), "tools", 3, "p.txt")


# --- the published samples in the shared seeds folder ---------------------------------------


def seed(folder: Path, pattern: str) -> ComparisonIn:
    (path,) = folder.glob(pattern)
    text = path.read_text(encoding="utf-8")
    return parse_page(text, slug=path.stem, published_at=PUBLISHED, path=str(path))


def test_every_seed_page_parses_into_two_tools_with_at_most_four_reviews(seeds_dir: Path) -> None:
    pages = sorted(seeds_dir.glob("*.txt"))
    assert pages
    for path in pages:
        text = path.read_text(encoding="utf-8")
        assert looks_like_page(text), path.name
        page = parse_page(text, slug=path.stem, published_at=PUBLISHED, path=str(path))
        assert len(page.tools) == 2
        assert all(len(tool.reviews) <= 4 for tool in page.tools), path.name


def test_smollm3_seed_panel_verdict(seeds_dir: Path) -> None:
    smollm3 = seed(seeds_dir, "smollm3-*.txt").tools[0]
    assert smollm3.name == "SmolLM3"
    assert (smollm3.verdict, smollm3.panel_ship_pct) == ("Ship", 75)
    assert (smollm3.panel_ship, smollm3.panel_skip) == (3, 1)


def test_smollm3_seed_no_community_votes_is_zero_zero(seeds_dir: Path) -> None:
    smollm3 = seed(seeds_dir, "smollm3-*.txt").tools[0]
    assert (smollm3.community_ship, smollm3.community_skip) == (0, 0)


def test_smollm3_seed_pricing(seeds_dir: Path) -> None:
    assert seed(seeds_dir, "smollm3-*.txt").tools[0].pricing == "Free (Apache 2.0 open-source)"


def test_smollm3_seed_reviews(seeds_dir: Path) -> None:
    smollm3 = seed(seeds_dir, "smollm3-*.txt").tools[0]
    assert review(smollm3, "Builder")[:2] == (87, "ship")
    assert review(smollm3, "Founder")[:2] == (52, "skip")


def test_smollm3_seed_openrouter_has_a_creator_take_and_no_founder(seeds_dir: Path) -> None:
    openrouter = seed(seeds_dir, "smollm3-*.txt").tools[1]
    assert openrouter.name == "OpenRouter Model Fusion"
    assert "Founder" not in [r.persona for r in openrouter.reviews]
    assert review(openrouter, "Creator")[:2] == (80, "ship")


def test_skypilot_seed_is_mixed_two_to_two(seeds_dir: Path) -> None:
    skypilot = seed(seeds_dir, "openrouter-*-vs-skypilot-*.txt").tools[1]
    assert skypilot.name.startswith("SkyPilot")
    assert (skypilot.verdict, skypilot.panel_ship_pct) == ("Mixed", 50)
    assert (skypilot.panel_ship, skypilot.panel_skip) == (2, 2)


def test_smolagents_condensed_seed_states_no_verdict_split_or_votes(seeds_dir: Path) -> None:
    smolagents = seed(seeds_dir, "smolagents-*.txt").tools[0]
    assert smolagents.name == "SmolAgents 2.0"
    assert smolagents.panel_ship_pct == 100
    assert smolagents.verdict is None
    assert (smolagents.panel_ship, smolagents.panel_skip) == (None, None)
    assert (smolagents.community_ship, smolagents.community_skip) == (None, None)


def test_smolagents_condensed_seed_reviews_are_unscored(seeds_dir: Path) -> None:
    for tool in seed(seeds_dir, "smolagents-*.txt").tools:
        assert [r.persona for r in tool.reviews] == ["Builder", "Skeptic", "Futurist", None]
        assert all(r.score is None and r.verdict is None and r.text for r in tool.reviews)
        assert not any(r.text[0] in '“"' or r.text[-1] in '”"' for r in tool.reviews)


def test_smolagents_condensed_seed_entry_prices(seeds_dir: Path) -> None:
    tools = seed(seeds_dir, "smolagents-*.txt").tools
    assert [tool.entry_price for tool in tools] == ["Free", "Paid"]
