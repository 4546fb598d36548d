"""JSON Schemas of inbound events (and of the outbound `reader_vote.cast`), generated from the
pydantic models in `schema/events.py`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schema.events import EVENT_MODELS, OUTBOUND_EVENT_MODELS

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schema" / "events"


def event_schemas() -> dict[str, dict[str, Any]]:
    """`{file name: JSON Schema}` for each event type, inbound and outbound."""
    schemas = {}
    for event_type, model in {**EVENT_MODELS, **OUTBOUND_EVENT_MODELS}.items():
        schema = model.model_json_schema()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"urn:verdict-digest:event:{event_type}"
        schemas[f"{event_type}.schema.json"] = schema
    return schemas


def write_schemas(folder: Path = SCHEMA_DIR) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in event_schemas().items():
        path = folder / name
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written
