"""digest_segments.placeholder_nonce: unguessable substitution keys per render

Per-recipient values used to replace fixed keys (`-name-`, `-unsubscribe_url-`), so ingested
text or a subscriber's name containing one became live: a comparison URL with
`-preferences_url-` collected every reader's manage link. Each render now draws a random nonce
for its keys (digest/substitution.py) and stores it here; NULL marks a render planned before this
migration, which keeps the old keys until it is sent.

Revision ID: 0006_segment_placeholders
Revises: 0005_subscriber_signup_cycle
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_segment_placeholders"
down_revision: str | None = "0005_subscriber_signup_cycle"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("digest_segments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("placeholder_nonce", sa.String(length=12), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("digest_segments", schema=None) as batch_op:
        batch_op.drop_column("placeholder_nonce")
