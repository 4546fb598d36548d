"""Where things are: the repository, and the shared folder beside it (seeds, SendGrid's spec)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
SAMPLE_COMPARISONS = REPO / "digest" / "sample_data" / "comparisons.ndjson"
ARTIFACTS = REPO / "test-artifacts"
