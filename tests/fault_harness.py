"""Helpers for the fault tests: real Celery workers, a private Redis, PostgreSQL backends.

Everything here acts on processes these tests started themselves (by pid / process group) or
on connections to the test's own database; the shared Redis on :6379 is never touched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import psycopg
import redis as redis_lib

from bench.procs import Proc, celery_worker, free_port, port_open, wait_for
from bench.seed import libpq_url


class PrivateRedis:
    """A redis-server of this test's own on a free port, which the test may kill and restart."""

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log_dir = log_dir
        self.proc: Proc | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        self.starts += 1
        argv = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ]
        self.proc = Proc(f"redis-{self.port}-{self.starts}", argv, log_dir=self.log_dir).start()
        wait_for(self.ping, 10, what=f"private redis on :{self.port}")
        return self

    def ping(self) -> bool:
        try:
            return bool(redis_lib.Redis.from_url(self.url, socket_timeout=0.5).ping())
        except redis_lib.RedisError:
            return False

    def kill(self) -> None:
        """kill -9: whatever was queued in memory is gone, as after a real crash."""
        if self.proc is not None:
            self.proc.kill()
        wait_for(lambda: not port_open(self.port), 10, what="redis port to close")

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout=5)


@contextlib.contextmanager
def private_redis(log_dir: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(log_dir).start()
    try:
        yield server
    finally:
        server.stop()


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
