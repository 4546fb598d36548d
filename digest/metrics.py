"""The one seam between what the service does and how it is measured (README "Metrics").

The domain, the web layer and the tasks call these functions; by default they do nothing. The
entry points install a recorder that counts in Prometheus (`workers/metrics.py`, imported with
the Celery app by every web, worker and beat process), so the domain never imports
prometheus_client and a test or the CLI pays nothing. Calls are per batch, never per
recipient: one counter increment per SendGrid request, per signup batch, per webhook body.
"""

from __future__ import annotations

from collections.abc import Mapping


class Recorder:
    """What can be measured; every method is a no-op here."""

    def sendgrid_request(self, seconds: float, status: str) -> None:
        """One `/v3/mail/send` request: how long it took and its HTTP status ("error" when
        no status came back)."""

    def recipients(self, outcome: str, count: int) -> None:
        """`count` recipients of one batch ended `sent`, `failed` or `ambiguous`."""

    def retry(self, task: str) -> None:
        """A task asked to run again later."""

    def webhook_batch(self, events: Mapping[str, int], lag_seconds: float) -> None:
        """A stored webhook body was processed: its new events by type, and how long after
        it was received."""

    def signups(self, count: int) -> None:
        """Accepted signups (valid, past the limits) in one written batch."""

    def confirmation(self) -> None:
        """A subscription was confirmed (double opt-in)."""

    def beat_tick(self, at: float) -> None:
        """Beat's weekly-slot check ran (a Unix timestamp)."""


_active: list[Recorder] = [Recorder()]


def install(recorder: Recorder) -> None:
    """Measure with `recorder` from now on (the entry points do this once per process)."""
    _active[0] = recorder


def recorder() -> Recorder:
    """The recorder in use: call its methods (no-ops unless one was installed)."""
    return _active[0]
