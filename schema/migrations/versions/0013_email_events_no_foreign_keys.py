"""email events: no foreign keys to deliveries and digests (the webhook's INSERT checks them)

Revision ID: 0013_email_events_no_fks
Revises: 0012_subscriber_search_erasures
Create Date: 2026-12-01

Every event row is written by `digest.tracking.process_batch`, which sets `delivery_id` and
`digest_id` only to ids it has just read in the same transaction (`digest.webhook_events.link`),
and no code deletes a delivery or a digest. The two constraints therefore re-checked, row by row,
what linking had established: on PostgreSQL each is an AFTER trigger running a query per row,
18 % of the INSERT's CPU for a 15,000-event body (perf, `make bench-webhooks`). The columns and
their indexes stay; the ids are still what links an event to its delivery and digest.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013_email_events_no_fks"
down_revision: str | None = "0012_subscriber_search_erasures"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FOREIGN_KEYS = {
    "fk_email_events_delivery_id_deliveries": ("delivery_id", "deliveries"),
    "fk_email_events_digest_id_digests": ("digest_id", "digests"),
}


def upgrade() -> None:
    with op.batch_alter_table("email_events", schema=None) as batch_op:
        for name in FOREIGN_KEYS:
            batch_op.drop_constraint(name, type_="foreignkey")


def downgrade() -> None:
    # Events whose delivery or digest is gone (none is ever deleted) would refuse the constraint.
    for column, table in FOREIGN_KEYS.values():
        op.execute(
            f"UPDATE email_events SET {column} = NULL WHERE {column} IS NOT NULL "
            f"AND {column} NOT IN (SELECT id FROM {table})"
        )
    with op.batch_alter_table("email_events", schema=None) as batch_op:
        for name, (column, table) in FOREIGN_KEYS.items():
            batch_op.create_foreign_key(name, table, [column], ["id"], ondelete="SET NULL")
