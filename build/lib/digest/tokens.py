"""Signed tokens for links in emails (itsdangerous).

A confirmation token expires; unsubscribe and preferences tokens do not (an old email's link must
keep working). Tokens carry the subscriber id, never the address, and a salt per purpose so one
kind of token cannot be replayed as another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import lru_cache

from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer

from digest.settings import get_settings

CONFIRM_MAX_AGE = 7 * 24 * 3600


class InvalidToken(ValueError):
    """The token was tampered with, is of another kind, or has expired."""


def _timed(purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(get_settings().signing_key, salt=f"digest.{purpose}")


def _plain(purpose: str) -> URLSafeSerializer:
    return URLSafeSerializer(get_settings().signing_key, salt=f"digest.{purpose}")


def confirm_token(subscriber_id: int) -> str:
    return _timed("confirm").dumps(subscriber_id)


def read_confirm_token(token: str, max_age: int = CONFIRM_MAX_AGE) -> int:
    try:
        return int(_timed("confirm").loads(token, max_age=max_age))
    except SignatureExpired as exc:
        raise InvalidToken("this confirmation link has expired") from exc
    except (BadSignature, TypeError, ValueError) as exc:
        raise InvalidToken("this link is not valid") from exc


@lru_cache(maxsize=4)
def _manage_mac(secret: str) -> hmac.HMAC:
    """HMAC-SHA1 keyed as itsdangerous keys the "manage" signer, derived once per secret."""
    derived = URLSafeSerializer(secret, salt="digest.manage").make_signer().derive_key()
    mac = hmac.new(derived, digestmod=hashlib.sha1)
    if _sign(mac, 1234567) != URLSafeSerializer(secret, salt="digest.manage").dumps(1234567):
        raise RuntimeError("itsdangerous changed its token format: update tokens._sign")
    return mac


def _sign(mac: hmac.HMAC, subscriber_id: int) -> str:
    payload = base64.urlsafe_b64encode(str(int(subscriber_id)).encode()).rstrip(b"=")
    mac = mac.copy()
    mac.update(payload)
    return (payload + b"." + base64.urlsafe_b64encode(mac.digest()).rstrip(b"=")).decode()


def manage_token(subscriber_id: int) -> str:
    """For unsubscribe and preferences links: never expires.

    Byte-for-byte `_plain("manage").dumps(subscriber_id)` (checked once per secret), computed
    directly: a digest signs a link per recipient, a million a week, and itsdangerous re-derives
    its key and rebuilds its signer on every call (about 10× slower).
    """
    return _sign(_manage_mac(get_settings().signing_key), subscriber_id)


def read_manage_token(token: str) -> int:
    try:
        return int(_plain("manage").loads(token))
    except (BadSignature, TypeError, ValueError) as exc:
        raise InvalidToken("this link is not valid") from exc


def unsubscribe_url(subscriber_id: int) -> str:
    return f"{get_settings().public_url.rstrip('/')}/unsubscribe/{manage_token(subscriber_id)}"


def preferences_url(subscriber_id: int) -> str:
    return f"{get_settings().public_url.rstrip('/')}/preferences/{manage_token(subscriber_id)}"


def manage_urls(subscriber_id: int) -> tuple[str, str]:
    """(unsubscribe URL, preferences URL), signing the shared token once (per-recipient path)."""
    base, token = get_settings().public_url.rstrip("/"), manage_token(subscriber_id)
    return f"{base}/unsubscribe/{token}", f"{base}/preferences/{token}"


def confirm_url(subscriber_id: int) -> str:
    return f"{get_settings().public_url.rstrip('/')}/confirm/{confirm_token(subscriber_id)}"
