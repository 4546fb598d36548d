"""reader_votes and site_events: readers' Ship/Skip verdicts and the outbox that sends them on

Revision ID: 0010_reader_votes
Revises: 0009_operators_audit_log
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_reader_votes"
down_revision: str | None = "0009_operators_audit_log"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "reader_votes",
        sa.Column("id", Id, nullable=False),
        sa.Column("subscriber_id", Id, nullable=True),
        sa.Column("digest_id", Id, nullable=True),
        sa.Column("comparison_id", Id, nullable=False),
        sa.Column("tool_position", sa.Integer(), nullable=False),
        sa.Column("choice", sa.String(length=4), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "tool_position IN (0, 1)", name=op.f("ck_reader_votes_tool_position_a_or_b")
        ),
        sa.CheckConstraint("choice IN ('ship', 'skip')", name=op.f("ck_reader_votes_choice")),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_reader_votes_subscriber_id_subscribers"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["digest_id"],
            ["digests.id"],
            name=op.f("fk_reader_votes_digest_id_digests"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["comparison_id"],
            ["comparisons.id"],
            name=op.f("fk_reader_votes_comparison_id_comparisons"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reader_votes")),
        sa.UniqueConstraint(
            "subscriber_id", "comparison_id", "tool_position", name="uq_reader_votes_reader_tool"
        ),
    )
    op.create_index(
        "ix_reader_votes_comparison",
        "reader_votes",
        ["comparison_id", "tool_position", "choice"],
        unique=False,
    )
    op.create_table(
        "site_events",
        sa.Column("id", Id, nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("type", sa.String(length=50), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_site_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_site_events_event_id")),
    )
    op.create_index("ix_site_events_delivered_at", "site_events", ["delivered_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_site_events_delivered_at", table_name="site_events")
    op.drop_table("site_events")
    op.drop_index("ix_reader_votes_comparison", table_name="reader_votes")
    op.drop_table("reader_votes")
