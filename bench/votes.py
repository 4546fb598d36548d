"""`make bench-votes`: readers' verdicts posted concurrently, and their events to the site.

    python -m bench.votes [--verdicts 10000] [--connections 32] [--workers 1]

A fresh PostgreSQL database (`digest_bench_votes`), one sent digest of two comparisons and
`verdicts / 4` active readers (each reader votes on the four tools), Redis db 11 as the Celery
broker and rate-limit store, the app under uvicorn and one Celery worker (threads) delivering
`reader_vote.cast` events to a loopback receiver in this process. The driver posts every verdict
once over `--connections` keep-alive connections (closed loop) and prints verdicts/s and the
latency percentiles; then it waits until the receiver holds every event id (and checks each
signature), and prints how many were delivered, missing and duplicated, and the time to drain.
The per-IP limit is raised for the run: the driver is one IP.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import redis as redis_lib

from bench.procs import PYTHON, ROOT, Proc, celery_worker, free_port, port_open, wait_for
from bench.seed import create_database, drop_database

ADMIN_URL = os.environ.get(
    "DIGEST_BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_BASE = os.environ.get("DIGEST_BENCH_REDIS_URL", "redis://127.0.0.1:6379")
REDIS_DB = 11
DB_NAME = "digest_bench_votes"
SECRET = "bench-votes-site-secret-0123456789abcdef"
OUT_DIR = ROOT / "var" / "bench"


class Site:
    """The loopback receiver: verifies each POST's signature and keeps the event ids."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.bad_signatures = 0
        self.lock = threading.Lock()
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                stamp = self.headers.get("X-Verdicts-Timestamp", "")
                mac = hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256)
                good = hmac.compare_digest(
                    "v1=" + mac.hexdigest(), self.headers.get("X-Verdicts-Signature", "")
                )
                with site.lock:
                    site.ids.append(json.loads(body)["id"])
                    site.bad_signatures += not good
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/verdicts"


def seed(verdicts: int) -> list[str]:
    """One sent digest of two comparisons and enough readers; every verdict's path."""
    from digest.db import session_scope
    from digest.ingest import apply_event
    from digest.tokens import reader_token
    from schema.models import Comparison, Digest, DigestItem, Subscriber

    readers = max(1, verdicts // 4)
    now = datetime.now(UTC)
    slugs = ["smollm3-vs-fusion", "quillmate-vs-parsewell"]
    with session_scope() as session:
        for slug in slugs:
            a, b = slug.split("-vs-")
            apply_event(
                session,
                {
                    "type": "comparison.published",
                    "data": {
                        "slug": slug,
                        "title": f"{a} vs {b}",
                        "url": f"https://shiporskip.example/compare/{slug}",
                        "published_at": now.isoformat(),
                        "tools": [{"name": a}, {"name": b}],
                    },
                },
                source="api",
            )
        digest = Digest(kind="adhoc", status="sent", started_at=now, recipients=readers)
        session.add(digest)
        session.flush()
        ids = session.query(Comparison.id).filter(Comparison.slug.in_(slugs)).all()
        for rank, (comparison_id,) in enumerate(ids, start=1):
            session.add(
                DigestItem(
                    digest_id=digest.id,
                    comparison_id=comparison_id,
                    rank=rank,
                    score=0.0,
                    explanation="bench",
                    verdict_fingerprint="bench",
                )
            )
        subscribers = [
            Subscriber(email=f"reader{n}@bench.example", status="active") for n in range(readers)
        ]
        session.add_all(subscribers)
        session.flush()
        paths = [
            f"/vote/{reader_token(digest.id, s.id)}/{slug}/{position}/{choice}"
            for s in subscribers
            for slug in slugs
            for position, choice in ((0, "ship"), (1, "skip"))
        ]
    return paths[:verdicts]


async def drive(port: int, paths: list[str], connections: int) -> tuple[list[float], dict]:
    """Post every path once over `connections` keep-alive connections; latencies in ms."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for path in paths:
        queue.put_nowait(path)
    latencies: list[float] = []
    statuses: dict[str, int] = {}

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while not queue.empty():
            path = queue.get_nowait()
            started = time.perf_counter()
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append((time.perf_counter() - started) * 1000)
            status = head[9:12].decode()
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return latencies, statuses


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(
    args: argparse.Namespace, env: dict[str, str], site: Site, processes: list[Proc]
) -> dict:  # a benchmark's one straight line: seed, start, post, drain, count
    from sqlalchemy import func, select

    from digest.db import reset_caches, session_scope
    from schema.models import ReaderVote, SiteEvent

    reset_caches()
    paths = seed(args.verdicts)
    port = free_port()
    web = Proc(
        "votes-web",
        [
            PYTHON,
            "-m",
            "uvicorn",
            "digest.web.app:app",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--workers={args.workers}",
            "--no-access-log",
            "--log-level=warning",
            "--backlog=4096",
        ],
        env=env,
        log_dir=OUT_DIR,
    )
    worker = celery_worker("votes-worker", env, concurrency=16, pool="threads", log_dir=OUT_DIR)
    processes += [web.start(), worker.start()]
    wait_for(lambda: port_open(port) or not web.alive, 30, what="uvicorn")
    wait_for(lambda: "ready." in worker.log_tail(200), 60, what="the worker")
    time.sleep(1.0)
    print(f"{len(paths):,} verdicts over {args.connections} connections ...", flush=True)
    started = time.perf_counter()
    latencies, statuses = asyncio.run(drive(port, paths, args.connections))
    post_s = time.perf_counter() - started
    wanted = len(paths)
    wait_for(lambda: len(set(site.ids)) >= wanted, args.drain_timeout, what="every event delivered")
    drained_s = time.perf_counter() - started
    time.sleep(1.0)  # late duplicates, if any
    with session_scope() as session:
        stored_votes = session.scalar(select(func.count()).select_from(ReaderVote))
        events = set(session.scalars(select(SiteEvent.event_id)))
        undelivered = session.scalar(select(func.count()).where(SiteEvent.delivered_at.is_(None)))
    report = {
        "verdicts": wanted,
        "connections": args.connections,
        "uvicorn_workers": args.workers,
        "statuses": statuses,
        "post_s": round(post_s, 2),
        "verdicts_per_s": round(wanted / post_s),
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies), 1),
        "stored_verdicts": stored_votes,
        "events_written": len(events),
        "events_received_distinct": len(set(site.ids)),
        "events_missing": len(events - set(site.ids)),
        "events_duplicated": len(site.ids) - len(set(site.ids)),
        "bad_signatures": site.bad_signatures,
        "undelivered_rows": undelivered,
        "all_delivered_after_s": round(drained_s, 2),
    }
    print(json.dumps(report, indent=2))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "votes.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.votes", description=__doc__)
    parser.add_argument("--verdicts", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    args = parser.parse_args(argv)

    claimer = redis_lib.Redis.from_url(REDIS_BASE + "/0")
    token = uuid.uuid4().hex
    if not claimer.set(f"digest-test-claim:{REDIS_DB}", token, nx=True, ex=3600):
        sys.exit(f"Redis db {REDIS_DB} is claimed by a running session; try again later")
    broker = f"{REDIS_BASE}/{REDIS_DB}"
    redis_lib.Redis.from_url(broker).flushdb()
    site = Site()
    env = {
        "DIGEST_ENV": "test",
        "DIGEST_BROKER_URL": broker,
        "DIGEST_REDIS_URL": broker,
        "DIGEST_SITE_WEBHOOK_URL": site.url,
        "DIGEST_SITE_WEBHOOK_SECRET": SECRET,
        "DIGEST_VOTE_RATE_PER_IP": "10000000/minute",
        "DIGEST_DB_POOL_SIZE": "20",
    }
    os.environ.update(env)
    processes: list[Proc] = []
    try:
        env["DIGEST_DATABASE_URL"] = create_database(DB_NAME, ADMIN_URL)
        os.environ.update(env)
        report = run(args, env, site, processes)
        ok = report["events_missing"] == 0 and report["statuses"].get("200") == report["verdicts"]
        return 0 if ok else 1
    finally:
        for proc in processes:
            proc.stop()
        site.server.shutdown()
        redis_lib.Redis.from_url(broker).flushdb()
        if claimer.get(f"digest-test-claim:{REDIS_DB}") == token.encode():
            claimer.delete(f"digest-test-claim:{REDIS_DB}")
        from digest.db import reset_caches

        reset_caches()
        drop_database(DB_NAME, ADMIN_URL)


if __name__ == "__main__":
    raise SystemExit(main())
