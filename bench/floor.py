"""The floor of one recipient's cost on this machine, now: the work no ledger design can skip.

Building a recipient's personalization with its signed links (digest/batch_message.py
`recipient_for`) and JSON-encoding it into the request body (digest/email_backends.py
`encoded_body`), for a batch of 1,000, in this process on one core. Issue 16 put it at 6–8 µs.

Why it is measured in every run: this machine's speed drifts by a third and more between
sessions and within one (the same loop timed 0.38–0.64 s in three runs a minute apart), so a
CPU figure alone cannot be compared with one from another day. Each dispatch run measures the
floor just before it starts, on the same settings, and reports its own CPU per recipient as a
multiple of it (README, Benchmarks). The best of several tries is kept: a try that a busy
moment slowed says nothing about the work.
"""

from __future__ import annotations

import time

BATCH = 1000
TRIES = 15


def floor_us_per_recipient(tries: int = TRIES) -> float:
    """The best of `tries` builds of a 1,000-recipient request, in CPU µs per recipient.

    Needs the settings of a run (signing key, public URL): call it once the run's environment
    is set.
    """
    from digest import tokens
    from digest.batch_message import recipient_for
    from digest.email_backends import Message, SendGridBackend
    from digest.substitution import Placeholders

    keys = Placeholders.fresh()
    links = tokens.recipient_links(1)
    backend = SendGridBackend(api_key="floor", host="http://127.0.0.1:9", from_email="d@x.example")
    rows = [
        (1_000_000 + n, 10_000 + n, f"reader{n}@example.com", f"Reader {n}") for n in range(BATCH)
    ]
    best = float("inf")
    for _ in range(tries):
        started = time.process_time()
        recipients = [recipient_for(1, keys, *row, links) for row in rows]
        message = Message(subject="Verdicts", html="<p>x</p>", text="x", recipients=recipients)
        body = backend.encoded_body(message)
        best = min(best, time.process_time() - started)
    if not body:
        raise RuntimeError("the floor's request body came out empty")
    return best / BATCH * 1e6
