"""The world a dispatch bench runs in: a fresh database of N subscribers with this week's
comparisons, a private Redis (not started yet), a free port for the SendGrid stand-in, and this
process's environment pointed at all three. Shared by `bench.dispatch` and its tutorial-way
baseline (`bench.baseline`), so both measure against the same set-up."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.procs import PrivateRedis, Proc, free_port, port_open, wait_for
from bench.seed import copy_subscribers, create_database, import_sample_comparisons

EnvFor = Callable[[str, str, str], dict[str, str]]  # (database, broker, SendGrid URL) -> env


@dataclass
class BenchWorld:
    database_url: str
    port: int  # the stand-in's
    redis: PrivateRedis
    env: dict[str, str]

    @property
    def sendgrid_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, stand_in: Proc) -> list[Proc]:
        """Start the private Redis and the SendGrid stand-in (on `port`), and wait for it."""
        self.redis.start()
        stand_in.start()
        wait_for(lambda: port_open(self.port), 20, what="the fake SendGrid server")
        return [self.redis.proc, stand_in]  # type: ignore[list-item]


def seed_world(
    database: str,
    admin_url: str,
    recipients: int,
    segments: int,
    log_dir: Path,
    env_for: EnvFor,
) -> BenchWorld:
    """Seed the database, pick the port, set `os.environ` (the planner runs in this process)."""
    database_url = create_database(database, admin_url)
    copy_subscribers(database_url, recipients, segments=segments)
    port = free_port()
    redis = PrivateRedis(log_dir)
    env = env_for(database_url, redis.url, f"http://127.0.0.1:{port}")
    os.environ.update(env)
    from digest.db import reset_caches

    reset_caches()
    import_sample_comparisons()
    return BenchWorld(database_url, port, redis, env)
