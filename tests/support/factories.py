"""Builders of test data in the inbound event format (the project's own fictional tools)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from digest.ingest import apply_event

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
PERSONAS = ["Builder", "Skeptic", "Futurist", "Founder"]


def tool(
    name: str,
    *,
    ship: int = 3,
    skip: int = 1,
    community: tuple[int, int] | None = (0, 0),
    scores: list[int] | None = None,
    category: str = "Developer Tools",
    **extra: Any,
) -> dict[str, Any]:
    """A tool whose panel voted `ship`/`skip`, with one review per vote."""
    total = ship + skip
    verdicts = ["ship"] * ship + ["skip"] * skip
    scores = scores or [80 if v == "ship" else 40 for v in verdicts]
    pct = round(100 * ship / total) if total else None
    label = None if pct is None else "Ship" if pct >= 75 else "Mixed" if pct >= 50 else "Skip"
    data: dict[str, Any] = {
        "name": name,
        "tagline": f"{name} does one thing well",
        "category": category,
        "description": f"{name} is a fictional tool used in tests.",
        "pricing": "Free tier; Pro $10/mo",
        "entry_price": "Free",
        "best_for": f"Teams trying {name}",
        "verdict": label,
        "panel_ship": ship,
        "panel_skip": skip,
        "panel_ship_pct": pct,
        "community_ship": community[0] if community else None,
        "community_skip": community[1] if community else None,
        "reviews": [
            {
                "persona": PERSONAS[i % 4],
                "score": scores[i],
                "verdict": v,
                "text": f"{PERSONAS[i % 4]} on {name}: {v}.",
            }
            for i, v in enumerate(verdicts)
        ],
    }
    data.update(extra)
    return data


def comparison(
    slug: str = "quillmate-vs-parsewell",
    *,
    a: dict[str, Any] | None = None,
    b: dict[str, Any] | None = None,
    published_at: datetime | None = None,
    **extra: Any,
) -> dict[str, Any]:
    a = a or tool("Quillmate")
    b = b or tool("Parsewell", ship=2, skip=2)
    data = {
        "slug": slug,
        "title": f"{a['name']} vs {b['name']}",
        "url": f"https://shiporskip.example/compare/{slug}",
        "category": a.get("category"),
        "published_at": (published_at or NOW - timedelta(days=1)).isoformat(),
        "tools": [a, b],
    }
    data.update(extra)
    return data


def published(data: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    return {"type": "comparison.published", "data": data or comparison(**kwargs)}


def store(session: Session, *events: dict[str, Any]) -> None:
    for event in events:
        apply_event(session, event, source="api")
    session.commit()
