"""The committed JSON Schemas are exactly what the pydantic event models generate."""

from __future__ import annotations

import json

from digest.event_schemas import SCHEMA_DIR, event_schemas


def test_committed_schemas_match_the_models() -> None:
    for name, schema in event_schemas().items():
        committed = json.loads((SCHEMA_DIR / name).read_text())
        assert committed == json.loads(json.dumps(schema)), f"run `digest schema export` ({name})"


def test_every_event_type_has_a_schema_file() -> None:
    names = {p.name for p in SCHEMA_DIR.glob("*.schema.json")}
    assert names == {
        "comparison.published.schema.json",
        "comparison.updated.schema.json",
        "comparison.retracted.schema.json",
        "votes.updated.schema.json",
        "reader_vote.cast.schema.json",  # outbound, to the site (issue 15)
    }
