"""Console operators: their accounts and how a password is checked.

Passwords are hashed with Argon2id (argon2-cffi's RFC 9106 low-memory profile). Checking a
sign-in does the same work whether the account exists or not: an unknown address is verified
against a dummy hash, so neither the answer nor its timing tells an attacker which addresses
have accounts. Each operator has a random `session_key` that every session cookie carries;
removing the operator or replacing the key ends their sessions.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from schema.models import Operator, utcnow

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # hashing a megabyte on every sign-in attempt is a denial of service
_HASHER = PasswordHasher()


class OperatorError(ValueError):
    """An address or password refused, or an operator that already exists or does not."""


@dataclass(frozen=True)
class OperatorInfo:
    id: int
    email: str
    created_at: str
    last_login_at: str | None


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """A hash nobody's password matches, checked when the address has no account."""
    return _HASHER.hash(secrets.token_urlsafe(32))


def normalise_email(email: str) -> str:
    address = email.strip().lower()
    if not _plausible(address) or any(c.isspace() for c in address):
        raise OperatorError(f"{email!r} is not an email address")
    return address


def _plausible(address: str) -> bool:
    return "@" in address and len(address) <= 320 and address.isprintable()


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise OperatorError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise OperatorError(f"the password must be at most {MAX_PASSWORD_LENGTH} characters")


def _info(operator: Operator) -> OperatorInfo:
    last = operator.last_login_at
    return OperatorInfo(
        operator.id, operator.email, operator.created_at.isoformat(), last and last.isoformat()
    )


def create_operator(session: Session, email: str, password: str) -> OperatorInfo:
    address = normalise_email(email)
    _check_password(password)
    if session.scalar(select(Operator.id).where(Operator.email == address)) is not None:
        raise OperatorError(f"{address} is already an operator")
    operator = Operator(
        email=address, password_hash=_HASHER.hash(password), session_key=new_session_key()
    )
    session.add(operator)
    session.flush()
    return _info(operator)


def list_operators(session: Session) -> list[OperatorInfo]:
    return [_info(o) for o in session.scalars(select(Operator).order_by(Operator.email))]


def remove_operator(session: Session, email: str) -> bool:
    """Delete the account (its sessions end with it); False if there was none."""
    removed = session.execute(
        delete(Operator).where(Operator.email == email.strip().lower()).returning(Operator.id)
    ).first()
    return removed is not None


def verify_login(session: Session, email: str, password: str) -> Operator | None:
    """The operator if the password is theirs; None otherwise, after the same Argon2 work."""
    address = email.strip().lower()
    operator = None
    if _plausible(address):  # anything else has no account (and NUL cannot reach PostgreSQL)
        operator = session.scalar(select(Operator).where(Operator.email == address))
    if len(password) > MAX_PASSWORD_LENGTH:
        password = ""  # still hashed below: a long password costs no more than a short one
    stored = operator.password_hash if operator is not None else _dummy_hash()
    try:
        _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if operator is None:  # cannot happen (nobody knows the dummy's password); be explicit
        return None
    if _HASHER.check_needs_rehash(operator.password_hash):
        operator.password_hash = _HASHER.hash(password)
    operator.last_login_at = utcnow()
    return operator


def operator_for_session(session: Session, operator_id: int, session_key: str) -> Operator | None:
    """The operator a session cookie names, if they still exist and the key still stands."""
    operator = session.get(Operator, operator_id)
    if operator is None or not secrets.compare_digest(operator.session_key, session_key):
        return None
    return operator


def new_session_key() -> str:
    return secrets.token_urlsafe(24)


def end_sessions(session: Session, operator_id: int) -> None:
    """Sign the operator out everywhere: cookies signed with the old key stop working."""
    operator = session.get(Operator, operator_id)
    if operator is not None:
        operator.session_key = new_session_key()
