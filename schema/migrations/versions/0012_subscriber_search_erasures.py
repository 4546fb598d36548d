"""Subscriber search indexes (prefix of lower(email), lower(name)) and the count-only `erasures`

Revision ID: 0012_subscriber_search_erasures
Revises: 0011_list_imports
Create Date: 2026-12-01

PostgreSQL: btree indexes with `text_pattern_ops`, so `lower(email) LIKE 'abc%'` is an index
range scan whatever the database's collation (the default operator class serves LIKE only under
the "C" collation). Built CONCURRENTLY outside the migration's transaction: on a million
subscribers the build takes seconds and must not block signups meanwhile.

SQLite: the existing unique index on lower(email) already orders addresses byte-wise, which is
what the range query of `digest/subscriber_search.py` uses; names get a plain expression index.

`ix_email_events_list_changes`: a partial index of the events that change the list (hard bounces,
spam reports) by time, for the audience page's weekly counts; opens and clicks are not in it, so
it costs the webhook's inserts nothing.

`erasures` records THAT an erasure happened and when — a timestamp and nothing else (no id,
no hash), for the audience page's weekly counts; see `digest/privacy.py`.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_subscriber_search_erasures"
down_revision: str | None = "0011_list_imports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
PATTERN_INDEXES = {
    "ix_subscribers_email_prefix": "lower(email) text_pattern_ops",
    "ix_subscribers_name_prefix": "lower(name) text_pattern_ops",
}


LIST_CHANGES = "event IN ('bounce', 'spamreport')"


def upgrade() -> None:
    op.create_table(
        "erasures",
        sa.Column("id", Id, nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erasures")),
    )
    op.create_index("ix_erasures_erased_at", "erasures", ["erased_at"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            for name, expression in PATTERN_INDEXES.items():
                op.execute(
                    f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON subscribers ({expression})"
                )
            op.execute(
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_email_events_list_changes "
                f"ON email_events (occurred_at) WHERE {LIST_CHANGES}"
            )
    else:
        op.create_index(
            "ix_subscribers_name_prefix", "subscribers", [sa.text("lower(name)")], unique=False
        )
        op.create_index(
            "ix_email_events_list_changes",
            "email_events",
            ["occurred_at"],
            sqlite_where=sa.text(LIST_CHANGES),
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in PATTERN_INDEXES:
            op.execute(f"DROP INDEX IF EXISTS {name}")
    else:
        op.drop_index("ix_subscribers_name_prefix", table_name="subscribers")
    op.drop_index("ix_email_events_list_changes", table_name="email_events")
    op.drop_index("ix_erasures_erased_at", table_name="erasures")
    op.drop_table("erasures")
