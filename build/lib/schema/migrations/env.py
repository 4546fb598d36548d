"""Alembic environment: migrations run against DIGEST_DATABASE_URL unless a URL is passed in."""

from __future__ import annotations

import warnings

from alembic import context
from sqlalchemy import engine_from_config, pool

from digest.settings import get_settings
from schema.models import Base

# SQLite's batch mode reflects tables and cannot read the lower(email) expression index; it is
# left untouched (tests check it survives), so the warning is noise for operators.
warnings.filterwarnings("ignore", message="Skipped unsupported reflection of expression-based")

config = context.config
url = config.get_main_option("sqlalchemy.url") or get_settings().database_url


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = engine_from_config(
        {"sqlalchemy.url": url}, prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
