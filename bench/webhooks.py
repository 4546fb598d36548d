"""`python -m bench.webhooks`: how fast a large SendGrid webhook batch is accepted and processed.

    python -m bench.webhooks [--recipients 5000] [--events-per-recipient 3]

A fresh PostgreSQL database (`digest_bench_webhooks`) gets one sent digest with `--recipients`
deliveries. The app runs under uvicorn with Redis db 12 as its broker (so the endpoint only
verifies, stores and queues), and one signed body of recipients × events (delivered, open,
click; the last recipient's events are a hard bounce) is posted over loopback: that is the
accept time SendGrid waits for. The stored batch is then processed in this process
(`tracking.process_batch`), and processed again after a redelivered copy, as a worker would.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
import redis as redis_lib
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bench.procs import Proc, free_port, port_open, wait_for
from bench.seed import create_database, drop_database

ADMIN_URL = os.environ.get(
    "DIGEST_BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_BASE = os.environ.get("DIGEST_BENCH_REDIS_URL", "redis://127.0.0.1:6379")
REDIS_DB = 12
BIN = Path(sys.executable).parent
DB_NAME = "digest_bench_webhooks"
SENT_AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
TARGET_EVENTS_PER_S = 20_000


def database_cpu_s(database: str) -> float:
    """CPU seconds so far of the PostgreSQL backends connected to `database` (ours alone)."""
    total = 0.0
    for proc in psutil.process_iter(["name", "cmdline"]):
        if (proc.info["name"] or "").startswith("postgres") and f" {database} " in (
            " ".join(proc.info["cmdline"] or []) + " "
        ):
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
    return total


def seed(recipients: int) -> tuple[int, dict[str, int]]:
    """One sent digest with a delivery per address; returns its id and address → delivery id."""
    from sqlalchemy import insert, select

    from digest.db import session_scope
    from schema.models import Delivery, DeliveryBatch, Digest, DigestSegment, Subscriber

    with session_scope() as session:
        digest = Digest(kind="adhoc", status="sent", subject="bench", recipients=recipients)
        session.add(digest)
        session.flush()
        segment = DigestSegment(
            digest_id=digest.id, segment_key="all", subject="s", html="h", text="t"
        )
        session.add(segment)
        session.flush()
        emails = [f"reader{i}@example.test" for i in range(recipients)]
        session.execute(
            insert(Subscriber), [{"email": e, "status": "active", "name": "R"} for e in emails]
        )
        ids = dict(session.execute(select(Subscriber.email, Subscriber.id)).all())
        deliveries: dict[str, int] = {}
        for start in range(0, recipients, 1000):
            batch = DeliveryBatch(
                digest_id=digest.id,
                segment_id=segment.id,
                seq=start // 1000 + 1,
                status="sent",
                size=len(emails[start : start + 1000]),
                message_id=f"benchmsg{start // 1000}",
                sent_at=SENT_AT,
            )
            session.add(batch)
            session.flush()
            rows = [
                {
                    "digest_id": digest.id,
                    "batch_id": batch.id,
                    "subscriber_id": ids[e],
                    "email": e,
                    "status": "sent",
                }
                for e in emails[start : start + 1000]
            ]
            session.execute(insert(Delivery), rows)
        for d_id, email in session.execute(
            select(Delivery.id, Delivery.email).where(Delivery.digest_id == digest.id)
        ):
            deliveries[email] = d_id
        return digest.id, deliveries


def events_for(digest_id: int, deliveries: dict[str, int], per_recipient: int) -> list[dict]:
    t0 = int(SENT_AT.timestamp())
    kinds = ["delivered", "open", "click"][:per_recipient]
    events = []
    last = list(deliveries)[-1]
    for n, (email, d_id) in enumerate(deliveries.items()):
        for k, kind in enumerate(["bounce"] if email == last else kinds):
            events.append(
                {
                    "email": email,
                    "event": kind,
                    "timestamp": t0 + 60 + 3600 * k,
                    "sg_event_id": uuid.uuid4().hex,
                    "sg_message_id": f"benchmsg{n // 1000}.filter.{n}.0",
                    "digest_id": str(digest_id),
                    "delivery_id": str(d_id),
                    **({"url": "https://shiporskip.example/compare/x"} if kind == "click" else {}),
                    **({"type": "bounce"} if kind == "bounce" else {}),
                }
            )
    return events


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.webhooks", description=__doc__)
    parser.add_argument("--recipients", type=int, default=5000)
    parser.add_argument("--events-per-recipient", type=int, default=3, choices=[1, 2, 3])
    parser.add_argument("--profile", help="write a pyinstrument report of the processing here")
    args = parser.parse_args(argv)

    os.environ.setdefault("DIGEST_ENV", "development")  # this process needs no secrets
    claimer = redis_lib.Redis.from_url(REDIS_BASE + "/0")
    token = uuid.uuid4().hex
    if not claimer.set(f"digest-test-claim:{REDIS_DB}", token, nx=True, ex=3600):
        sys.exit(f"Redis db {REDIS_DB} is claimed by a running session; try again later")
    broker = f"{REDIS_BASE}/{REDIS_DB}"
    key = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    url = create_database(DB_NAME, ADMIN_URL)
    os.environ.update(DIGEST_DATABASE_URL=url, DIGEST_SENDGRID_WEBHOOK_PUBLIC_KEY=public)
    web = None
    try:
        from sqlalchemy import func, select

        from digest.db import reset_caches, session_scope
        from digest.stats import digest_stats
        from digest.tracking import process_batch
        from schema.models import EmailEvent, WebhookBatch

        reset_caches()
        digest_id, deliveries = seed(args.recipients)
        events = events_for(digest_id, deliveries, args.events_per_recipient)
        body = json.dumps(events, separators=(",", ":")).encode() + b"\r\n"
        port = free_port()
        web = Proc(
            "bench-webhooks-web",
            [str(BIN / "digest"), "serve", "--port", str(port)],
            env={"DIGEST_BROKER_URL": broker, "DIGEST_ENV": "test"},
        ).start()
        wait_for(lambda: port_open(port) or not web.alive, 120, what="uvicorn")

        def post() -> float:
            stamp = str(int(time.time()))
            signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
            headers = {
                "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
                "Content-Type": "application/json",
            }
            started = time.perf_counter()
            response = http.post("/webhooks/sendgrid", content=body, headers=headers)
            elapsed = time.perf_counter() - started
            assert response.status_code == 204, response.text
            return elapsed

        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            post()  # warm-up: imports, connection pool, key parsing
            accept_s = post()
        with session_scope() as session:
            first, second = session.scalars(select(WebhookBatch.id).order_by(WebhookBatch.id)).all()
        profiler = None
        if args.profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005)
            profiler.start()
        load_before = os.getloadavg()[0]
        pg_started = database_cpu_s(DB_NAME)
        started, cpu_started = time.perf_counter(), time.process_time()
        with session_scope() as session:
            outcome = process_batch(session, first)
        process_s = time.perf_counter() - started
        process_cpu_s = time.process_time() - cpu_started
        pg_cpu_s = database_cpu_s(DB_NAME) - pg_started
        if profiler is not None:
            profiler.stop()
            Path(args.profile).write_text(profiler.output_text(unicode=False, show_all=False))
        started = time.perf_counter()
        with session_scope() as session:
            replay = process_batch(session, second)
        replay_s = time.perf_counter() - started
        with session_scope() as session:
            figures = digest_stats(session, digest_id)
            stored = session.scalar(select(func.count()).select_from(EmailEvent))
        load_after = os.getloadavg()[0]
        end_to_end = outcome.inserted / (accept_s + process_s)
        summary = {
            "events": len(events),
            "body_bytes": len(body),
            "accept_ms": round(accept_s * 1000, 1),
            "process_s": round(process_s, 3),
            "events_per_s_processing": round(outcome.inserted / process_s),
            "events_per_s_end_to_end": round(end_to_end),
            "cpu_us_per_event": {
                "processing_python": round(1e6 * process_cpu_s / len(events), 1),
                "postgres_backends": round(1e6 * pg_cpu_s / len(events), 1),
            },
            "replay_s": round(replay_s, 3),
            "replay_inserted": replay.inserted,
            "events_stored": stored,
            "delivered": figures["delivered"],
            "bounced": figures["bounced"],
            "load_average_1m": [round(load_before, 2), round(load_after, 2)],
            "cpus": os.cpu_count(),
        }
        print(json.dumps(summary, indent=2))
        ok = replay.inserted == 0 and stored == len(events) == outcome.inserted
        print(
            f"verified: {stored} events stored of {len(events)} sent, the redelivered copy "
            f"inserted {replay.inserted} -> {'OK' if ok else 'FAILED'}"
        )
        met = end_to_end >= TARGET_EVENTS_PER_S
        print(
            f"target (>= {TARGET_EVENTS_PER_S:,} events/s end to end, accept + process): "
            f"{'met' if met else 'NOT met'} ({end_to_end:,.0f}/s)"
        )
        if not ok:
            return 1
    finally:
        if web is not None:
            web.stop()
        redis_lib.Redis.from_url(broker).flushdb()
        if claimer.get(f"digest-test-claim:{REDIS_DB}") == token.encode():
            claimer.delete(f"digest-test-claim:{REDIS_DB}")
        drop_database(DB_NAME, ADMIN_URL)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
