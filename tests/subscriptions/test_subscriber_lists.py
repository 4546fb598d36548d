"""Subscriber lists as CSV: `digest subscribers import FILE.csv [--confirmed]` and `export`."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from digest.cli import app
from digest.db import session_scope
from digest.subscriber_lists import ListFormatError, export_subscribers, import_subscribers
from schema.models import Subscriber
from tests.support.recipients import add_subscribers, count, suppress

HEADER = "email,name,categories,frequency,timezone\n"


def write(tmp_path: Path, body: str, name: str = "list.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + body, encoding="utf-8")
    return path


def load(path: Path, confirmed: bool = False):  # type: ignore[no-untyped-def]
    with session_scope() as session:
        return import_subscribers(session, path, confirmed=confirmed)


def stored() -> dict[str, Subscriber]:
    with session_scope() as session:
        return {s.email: s for s in session.scalars(select(Subscriber))}


def test_good_rows_are_kept_and_bad_rows_reported_by_line_and_field(
    pg: str, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "ada@example.com,Ada,Design;Writing,weekly,Europe/Berlin\n"  # line 2
        "not-an-address,Bob,,weekly,\n"  # line 3
        "cy@example.com,Cy,Gardening,weekly,\n"  # line 4
        "di@example.com,Di,,daily,\n"  # line 5
        "ed@example.com,Ed,,every,Mars/Base\n"  # line 6
        "fay@example.com,,,,\n",  # line 7
    )
    report = load(path)
    assert [(e.line, e.field) for e in report.errors] == [
        (3, "email"),
        (4, "categories"),
        (5, "frequency"),
        (6, "timezone"),
    ]
    assert report.added == 2
    rows = stored()
    assert set(rows) == {"ada@example.com", "fay@example.com"}
    ada = rows["ada@example.com"]
    assert (ada.name, ada.categories, ada.frequency, ada.timezone) == (
        "Ada",
        ["Design", "Writing"],
        "weekly",
        "Europe/Berlin",
    )
    fay = rows["fay@example.com"]
    assert (fay.name, fay.categories, fay.frequency, fay.timezone) == (None, [], "weekly", None)


def test_without_confirmed_new_rows_are_pending(pg: str, tmp_path: Path) -> None:
    load(write(tmp_path, "ada@example.com,Ada,,weekly,\n"))
    ada = stored()["ada@example.com"]
    assert (ada.status, ada.confirmed_at, ada.consent_at) == ("pending", None, None)


def test_confirmed_rows_are_active_with_the_consent_source(pg: str, tmp_path: Path) -> None:
    load(write(tmp_path, "ada@example.com,Ada,,weekly,\n", name="crm.csv"), confirmed=True)
    ada = stored()["ada@example.com"]
    assert ada.status == "active" and ada.confirmed_at is not None
    assert ada.consent_source is not None and "crm.csv" in ada.consent_source


def test_known_addresses_are_left_unchanged(pg: str, tmp_path: Path) -> None:
    with session_scope() as session:
        add_subscribers(session, 1, prefix="ada", categories=["Design"], name="Ada L.")
    report = load(write(tmp_path, "ADA000000@Example.com,Someone,Writing,every,\n"), True)
    assert (report.added, report.existing) == (0, 1)
    [ada] = stored().values()
    assert (ada.name, ada.categories, ada.frequency) == ("Ada L.", ["Design"], "weekly")


def test_suppressed_addresses_are_never_re_added(pg: str, tmp_path: Path) -> None:
    with session_scope() as session:
        suppress(session, "gone@example.com", "unsubscribed")
    report = load(write(tmp_path, "Gone@Example.com,Gone,,weekly,\nok@example.com,,,,\n"), True)
    assert (report.added, report.suppressed) == (1, 1)
    assert set(stored()) == {"ok@example.com"}


def test_an_address_twice_in_the_file_is_reported_once_kept(pg: str, tmp_path: Path) -> None:
    report = load(write(tmp_path, "ada@example.com,Ada,,,\nADA@example.com,Ada 2,,,\n"))
    assert report.added == 1
    assert [(e.line, e.field) for e in report.errors] == [(3, "email")]
    assert "line 2" in report.errors[0].message


def test_a_file_without_an_email_column_is_refused(pg: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("name,frequency\nAda,weekly\n", encoding="utf-8")
    with pytest.raises(ListFormatError, match="email"):
        load(path)
    with session_scope() as session:
        assert count(session, Subscriber) == 0


def test_large_lists_go_in_by_chunks(pg: str, tmp_path: Path) -> None:
    with session_scope() as session:
        add_subscribers(session, 10, prefix="user", start=6000)  # known, in the second chunk
    body = "".join(f"user{n:06d}@example.com,User {n},Design,weekly,\n" for n in range(12_000))
    report = load(write(tmp_path, body), confirmed=True)
    assert (report.added, report.existing, report.errors) == (11_990, 10, [])
    with session_scope() as session:
        assert count(session, Subscriber) == 12_000


def test_import_works_on_sqlite_too(sqlite: str, tmp_path: Path) -> None:
    with session_scope() as session:
        add_subscribers(session, 1, prefix="known")
    report = load(write(tmp_path, "known000000@example.com,,,,\nnew@example.com,,,,\n"))
    assert (report.added, report.existing) == (1, 1)


def test_export_writes_every_subscriber_but_erased_ones(pg: str) -> None:
    with session_scope() as session:
        add_subscribers(session, 3, prefix="a", categories=["Design", "Writing"])
        add_subscribers(session, 1, prefix="gone", status="deleted")
        add_subscribers(session, 1, prefix="left", status="unsubscribed", timezone="UTC")
        out = io.StringIO()
        assert export_subscribers(session, out) == 4
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(rows[0]) == ["email", "name", "categories", "frequency", "timezone", "status"]
    assert rows[0]["categories"] == "Design;Writing"
    assert [r["status"] for r in rows] == ["active", "active", "active", "unsubscribed"]


def test_export_then_import_gives_the_same_list(pg: str, tmp_path: Path) -> None:
    with session_scope() as session:
        add_subscribers(session, 2, prefix="x", categories=["Research"], timezone="Asia/Tokyo")
        add_subscribers(session, 1, prefix="formula", name="=HYPERLINK(1)", frequency="every")
        out = io.StringIO()
        export_subscribers(session, out)
        original = {
            (s.email, s.name, tuple(s.categories), s.frequency, s.timezone)
            for s in session.scalars(select(Subscriber))
        }
        session.execute(Subscriber.__table__.delete())
    assert "'=HYPERLINK(1)" in out.getvalue()  # a spreadsheet shows it as text
    path = tmp_path / "export.csv"
    path.write_text(out.getvalue(), encoding="utf-8")
    report = load(path, confirmed=True)
    assert report.added == 3 and not report.errors
    with session_scope() as session:
        again = {
            (s.email, s.name, tuple(s.categories), s.frequency, s.timezone)
            for s in session.scalars(select(Subscriber))
        }
    assert again == original


def test_cli_import_reports_bad_rows_and_exits_1(pg: str, tmp_path: Path) -> None:
    path = write(tmp_path, "ada@example.com,Ada,,weekly,\nbroken,,,,\n")
    result = CliRunner().invoke(app, ["subscribers", "import", str(path), "--confirmed"])
    assert result.exit_code == 1
    assert "line 3: email" in result.output
    assert "added 1 as active" in result.output
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 1


def test_cli_export_writes_a_file(pg: str, tmp_path: Path) -> None:
    with session_scope() as session:
        add_subscribers(session, 2)
    out = tmp_path / "subscribers.csv"
    result = CliRunner().invoke(app, ["subscribers", "export", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8").count("@example.com") == 2
