"""list_imports and list_import_parts: subscriber lists uploaded in the console

Revision ID: 0011_list_imports
Revises: 0010_reader_votes
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_list_imports"
down_revision: str | None = "0010_reader_votes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "list_imports",
        sa.Column("id", Id, nullable=False),
        sa.Column("actor", sa.String(length=320), nullable=False),
        sa.Column("filename", sa.String(length=200), nullable=False),
        sa.Column("confirmed", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("lines_total", sa.Integer(), nullable=False),
        sa.Column("lines_done", sa.Integer(), nullable=False),
        sa.Column("added", sa.Integer(), nullable=False),
        sa.Column("existing", sa.Integer(), nullable=False),
        sa.Column("suppressed", sa.Integer(), nullable=False),
        sa.Column("bad", sa.Integer(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.Column("failure", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed')",
            name=op.f("ck_list_imports_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_list_imports")),
    )
    op.create_index(
        "ix_list_imports_status_updated_at", "list_imports", ["status", "updated_at"], unique=False
    )
    op.create_table(
        "list_import_parts",
        sa.Column("import_id", Id, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["list_imports.id"],
            name=op.f("fk_list_import_parts_import_id_list_imports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("import_id", "seq", name=op.f("pk_list_import_parts")),
    )


def downgrade() -> None:
    op.drop_table("list_import_parts")
    op.drop_index("ix_list_imports_status_updated_at", table_name="list_imports")
    op.drop_table("list_imports")
