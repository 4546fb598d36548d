"""edition_reviews: an operator's pins, exclusions, note, subject, preheader and approval per edition

One row per weekly edition (the slot's local date and time, as in `digests.edition`), written by
digest/edition_review.py and read when the edition's first wave is planned.

Revision ID: 0008_edition_reviews
Revises: 0007_digest_edition
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_edition_reviews"
down_revision: str | None = "0007_digest_edition"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "edition_reviews",
        sa.Column("edition", sa.String(length=40), nullable=False),
        sa.Column("pinned", sa.JSON(), nullable=False),
        sa.Column("excluded", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("subject", sa.String(length=200), nullable=True),
        sa.Column("preheader", sa.String(length=200), nullable=True),
        sa.Column("approved_by", sa.String(length=200), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_by", sa.String(length=200), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("edition", name=op.f("pk_edition_reviews")),
    )


def downgrade() -> None:
    op.drop_table("edition_reviews")
