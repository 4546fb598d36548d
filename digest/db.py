"""The database seam: one engine per URL and a session scope that commits or rolls back.

Every caller (web request, CLI command, worker task) opens its own short session through
`session_scope`; nothing holds a session across a network call to SendGrid.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from digest.settings import get_settings


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """SQLite enforces foreign keys only when asked, and WAL lets readers run beside a writer."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(url: str | None = None) -> Engine:
    """One engine (one connection pool) per database URL and process."""
    url = url or get_settings().database_url
    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = _ENGINES[url] = _create_engine(url)
    return engine


def _create_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    settings = get_settings()
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )


def _autocommit_engine(url: str) -> Engine:
    """PostgreSQL: a second, small pool on the same database whose connections commit each
    statement as it runs and are not pinged at checkout (see `statement_scope`)."""
    key = "autocommit:" + url
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = _ENGINES[key] = create_engine(
                url,
                isolation_level="AUTOCOMMIT",
                pool_size=2,
                max_overflow=4,
                pool_reset_on_return=None,  # nothing to roll back: no transaction is ever open
            )
    return engine


@contextmanager
def statement_scope() -> Iterator[Connection]:
    """A connection for ONE statement that is its own transaction (atomic, committed when it
    returns), for a hot path's single-statement write: the batched signup INSERT.

    On PostgreSQL it comes from an autocommit pool without pre-ping: the session's ping, BEGIN
    and COMMIT were three of that write's four round trips. A connection dropped while idle
    fails the statement (nothing written) with OperationalError and is discarded; the caller
    tries once more. SQLite: an ordinary transaction around whatever the caller runs.
    """
    url = get_settings().database_url
    if url.startswith("sqlite"):
        with get_engine(url).begin() as connection:
            yield connection
        return
    with _autocommit_engine(url).connect() as connection:
        yield connection


@lru_cache(maxsize=8)
def _sessionmaker(url: str) -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(url), expire_on_commit=False)


def new_session() -> Session:
    return _sessionmaker(get_settings().database_url)()


@contextmanager
def session_scope() -> Iterator[Session]:
    """A unit of work: commit on success, roll back on any error, always close."""
    session = new_session()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def reset_caches() -> None:
    """Forget engines and settings (tests switch databases between runs).

    Engines are disposed, not just forgotten: a dropped pool would keep its connections open
    until the garbage collector found it.
    """
    with _ENGINES_LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for engine in engines:
        engine.dispose()
    _sessionmaker.cache_clear()
    get_settings.cache_clear()
