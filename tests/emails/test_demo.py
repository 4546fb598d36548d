"""`digest demo`: the whole weekly pipeline on the embedded default, on any date, twice in a row."""

from __future__ import annotations

import csv
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
import sqlalchemy as sa

from digest.demo import SAMPLE_DIR, run_demo
from digest.substitution import ANY_PLACEHOLDER as PLACEHOLDER
from tests.support.services import read_outbox


def weekly_readers() -> dict[str, str]:
    """address -> name of every sample subscriber who takes the weekly digest."""
    with (SAMPLE_DIR / "subscribers.csv").open(encoding="utf-8", newline="") as handle:
        return {r["email"]: r["name"] for r in csv.DictReader(handle) if r["frequency"] == "weekly"}


def text_of(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def html_of(message: EmailMessage) -> str:
    return message.get_body(("html",)).get_content()  # type: ignore[union-attr]


@pytest.fixture
def demo_env(base_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Settings pointing at services that are not there: the demo must not need them."""
    monkeypatch.setenv("DIGEST_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("DIGEST_BROKER_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("DIGEST_REDIS_URL", "redis://127.0.0.1:1/0")
    return f"sqlite:///{tmp_path / 'demo.db'}"


def test_demo_mails_every_weekly_subscriber_once(demo_env: str, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    summary = run_demo(outbox, demo_env)
    messages = read_outbox(outbox)
    readers = weekly_readers()
    recipients = [m["To"].addresses[0].addr_spec for m in messages]
    assert sorted(recipients) == sorted(readers)
    assert summary["emails written"] == len(readers) == 17
    assert summary["comparisons imported"] == 10
    # one render per distinct segment of the edition; later waves reuse the first wave's
    engine = sa.create_engine(demo_env)
    with engine.connect() as connection:
        distinct = connection.scalar(
            sa.text("SELECT count(DISTINCT segment_key) FROM digest_segments")
        )
        rows = connection.scalar(sa.text("SELECT count(*) FROM digest_segments"))
    engine.dispose()
    assert summary["MJML renders"] == distinct
    assert summary["segments"] == rows
    assert summary["outbox"] == str(outbox.resolve())


def test_demo_emails_carry_unsubscribe_headers_and_filled_tokens(
    demo_env: str, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox"
    run_demo(outbox, demo_env)
    readers = weekly_readers()
    for message in read_outbox(outbox):
        unsubscribe = str(message["List-Unsubscribe"]).strip()
        assert unsubscribe.startswith("<http") and "/unsubscribe/" in unsubscribe
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        text, html = text_of(message), html_of(message)
        assert not PLACEHOLDER.search(text) and not PLACEHOLDER.search(html)
        assert unsubscribe[1:-1] in text and "/preferences/" in text
        name = readers[message["To"].addresses[0].addr_spec]
        assert name in text


def test_demo_sends_each_reader_only_their_categories(demo_env: str, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    run_demo(outbox, demo_env)
    by_address = {m["To"].addresses[0].addr_spec: text_of(m) for m in read_outbox(outbox)}
    maya = by_address["maya.okafor@example.com"]  # Writing only
    assert "Quillmate vs Parsewell" in maya and "Palettebird vs Vectorine" not in maya
    ada = by_address["ada.lindqvist@example.com"]  # all categories
    assert "Quillmate vs Parsewell" in ada and "Palettebird vs Vectorine" in ada


def test_demo_runs_again_on_its_database_and_says_nothing_is_new(
    demo_env: str, tmp_path: Path
) -> None:
    run_demo(tmp_path / "first", demo_env)
    again = run_demo(tmp_path / "second", demo_env)
    assert "no new comparisons" in str(again["comparisons imported"])
    assert "none due" in str(again["waves"])
    assert again["emails written"] == 0
    assert read_outbox(tmp_path / "second") == []


def test_demo_starts_fresh_by_default(
    base_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first = run_demo()
    second = run_demo()
    assert first["emails written"] == second["emails written"] == 17
    assert len(list((tmp_path / "var/outbox/demo").glob("*.eml"))) == 17


@pytest.mark.parametrize(
    "today",
    ["2027-03-27T23:30:00+00:00", "2030-12-31T12:00:00+00:00", "2031-07-07T08:59:00+00:00"],
)
def test_demo_works_on_any_date(demo_env: str, tmp_path: Path, today: str) -> None:
    summary = run_demo(tmp_path / "outbox", demo_env, now=datetime.fromisoformat(today))
    assert summary["emails written"] == 17
    assert str(summary["waves"]).count("sent to") == 4
