"""subscribers: the signup cycle a confirmation link is bound to

A confirmation link used to name only the subscriber, so the first link of an address that had
since unsubscribed re-activated it after anyone posted the address again. `signup_cycle` is a
random nonce per pending signup and `signup_cycle_at` when that signup began (the signed
timestamp of its link); unsubscribing clears them. Rows pending before this migration have no
cycle: their old links stop working, and a new signup of the address starts a cycle.

Revision ID: 0005_subscriber_signup_cycle
Revises: 0004_deliveries_batch_key
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_subscriber_signup_cycle"
down_revision: str | None = "0004_deliveries_batch_key"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("signup_cycle", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("signup_cycle_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.drop_column("signup_cycle_at")
        batch_op.drop_column("signup_cycle")
