"""Prometheus metrics: the recorder behind digest/metrics.py and the `/metrics` exposition.

Multiprocess mode: with `PROMETHEUS_MULTIPROC_DIR` set (before the process starts), every
process — each uvicorn worker, each Celery pool process, beat — writes its values to files in
that directory, and `/metrics` sums them all (`MultiProcessCollector`), so counters are right
however many processes served the requests. The directory must be shared by web and worker
processes of one host and emptied before they start (README "Metrics"). Without it, `/metrics`
shows the answering process alone.

Queue depth is read from Redis when `/metrics` is scraped, not stored. This is the only module
that imports prometheus_client (an import-linter contract).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

from celery.signals import task_retry
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from digest import metrics
from digest.settings import get_settings
from digest.webhook_events import KNOWN_EVENTS

if _dir := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(_dir, exist_ok=True)  # the value files are opened as the metrics are defined

RECIPIENTS = Counter("digest_recipients", "Recipients of digest batches by outcome", ["outcome"])
SENDGRID_SECONDS = Histogram(
    "digest_sendgrid_request_seconds",
    "Duration of /v3/mail/send requests",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SENDGRID_RESPONSES = Counter(
    "digest_sendgrid_responses", "/v3/mail/send answers by HTTP status", ["status"]
)
RETRIES = Counter("digest_task_retries", "Celery task retries by task", ["task"])
WEBHOOK_EVENTS = Counter(
    "digest_webhook_events", "New SendGrid webhook events processed, by type", ["type"]
)
WEBHOOK_LAG = Histogram(
    "digest_webhook_lag_seconds",
    "From receiving a webhook body to processing it",
    buckets=(0.1, 0.5, 1, 2.5, 5, 15, 60, 300, 900, 3600),
)
SIGNUPS = Counter("digest_signups", "Accepted signups")
CONFIRMATIONS = Counter("digest_confirmations", "Subscriptions confirmed")
BEAT_TICK = Gauge(
    "digest_beat_last_tick_timestamp_seconds",
    "When beat's weekly-slot check last ran (Unix time)",
    multiprocess_mode="max",
)


class PrometheusRecorder(metrics.Recorder):
    def sendgrid_request(self, seconds: float, status: str) -> None:
        SENDGRID_SECONDS.observe(seconds)
        SENDGRID_RESPONSES.labels(status).inc()

    def recipients(self, outcome: str, count: int) -> None:
        if count:
            RECIPIENTS.labels(outcome).inc(count)

    def retry(self, task: str) -> None:
        RETRIES.labels(task).inc()

    def webhook_batch(self, events: Mapping[str, int], lag_seconds: float) -> None:
        for kind, count in events.items():
            WEBHOOK_EVENTS.labels(kind if kind in KNOWN_EVENTS else "other").inc(count)
        WEBHOOK_LAG.observe(max(0.0, lag_seconds))

    def signups(self, count: int) -> None:
        if count:
            SIGNUPS.inc(count)

    def confirmation(self) -> None:
        CONFIRMATIONS.inc()

    def beat_tick(self, at: float) -> None:
        BEAT_TICK.set(at)


@task_retry.connect
def _count_retry(sender: object = None, **_: object) -> None:
    """Every retry of every task (Celery's autoretry and `task.retry` alike)."""
    metrics.recorder().retry(getattr(sender, "name", None) or "unknown")


class QueueDepth(Collector):
    """Redis list lengths of the Celery queues and the unacknowledged tasks, read at scrape."""

    def __init__(self, queues: list[str]) -> None:
        self.queues = queues

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "digest_queue_depth",
            "Tasks waiting in a Celery queue (Redis list length)",
            labels=["queue"],
        )
        unacked = GaugeMetricFamily(
            "digest_queue_unacked", "Tasks taken by a worker and not yet acknowledged"
        )
        broker = get_settings().broker_url
        if broker.startswith(("redis://", "rediss://", "unix://")):
            import redis

            client = redis.Redis.from_url(broker, socket_timeout=2, socket_connect_timeout=2)
            try:
                with client.pipeline(transaction=False) as pipe:
                    for queue in self.queues:
                        pipe.llen(queue)
                    pipe.hlen("unacked")
                    *lengths, pending = pipe.execute()
            except redis.RedisError:
                return  # a scrape must answer; the gap in the series shows the broker was down
            finally:
                client.close()
            for queue, length in zip(self.queues, lengths, strict=True):
                depth.add_metric([queue], length)
            unacked.add_metric([], pending)
        yield depth
        yield unacked


def exposition(queues: list[str]) -> tuple[bytes, str]:
    """The text `/metrics` answers: every process's values (multiprocess) plus queue depth."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    queue_registry = CollectorRegistry()
    queue_registry.register(QueueDepth(queues))
    return generate_latest(registry) + generate_latest(queue_registry), CONTENT_TYPE_LATEST


metrics.install(PrometheusRecorder())
