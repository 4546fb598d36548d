"""A real Celery worker (and beats) for planning tests: Redis broker, fake SendGrid, PostgreSQL.

Registered for every test by the root conftest.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from bench.procs import CELERY, Proc, celery_worker, wait_for
from tests.support.sendgrid_server import DEFAULT_KEY, FakeSendGrid

Launch = Callable[..., Proc]


def process_env(**overrides: str) -> dict[str, str]:
    """This test's DIGEST_* settings (set by the fixtures) for a child process."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key.startswith("DIGEST_") or key == "SENDGRID_API_KEY"
    }
    env.update(overrides)
    return env


@pytest.fixture
def worker_env(pg: str, redis_url: str, sendgrid_env: FakeSendGrid) -> dict[str, str]:
    """Settings for child processes: this session's Redis database as the broker."""
    return process_env(
        DIGEST_BROKER_URL=redis_url,
        DIGEST_SENDGRID_TIMEOUT="10",
        SENDGRID_API_KEY=DEFAULT_KEY,
    )


@pytest.fixture
def launch(worker_env: dict[str, str], redis_url: str, tmp_path: Path) -> Iterator[Launch]:
    """Start workers and beats for this test; all are stopped (and the queue emptied) after."""
    started: list[Proc] = []

    def start(kind: str, name: str, **env: str) -> Proc:
        merged = {**worker_env, **env}
        if kind == "worker":
            proc = celery_worker(name, merged, concurrency=2, pool="threads", log_dir=tmp_path)
        else:
            argv = [
                CELERY,
                "-A",
                "workers",
                "beat",
                "--loglevel=INFO",
                f"--schedule={tmp_path / name}-schedule",
                f"--pidfile={tmp_path / name}.pid",
            ]
            proc = Proc(name, argv, env=merged, log_dir=tmp_path)
        started.append(proc.start())
        ready = "ready." if kind == "worker" else "beat: Starting"
        wait_for(lambda: ready in proc.log_tail(200) or not proc.alive, 60, what=f"{name} to start")
        assert proc.alive, proc.log_tail()
        return proc

    yield start
    for proc in started:
        proc.stop(timeout=20)
    redis_lib.Redis.from_url(redis_url).flushdb()
