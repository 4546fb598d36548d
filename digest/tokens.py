"""Signed tokens for links in emails (itsdangerous).

A confirmation token expires; unsubscribe and preferences tokens do not (an old email's link must
keep working). Tokens carry the subscriber id, never the address, and a salt per purpose so one
kind of token cannot be replayed as another.
"""

from __future__ import annotations

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


def manage_token(subscriber_id: int) -> str:
    """For unsubscribe and preferences links: never expires."""
    return _plain("manage").dumps(subscriber_id)


def read_manage_token(token: str) -> int:
    try:
        return int(_plain("manage").loads(token))
    except (BadSignature, TypeError, ValueError) as exc:
        raise InvalidToken("this link is not valid") from exc


def unsubscribe_url(subscriber_id: int) -> str:
    return f"{get_settings().public_url.rstrip('/')}/unsubscribe/{manage_token(subscriber_id)}"


def preferences_url(subscriber_id: int) -> str:
    return f"{get_settings().public_url.rstrip('/')}/preferences/{manage_token(subscriber_id)}"


def confirm_url(subscriber_id: int) -> str:
    return f"{get_settings().public_url.rstrip('/')}/confirm/{confirm_token(subscriber_id)}"
