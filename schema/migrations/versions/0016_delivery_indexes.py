"""deliveries: the batch index gives way to a partial index of the rows that left `pending`

Revision ID: 0016_delivery_indexes
Revises: 0015_one_event_key
Create Date: 2026-12-02

Every delivery row is written by its batch's first claim, just before the request, and each row
paid for three index entries: the primary key, the unique (digest, subscriber) key and
`ix_deliveries_batch_id`. The batch index was a fifth of the INSERT's backend CPU (1.0 of 4.8 µs
per row, README Benchmarks) and served only the rare paths that settle, move or re-read one
batch's rows: a retry, a failure, a 400's addresses, a 413 split, a cancel, an operator's
decision, an event linked by message id. Those now reach a batch's rows through its array of
subscriber ids and the unique key (digest/batch_recipients.py `rows_of`), so a 413 split gives
its new half an array of the ids it moved (and the claims counted so far).

Batches planned before migration 0014 have no array; their rows are found through the unique
key's digest prefix (every row of that digest read once per such query): correct, and slower
for a digest of a million. Finish sending such a digest before upgrading if that matters.

`ix_deliveries_exceptions` holds only the rows whose own status left `pending` (failed,
skipped, cancelled, settled by an operator): a claim's INSERT of pending rows adds nothing to
it. Counting a digest's deliveries reads it and the batch rows instead of every delivery row
(digest/ledger_counts.py): 0.38 s for a sent digest of a million before, on every poll of the
console's progress and dashboard.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_delivery_indexes"
down_revision: str | None = "0015_one_event_key"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


EXCEPTIONS = "status <> 'pending'"


def upgrade() -> None:
    op.drop_index("ix_deliveries_batch_id", table_name="deliveries")
    op.create_index(
        "ix_deliveries_exceptions",
        "deliveries",
        ["digest_id", "batch_id", "status"],
        postgresql_where=sa.text(EXCEPTIONS),
        sqlite_where=sa.text(EXCEPTIONS),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_exceptions", table_name="deliveries")
    op.create_index("ix_deliveries_batch_id", "deliveries", ["batch_id"], unique=False)
