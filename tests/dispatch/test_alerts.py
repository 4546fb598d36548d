"""Event-driven alerts: a newly published comparison reaches the `every` subscribers at once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from digest.cli import app
from digest.db import session_scope
from digest.web.app import create_app
from schema.models import Digest
from tests.support.factories import comparison, published, tool
from tests.support.recipients import add_subscribers
from tests.support.services import INGEST_TOKEN, read_outbox

AUTH = {"Authorization": f"Bearer {INGEST_TOKEN}"}


@pytest.fixture
def readers(pg: str) -> Iterator[dict[str, list[str]]]:
    from workers.app import app as celery_app

    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True  # the embedded default: the alert runs in-process
    with session_scope() as session:
        groups = {
            "every": add_subscribers(session, 3, prefix="every", frequency="every"),
            "every_design": add_subscribers(
                session, 2, prefix="design", frequency="every", categories=["Design"]
            ),
            "weekly": add_subscribers(session, 4, prefix="weekly"),
        }
    yield groups
    celery_app.conf.task_always_eager = eager


def recipients(outbox: Path) -> list[str]:
    return sorted(m["To"].addresses[0].addr_spec for m in read_outbox(outbox))


def test_a_published_comparison_alerts_every_subscribers_whose_categories_match(
    readers: dict[str, list[str]], outbox: Path
) -> None:
    client = TestClient(create_app())
    response = client.post("/api/events", json=published(), headers=AUTH)  # Developer Tools
    assert response.json() == {"status": "created"}
    assert recipients(outbox) == readers["every"]
    message = read_outbox(outbox)[0]
    assert message["Subject"] == "New verdict: Quillmate vs Parsewell"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_the_same_event_again_sends_no_second_alert(
    readers: dict[str, list[str]], outbox: Path
) -> None:
    client = TestClient(create_app())
    event = {**published(), "id": "evt-1"}
    client.post("/api/events", json=event, headers=AUTH)
    assert client.post("/api/events", json=event, headers=AUTH).json() == {"status": "duplicate"}
    assert len(read_outbox(outbox)) == 3


def test_an_update_sends_no_alert(readers: dict[str, list[str]], outbox: Path) -> None:
    client = TestClient(create_app())
    client.post("/api/events", json=published(), headers=AUTH)
    data = comparison(a=tool("Quillmate", ship=4, skip=0))
    response = client.post(
        "/api/events", json={"type": "comparison.updated", "data": data}, headers=AUTH
    )
    assert response.json() == {"status": "updated"}
    assert len(read_outbox(outbox)) == 3
    with session_scope() as session:
        assert len(session.scalars(select(Digest).where(Digest.kind == "alert")).all()) == 1


def test_an_import_is_a_backfill_without_alerts(
    readers: dict[str, list[str]], outbox: Path, tmp_path: Path
) -> None:
    path = tmp_path / "events.ndjson"
    path.write_text(json.dumps(published()) + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["import", str(path)])
    assert result.exit_code == 0, result.output
    assert read_outbox(outbox) == []


def test_import_with_alert_sends_the_alerts(
    readers: dict[str, list[str]], outbox: Path, tmp_path: Path
) -> None:
    design = comparison(
        "palettebird-vs-vectorine",
        a=tool("Palettebird", category="Design"),
        b=tool("Vectorine", category="Design"),
    )
    path = tmp_path / "events.ndjson"
    path.write_text(json.dumps(published(design)) + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["import", "--alert", str(path)])
    assert result.exit_code == 0, result.output
    assert "alerts queued: 1" in result.output
    assert recipients(outbox) == sorted(readers["every"] + readers["every_design"])
