"""webhook storage: email events without foreign keys; stored webhook bodies compressed with lz4

Revision ID: 0013_webhook_storage
Revises: 0012_subscriber_search_erasures
Create Date: 2026-12-01

Measured on `make bench-webhooks` (one 3.3 MB body of 15,000 events):

- `email_events` loses its foreign keys to `deliveries` and `digests`. Every event row is written
  by `digest.tracking.process_batch`, which sets `delivery_id` and `digest_id` only to ids it has
  just read in the same transaction (`digest.webhook_events.link`), and no code deletes a
  delivery or a digest. The constraints re-checked, row by row, what linking had established: on
  PostgreSQL each is an AFTER trigger running a query per row, 18 % of the INSERT's CPU (perf).
  The columns and their indexes stay.
- PostgreSQL: `webhook_batches.body` is compressed with lz4 instead of pglz (when the server has
  lz4; otherwise nothing changes). Storing the body is part of the answer SendGrid waits for:
  37 → 16 ms for 3.3 MB, the same size on disk. Bodies stored earlier keep their compression.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013_webhook_storage"
down_revision: str | None = "0012_subscriber_search_erasures"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FOREIGN_KEYS = {
    "fk_email_events_delivery_id_deliveries": ("delivery_id", "deliveries"),
    "fk_email_events_digest_id_digests": ("digest_id", "digests"),
}


def _body_compression(method: str) -> None:
    """PostgreSQL 14+ built with the method; anywhere else, leave the column as it is."""
    bind = op.get_bind()
    if bind.dialect.name != "postgresql" or bind.dialect.server_version_info < (14,):
        return
    op.execute(
        "DO $$ BEGIN "
        f"ALTER TABLE webhook_batches ALTER COLUMN body SET COMPRESSION {method}; "
        "EXCEPTION WHEN feature_not_supported THEN NULL; END $$"
    )


def upgrade() -> None:
    with op.batch_alter_table("email_events", schema=None) as batch_op:
        for name in FOREIGN_KEYS:
            batch_op.drop_constraint(name, type_="foreignkey")
    _body_compression("lz4")


def downgrade() -> None:
    _body_compression("pglz")
    # Events whose delivery or digest is gone (none is ever deleted) would refuse the constraint.
    for column, table in FOREIGN_KEYS.values():
        op.execute(
            f"UPDATE email_events SET {column} = NULL WHERE {column} IS NOT NULL "
            f"AND {column} NOT IN (SELECT id FROM {table})"
        )
    with op.batch_alter_table("email_events", schema=None) as batch_op:
        for name, (column, table) in FOREIGN_KEYS.items():
            batch_op.create_foreign_key(name, table, [column], ["id"], ondelete="SET NULL")
