"""POST /api/events: the site's CMS pushes comparisons and votes."""

from __future__ import annotations

import copy

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from digest.db import session_scope
from digest.web.app import create_app
from schema.models import Comparison, InboundEvent, Review, Tool
from tests.support.factories import comparison, published, tool
from tests.support.services import INGEST_TOKEN

AUTH = {"Authorization": f"Bearer {INGEST_TOKEN}"}


@pytest.fixture
def client(pg: str) -> TestClient:
    return TestClient(create_app())


def counts() -> tuple[int, int, int, int]:
    with session_scope() as s:
        return tuple(  # type: ignore[return-value]
            s.scalar(select(func.count()).select_from(m))
            for m in (Comparison, Tool, Review, InboundEvent)
        )


def test_publish_stores_comparison_with_tools_and_reviews(client: TestClient) -> None:
    response = client.post("/api/events", json=published(), headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "created"}
    with session_scope() as s:
        stored = s.scalar(select(Comparison).where(Comparison.slug == "quillmate-vs-parsewell"))
        assert stored is not None
        assert [t.name for t in stored.tools] == ["Quillmate", "Parsewell"]
        assert (stored.tools[0].panel_ship, stored.tools[0].panel_skip) == (3, 1)
        assert stored.tools[1].verdict_label == "Mixed"
        assert [r.persona for r in stored.tools[0].reviews] == [
            "Builder",
            "Skeptic",
            "Futurist",
            "Founder",
        ]


def test_missing_token_is_401_and_writes_nothing(client: TestClient) -> None:
    response = client.post("/api/events", json=published())
    assert response.status_code == 401
    assert counts() == (0, 0, 0, 0)


def test_wrong_token_is_401(client: TestClient) -> None:
    response = client.post(
        "/api/events", json=published(), headers={"Authorization": "Bearer nope"}
    )
    assert response.status_code == 401


def test_malformed_event_is_422_naming_the_field_and_writes_nothing(client: TestClient) -> None:
    event = published()
    event["data"]["tools"][1]["reviews"][0]["score"] = 140
    response = client.post("/api/events", json=event, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "data.tools.1.reviews.0.score"
    assert counts() == (0, 0, 0, 0)


def test_unknown_event_type_is_422(client: TestClient) -> None:
    response = client.post("/api/events", json={"type": "comparison.exploded"}, headers=AUTH)
    assert response.status_code == 422
    assert "type" in response.json()["detail"][0]["field"]


def test_same_event_twice_changes_nothing(client: TestClient) -> None:
    event = published()
    client.post("/api/events", json=event, headers=AUTH)
    before = counts()
    again = client.post("/api/events", json=event, headers=AUTH)
    assert again.json() == {"status": "duplicate"}
    assert counts() == before


def test_update_replaces_the_comparison(client: TestClient) -> None:
    client.post("/api/events", json=published(), headers=AUTH)
    data = comparison(a=tool("Quillmate", ship=1, skip=3), updated_at="2026-11-23T13:00:00+00:00")
    response = client.post(
        "/api/events", json={"type": "comparison.updated", "data": data}, headers=AUTH
    )
    assert response.json() == {"status": "updated"}
    with session_scope() as s:
        stored = s.scalar(select(Comparison))
        assert (stored.tools[0].panel_ship, stored.tools[0].panel_skip) == (1, 3)
        assert stored.tools[0].verdict_label == "Skip"
    assert counts()[1:3] == (2, 8)  # old tools and reviews are gone, not duplicated


def test_older_update_than_stored_is_ignored(client: TestClient) -> None:
    newer = comparison(updated_at="2026-11-23T13:00:00+00:00")
    client.post("/api/events", json={"type": "comparison.updated", "data": newer}, headers=AUTH)
    older = copy.deepcopy(newer)
    older["updated_at"] = "2026-11-20T13:00:00+00:00"
    older["title"] = "Stale title"
    response = client.post(
        "/api/events", json={"type": "comparison.updated", "data": older}, headers=AUTH
    )
    assert response.json() == {"status": "stale"}
    with session_scope() as s:
        assert s.scalar(select(Comparison.title)) == "Quillmate vs Parsewell"


def test_retraction_marks_the_comparison_retracted(client: TestClient) -> None:
    client.post("/api/events", json=published(), headers=AUTH)
    event = {"type": "comparison.retracted", "data": {"slug": "quillmate-vs-parsewell"}}
    assert client.post("/api/events", json=event, headers=AUTH).json() == {"status": "retracted"}
    with session_scope() as s:
        assert s.scalar(select(Comparison.retracted)) is True


def test_retraction_of_unknown_slug_is_422_naming_slug(client: TestClient) -> None:
    event = {"type": "comparison.retracted", "data": {"slug": "never-published"}}
    response = client.post("/api/events", json=event, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "data.slug"
    assert counts() == (0, 0, 0, 0)


def test_votes_update_replaces_one_tools_tallies(client: TestClient) -> None:
    client.post("/api/events", json=published(), headers=AUTH)
    event = {
        "type": "votes.updated",
        "data": {"slug": "quillmate-vs-parsewell", "tool": "parsewell", "ship": 172, "skip": 39},
    }
    assert client.post("/api/events", json=event, headers=AUTH).json() == {"status": "updated"}
    with session_scope() as s:
        tools = s.scalars(select(Tool).order_by(Tool.position)).all()
        assert [(t.community_ship, t.community_skip) for t in tools] == [(0, 0), (172, 39)]


def test_votes_for_unknown_tool_is_422_naming_tool(client: TestClient) -> None:
    client.post("/api/events", json=published(), headers=AUTH)
    event = {
        "type": "votes.updated",
        "data": {"slug": "quillmate-vs-parsewell", "tool": "Nobody", "ship": 1, "skip": 0},
    }
    response = client.post("/api/events", json=event, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "data.tool"
