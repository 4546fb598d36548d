"""The one rule for per-recipient values: what may be substituted into an email, and where.

A digest is rendered once per segment and SendGrid fills each recipient's values into the
finished HTML and text *raw*, after our templates escaped everything else. That makes the
substitution a trust boundary with two halves, and this module holds both:

1. **Placeholders are unguessable.** Each render gets fresh keys, `-n-<nonce>-`,
   `-u-<nonce>-`, `-p-<nonce>-`, `-r-<nonce>-` (the reader token of vote links), with a
   random 48-bit nonce drawn when the email is rendered and stored with it
   (`digest_segments.placeholder_nonce`). Everything that reaches a template
   (ingested titles, URLs, quotes; operator subjects) was written before the nonce existed, so
   no stranger can plant a live placeholder: `-preferences_url-` in a comparison's URL is just
   text. A one-off email (confirmation, welcome, goodbye) is rendered for its one recipient
   with real values and needs no placeholders at all.
2. **Values are safe in every context they land in** (HTML text, HTML attribute, plain text):
   a name is reduced to a greeting with no markup characters and nothing a mail client would
   turn into a link, and the only URLs substituted are our own signed links, whose base
   (`DIGEST_PUBLIC_URL`) the settings check is attribute-safe, and the reader token, which is
   base64url and a dot (itsdangerous), safe raw anywhere. No value can contain a
   placeholder, so substitution order never matters.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import dataclass

DEFAULT_GREETING = "there"
GREETING_MAX = 60

# Placeholders of emails planned before migration 0006 (fixed, hence guessable): only digests
# already planned when the upgrade ran still use them.
LEGACY_NAME, LEGACY_UNSUBSCRIBE, LEGACY_PREFERENCES = (
    "-name-",
    "-unsubscribe_url-",
    "-preferences_url-",
)

# Any placeholder this module ever made, current or legacy: none may survive into a sent email.
ANY_PLACEHOLDER = re.compile(r"-(?:[nupr]-[0-9a-f]{12}|name|unsubscribe_url|preferences_url)-")


@dataclass(frozen=True)
class Placeholders:
    """The substitution keys of one render: the name, the unsubscribe and preferences URLs,
    and the reader token of vote links ("" for renders from before vote links: none to fill)."""

    name: str
    unsubscribe_url: str
    preferences_url: str
    nonce: str | None = None
    reader: str = ""

    @classmethod
    def fresh(cls) -> Placeholders:
        """New keys for a new render: nothing written before now can contain them."""
        return cls.from_nonce(secrets.token_hex(6))

    @classmethod
    def from_nonce(cls, nonce: str | None) -> Placeholders:
        """The keys a stored render used (None: a render from before placeholders had nonces)."""
        if nonce is None:
            return cls(LEGACY_NAME, LEGACY_UNSUBSCRIBE, LEGACY_PREFERENCES)
        if not re.fullmatch(r"[0-9a-f]{12}", nonce):
            raise ValueError(f"placeholder_nonce: not 12 hex digits: {nonce!r}")
        return cls(f"-n-{nonce}-", f"-u-{nonce}-", f"-p-{nonce}-", nonce, f"-r-{nonce}-")

    def values(
        self,
        name: str | None,
        unsubscribe_url: str,
        preferences_url: str,
        reader_token: str = "",
    ) -> dict[str, str]:
        """One recipient's substitutions: a safe greeting, our own two links and, for a render
        with vote links, the reader token (base64url and dots: safe raw in any context)."""
        values = {
            self.name: greeting_name(name),
            self.unsubscribe_url: unsubscribe_url,
            self.preferences_url: preferences_url,
        }
        if self.reader and reader_token:
            values[self.reader] = reader_token
        return values


# Characters that mean something in HTML, or break out of an attribute or a header.
_MARKUP = re.compile(r"[<>&\"`\x00-\x1f\x7f]")
_SPACES = re.compile(r"\s+")
# Words of ASCII letters and digits, single-spaced: nothing to clean (most names).
_PLAIN = re.compile(r"[A-Za-z0-9]+(?: [A-Za-z0-9]+)*")
# What mail clients turn into a link on their own: a scheme, www., an address, a domain name.
_LINKISH = re.compile(r"://|\bwww\.|@|\b[\w-]+\.[a-z]{2,}\b", re.IGNORECASE)


def greeting_name(name: str | None) -> str:
    """How a recipient is greeted ("Hi Alex,"): safe raw in HTML and in plain text.

    Markup characters are dropped (an apostrophe becomes a typographic one, so "O'Brien"
    survives), the result is one line of at most 60 characters, and a name that reads like a
    link, an address or a placeholder ("evil.example/login", "www.", "a@b", "-name-") greets as
    "there": a stranger
    chooses the name of an address they type, and must not choose what our email links to.
    """
    if not name:
        return DEFAULT_GREETING
    if len(name) <= GREETING_MAX and _PLAIN.fullmatch(name):  # the common case, per recipient
        return name
    printable = "".join(ch if ch.isprintable() else " " for ch in name.replace("'", "\u2019"))
    cleaned = _SPACES.sub(" ", _MARKUP.sub("", printable)).strip()
    # NFKC first: a fullwidth dot or an @ look-alike must not slip a domain past the check
    folded = unicodedata.normalize("NFKC", cleaned)
    if not cleaned or _LINKISH.search(folded) or ANY_PLACEHOLDER.search(folded):
        return DEFAULT_GREETING
    if len(cleaned) > GREETING_MAX:
        cleaned = cleaned[: GREETING_MAX - 1].rstrip() + "…"
    return cleaned


def is_attribute_safe_url(url: str) -> bool:
    """An http(s) URL that can stand raw in an HTML attribute, in text and in a header."""
    return bool(re.fullmatch(r"https?://[A-Za-z0-9._~:/?#\[\]@!$()*+,;=%-]+", url))
