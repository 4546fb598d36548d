"""Python's cycle collector, paused while one unit of bulk work runs.

A sent batch (a thousand personalizations, their rows and the encoded body) and a webhook body
(some 300,000 parsed events, rows and keys) each make a few hundred thousand objects that live
until the unit ends and form no cycles. The collector kept re-scanning them as they were made:
a tenth of a webhook batch's Python time, and 0.5–1 µs of a sent recipient's ~6 µs floor even
with the workers' raised threshold (README Benchmarks). Whatever cycles appear meanwhile are
collected once the collector is back.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """The collector off for the block, then back as it was (nesting keeps it off)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
