"""deliveries: no foreign key to delivery_batches either

After 0003, the check of each delivery against its batch was still two thirds of the cost of
writing a million deliveries (9 s against 3 s without it, bench/dispatch.py): a trigger and a
row lock per recipient, on the batch row the same transaction has just inserted. Deliveries are
written by two code paths only, both in the transaction that creates the batch they point at
(planning, and a 413 split); no digest or batch is ever deleted. `ix_deliveries_batch_id` stays.

Revision ID: 0004_deliveries_batch_key
Revises: 0003_deliveries_keys
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004_deliveries_batch_key"
down_revision: str | None = "0003_deliveries_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_constraint("fk_deliveries_batch_id_delivery_batches", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_foreign_key(
            "fk_deliveries_batch_id_delivery_batches",
            "delivery_batches",
            ["batch_id"],
            ["id"],
            ondelete="CASCADE",
        )
