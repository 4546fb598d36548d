"""`make bench`'s baseline run: the tutorial way (bench/tutorial.py) on N recipients, timed.

A fresh `digest_bench` database with N subscribers (the same seeding as the real run), the same
SendGrid stand-in with the same flags, a private Redis, and the same number of Celery worker
processes × pool size, consuming the `tutorial` queue. One task per recipient is queued (one
pipelined publish); the clock runs from the first publish until the stand-in has accepted a
message for every recipient. The stand-in's own counts give duplicates and missing.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.request import urlopen

from bench.procs import (
    CELERY,
    MemorySampler,
    Proc,
    clear_logs,
    sendgrid_stand_in,
    wait_for,
)
from bench.world import EnvFor, seed_world

API_KEY = "SG.bench-key"


@dataclass
class BaselineResult:
    recipients: int
    workers: int
    concurrency: int
    seconds: float = 0.0
    accepted: int = 0
    unique: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def per_second(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0

    @property
    def ours_cpu_us(self) -> float:
        """CPU µs per recipient of the workers, PostgreSQL and Redis (not the stand-in)."""
        ours = sum(v for k, v in self.cpu.items() if k != "sendgrid")
        return ours / self.recipients * 1e6 if self.recipients else 0.0


def _stats(url: str) -> dict[str, Any]:
    with urlopen(url + "/_stats", timeout=30) as response:
        return json.load(response)


def run_baseline(
    recipients: int,
    *,
    segments: int,
    workers: int,
    concurrency: int,
    database: str,
    admin_url: str,
    env_for: EnvFor,
    log_dir: Path,
    timeout: float = 900.0,
) -> BaselineResult:
    """The tutorial way on `recipients` subscribers; `env_for(db, broker, sendgrid)` gives the
    same environment the real run's processes get."""
    result = BaselineResult(recipients, workers, concurrency)
    result.load_before = os.getloadavg()
    clear_logs(log_dir)
    world = seed_world(database, admin_url, recipients, segments, log_dir, env_for)
    port, sendgrid_url, redis, env = world.port, world.sendgrid_url, world.redis, world.env
    server = sendgrid_stand_in(port, API_KEY, log_dir)
    procs: list[Proc] = []
    sampler = MemorySampler(interval=0.5)
    try:
        procs += world.start(server)
        for number in range(1, workers + 1):
            argv = [CELERY, "-A", "bench.tutorial", "worker", "-Q", "tutorial"]
            argv += [f"--hostname=tutorial-{number}@%h", f"--concurrency={concurrency}"]
            argv += ["--loglevel=INFO", "--without-gossip", "--without-mingle"]
            argv += ["--without-heartbeat"]
            procs.append(Proc(f"tutorial-worker-{number}", argv, env=env, log_dir=log_dir).start())
        for proc in procs[2:]:
            wait_for(lambda p=proc: "ready." in p.log_tail(100), 60, what=proc.name)
        for proc in procs:
            sampler.watch("redis" if proc is redis.proc else proc.name, proc.pid)
        sampler.watch_postgres("postgres backends", database)
        sampler.start()
        result.seconds = _send_all(recipients, sendgrid_url, sampler, result, timeout)
        stats = _stats(sendgrid_url)
        result.accepted, result.unique = stats["recipients"], stats["unique_addresses"]
    finally:
        sampler.stop()
        for proc in reversed(procs):
            proc.stop()
        redis.stop()
    result.load_after = os.getloadavg()
    return result


def _send_all(
    recipients: int,
    sendgrid_url: str,
    sampler: MemorySampler,
    result: BaselineResult,
    timeout: float,
) -> float:
    """Queue one task per subscriber, wait until the stand-in has them all; returns seconds."""
    from sqlalchemy import select

    from bench import tutorial
    from digest.collect import weekly_window
    from digest.db import session_scope
    from schema.models import Subscriber

    until = datetime.now(UTC)
    with session_scope() as session:
        since, _ = weekly_window(session, until)
        ids = list(session.scalars(select(Subscriber.id).order_by(Subscriber.id)))
    cpu0 = sampler.cpu_snapshot()
    started = time.perf_counter()
    with tutorial.app.producer_or_acquire() as producer:
        for subscriber_id in ids:
            tutorial.send_one.apply_async(
                (subscriber_id, since.isoformat(), until.isoformat()), producer=producer
            )
    last = 0.0
    while (done := _stats(sendgrid_url)["recipients"]) < recipients:
        now = time.perf_counter()
        if now - started > timeout:
            raise TimeoutError(f"the tutorial way sent {done} of {recipients} in {timeout:.0f}s")
        if now - last >= 5:
            print(f"  tutorial: {done}/{recipients} sent", file=sys.stderr)
            last = now
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    cpu1 = sampler.cpu_snapshot()
    result.cpu = {name: cpu1[name] - cpu0.get(name, 0.0) for name in cpu1}
    return seconds
