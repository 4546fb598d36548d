"""What our mail puts in headers, within the rules: one-line values, display names SendGrid
accepts, and the one-click unsubscribe pair.

Every backend writes headers through these (`digest.email_backends`), and the renderer and the
request planner use `header_safe` for subjects: a stranger's text reaches some of them.
"""

from __future__ import annotations

import re

_LINE_BREAKS = re.compile(r"[\r\n\x00]+")


def header_safe(value: str) -> str:
    """Header values never carry CR/LF (header injection) and stay on one line."""
    if "\r" in value or "\n" in value or "\x00" in value:
        value = _LINE_BREAKS.sub(" ", value)
    return value.strip()


# SendGrid's Mail Send reference: a recipient's name may not contain `;` or `,` (the request is
# accepted with 202 and the message silently dropped); quotes and angle brackets would end the
# display name in the To: header that SendGrid builds from it.
_NAME_UNSAFE = re.compile(r"[;,\"<>\\\x00-\x1f\x7f]+")
DISPLAY_NAME_MAX = 100
# Words of ASCII letters and digits, single-spaced: already what the rules below would give.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9]+(?: [A-Za-z0-9]+)*")


def display_name(name: str | None) -> str | None:
    """A recipient's name as the To: header shows it, within SendGrid's rules; None if empty.

    A plain name (ASCII words, single spaces) is already what the rules make of it and is
    returned as it is: this runs once per recipient (tested equal to `cleaned_display_name`)."""
    if not name:
        return None
    if len(name) <= DISPLAY_NAME_MAX and _PLAIN_NAME.fullmatch(name):
        return name
    return cleaned_display_name(name)


def cleaned_display_name(name: str) -> str | None:
    """SendGrid's rules applied to any name: unsafe and unprintable characters become spaces,
    runs of spaces one, at most DISPLAY_NAME_MAX characters."""
    if _NAME_UNSAFE.search(name) or not name.isprintable():
        name = "".join(ch if ch.isprintable() else " " for ch in _NAME_UNSAFE.sub(" ", name))
    name = " ".join(name.split())[:DISPLAY_NAME_MAX].strip()
    return name or None


ONE_CLICK = "List-Unsubscribe=One-Click"


def one_click_headers(unsubscribe_url: str) -> dict[str, str]:
    """RFC 2369's List-Unsubscribe with RFC 8058's one-click POST: mailbox providers want the
    pair together, so it is only ever written as a pair, from the URL alone."""
    return {
        "List-Unsubscribe": f"<{header_safe(unsubscribe_url)}>",
        "List-Unsubscribe-Post": ONE_CLICK,
    }
