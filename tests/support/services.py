"""Shared fixtures: a real PostgreSQL database and a real Redis database per test session.

Each pytest session creates its own PostgreSQL database (migrated with Alembic, dropped at the
end) and claims a free Redis database number, so parallel sessions never see each other's data.
Tables are truncated after every test that used them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
import redis as redis_lib
import sqlalchemy as sa

from digest import migrations
from digest.db import reset_caches
from schema.models import Base
from tests.support.paths import REPO, SHARED

PG_ADMIN_URL = os.environ.get(
    "DIGEST_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_BASE_URL = os.environ.get("DIGEST_TEST_REDIS_URL", "redis://127.0.0.1:6379")
INGEST_TOKEN = "test-ingest-token-5f1c9e7a3b2d4086"
ADMIN_TOKEN = "test-admin-token-8c2e6a0f4b9d1357"
SECRET_KEY = "test-secret-key-0123456789abcdef"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session."""
    name = f"digest_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    migrations.upgrade(url)
    yield url
    reset_caches()
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def redis_db() -> Iterator[str]:
    """A Redis database number no other running test session holds (claimed with SET NX)."""
    claimer = redis_lib.Redis.from_url(REDIS_BASE_URL + "/0")
    token = uuid.uuid4().hex
    for number in range(1, 16):
        if claimer.set(f"digest-test-claim:{number}", token, nx=True, ex=3 * 3600):
            break
    else:
        pytest.fail("no free Redis database (1-15) for this test session")
    url = f"{REDIS_BASE_URL}/{number}"
    redis_lib.Redis.from_url(url).flushdb()
    yield url
    redis_lib.Redis.from_url(url).flushdb()
    if claimer.get(f"digest-test-claim:{number}") == token.encode():
        claimer.delete(f"digest-test-claim:{number}")


def truncate_all(url: str) -> None:
    engine = sa.create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "outbox"


@pytest.fixture
def base_env(monkeypatch: pytest.MonkeyPatch, outbox: Path) -> None:
    """Settings every test starts from: test mode, known tokens, a private outbox."""
    for key in list(os.environ):
        if (key.startswith("DIGEST_") and not key.startswith("DIGEST_TEST_")) or key == (
            "SENDGRID_API_KEY"
        ):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("DIGEST_ENV", "test")
    monkeypatch.setenv("DIGEST_INGEST_TOKEN", INGEST_TOKEN)
    monkeypatch.setenv("DIGEST_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("DIGEST_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("DIGEST_OUTBOX_DIR", str(outbox))
    monkeypatch.setenv("DIGEST_PUBLIC_URL", "http://testserver")
    monkeypatch.chdir(REPO)
    reset_caches()
    yield
    reset_caches()


@pytest.fixture
def pg(base_env: None, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The session's PostgreSQL database as DIGEST_DATABASE_URL, emptied after the test."""
    monkeypatch.setenv("DIGEST_DATABASE_URL", pg_url)
    reset_caches()
    yield pg_url
    reset_caches()
    truncate_all(pg_url)


@pytest.fixture
def redis_url(redis_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The session's Redis database as DIGEST_REDIS_URL, flushed after the test."""
    monkeypatch.setenv("DIGEST_REDIS_URL", redis_db)
    reset_caches()
    yield redis_db
    redis_lib.Redis.from_url(redis_db).flushdb()


@pytest.fixture
def sqlite(base_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A migrated SQLite file, for behaviour that differs on the embedded default."""
    url = f"sqlite:///{tmp_path / 'digest.db'}"
    monkeypatch.setenv("DIGEST_DATABASE_URL", url)
    reset_caches()
    migrations.upgrade(url)
    return url


def seeds_folder() -> Path:
    """The published sample pages in ../shared/seeds (read at test time, never copied here).

    CI always has the folder, so a missing one fails there; elsewhere the tests are skipped.
    """
    default = SHARED / "seeds"
    folder = Path(os.environ.get("DIGEST_SEEDS_DIR") or default)
    if not folder.is_dir() or not list(folder.glob("*.txt")):
        message = f"seed pages folder {folder} not found (set DIGEST_SEEDS_DIR)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return folder


@pytest.fixture
def seeds_dir() -> Path:
    return seeds_folder()


def read_outbox(folder: Path) -> list[EmailMessage]:
    """Every message the outbox backend wrote, parsed."""
    return [
        message_from_bytes(path.read_bytes(), policy=policy.default)  # type: ignore[misc]
        for path in sorted(folder.glob("*.eml"))
    ]
