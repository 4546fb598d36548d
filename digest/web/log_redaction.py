"""Tokens never reach the logs: a filter that redacts the token segment of link paths (and the
address or name an operator searched the console for).

uvicorn's access log writes every request's path, and our links carry their token in the path
(`/confirm/…`, `/unsubscribe/…`, `/preferences/…`, `/data/…`, `/vote/…`). Whoever reads the
logs must not be able to confirm, unsubscribe, change preferences, vote as a reader, or export
and delete someone's data. The filter rewrites a record's message and arguments before any
handler formats it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[redacted]"
TOKEN_PREFIXES = ("confirm", "unsubscribe", "preferences", "data", "vote")
# The segment after a token prefix, up to the next slash, query, fragment, space or quote.
_TOKEN_SEGMENT = re.compile(rf"(/(?:{'|'.join(TOKEN_PREFIXES)})/)[^/?#\s\"'<>]+")
LOGGERS = ("uvicorn.access", "uvicorn.error")


# The console's searches by address or name (`?q=`, `?address=`): operators' look-ups of a person.
_CONSOLE_URL = re.compile(r"/console/[^\s\"'<>]*")
_PERSON_PARAMETER = re.compile(r"([?&](?:q|address)=)[^&#\s\"'<>]*")


def redact(text: str) -> str:
    """`/confirm/abc.def?x` → `/confirm/[redacted]?x`, `/console/subscribers?q=ada` →
    `/console/subscribers?q=[redacted]`; anything else unchanged."""
    text = _TOKEN_SEGMENT.sub(rf"\1{REDACTED}", text)
    return _CONSOLE_URL.sub(lambda m: _PERSON_PARAMETER.sub(rf"\1{REDACTED}", m.group(0)), text)


def _redact_value(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class RedactTokens(logging.Filter):
    """Redacts token path segments in a record's message and its %-arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, Mapping):
            record.args = {k: _redact_value(v) for k, v in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(_redact_value(v) for v in record.args)
        return True


def install(logger_names: Iterable[str] = LOGGERS) -> None:
    """Add the filter to uvicorn's loggers, once. uvicorn's dictConfig keeps existing filters,
    so this holds whether it runs before or after uvicorn configures logging."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
