"""`/console/lists`: a CSV upload imported by the task (in-process here) with its summary and bad
rows by line; a filtered download that is byte for byte `digest subscribers export`; CSRF, size
limit, audit entries without addresses, and formula cells neutralised."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from digest.cli import app as cli
from digest.db import reset_caches, session_scope
from schema.models import AuditEntry, ListImport, ListImportPart, Subscriber
from tests.support.console_fixtures import csrf_in
from tests.support.recipients import add_subscribers, suppress

HEADER = "email,name,categories,frequency,timezone\r\n"
LIST_WITH_BAD_ROWS = (
    HEADER
    + "ada@example.com,Ada,Design;Writing,weekly,Europe/Berlin\r\n"  # line 2
    + "not-an-address,Bob,,weekly,\r\n"  # line 3
    + "cy@example.com,Cy,Gardening,weekly,\r\n"  # line 4
    + "di@example.com,Di,,daily,\r\n"  # line 5
    + "gone@example.com,Gone,,weekly,\r\n"  # line 6: suppressed
    + "ada@example.com,Ada again,,weekly,\r\n"  # line 7: twice in the file
    + "known000000@example.com,Known,,every,\r\n"  # line 8: already a subscriber
    + "ed@example.com,Ed,,every,Mars/Base\r\n"  # line 9
)


def upload(client: TestClient, body: bytes | str, confirmed: bool = False, **extra):  # type: ignore[no-untyped-def]
    page = client.get("/console/lists")
    data = {"csrf_token": csrf_in(page.text), **({"confirmed": "true"} if confirmed else {})}
    data.update(extra)
    content = body.encode() if isinstance(body, str) else body
    return client.post(
        "/console/lists/upload",
        data=data,
        files={"file": ("list.csv", content, "text/csv")},
        follow_redirects=False,
    )


def download(client: TestClient, **filters: str):  # type: ignore[no-untyped-def]
    page = client.get("/console/lists")
    return client.post("/console/lists/export", data={"csrf_token": csrf_in(page.text), **filters})


def the_import() -> ListImport:
    with session_scope() as session:
        row = session.scalars(select(ListImport).order_by(ListImport.id.desc())).first()
        assert row is not None
        session.expunge(row)
        return row


@pytest.fixture
def listed(signed_in: TestClient) -> TestClient:
    with session_scope() as session:
        add_subscribers(session, 1, prefix="known")
        suppress(session, "gone@example.com")
    return signed_in


def test_a_csv_with_bad_rows_reports_their_line_numbers_and_the_field(listed: TestClient) -> None:
    answer = upload(listed, LIST_WITH_BAD_ROWS)
    assert answer.status_code == 303
    page = listed.get(answer.headers["location"])
    assert page.status_code == 200
    row = the_import()
    assert row.status == "done"
    assert [(line, field) for line, field, _ in row.errors] == [
        (3, "email"),
        (4, "categories"),
        (5, "frequency"),
        (7, "email"),
        (9, "timezone"),
    ]
    assert "same address as line 2" in row.errors[3][2]
    assert "Gardening" in row.errors[1][2]
    for line in ("<td>3</td><td>email</td>", "<td>9</td><td>timezone</td>"):
        assert line in page.text
    assert (row.added, row.existing, row.suppressed, row.bad) == (1, 1, 1, 5)


def test_the_cli_reports_the_same_bad_rows_by_line_and_field(
    listed: TestClient, tmp_path: Path
) -> None:
    upload(listed, LIST_WITH_BAD_ROWS)
    path = tmp_path / "same.csv"
    path.write_text(LIST_WITH_BAD_ROWS, encoding="utf-8")
    result = CliRunner().invoke(cli, ["subscribers", "import", str(path)])
    assert result.exit_code == 1
    reported = re.findall(r"line (\d+): (\w+):", result.output)
    assert [(int(line), field) for line, field in reported] == [
        (line, field) for line, field, _ in the_import().errors
    ]


def test_suppressed_addresses_are_reported_and_not_re_added(listed: TestClient) -> None:
    upload(listed, HEADER + "gone@example.com,Gone,,weekly,\r\n")
    assert the_import().suppressed == 1
    with session_scope() as session:
        gone = select(Subscriber).where(Subscriber.email == "gone@example.com")
        assert session.scalar(gone) is None


def test_without_consent_new_rows_are_pending_and_with_it_active(listed: TestClient) -> None:
    upload(listed, HEADER + "pat@example.com,,,,\r\n")
    upload(listed, HEADER + "val@example.com,,,,\r\n", confirmed=True)
    with session_scope() as session:
        pat = session.scalar(select(Subscriber).where(Subscriber.email == "pat@example.com"))
        val = session.scalar(select(Subscriber).where(Subscriber.email == "val@example.com"))
        assert pat.status == "pending" and pat.consent_at is None
        assert val.status == "active" and "vouched" in (val.consent_source or "")


def test_the_upload_and_its_result_are_audited_with_counts_never_addresses(
    listed: TestClient,
) -> None:
    upload(listed, LIST_WITH_BAD_ROWS)
    with session_scope() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.action.like("list.%")))
        found = {e.action: (e.actor, e.detail or "") for e in entries}
    assert set(found) == {"list.uploaded", "list.done"}
    assert found["list.done"] == ("ops@example.com", "added 1, known 1, suppressed 1, bad 5")
    assert "bytes" in found["list.uploaded"][1]
    assert not any("@" in detail for _, detail in found.values())


def test_the_stored_file_is_deleted_when_the_import_finishes(listed: TestClient) -> None:
    upload(listed, LIST_WITH_BAD_ROWS)
    with session_scope() as session:
        assert session.scalars(select(ListImportPart)).all() == []


def test_an_upload_without_the_csrf_token_is_403_and_stores_nothing(listed: TestClient) -> None:
    answer = upload(listed, LIST_WITH_BAD_ROWS, csrf_token="forged")
    assert answer.status_code == 403
    with session_scope() as session:
        assert session.scalars(select(ListImport)).all() == []


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("name,frequency\r\nAda,weekly\r\n", "with at least &#39;email&#39;"),
        (b"email,name\r\nada@example.com,\xff\xfe\r\n", "not UTF-8"),
        ("", "with at least &#39;email&#39;"),
    ],
)
def test_a_file_that_is_no_list_is_422_beside_the_field_and_stores_nothing(
    listed: TestClient, body: str | bytes, says: str
) -> None:
    answer = upload(listed, body)
    assert answer.status_code == 422
    assert says in answer.text and 'aria-describedby="err-file"' in answer.text
    with session_scope() as session:
        assert session.scalars(select(ListImport)).all() == []


def test_an_upload_over_the_size_limit_is_413(
    listed: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.web.app import create_app

    monkeypatch.setenv("DIGEST_LIST_UPLOAD_MAX_BYTES", "2048")
    reset_caches()
    with TestClient(create_app(), cookies=listed.cookies) as small:
        answer = upload(small, HEADER + "x@example.com,,,,\r\n" * 200)
    assert answer.status_code == 413
    with session_scope() as session:
        assert session.scalars(select(ListImport)).all() == []


def cli_export(out: Path, *args: str) -> bytes:
    result = CliRunner().invoke(cli, ["subscribers", "export", "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    return out.read_bytes()


@pytest.mark.parametrize(
    ("form", "flags"),
    [
        ({}, []),
        ({"status": "active"}, ["--status", "active"]),
        ({"category": "Design"}, ["--category", "Design"]),
        (
            {"frequency": "every", "timezone": "Europe/Berlin"},
            ["--frequency", "every", "--timezone", "Europe/Berlin"],
        ),
    ],
)
def test_the_download_equals_the_cli_export_for_the_same_filter(
    signed_in: TestClient, form: dict[str, str], flags: list[str], tmp_path: Path
) -> None:
    with session_scope() as session:
        add_subscribers(session, 3, prefix="all", categories=[])
        add_subscribers(session, 2, prefix="design", categories=["Design"], frequency="every")
        add_subscribers(session, 2, prefix="berlin", frequency="every", timezone="Europe/Berlin")
        add_subscribers(session, 2, prefix="writing", categories=["Writing"], status="pending")
    answer = download(signed_in, **form)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    assert answer.content == cli_export(tmp_path / "cli.csv", *flags)
    assert len(answer.content.decode().splitlines()) > 1


def test_a_category_filter_keeps_who_receives_it(signed_in: TestClient) -> None:
    with session_scope() as session:
        add_subscribers(session, 1, prefix="all", categories=[])
        add_subscribers(session, 1, prefix="design", categories=["Design"])
        add_subscribers(session, 1, prefix="writing", categories=["Writing"])
    rows = list(csv.DictReader(io.StringIO(download(signed_in, category="Design").text)))
    assert [r["email"] for r in rows] == ["all000000@example.com", "design000000@example.com"]


def test_a_download_without_the_csrf_token_is_403_and_is_not_audited(
    signed_in: TestClient,
) -> None:
    answer = signed_in.post("/console/lists/export", data={"csrf_token": "forged"})
    assert answer.status_code == 403
    assert "email,name" not in answer.text
    with session_scope() as session:
        exported = select(AuditEntry).where(AuditEntry.action == "list.exported")
        assert session.scalar(exported) is None


def test_the_download_is_audited_with_its_filter(signed_in: TestClient) -> None:
    download(signed_in, status="active", frequency="weekly")
    with session_scope() as session:
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "list.exported"))
    assert entry is not None and entry.detail == "status=active, frequency=weekly"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("status", "deleted-ish"),
        ("category", "<b>x</b>"),
        ("frequency", "daily"),
        ("timezone", "Mars/Base"),
    ],
)
def test_a_bad_download_filter_is_422_beside_its_field(
    signed_in: TestClient, field: str, value: str
) -> None:
    answer = download(signed_in, **{field: value})
    assert answer.status_code == 422
    assert f'id="err-{field}"' in answer.text
    assert "<b>x</b>" not in answer.text


def test_formula_cells_in_the_download_are_neutralised(signed_in: TestClient) -> None:
    """The attack: a signup name (and an address) a spreadsheet would run."""
    with session_scope() as session:
        add_subscribers(session, 1, prefix="=1+1", name='=HYPERLINK("https://evil.example","x")')
        add_subscribers(session, 1, prefix="plain", name="@SUM(A1)")
        add_subscribers(session, 1, prefix="tab", name="\t=cmd|' /C calc'!A0")
        add_subscribers(session, 1, prefix="dash", name="-2+3")
        add_subscribers(session, 1, prefix="plus", name="+2+3")
    text = download(signed_in).text
    rows = list(csv.reader(io.StringIO(text)))[1:]
    cells = [cell for row in rows for cell in row[:2]]
    for cell in cells:
        assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r"), cell
    assert "'=1+1000000@example.com" in text
    assert "'=HYPERLINK(" in text
    assert "\r\n" in text and "\n\n" not in text


def test_the_lists_page_shows_the_recent_uploads_escaped(listed: TestClient) -> None:
    page = listed.get("/console/lists")
    data = {"csrf_token": csrf_in(page.text)}
    listed.post(
        "/console/lists/upload",
        data=data,
        files={"file": ("<img src=x onerror=alert(1)>.csv", HEADER.encode(), "text/csv")},
    )
    page = listed.get("/console/lists")
    assert "<img src=x" not in page.text and "&lt;img src=x" in page.text
    assert 'aria-current="page">Lists' in page.text
