"""`make soak`: web, worker and beat under steady traffic for five minutes.

    python -m bench.soak [--duration 300] [--subscribers 20000] [--signup-rate 10]

Real processes on a fresh database (`digest_soak`): uvicorn serving the app, one Celery worker,
Celery beat, a private redis-server (broker and rate limits), the fake SendGrid server. Settings
are production's (DIGEST_ENV=production, secrets set), except that the weekly slot is put two
minutes into the run, so beat fires the weekly waves that are due while the soak watches.

Traffic, all over HTTP: continuous signups (POST /subscribe), each confirmed a moment later
through its link's button (POST /confirm/…) and every tenth one unsubscribed again with the
one-click POST; a stream of signed SendGrid event webhooks (POST /webhooks/sendgrid, ECDSA with
a key generated for the run) about messages the worker has really sent; an ad hoc digest to
everyone through the admin API (POST /admin/digests) a minute in.

Reported: requests and errors per kind; every digest and how it ended (a digest still planned or
sending after the grace period is stuck); ambiguous batches; webhook bodies left unprocessed;
ERROR lines and tracebacks in the logs; and the RSS of each process over time, minute by minute
(does it level off?).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import random
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.request import urlopen

import httpx
import psycopg
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bench.procs import (
    CELERY,
    PYTHON,
    ROOT,
    MemorySampler,
    PrivateRedis,
    Proc,
    celery_worker,
    free_port,
    port_open,
    wait_for,
)
from bench.seed import CATEGORIES, copy_subscribers, create_database, import_sample_comparisons
from bench.seed import libpq_url as plain_url

ADMIN_URL = os.environ.get(
    "DIGEST_BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
OUT_DIR = ROOT / "var" / "bench" / "soak"
ADMIN_TOKEN = "soak-admin-token-" + "7f3c9a1e5b2d8046"  # production rules: 32+ chars
API_KEY = "SG.soak-key-4b8e2a9c71d35f60e1a7b9c2"
ZONES = ("UTC", "Europe/Berlin", "Asia/Tokyo", "America/New_York", None)


class Traffic:
    """Counts of requests and their outcomes, per kind, shared by the driver threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.errors: list[str] = []

    def record(self, kind: str, ok: bool, detail: str = "") -> None:
        with self.lock:
            self.counts[f"{kind} ok" if ok else f"{kind} error"] += 1
            if not ok and len(self.errors) < 50:
                self.errors.append(f"{kind}: {detail[:300]}")


class Driver(threading.Thread):
    """A loop run every `interval` seconds until stopped; exceptions count as errors."""

    def __init__(self, name: str, interval: float, traffic: Traffic, web_url: str) -> None:
        super().__init__(name=name, daemon=True)
        self.interval, self.traffic = interval, traffic
        self.http = httpx.Client(base_url=web_url, timeout=30)
        self.halt = threading.Event()

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.halt.is_set():
            try:
                self.tick()
            except Exception as exc:  # counted, shown in the report, and the loop goes on
                self.traffic.record(self.name, False, f"{type(exc).__name__}: {exc}")
            next_at += self.interval
            self.halt.wait(max(0.0, next_at - time.monotonic()))
        self.http.close()

    def tick(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=30)


class Signups(Driver):
    """One signup per tick; confirms earlier ones; every tenth confirmed one unsubscribes."""

    def __init__(self, rate: float, traffic: Traffic, web_url: str, database_url: str) -> None:
        super().__init__("signup", 1.0 / rate, traffic, web_url)
        self.db = psycopg.connect(plain_url(database_url), autocommit=True)
        self.number = 0
        self.waiting: list[tuple[float, str]] = []  # (when to confirm, address)
        self.confirmed: list[str] = []

    def tick(self) -> None:
        from digest.tokens import SignupCycle, confirm_token, manage_token

        self.number += 1
        address = f"soak{self.number:06d}.{uuid.uuid4().hex[:6]}@soak.example.com"
        body = {
            "email": address,
            "name": f"Soak Reader {self.number}",
            "categories": random.sample(CATEGORIES, random.randint(0, 2)),
            "timezone": random.choice(ZONES),
        }
        response = self.http.post("/subscribe", json=body)
        self.traffic.record("POST /subscribe", response.status_code == 202, response.text)
        self.waiting.append((time.monotonic() + 2.0, address))
        while self.waiting and self.waiting[0][0] <= time.monotonic():
            _, ready = self.waiting.pop(0)
            row = self.db.execute(
                "SELECT id, signup_cycle, signup_cycle_at FROM subscribers"
                " WHERE lower(email) = lower(%s)",
                (ready,),
            ).fetchone()
            if row is None:
                self.traffic.record("confirm", False, f"{ready} not in the database")
                continue
            token = confirm_token(row[0], SignupCycle(row[1], row[2]))
            response = self.http.post(f"/confirm/{token}")
            self.traffic.record("POST /confirm", response.status_code == 200, response.text)
            self.confirmed.append(ready)
            if len(self.confirmed) % 10 == 0:
                response = self.http.post(
                    f"/unsubscribe/{manage_token(row[0])}",
                    data={"List-Unsubscribe": "One-Click"},
                )
                self.traffic.record("POST /unsubscribe", response.status_code == 200, response.text)

    def stop(self) -> None:
        super().stop()
        self.db.close()


class Webhooks(Driver):
    """Signed SendGrid event batches about deliveries the worker really sent."""

    def __init__(self, interval: float, traffic: Traffic, web_url: str, database_url: str):
        super().__init__("webhook", interval, traffic, web_url)
        self.db = psycopg.connect(plain_url(database_url), autocommit=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.events = 0

    @property
    def public_key(self) -> str:
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    def tick(self) -> None:
        rows = self.db.execute(
            "SELECT d.id, d.email, d.digest_id, b.message_id FROM deliveries d"
            " JOIN delivery_batches b ON b.id = d.batch_id"
            " WHERE b.status = 'sent' AND b.message_id IS NOT NULL"
            " ORDER BY d.id DESC LIMIT 100 OFFSET %s",
            (random.randint(0, 5000),),
        ).fetchall()
        if not rows:
            return
        now = int(time.time())
        events = []
        for n, (delivery_id, email, digest_id, message_id) in enumerate(rows):
            kinds = ["delivered", "open"] + (["click"] if n % 3 == 0 else [])
            if n == 0:
                kinds = ["bounce"]
            for kind in kinds:
                event = {
                    "email": email,
                    "event": kind,
                    "timestamp": now - 5,
                    "sg_event_id": uuid.uuid4().hex,
                    "sg_message_id": f"{message_id}.filter.{n}.0",
                    "digest_id": str(digest_id),
                    "delivery_id": str(delivery_id),
                }
                if kind == "click":
                    event["url"] = "https://shiporskip.example/compare/soak"
                if kind == "bounce":
                    event["type"] = "bounce"
                events.append(event)
        body = json.dumps(events, separators=(",", ":")).encode()
        stamp = str(int(time.time()))
        signature = self.key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        response = self.http.post(
            "/webhooks/sendgrid",
            content=body,
            headers={
                "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
                "Content-Type": "application/json",
            },
        )
        ok = response.status_code in (200, 202, 204)
        self.traffic.record("POST /webhooks/sendgrid", ok, response.text)
        if ok:
            self.events += len(events)

    def stop(self) -> None:
        super().stop()
        self.db.close()


def _weekly_cron(at: datetime) -> str:
    """A cron line for `at` (UTC) on its weekday: the weekly slot falls inside the run."""
    return f"{at.minute} {at.hour} * * {(at.weekday() + 1) % 7}"


def _log_errors(procs: list[Proc]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for proc in procs:
        try:
            lines = proc.log_path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        bad = [
            line
            for line in lines
            if " ERROR/" in line
            or "CRITICAL" in line
            or line.startswith("Traceback")
            or " ERROR " in line
        ]
        if bad:
            found[proc.name] = bad
    return found


def _state(database_url: str) -> dict:
    with psycopg.connect(plain_url(database_url), autocommit=True) as db:
        digests = db.execute(
            "SELECT id, kind, status, recipients, coalesce(status_reason, '') FROM digests"
            " ORDER BY id"
        ).fetchall()
        batches = dict(
            db.execute("SELECT status, count(*) FROM delivery_batches GROUP BY status").fetchall()
        )
        (unprocessed,) = db.execute(
            "SELECT count(*) FROM webhook_batches WHERE processed_at IS NULL"
        ).fetchone()
        (webhook_bodies,) = db.execute("SELECT count(*) FROM webhook_batches").fetchone()
        (events,) = db.execute("SELECT count(*) FROM email_events").fetchone()
        subscribers = dict(
            db.execute("SELECT status, count(*) FROM subscribers GROUP BY status").fetchall()
        )
    return {
        "digests": digests,
        "batches": batches,
        "webhook_bodies": webhook_bodies,
        "webhook_unprocessed": unprocessed,
        "email_events": events,
        "subscribers": subscribers,
    }


def _rss_table(sampler: MemorySampler, duration: float) -> tuple[str, dict[str, str]]:
    """Max RSS per process tree per minute, and a verdict per tree: does it level off?"""
    minutes = max(1, int(duration // 60) + 1)
    names = sorted(sampler.records)
    lines = ["| minute | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    per_minute: dict[str, list[int]] = {name: [0] * minutes for name in names}
    for name in names:
        for at, kb in sampler.records[name].samples:
            index = min(minutes - 1, int(at // 60))
            per_minute[name][index] = max(per_minute[name][index], kb)
    for minute in range(minutes):
        if not any(per_minute[n][minute] for n in names):
            continue
        cells = [f"{per_minute[n][minute] / 1024:.0f} MB" for n in names]
        lines.append(f"| {minute + 1} | " + " | ".join(cells) + " |")
    verdicts = {}
    for name in names:
        values = [v for v in per_minute[name] if v]
        if len(values) < 3:
            verdicts[name] = "too short to tell"
            continue
        # the last minutes against the middle: growth of under 10 % counts as levelled off
        middle, last = max(values[1:-1]), values[-1]
        growth = (last - middle) / middle if middle else 0.0
        verdicts[name] = f"{'levels off' if growth < 0.10 else 'still growing'} ({growth:+.0%})"
    return "\n".join(lines), verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of traffic")
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--signup-rate", type=float, default=10.0, help="signups per second")
    parser.add_argument("--webhook-interval", type=float, default=2.0)
    parser.add_argument("--digest-at", type=float, default=60.0, help="ad hoc digest, s")
    parser.add_argument("--grace", type=float, default=120.0, help="for digests to finish, s")
    parser.add_argument("--database", default="digest_soak")
    args = parser.parse_args(argv)

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for old in OUT_DIR.glob("*.log"):
        old.unlink()
    database_url = create_database(args.database, ADMIN_URL)
    copy_subscribers(database_url, args.subscribers, segments=8)
    web_port, sendgrid_port = free_port(), free_port()
    redis = PrivateRedis(OUT_DIR)
    traffic = Traffic()
    started_at = datetime.now(UTC)
    web_url = f"http://127.0.0.1:{web_port}"
    webhooks = Webhooks(args.webhook_interval, traffic, web_url, database_url)
    env = {
        "DIGEST_ENV": "production",
        "DIGEST_DATABASE_URL": database_url,
        "DIGEST_BROKER_URL": redis.url,
        "DIGEST_REDIS_URL": redis.url,
        "DIGEST_EMAIL_BACKEND": "sendgrid",
        "DIGEST_SENDGRID_HOST": f"http://127.0.0.1:{sendgrid_port}",
        "SENDGRID_API_KEY": API_KEY,
        "DIGEST_SECRET_KEY": "soak-secret-key-0123456789abcdef0123",
        "DIGEST_ADMIN_TOKEN": ADMIN_TOKEN,
        "DIGEST_INGEST_TOKEN": "soak-ingest-token-9d2e4f6a8b1c3e5a",
        "DIGEST_PUBLIC_URL": f"http://127.0.0.1:{web_port}",
        "DIGEST_SENDGRID_WEBHOOK_PUBLIC_KEY": webhooks.public_key,
        "DIGEST_SUBSCRIBE_RATE_PER_IP": "100000/minute",
        "DIGEST_TIMEZONE": "UTC",
        "DIGEST_WEEKLY_CRON": _weekly_cron(started_at + timedelta(minutes=2)),
        "DIGEST_BEAT_INTERVAL": "10",
        "DIGEST_SEND_REAP_INTERVAL": "15",
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)
    from digest.db import reset_caches

    reset_caches()
    import_sample_comparisons()

    sendgrid = Proc(
        "sendgrid",
        [
            PYTHON,
            "-m",
            "tests.support.sendgrid_server",
            "--no-schema",  # measure our processes, not the stand-in's OpenAPI validation
            "--port",
            str(sendgrid_port),
            "--api-key",
            API_KEY,
        ],
        log_dir=OUT_DIR,
    )
    web = Proc(
        "web",
        [
            str(Path(PYTHON).with_name("uvicorn")),
            "digest.web.app:app",
            "--port",
            str(web_port),
            "--no-access-log",
        ],
        env=env,
        log_dir=OUT_DIR,
    )
    worker = celery_worker("soak-worker", env, concurrency=2, log_dir=OUT_DIR)
    beat = Proc(
        "beat",
        [
            CELERY,
            "-A",
            "workers",
            "beat",
            "--loglevel=INFO",
            f"--schedule={OUT_DIR / 'celerybeat-schedule'}",
        ],
        env=env,
        log_dir=OUT_DIR,
    )
    (OUT_DIR / "celerybeat-schedule").unlink(missing_ok=True)
    procs = [sendgrid, web, worker, beat]
    sampler = MemorySampler(interval=1.0, keep_samples_every=5.0)
    signups = Signups(args.signup_rate, traffic, web_url, database_url)
    digest_ids: list[int] = []
    server_stats: dict = {}
    try:
        redis.start()
        for proc in procs:
            proc.start()
        wait_for(lambda: port_open(sendgrid_port) and port_open(web_port), 60, what="web")
        wait_for(lambda: "ready." in worker.log_tail(200), 60, what="the worker")
        for proc in procs:
            sampler.watch(proc.name, proc.pid)
        sampler.watch("redis", redis.proc.pid)  # type: ignore[union-attr]
        sampler.start()
        signups.start()
        webhooks.start()
        print(f"soak: {args.duration:.0f}s of traffic on {database_url}", file=sys.stderr)
        t0 = time.monotonic()
        last_print = 0.0
        while (elapsed := time.monotonic() - t0) < args.duration:
            if not digest_ids and elapsed >= args.digest_at:
                response = httpx.post(
                    f"{web_url}/admin/digests",
                    # its own window: the weekly waves fired first would leave it nothing new
                    json={
                        "subject": "Soak: every verdict this week",
                        "since": (started_at - timedelta(days=7)).isoformat(),
                    },
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                    timeout=30,
                )
                traffic.record("POST /admin/digests", response.status_code == 202, response.text)
                if response.status_code == 202:
                    digest_ids.append(response.json()["id"])
            dead = [p.name for p in procs if not p.alive]
            if dead:
                raise RuntimeError(f"process(es) died during the soak: {dead}")
            if elapsed - last_print >= 30:
                print(f"  {elapsed:5.0f}s {dict(traffic.counts)}", file=sys.stderr)
                last_print = elapsed
            time.sleep(0.5)
        signups.stop()
        webhooks.stop()

        def settled() -> bool:
            state = _state(database_url)
            busy = [d for d in state["digests"] if d[2] in ("planned", "sending")]
            return not busy and not state["webhook_unprocessed"]

        with contextlib.suppress(TimeoutError):  # what is still busy is reported as stuck
            wait_for(settled, args.grace, interval=2, what="digests to finish")
        duration = time.monotonic() - t0
        with urlopen(f"http://127.0.0.1:{sendgrid_port}/_stats", timeout=30) as answer:
            server_stats = json.load(answer)
    finally:
        sampler.stop()
        for proc in reversed(procs):
            proc.stop()
        redis.stop()

    state = _state(database_url)
    stuck = [d for d in state["digests"] if d[2] in ("planned", "sending")]
    errors = _log_errors(procs)
    rss, verdicts = _rss_table(sampler, duration)
    http_errors = sum(n for k, n in traffic.counts.items() if k.endswith(" error"))

    print(
        f"\n## Soak: {duration:.0f} s (traffic {args.duration:.0f} s), {args.subscribers:,} "
        f"subscribers seeded, load average now {os.getloadavg()[0]:.2f}\n"
    )
    print("| traffic | count |\n|---|---|")
    for key, count in sorted(traffic.counts.items()):
        print(f"| {key} | {count:,} |")
    print(f"| webhook events posted | {webhooks.events:,} |")
    print(
        f"| fake SendGrid: requests / accepted / recipients | {server_stats.get('requests')} / "
        f"{server_stats.get('accepted_requests')} / {server_stats.get('recipients')} |"
    )
    print("\n| digest | kind | status | recipients | reason |\n|---|---|---|---|---|")
    for digest_id, kind, status, recipients, reason in state["digests"]:
        print(f"| {digest_id} | {kind} | {status} | {recipients:,} | {reason[:120]} |")
    print(f"\nbatches by status: {state['batches']}; subscribers by status: {state['subscribers']}")
    print(
        f"webhook bodies: {state['webhook_bodies']} ({state['webhook_unprocessed']} "
        f"unprocessed), email events stored: {state['email_events']:,}"
    )
    print(f"\nRSS per process tree (max per minute):\n\n{rss}\n")
    for name, verdict in verdicts.items():
        print(f"- {name}: {verdict}")
    print(
        f"\nHTTP errors: {http_errors}; stuck digests: {len(stuck)}; ambiguous batches: "
        f"{state['batches'].get('ambiguous', 0)}; log errors: "
        f"{ {k: len(v) for k, v in errors.items()} }"
    )
    for line in traffic.errors[:10]:
        print(f"  http error: {line}")
    for name, lines in errors.items():
        for line in lines[:5]:
            print(f"  {name}: {line[:200]}")
    bad = http_errors or stuck or errors or state["webhook_unprocessed"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
