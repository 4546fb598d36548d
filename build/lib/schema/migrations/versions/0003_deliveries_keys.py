"""deliveries: no foreign keys to digests and subscribers

Every delivery row was checked against three parents. The check against `subscribers` takes a
row lock on the subscriber (a WAL record per recipient), the one against `digests` locks the same
digest row a million times; together they made up about half of planning time at a million
recipients (bench/dispatch.py). The planner writes deliveries from the subscriber rows it has
just read, in the same transaction; subscribers are never deleted (erasure keeps the row); the
batch's key (kept, ON DELETE CASCADE) ties every delivery to its digest.

Revision ID: 0003_deliveries_keys
Revises: 0002_email_event_dedupe
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003_deliveries_keys"
down_revision: str | None = "0002_email_event_dedupe"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_constraint("fk_deliveries_digest_id_digests", type_="foreignkey")
        batch_op.drop_constraint("fk_deliveries_subscriber_id_subscribers", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_foreign_key(
            "fk_deliveries_digest_id_digests", "digests", ["digest_id"], ["id"], ondelete="CASCADE"
        )
        batch_op.create_foreign_key(
            "fk_deliveries_subscriber_id_subscribers", "subscribers", ["subscriber_id"], ["id"]
        )
