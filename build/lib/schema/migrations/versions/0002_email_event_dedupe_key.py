"""email events: a dedupe key that tells two clicks on different links apart

The first schema deduplicated SendGrid events on (sg_message_id, event, occurred_at). Timestamps
are whole seconds, so two clicks on different links of one message within the same second would
collide and a real click would be lost. `dedupe_key` is a hash of message id, address, event,
timestamp and URL (see digest/tracking.py); it is NULL when an event has no message id.

Revision ID: 0002_email_event_dedupe
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_email_event_dedupe"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("email_events", schema=None) as batch_op:
        batch_op.drop_constraint("uq_email_events_message_event_time", type_="unique")
        batch_op.add_column(sa.Column("dedupe_key", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint("uq_email_events_dedupe_key", ["dedupe_key"])
        batch_op.create_index("ix_email_events_delivery_id", ["delivery_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("email_events", schema=None) as batch_op:
        batch_op.drop_index("ix_email_events_delivery_id")
        batch_op.drop_constraint("uq_email_events_dedupe_key", type_="unique")
        batch_op.drop_column("dedupe_key")
        batch_op.create_unique_constraint(
            "uq_email_events_message_event_time", ["sg_message_id", "event", "occurred_at"]
        )
