"""`make bench`: a weekly digest to N subscribers through Redis, Celery workers and fake SendGrid.

    python -m bench.dispatch --recipients 100000 --recipients 1000000 --segments 8 --workers 2

For each N: a fresh PostgreSQL database (`digest_bench`), migrated, N active subscribers COPYed
in over `--segments` preference segments and several timezones, and the sample comparisons
ingested. Then real processes: the SendGrid-compatible server (tests/sendgrid_server.py) in its
own process, a private redis-server as the broker, and `--workers` Celery worker processes.
The digest is planned here, in this process, by the planner's own domain function (timed), its
batches are handed to the workers, and the database is polled until the digest is finished.

The server's own record (one NDJSON line per accepted request) is loaded back into PostgreSQL
and compared with the subscribers there: duplicates, missing and unexpected addresses are the
server's view, not the ledger's. A markdown table is printed and a JSON file written per run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import psycopg

from bench.baseline import BaselineResult, run_baseline
from bench.floor import floor_us_per_recipient
from bench.procs import (
    PYTHON,
    ROOT,
    MemorySampler,
    Proc,
    PySpy,
    celery_worker,
    clear_logs,
    read_status_kb,
    sendgrid_stand_in,
    wait_for,
)
from bench.seed import libpq_url
from bench.world import seed_world

ADMIN_URL = os.environ.get(
    "DIGEST_BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
API_KEY = "SG.bench-key"
OUT_DIR = ROOT / "var" / "bench"


@dataclass
class Result:
    recipients: int
    segments: int
    workers: int
    concurrency: int
    pool: str = "prefork"
    digest_id: int = 0
    seed_s: float = 0.0
    planning_s: float = 0.0
    enqueue_s: float = 0.0
    sending_s: float = 0.0
    end_to_end_s: float = 0.0
    planned_recipients: int = 0
    batches: int = 0
    planned_segments: int = 0
    renders_db: int = 0
    renders_process: int = 0
    digest_status: str = ""
    digest_reason: str = ""
    requests: int = 0
    accepted_requests: int = 0
    server_recipients: int = 0
    unique_addresses: int = 0
    duplicates: int = 0
    missing: int = 0
    unexpected: int = 0
    ambiguous_batches: int = 0
    rss_kb: dict[str, int] = field(default_factory=dict)
    cpu_planning: dict[str, float] = field(default_factory=dict)  # CPU seconds per process
    cpu_sending: dict[str, float] = field(default_factory=dict)
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    lookup_ms: tuple[float, float] = (0.0, 0.0)  # find_recipient: median, slowest of 50
    report_ms: tuple[float, float] = (0.0, 0.0)  # digest_report: median, slowest of 10
    floor_us: float = 0.0  # bench/floor.py, measured just before the run

    @property
    def times_floor(self) -> float:
        """Our CPU per recipient as a multiple of the floor measured in the same run: the
        figure to compare across days on a machine whose speed drifts."""
        return self.ours_cpu_us / self.floor_us if self.floor_us else 0.0

    @property
    def per_second(self) -> float:
        return self.server_recipients / self.end_to_end_s if self.end_to_end_s else 0.0

    @property
    def ours_cpu_s(self) -> float:
        """CPU seconds of our processes, planning to the end: the planning process while it
        plans, the workers, PostgreSQL and Redis. Not the stand-in (SendGrid's side), and not
        the bench's own polling and sampling while the workers send."""
        planning = sum(v for k, v in self.cpu_planning.items() if k != "sendgrid")
        sending = sum(
            v for k, v in self.cpu_sending.items() if k not in ("sendgrid", "bench process")
        )
        return planning + sending

    @property
    def ours_cpu_us(self) -> float:
        return self.ours_cpu_s / self.recipients * 1e6 if self.recipients else 0.0

    @property
    def worker_pss_kb(self) -> int:
        """The largest worker tree's peak PSS (one `celery worker` with its pool children)."""
        trees = [kb for name, kb in self.rss_kb.items() if name.endswith("(all processes, PSS)")]
        return max(trees, default=0)


def _env(database_url: str, broker_url: str, sendgrid_url: str) -> dict[str, str]:
    return {
        "DIGEST_ENV": "development",
        "DIGEST_DATABASE_URL": database_url,
        "DIGEST_BROKER_URL": broker_url,
        "DIGEST_REDIS_URL": broker_url,
        "DIGEST_EMAIL_BACKEND": "sendgrid",
        "DIGEST_SENDGRID_HOST": sendgrid_url,
        "SENDGRID_API_KEY": API_KEY,
        "DIGEST_SECRET_KEY": "bench-secret-key-0123456789abcdef",
        "DIGEST_PUBLIC_URL": "https://verdicts.example",
        "DIGEST_SENDGRID_TIMEOUT": "30",
        "PYTHONUNBUFFERED": "1",
    }


def _server_stats(url: str) -> dict[str, Any]:
    with urlopen(url + "/_stats", timeout=30) as response:
        return json.load(response)


def _compare_with_server(database_url: str, record: Path, digest_id: int) -> dict[str, int]:
    """Load the server's record into a temp table; count missing and unexpected addresses.

    Expected: every active, unpaused weekly subscriber (the bench suppresses nobody).
    """
    with psycopg.connect(libpq_url(database_url)) as connection:
        connection.execute("CREATE TEMP TABLE received (email text NOT NULL)")
        with (
            connection.cursor().copy("COPY received (email) FROM STDIN") as copy,
            record.open() as f,
        ):
            for line in f:
                for address in json.loads(line)["recipients"]:
                    copy.write_row((address,))
        connection.execute("CREATE INDEX ON received (email)")
        connection.execute("ANALYZE received")
        expected = (
            "SELECT lower(email) AS email FROM subscribers"
            " WHERE status = 'active' AND NOT paused AND frequency = 'weekly'"
        )
        (missing,) = connection.execute(
            f"SELECT count(*) FROM ({expected}) e"
            " WHERE NOT EXISTS (SELECT 1 FROM received r WHERE r.email = e.email)"
        ).fetchone()
        (unexpected,) = connection.execute(
            f"SELECT count(DISTINCT email) FROM received r"
            f" WHERE NOT EXISTS (SELECT 1 FROM ({expected}) e WHERE e.email = r.email)"
        ).fetchone()
        (duplicates,) = connection.execute(
            "SELECT count(*) FROM (SELECT email FROM received GROUP BY email HAVING count(*) > 1) d"
        ).fetchone()
        (ambiguous,) = connection.execute(
            "SELECT count(*) FROM delivery_batches WHERE digest_id = %s AND status = 'ambiguous'",
            (digest_id,),
        ).fetchone()
    return {
        "missing": missing,
        "unexpected": unexpected,
        "duplicates": duplicates,
        "ambiguous": ambiguous,
    }


class _Watcher:
    """One connection that polls a digest's state (a new connection per poll costs CPU)."""

    def __init__(self, database_url: str, digest_id: int) -> None:
        self.connection = psycopg.connect(libpq_url(database_url), autocommit=True)
        self.digest_id = digest_id

    def status(self) -> tuple[str, str]:
        status, reason = self.connection.execute(
            "SELECT status, coalesce(status_reason, '') FROM digests WHERE id = %s",
            (self.digest_id,),
        ).fetchone()
        return status, reason

    def batches_done(self) -> int:
        (done,) = self.connection.execute(
            "SELECT count(*) FROM delivery_batches WHERE digest_id = %s"
            " AND status NOT IN ('pending', 'sending')",
            (self.digest_id,),
        ).fetchone()
        return done

    def close(self) -> None:
        self.connection.close()


def run(
    recipients: int,
    *,
    segments: int,
    workers: int,
    concurrency: int,
    database: str,
    timeout: float,
    profile: Path | None = None,
    pool: str = "prefork",
) -> Result:
    result = Result(recipients, segments, workers, concurrency, pool)
    result.load_before = os.getloadavg()
    log_dir = OUT_DIR / f"{recipients}"
    clear_logs(log_dir)
    record = log_dir / "received.ndjson"
    record.unlink(missing_ok=True)

    started = time.perf_counter()
    world = seed_world(database, ADMIN_URL, recipients, segments, log_dir, _env)
    database_url, port, redis, env = world.database_url, world.port, world.redis, world.env
    sendgrid_url = world.sendgrid_url
    result.seed_s = time.perf_counter() - started
    print(f"seeded {recipients:,} subscribers in {result.seed_s:.1f}s", file=sys.stderr)
    result.floor_us = floor_us_per_recipient()
    print(f"floor: {result.floor_us:.1f} µs per recipient on one core", file=sys.stderr)

    server = sendgrid_stand_in(port, API_KEY, log_dir, record=record)
    procs: list[Proc] = []
    # One sample a second: a sample reads every watched process's smaps_rollup and scans the
    # process table for PostgreSQL backends (10-20 ms of CPU), taken from the two cores the run
    # is measured on. Peak RSS is the kernel's high-water mark and CPU is cumulative, so
    # neither depends on the interval; only PSS is sampled, and it is flat.
    sampler = MemorySampler(interval=1.0)
    spy: PySpy | None = None
    try:
        procs += world.start(server)
        for number in range(1, workers + 1):
            worker = celery_worker(
                f"bench-worker-{number}", env, concurrency=concurrency, pool=pool, log_dir=log_dir
            ).start()
            procs.append(worker)
        for worker in procs[2:]:
            wait_for(lambda w=worker: "ready." in w.log_tail(100), 60, what=f"{worker.name}")
        for proc in procs:
            sampler.watch("redis" if proc is redis.proc else proc.name, proc.pid)
        sampler.watch_postgres("postgres backends", database)
        sampler.start()
        if profile is not None:
            spy = PySpy(profile / str(recipients))
            spy.attach("planning", os.getpid(), children=False)
            for proc in procs[1:]:
                spy.attach(proc.name, proc.pid)

        result.digest_status, result.digest_reason = _send_digest(
            result, database_url, timeout, sampler
        )
        stats = _server_stats(sendgrid_url)
        result.requests = stats["requests"]
        result.accepted_requests = stats["accepted_requests"]
        result.server_recipients = stats["recipients"]
        result.unique_addresses = stats["unique_addresses"]
    finally:
        if spy is not None:
            spy.stop()
        records = sampler.stop()
        for proc in reversed(procs):
            proc.stop()
        redis.stop()
    for name, memory in records.items():
        result.rss_kb[name] = memory.peak_process_kb
        if name.startswith("bench-worker"):
            result.rss_kb[name + " (all processes, RSS sum)"] = memory.peak_tree_kb
            result.rss_kb[name + " (all processes, PSS)"] = memory.peak_tree_pss_kb
    checked = _compare_with_server(database_url, record, result.digest_id)
    result.duplicates = checked["duplicates"]
    result.missing = checked["missing"]
    result.unexpected = checked["unexpected"]
    result.ambiguous_batches = checked["ambiguous"]
    result.lookup_ms = _time_lookups(result.digest_id, recipients)
    result.report_ms = _time_reports(result.digest_id, recipients)
    result.load_after = os.getloadavg()
    return result


def _time_reports(digest_id: int, recipients: int, count: int = 10) -> tuple[float, float]:
    """The digest's counts by status, as the console's progress fragment polls them every 3 s
    while a digest sends (`progress.digest_report`); (median, slowest) in ms."""
    from digest.db import session_scope
    from digest.progress import digest_report

    timings = []
    with session_scope() as session:
        digest_report(session, digest_id)  # untimed: connection and plans, as a running console
        for _ in range(count):
            started = time.perf_counter()
            report = digest_report(session, digest_id)
            timings.append((time.perf_counter() - started) * 1000)
    if report.deliveries.get("sent") != recipients:
        raise RuntimeError(f"digest {digest_id}'s report counted {report.deliveries}")
    timings.sort()
    return timings[len(timings) // 2], timings[-1]


def _time_lookups(digest_id: int, recipients: int, count: int = 50) -> tuple[float, float]:
    """ "Did this address get digest N, when, which message id": the console's ledger search
    (`find_recipient`) for `count` addresses spread over the list; (median, slowest) in ms."""
    from bench.seed import subscriber_email
    from digest.db import session_scope
    from digest.ledger_lookup import find_recipient

    timings = []
    with session_scope() as session:
        # One untimed look-up first, as a running console has done: the connection, the
        # compiled statement and PostgreSQL's plan are set up once per process, not per search.
        find_recipient(session, digest_id, subscriber_email(1))
        # And what was loaded so far frozen out of the collector, as the console's process does
        # at start (digest/web/app.py `tune_garbage_collector`): here a full collection of the
        # bench's own objects landed in one look-up in fifty and took 70–130 ms.
        gc.freeze()
        try:
            for n in range(count):
                address = subscriber_email(n * recipients // count).upper()
                started = time.perf_counter()
                traces = find_recipient(session, digest_id, address)
                timings.append((time.perf_counter() - started) * 1000)
                if len(traces) != 1 or traces[0].message_id is None:
                    raise RuntimeError(f"ledger lookup of {address} found {traces}")
        finally:
            gc.unfreeze()
    timings.sort()
    return timings[len(timings) // 2], timings[-1]


def _send_digest(
    result: Result, database_url: str, timeout: float, sampler: MemorySampler
) -> tuple[str, str]:
    """Plan a weekly digest here (timed), hand its batches to the workers, wait for the end."""
    from digest import rendering
    from digest.db import session_scope
    from digest.planning import plan_digest_id
    from schema.models import Digest
    from workers.tasks import dispatch_batches

    with session_scope() as session:
        digest = Digest(kind="weekly", status="planned", window_end=datetime.now(UTC), options={})
        session.add(digest)
        session.flush()
        digest_id = digest.id
    result.digest_id = digest_id
    renders_before = rendering.mjml_render_count()

    # The planner runs in this process (this thread, and the thread that reads its next page
    # of recipients): its CPU is the process's less the sampler's thread, which reads /proc for
    # every process on the machine.
    cpu0, own0 = sampler.cpu_snapshot(), time.process_time() - sampler.own_cpu()
    t0 = time.perf_counter()
    report = plan_digest_id(digest_id)
    t1 = time.perf_counter()
    cpu1, own1 = sampler.cpu_snapshot(), time.process_time() - sampler.own_cpu()
    result.cpu_planning = {name: cpu1[name] - cpu0.get(name, 0) for name in cpu1}
    result.cpu_planning["bench process"] = own1 - own0
    result.rss_kb["bench process (planning)"] = read_status_kb(os.getpid(), "VmHWM")
    if report is None or report.status != "sending":
        raise RuntimeError(f"planning did not start a send: {report}")
    dispatch_batches(report.batch_ids)
    t2 = time.perf_counter()
    result.planning_s, result.enqueue_s = t1 - t0, t2 - t1
    result.planned_recipients, result.batches = report.recipients, len(report.batch_ids)
    result.planned_segments = len(report.segments)
    result.renders_process = rendering.mjml_render_count() - renders_before
    print(
        f"planned {report.recipients:,} recipients, {len(report.batch_ids)} batches,"
        f" {report.renders} renders in {result.planning_s:.2f}s; enqueued in"
        f" {result.enqueue_s:.2f}s",
        file=sys.stderr,
    )
    last_print = 0.0
    watcher = _Watcher(database_url, digest_id)
    try:
        while True:
            status, reason = watcher.status()
            now = time.perf_counter()
            if status != "sending":
                break
            if now - last_print >= 5:
                done = watcher.batches_done()
                print(f"  {now - t0:5.1f}s: {done}/{result.batches} batches done", file=sys.stderr)
                last_print = now
            if now - t0 > timeout:
                raise TimeoutError(f"digest {digest_id} still sending after {timeout:.0f}s")
            time.sleep(0.2)
    finally:
        watcher.close()
    t3 = time.perf_counter()
    result.sending_s, result.end_to_end_s = t3 - t2, t3 - t0
    cpu3 = sampler.cpu_snapshot()
    result.cpu_sending = {name: cpu3[name] - cpu1.get(name, 0) for name in cpu3}
    result.cpu_sending["bench process"] = time.process_time() - sampler.own_cpu() - own1
    with session_scope() as session:
        result.renders_db = session.get(Digest, digest_id).renders
    return status, reason


def _mb(kb: int) -> str:
    return f"{kb / 1024:.0f} MB"


def table(results: list[Result]) -> str:
    """A README-ready markdown table, one column per run."""
    rows: list[tuple[str, list[str]]] = [
        ("recipients", [f"{r.recipients:,}" for r in results]),
        (
            "preference sets seeded / segments planned",
            [f"{r.segments} / {r.planned_segments}" for r in results],
        ),
        (
            "worker processes × concurrency (pool)",
            [f"{r.workers} × {r.concurrency} ({r.pool})" for r in results],
        ),
        ("planning (freeze, render, ledger)", [f"{r.planning_s:.1f} s" for r in results]),
        ("enqueue (one task per batch)", [f"{r.enqueue_s:.1f} s" for r in results]),
        ("sending (until the digest is finished)", [f"{r.sending_s:.1f} s" for r in results]),
        ("end to end (plan start → all sent)", [f"{r.end_to_end_s:.1f} s" for r in results]),
        ("recipients/s end to end", [f"{r.per_second:,.0f}" for r in results]),
        ("batches", [f"{r.batches:,}" for r in results]),
        (
            "SendGrid requests (accepted)",
            [f"{r.requests:,} ({r.accepted_requests:,})" for r in results],
        ),
        (
            "MJML renders (digest / process)",
            [f"{r.renders_db} / {r.renders_process}" for r in results],
        ),
        ("digest status", [r.digest_status for r in results]),
        (
            "server: recipients / unique",
            [f"{r.server_recipients:,} / {r.unique_addresses:,}" for r in results],
        ),
        ("server: duplicates", [str(r.duplicates) for r in results]),
        ("server: missing / unexpected", [f"{r.missing} / {r.unexpected}" for r in results]),
        ("ambiguous batches", [str(r.ambiguous_batches) for r in results]),
        (
            "floor: one recipient built and encoded, one core (bench/floor.py)",
            [f"{r.floor_us:.1f} µs" for r in results],
        ),
        ("our CPU per recipient ÷ floor", [f"{r.times_floor:.1f}×" for r in results]),
        (
            "ledger lookup by address (median / slowest of 50)",
            [f"{r.lookup_ms[0]:.1f} / {r.lookup_ms[1]:.1f} ms" for r in results],
        ),
        (
            "digest report: counts by status, as the console polls them (median / slowest of 10)",
            [f"{r.report_ms[0]:.1f} / {r.report_ms[1]:.1f} ms" for r in results],
        ),
    ]
    names = sorted({name for r in results for name, kb in r.rss_kb.items() if kb})
    for name in names:
        rows.append((f"peak RSS: {name}", [_mb(r.rss_kb.get(name, 0)) for r in results]))
    for name in sorted({name for r in results for name in r.cpu_sending}):
        values = [
            f"{r.cpu_planning.get(name, 0):.1f} / {r.cpu_sending.get(name, 0):.1f}" for r in results
        ]
        rows.append((f"CPU s planning / sending: {name}", values))
    rows.append(
        (
            "load average before / after",
            [f"{r.load_before[0]:.2f} / {r.load_after[0]:.2f}" for r in results],
        )
    )
    header = "| | " + " | ".join(f"{r.recipients:,}" for r in results) + " |"
    lines = [header, "|---|" + "---|" * len(results)]
    lines += [f"| {label} | " + " | ".join(values) + " |" for label, values in rows]
    return "\n".join(lines)


def cost_table(results: list[Result]) -> str:
    """How cost grows with N (issue 16, item 5): time, CPU per recipient, peak memory."""
    lines = [
        "| recipients | planning | end to end | recipients/s | our CPU s | our CPU µs/recipient"
        " | floor µs | ours ÷ floor | stand-in CPU µs/recipient | worker tree PSS (each)"
        " | planning RSS | load before / after |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        stand_in = r.cpu_planning.get("sendgrid", 0) + r.cpu_sending.get("sendgrid", 0)
        lines.append(
            f"| {r.recipients:,} | {r.planning_s:.1f} s | {r.end_to_end_s:.1f} s"
            f" | {r.per_second:,.0f} | {r.ours_cpu_s:.1f} | {r.ours_cpu_us:.1f}"
            f" | {r.floor_us:.1f} | {r.times_floor:.1f}×"
            f" | {stand_in / r.recipients * 1e6:.1f} | {_mb(r.worker_pss_kb)}"
            f" | {_mb(r.rss_kb.get('bench process (planning)', 0))}"
            f" | {r.load_before[0]:.2f} / {r.load_after[0]:.2f} |"
        )
    return "\n".join(lines)


def baseline_lines(results: list[Result], baseline: BaselineResult) -> str:
    """The tutorial way against ours (issue 16, item 2): both rates and their ratio."""
    lines = [
        f"tutorial way (one Celery task per recipient, official client): {baseline.accepted:,}"
        f" of {baseline.recipients:,} sent in {baseline.seconds:.1f} s ="
        f" {baseline.per_second:,.0f}/s; our CPU {baseline.ours_cpu_us:,.0f} µs/recipient;"
        f" unique {baseline.unique:,}; load {baseline.load_before[0]:.2f} /"
        f" {baseline.load_after[0]:.2f}"
    ]
    for r in results:
        ratio = r.per_second / baseline.per_second if baseline.per_second else 0.0
        cpu = baseline.ours_cpu_us / r.ours_cpu_us if r.ours_cpu_us else 0.0
        lines.append(
            f"ours at {r.recipients:,}: {r.per_second:,.0f}/s = {ratio:,.1f}× the tutorial's"
            f" rate, {cpu:,.1f}× less CPU per recipient"
        )
    return "\n".join(lines)


def _load_result(path: Path) -> Result:
    data = json.loads(path.read_text())
    data.pop("machine", None)
    data["load_before"] = tuple(data["load_before"])
    data["load_after"] = tuple(data["load_after"])
    data["lookup_ms"] = tuple(data.get("lookup_ms", (0.0, 0.0)))
    data["report_ms"] = tuple(data.get("report_ms", (0.0, 0.0)))
    return Result(**data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, action="append", help="repeatable; 100000")
    parser.add_argument("--segments", type=int, default=8)
    # Three single-process trees on two cores (README Benchmarks): at 300k the quickest of
    # 2×1, 3×1, 4×1 and 2×2; at 1M, alternated, 2×1 and 3×1 were equal within this machine's
    # run-to-run spread; pools of two cost more CPU per recipient, and a tree of one process is
    # the smallest (~136 MB PSS). Real SendGrid latency calls for more concurrency.
    parser.add_argument("--workers", type=int, default=3, help="Celery worker trees")
    parser.add_argument("--concurrency", type=int, default=1, help="pool size per worker")
    parser.add_argument("--pool", default="prefork", help="Celery pool: prefork or solo")
    parser.add_argument("--database", default="digest_bench")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    parser.add_argument(
        "--profile", type=Path, help="record py-spy profiles of every process into this folder"
    )
    parser.add_argument(
        "--baseline",
        type=int,
        default=5000,
        help="recipients for the tutorial-way baseline (0: skip it)",
    )
    parser.add_argument("--baseline-only", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--json-out", type=Path, help=argparse.SUPPRESS)  # one run, as JSON
    args = parser.parse_args(argv)
    # Migrating the bench database reads the settings before the run's own environment is set.
    os.environ.setdefault("DIGEST_ENV", "development")
    sizes = args.recipients or [10_000, 100_000, 1_000_000]
    common = [f"--segments={args.segments}", f"--workers={args.workers}"]
    common += [f"--concurrency={args.concurrency}", f"--database={args.database}"]
    common += [f"--timeout={args.timeout}", f"--pool={args.pool}"]
    common += [f"--profile={args.profile}"] if args.profile else []
    load_at_start = os.getloadavg()
    if args.baseline_only:
        base = run_baseline(
            args.baseline_only,
            segments=args.segments,
            workers=args.workers,
            concurrency=args.concurrency,
            database=args.database,
            admin_url=ADMIN_URL,
            env_for=_env,
            log_dir=OUT_DIR / "tutorial",
        )
        out = args.json_out or OUT_DIR / "result-tutorial.json"
        out.write_text(json.dumps(asdict(base), indent=1))
        return 0
    if args.json_out is not None or len(sizes) == 1:
        result = run(
            sizes[0],
            segments=args.segments,
            workers=args.workers,
            concurrency=args.concurrency,
            database=args.database,
            timeout=args.timeout,
            profile=args.profile,
            pool=args.pool,
        )
        out = args.json_out or OUT_DIR / f"result-{sizes[0]}.json"
        out.write_text(json.dumps({**asdict(result), "machine": platform.node()}, indent=1))
        if args.json_out is not None:
            return 0
        results = [result]
    else:
        # Each size in a fresh interpreter: the Celery app binds its broker at import time.
        results = []
        for recipients in sizes:
            out = OUT_DIR / f"result-{recipients}.json"
            out.unlink(missing_ok=True)
            argv_one = ["-m", "bench.dispatch", f"--recipients={recipients}", *common]
            subprocess.run([PYTHON, *argv_one, f"--json-out={out}"], check=True, cwd=ROOT)
            results.append(_load_result(out))
    print(table(results))
    print()
    print(cost_table(results))
    if args.baseline:
        out = OUT_DIR / "result-tutorial.json"
        out.unlink(missing_ok=True)
        argv_base = ["-m", "bench.dispatch", f"--baseline-only={args.baseline}", *common]
        subprocess.run([PYTHON, *argv_base, f"--json-out={out}"], check=True, cwd=ROOT)
        data = json.loads(out.read_text())
        data["load_before"], data["load_after"] = (
            tuple(data["load_before"]),
            tuple(data["load_after"]),
        )
        print()
        print(baseline_lines(results, BaselineResult(**data)))
    load = os.getloadavg()
    print(
        f"\nload average (1, 5, 15 min): {load_at_start[0]:.2f} {load_at_start[1]:.2f}"
        f" {load_at_start[2]:.2f} at the start, {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        f" at the end; {os.cpu_count()} CPUs"
    )
    bad = [
        r for r in results if r.duplicates or r.missing or r.unexpected or r.digest_status != "sent"
    ]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
