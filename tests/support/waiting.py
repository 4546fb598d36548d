"""Waiting for something another process does (a worker, uvicorn), with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest


def eventually(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    """`check()`'s first truthy answer, polled every 0.3 s; the test fails naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")
