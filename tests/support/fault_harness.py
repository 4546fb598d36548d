"""Helpers for the fault tests: real Celery workers, a private Redis, PostgreSQL backends.

Everything here acts on processes these tests started themselves (by pid / process group) or
on connections to the test's own database; the shared Redis on :6379 is never touched.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

from bench.procs import PrivateRedis, Proc, celery_worker, free_port, private_redis, wait_for
from bench.seed import libpq_url


def terminate_backends(database_url: str) -> int:
    """pg_terminate_backend every other connection to the database; returns how many."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return sum(1 for (ok,) in rows if ok)


def start_worker(name: str, env: dict[str, str], log_dir: Path, concurrency: int = 1) -> Proc:
    """A real Celery worker subprocess, waited for until it consumes from the broker."""
    worker = celery_worker(name, env, concurrency=concurrency, log_dir=log_dir).start()
    wait_for(
        lambda: "ready." in worker.log_tail(200) or not worker.alive,
        60,
        what=f"celery worker {name} to be ready",
    )
    if not worker.alive:
        raise RuntimeError(f"worker {name} died on start:\n{worker.log_tail()}")
    return worker


__all__ = [
    "PrivateRedis",
    "Proc",
    "free_port",
    "private_redis",
    "start_worker",
    "terminate_backends",
    "wait_for",
]
