"""digests.edition: a weekly wave's edition as a column, not a prefix of its slot key

The waves of one weekly edition (the same local slot in every timezone) were found with
`slot_key LIKE '{edition}%'`, which depended on the key's text format. The edition is now its own
indexed column, set when a wave's digest is created; existing weekly rows are backfilled from
`options->>'edition'`, read and written in Python so the same code runs on PostgreSQL and SQLite.

Revision ID: 0007_digest_edition
Revises: 0006_segment_placeholders
Create Date: 2026-12-01
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_digest_edition"
down_revision: str | None = "0006_segment_placeholders"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

digests = sa.table(
    "digests",
    sa.column("id", sa.BigInteger),
    sa.column("kind", sa.String),
    sa.column("options", sa.JSON),
    sa.column("edition", sa.String),
)


def _edition(options: object) -> str | None:
    if isinstance(options, str):  # a JSON column read without its type (SQLite)
        options = json.loads(options)
    edition = options.get("edition") if isinstance(options, dict) else None
    return str(edition)[:40] if edition else None


def upgrade() -> None:
    with op.batch_alter_table("digests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("edition", sa.String(length=40), nullable=True))
        batch_op.create_index(batch_op.f("ix_digests_edition"), ["edition"], unique=False)
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(digests.c.id, digests.c.options).where(digests.c.kind == "weekly")
    ).all()
    for digest_id, options in rows:
        edition = _edition(options)
        if edition is not None:
            connection.execute(
                digests.update().where(digests.c.id == digest_id).values(edition=edition)
            )


def downgrade() -> None:
    with op.batch_alter_table("digests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_digests_edition"))
        batch_op.drop_column("edition")
