"""`make bench-subscribe`: POST /subscribe under load, with production settings.

    python -m bench.subscribe [--duration 30] [--connections 64] [--workers 2]

A fresh PostgreSQL database (`digest_bench_subscribe`: not `bench.dispatch`'s `digest_bench`, so
the two benchmarks can run side by side), Redis for rate limits (db 13) and as the Celery
broker (db 14, so confirmation emails are *queued*, not sent), and the app under uvicorn
(`--workers`, uvloop, httptools, no access log) with DIGEST_ENV=production. A separate driver
process holds `--connections` keep-alive HTTP/1.1 connections on loopback and posts JSON signups
with unique addresses for `--duration` seconds after a short warm-up: closed loop (each
connection sends its next request when the last is answered: the server's saturation rate), or
with `--rate N` open loop (N signups/s offered on a fixed schedule, latency counted from the
scheduled send time). It prints signups/s, p50/p90/p99/max latency, errors, and the CPU time per
signup of the app, PostgreSQL, Redis and the driver (the machine may be shared: the 1-minute load
average is printed too); then every accepted address is looked up in the database and every
confirmation message is read back from the broker's queue.

The driver shares the 2 CPUs with the server; it is reniced (-10 by default, as root) so that its
own clock is not late behind the server's work: in open loop a late driver counts its own
scheduling delay as latency. It uses about a tenth of a CPU at 1,000 requests/s.

The per-IP limit is raised for the run (DIGEST_SUBSCRIBE_RATE_PER_IP, default 200000/minute):
the driver is one IP, and the production default (20/minute) would refuse nearly everything.
The per-address limit keeps its default; every address is new, so it is checked on each request
but never trips. Redis databases 13 and 14 are claimed like the test suite's (SET NX in db 0).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
import redis as redis_lib

from bench.procs import PYTHON, ROOT, Proc, free_port, port_open, wait_for
from bench.seed import create_database, libpq_url

ADMIN_URL = os.environ.get(
    "DIGEST_BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
OUT_DIR = ROOT / "var" / "bench"
TARGET_RATE = 4000.0
# Connections open one by one, as clients arrive, not in one burst: uvicorn's workers share one
# listening socket, and a burst of connects is accepted mostly by whichever worker wakes first.
CONNECT_GAP = 0.005
TARGET_P99_MS = 30.0


# --- the load driver (runs in its own process) --------------------------------------------


@dataclass
class DriveResult:
    duration_s: float = 0.0
    sent: int = 0
    accepted: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    errors: int = 0  # anything but 202, plus connection failures
    connection_errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    warmup_accepted: int = 0
    cpu_s: float = 0.0  # the driver's own CPU time


class _Client(asyncio.Protocol):
    """One keep-alive connection posting signups until `stop_at`, as a bare protocol.

    Closed loop (interval 0): back to back. Open loop: one request every `interval` seconds on
    a fixed schedule, latency counted from the scheduled time, so a server that falls behind
    shows it in the latency instead of slowing the driver down (no coordinated omission).
    A protocol, not streams: at 4,000 requests/s the driver shares the two CPUs with the server,
    and asyncio streams cost it about twice the CPU per request.
    """

    def __init__(self, run: _Run, prefix: str, interval: float, first_at: float) -> None:
        self.run = run
        self.prefix = prefix
        self.interval = interval
        self.scheduled = first_at
        self.sequence = 0
        self.buffer = b""
        self.started = 0.0
        self.address = ""
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = run.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.scheduled = max(self.scheduled, self.run.loop.time())
        self._next()

    def _next(self) -> None:
        loop = self.run.loop
        if loop.time() >= self.run.stop_at:
            self._finish()
            return
        if self.interval and self.scheduled > loop.time():
            loop.call_at(self.scheduled, self._send)
        else:
            self._send()

    def _send(self) -> None:
        self.sequence += 1
        self.address = f"{self.prefix}-{self.sequence}@bench.example"
        body = b'{"email": "%s", "frequency": "weekly"}' % self.address.encode()
        self.started = self.scheduled if self.interval else self.run.loop.time()
        self.scheduled += self.interval
        assert self.transport is not None
        self.transport.write(self.run.head % len(body) + body)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].lower()
        at = head.find(b"content-length:")
        length = 0
        if at >= 0:
            line_end = head.find(b"\r\n", at)
            length = int(head[at + 15 : line_end if line_end >= 0 else len(head)])
        if len(self.buffer) < end + 4 + length:
            return
        status = int(self.buffer[9:12])
        self.buffer = self.buffer[end + 4 + length :]
        self.run.record(self.address, status, self.started)
        self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():  # the server closed on us: an error, then a new connection
            self.run.result.connection_errors += 1
            self.run.result.errors += 1
            self.done.set_result(None)
            self.run.reconnect(self)

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)
        if self.transport is not None:
            self.transport.close()


@dataclass
class _Run:
    """What the connections of one drive share: the clock, the target and the tallies."""

    loop: asyncio.AbstractEventLoop
    host: str
    port: int
    stop_at: float
    measure_from: float
    result: DriveResult
    accepted: list[str]
    head: bytes = b""
    pending: list[asyncio.Future[None]] = field(default_factory=list)

    def record(self, address: str, status: int, started: float) -> None:
        elapsed_ms = (self.loop.time() - started) * 1000
        result = self.result
        if status == 202:
            self.accepted.append(address)
        if started < self.measure_from:
            result.warmup_accepted += status == 202
            return
        result.sent += 1
        result.statuses[str(status)] = result.statuses.get(str(status), 0) + 1
        if status == 202:
            result.accepted += 1
        else:
            result.errors += 1
        result.latencies_ms.append(elapsed_ms)

    async def connect(self, client: _Client, at: float) -> None:
        await asyncio.sleep(max(0.0, at - self.loop.time()))
        await self.loop.create_connection(lambda: client, self.host, self.port)
        await client.done

    def reconnect(self, old: _Client) -> None:
        client = _Client(self, old.prefix + "r", old.interval, old.scheduled)
        client.sequence = old.sequence
        self.pending.append(self.loop.create_task(self.connect(client, 0.0)))  # type: ignore[arg-type]


async def _drive(args: argparse.Namespace) -> DriveResult:
    result = DriveResult()
    accepted: list[str] = []
    loop = asyncio.get_running_loop()
    measure_from = loop.time() + args.warmup
    run = _Run(
        loop, args.host, args.port, measure_from + args.duration, measure_from, result, accepted
    )
    run.head = (
        b"POST /subscribe HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
        % (args.host.encode(), args.port)
    ) + b"Content-Length: %d\r\n\r\n"
    tag = uuid.uuid4().hex[:8]
    interval = args.connections / args.rate if args.rate else 0.0
    start = loop.time()
    await asyncio.gather(
        *(
            run.connect(
                _Client(run, f"r{tag}-c{i}", interval, start + interval * i / args.connections),
                start + CONNECT_GAP * i,
            )
            for i in range(args.connections)
        )
    )
    while run.pending:  # connections opened again after the server closed one
        await run.pending.pop()
    result.duration_s = args.duration
    result.cpu_s = time.process_time()
    Path(args.accepted_file).write_text("\n".join(accepted) + "\n")
    return result


def drive_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench.subscribe drive")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--accepted-file", required=True)
    parser.add_argument("--result-file", required=True)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--priority", type=int, default=0)
    args = parser.parse_args(argv)
    if args.priority:  # the measuring instrument should not queue behind the server for a CPU
        with contextlib.suppress(PermissionError):
            os.nice(-args.priority)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # plain asyncio works, it is just heavier on the CPU we share
        pass
    result = asyncio.run(_drive(args))
    Path(args.result_file).write_text(json.dumps(asdict(result)))


# --- orchestration -------------------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def claim_redis_dbs(base: str, numbers: tuple[int, ...], token: str) -> None:
    """Claim Redis databases as the test suite does, so a test session never shares them."""
    claimer = redis_lib.Redis.from_url(base + "/0")
    for number in numbers:
        if not claimer.set(f"digest-test-claim:{number}", token, nx=True, ex=3600):
            sys.exit(f"Redis db {number} is claimed by a running test session; try again later")
        redis_lib.Redis.from_url(f"{base}/{number}").flushdb()


def release_redis_dbs(base: str, numbers: tuple[int, ...], token: str) -> None:
    claimer = redis_lib.Redis.from_url(base + "/0")
    for number in numbers:
        redis_lib.Redis.from_url(f"{base}/{number}").flushdb()
        if claimer.get(f"digest-test-claim:{number}") == token.encode():
            claimer.delete(f"digest-test-claim:{number}")


def queued_confirmations(broker_url: str) -> tuple[list[int], dict[str, int]]:
    """Subscriber ids of the `digest.send_confirmation` messages waiting in the Celery queue."""
    client = redis_lib.Redis.from_url(broker_url)
    ids: list[int] = []
    other: dict[str, int] = {}
    for raw in client.lrange("celery", 0, -1):
        message = json.loads(raw)
        task = message["headers"]["task"]
        if task != "digest.send_confirmation":
            other[task] = other.get(task, 0) + 1
            continue
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        ids.append(int(args[0]))
    return ids, other


def verify(db_url: str, broker_url: str, accepted_file: Path) -> dict[str, Any]:
    """Every accepted address is a pending subscriber with exactly one confirmation queued."""
    accepted = [line for line in accepted_file.read_text().splitlines() if line]
    with psycopg.connect(libpq_url(db_url)) as connection:
        rows = connection.execute(
            "SELECT id, lower(email), status, confirmation_sent_at IS NOT NULL FROM subscribers"
        ).fetchall()
    by_address = {address: (sid, status, claimed) for sid, address, status, claimed in rows}
    missing = [a for a in accepted if a.lower() not in by_address]
    not_pending = [a for a in accepted if by_address.get(a.lower(), (0, "pending"))[1] != "pending"]
    queued, other_tasks = queued_confirmations(broker_url)
    accepted_ids = {by_address[a.lower()][0] for a in accepted if a.lower() in by_address}
    queued_set = set(queued)
    return {
        "accepted_total": len(accepted),
        "subscribers_in_db": len(rows),
        "accepted_missing_from_db": len(missing),
        "accepted_not_pending": len(not_pending),
        "confirmations_queued": len(queued),
        "accepted_without_queued_confirmation": len(accepted_ids - queued_set),
        "duplicate_confirmations": len(queued) - len(queued_set),
        "other_tasks_queued": other_tasks,
        "ok": not missing
        and not not_pending
        and accepted_ids == queued_set
        and len(queued) == len(queued_set)
        and len(rows) == len(accepted),
    }


def cpu_seconds(server_pid: int, database: str) -> dict[str, float]:
    """CPU time so far of the app's processes, of the PostgreSQL backends connected to the
    bench's database, of PostgreSQL's other processes (shared: WAL writer, checkpointer, other
    people's databases) and of Redis (shared too). The machine is shared: only the first two
    are ours alone."""
    totals = {"app": 0.0, "postgres": 0.0, "postgres_other": 0.0, "redis": 0.0}
    try:
        root = psutil.Process(server_pid)
        for proc in [root, *root.children(recursive=True)]:
            times = proc.cpu_times()
            totals["app"] += times.user + times.system
    except psutil.NoSuchProcess:
        pass
    for proc in psutil.process_iter(["name", "cmdline"]):
        name = proc.info["name"] or ""
        if name.startswith("postgres"):
            ours = f" {database} " in " ".join(proc.info["cmdline"] or []) + " "
            key = "postgres" if ours else "postgres_other"
        elif "redis" in name:
            key = "redis"
        else:
            continue
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        totals[key] += times.user + times.system
    return totals


def connections_per_worker(server_pid: int, port: int) -> list[int]:
    """How the kernel spread the driver's connections over the uvicorn worker processes."""
    counts = []
    for child in psutil.Process(server_pid).children():
        try:
            if "resource_tracker" in " ".join(child.cmdline()):
                continue
            connections = child.net_connections(kind="tcp")
        except psutil.Error:
            continue
        counts.append(
            sum(1 for c in connections if c.status == "ESTABLISHED" and c.laddr.port == port)
        )
    return sorted(counts, reverse=True)


def server_env(db_url: str, redis_base: str, per_ip: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(
        {
            "DIGEST_ENV": "production",
            "DIGEST_SECRET_KEY": "bench-secret-" + uuid.uuid4().hex,
            "DIGEST_ADMIN_TOKEN": "bench-admin-" + uuid.uuid4().hex,
            "DIGEST_INGEST_TOKEN": "bench-ingest-" + uuid.uuid4().hex,
            "DIGEST_DATABASE_URL": db_url,
            "DIGEST_REDIS_URL": f"{redis_base}/13",
            "DIGEST_BROKER_URL": f"{redis_base}/14",
            "DIGEST_EMAIL_BACKEND": "outbox",
            "DIGEST_OUTBOX_DIR": str(OUT_DIR / "subscribe-outbox"),
            "DIGEST_PUBLIC_URL": "https://verdicts.example",
            "DIGEST_SUBSCRIBE_RATE_PER_IP": per_ip,
        }
    )
    return env


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["drive"]:
        drive_main(argv[1:])
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.subscribe", description=__doc__)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--database", default="digest_bench_subscribe")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379", help="base URL, no db")
    parser.add_argument("--per-ip-limit", default="200000/minute")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="open loop: offer this many signups/s on a fixed schedule (0: closed loop)",
    )
    parser.add_argument(
        "--driver-priority",
        type=int,
        default=10,
        help="renice the driver by -N (root only) so its clock is not late behind the server",
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("DIGEST_ENV", "development")  # migrating needs no secrets
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    print(f"fresh database {args.database} ...", flush=True)
    db_url = create_database(args.database, ADMIN_URL)
    token = uuid.uuid4().hex
    claim_redis_dbs(args.redis, (13, 14), token)
    port = free_port()
    env = server_env(db_url, args.redis, args.per_ip_limit)
    server = Proc(
        "subscribe-web",
        [
            PYTHON,
            "-m",
            "uvicorn",
            "digest.web.app:app",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--workers={args.workers}",
            "--loop=uvloop",
            "--http=httptools",
            "--no-access-log",
            "--log-level=warning",
            "--backlog=4096",
        ],
        env=env,
        log_dir=OUT_DIR,
    )
    accepted_file = OUT_DIR / "subscribe-accepted.txt"
    result_file = OUT_DIR / "subscribe-driver.json"
    result_file.unlink(missing_ok=True)
    try:
        server.start()
        wait_for(lambda: port_open(port), 120, what="uvicorn to listen")
        time.sleep(1.0)  # every worker process has imported the app
        mode = f"open loop at {args.rate:.0f}/s" if args.rate else "closed loop"
        print(
            f"driving POST /subscribe: {args.connections} connections, {mode}, "
            f"{args.warmup:.0f} s warm-up + {args.duration:.0f} s, {args.workers} uvicorn workers",
            flush=True,
        )
        driver = Proc(
            "subscribe-driver",
            [
                PYTHON,
                "-m",
                "bench.subscribe",
                "drive",
                f"--port={port}",
                f"--connections={args.connections}",
                f"--duration={args.duration}",
                f"--warmup={args.warmup}",
                f"--accepted-file={accepted_file}",
                f"--result-file={result_file}",
                f"--rate={args.rate}",
                f"--priority={args.driver_priority}",
            ],
            log_dir=OUT_DIR,
        )
        driver.log_path.unlink(missing_ok=True)
        driver.start()
        time.sleep(args.warmup)
        cpu_before, load_before = cpu_seconds(server.pid, args.database), os.getloadavg()[0]
        spread = connections_per_worker(server.pid, port)
        driver.popen.wait(timeout=args.duration + args.warmup + 120)  # type: ignore[union-attr]
        cpu_after, load_after = cpu_seconds(server.pid, args.database), os.getloadavg()[0]
        if driver.popen.returncode != 0:  # type: ignore[union-attr]
            print(driver.log_tail(), file=sys.stderr)
            return 1
        drive = DriveResult(**json.loads(result_file.read_text()))
        server.stop()
        check = verify(db_url, f"{args.redis}/14", accepted_file)
    finally:  # whatever happened
        server.stop()
        release_redis_dbs(args.redis, (13, 14), token)

    latencies = drive.latencies_ms
    rate = drive.accepted / drive.duration_s
    summary = {
        "connections": args.connections,
        "mode": f"open loop, {args.rate:.0f}/s offered" if args.rate else "closed loop",
        "uvicorn_workers": args.workers,
        "duration_s": drive.duration_s,
        "requests": drive.sent,
        "signups_per_s": round(rate, 1),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p90_ms": round(percentile(latencies, 90), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(max(latencies, default=float("nan")), 2),
        "errors": drive.errors,
        "statuses": drive.statuses,
        "per_ip_limit": args.per_ip_limit,
        # CPU of the measured part (postgres/redis: every process of theirs on the machine)
        "cpu_ms_per_signup": {
            **{
                key: round(1000 * (cpu_after[key] - cpu_before[key]) / max(1, drive.accepted), 3)
                for key in cpu_after
            },
            "driver": round(1000 * drive.cpu_s / max(1, drive.accepted + drive.warmup_accepted), 3),
        },
        "load_average_1m": [round(load_before, 2), round(load_after, 2)],
        "connections_per_worker": spread,
        "driver_priority": args.driver_priority,
        "cpus": os.cpu_count(),
        "verification": check,
    }
    (OUT_DIR / "subscribe.json").write_text(json.dumps(summary, indent=2))
    print()
    print("| signups/s | p50 ms | p90 ms | p99 ms | max ms | errors | requests |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {summary['signups_per_s']} | {summary['p50_ms']} | {summary['p90_ms']} | "
        f"{summary['p99_ms']} | {summary['max_ms']} | {drive.errors} | {drive.sent} |"
    )
    print(
        "CPU per signup (ms): "
        + ", ".join(f"{k} {v}" for k, v in summary["cpu_ms_per_signup"].items())
        + f"; 1-min load average {summary['load_average_1m']} on {os.cpu_count()} CPUs"
        + f"; connections per uvicorn worker {spread}"
    )
    print()
    print(
        f"verified: {check['accepted_total']} accepted signups (warm-up included), "
        f"{check['subscribers_in_db']} subscribers in the database, "
        f"{check['confirmations_queued']} confirmation tasks queued; "
        f"missing {check['accepted_missing_from_db']}, without a queued confirmation "
        f"{check['accepted_without_queued_confirmation']}, duplicates "
        f"{check['duplicate_confirmations']} -> {'OK' if check['ok'] else 'FAILED'}"
    )
    met = rate >= TARGET_RATE and summary["p99_ms"] <= TARGET_P99_MS and drive.errors == 0
    print(
        f"target (>= {TARGET_RATE:.0f} signups/s, p99 <= {TARGET_P99_MS:.0f} ms, 0 errors): "
        f"{'met' if met else 'NOT met'}"
    )
    print(f"details: {OUT_DIR / 'subscribe.json'}")
    return 0 if check["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
