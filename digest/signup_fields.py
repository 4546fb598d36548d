"""A signup request's fields, checked by the rules every way in shares (form, API, CSV import).

Each `clean_*` function takes what a client sent and returns the canonical value, or raises
`InvalidField` naming the field, so the 422 answer (or the import's row error) can say which.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.settings import get_settings
from schema.models import Comparison
from schema.statuses import Frequency

# Categories a subscriber can pick before any comparison of that kind exists (the site's sections).
KNOWN_CATEGORIES = ("Design", "Developer Tools", "Productivity", "Research", "Writing")
FREQUENCIES = tuple(Frequency)
MAX_CATEGORIES = 20
MAX_NAME = 200


class InvalidField(ValueError):
    """A submitted field is unusable; `field` names it for the 422 answer."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Signup:
    """A validated, normalised signup request."""

    email: str
    name: str | None = None
    categories: list[str] = field(default_factory=list)
    frequency: str = Frequency.WEEKLY
    timezone: str | None = None


def ip_hash(ip: str, secret: str | None = None) -> str:
    """A keyed hash of the signup IP for the consent record: provable, but not the IP itself."""
    key = (secret or get_settings().signing_key).encode()
    return hmac.new(key, ip.encode(), hashlib.sha256).hexdigest()


def normalise_email(raw: object) -> str:
    """The address as email-validator normalises it (no DNS lookups); InvalidField otherwise."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidField("email", "an email address is required")
    if len(raw) > 320:
        raise InvalidField("email", "this email address is too long")
    return _validated(raw.strip())


@lru_cache(maxsize=1024)
def _validated(address: str) -> str:
    """Cached: a request validates its address before the rate limit and again in make_signup."""
    plain = plain_address(address)
    if plain is not None:
        return plain
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidField("email", str(exc)) from exc


# The shape nearly every signup has: ASCII, a dot-atom local part of letters, digits and `._+-`,
# and a domain of letter-digit-hyphen labels under a letters-only top-level domain. email-validator
# accepts every such address within its length limits and normalises it by lowercasing the
# domain; it took about 40 µs per address, a tenth of the web process's CPU per signup (py-spy,
# README Benchmarks). Anything else, or anything near a rule (a label with "--", a special-use
# name, a length limit), goes to the library. A property test holds the two to the same answer.
_PLAIN_ADDRESS = re.compile(
    r"(?P<local>[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*)"
    r"@(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,63})",
    re.ASCII,
)
# The whole address within 254 characters keeps its domain within the 253 allowed.
_LOCAL_MAX, _LABEL_MAX, _ADDRESS_MAX = 64, 63, 254


def plain_address(address: str) -> str | None:
    """The address as email-validator would normalise it, when it has the plain shape and is
    clear of every limit; None means "ask the library"."""
    match = _PLAIN_ADDRESS.fullmatch(address)
    if match is None or len(address) > _ADDRESS_MAX:
        return None
    local, domain = match["local"], match["domain"].lower()
    if len(local) > _LOCAL_MAX or "--" in domain:
        return None
    if any(len(label) > _LABEL_MAX for label in domain.split(".")):
        return None
    if any(domain == name or domain.endswith("." + name) for name in SPECIAL_USE_DOMAIN_NAMES):
        return None
    return f"{local}@{domain}"


def clean_name(raw: object) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise InvalidField("name", "the name must be text")
    # One line, no control characters: the name ends up in a To: header.
    name = " ".join("".join(ch if ch.isprintable() else " " for ch in raw).split())
    if len(name) > MAX_NAME:
        raise InvalidField("name", f"the name is longer than {MAX_NAME} characters")
    return name or None


def clean_frequency(raw: object) -> str:
    if raw is None or raw == "":
        return Frequency.WEEKLY
    if raw not in FREQUENCIES:
        raise InvalidField("frequency", "choose 'weekly' or 'every'")
    return str(raw)


def clean_timezone(raw: object) -> str | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str) or len(raw) > 64:
        raise InvalidField("timezone", "not an IANA time zone such as Europe/Berlin")
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidField("timezone", f"{raw!r} is not an IANA time zone") from exc
    return raw


def timezone_names() -> list[str]:
    return sorted(available_timezones())


def split_categories(raw: object) -> list[str]:
    """Categories as sent: a list (JSON, repeated form field) whose items may be comma-separated."""
    if raw is None or raw == "":
        return []
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise InvalidField("categories", "categories must be a list of names")
    names = [part.strip() for item in items for part in item.split(",")]
    return [n for n in names if n]


def clean_categories(raw: object, session: Session | None = None) -> list[str]:
    """Canonical spellings of known categories; an unknown one is an error naming the field.

    The known list answers without the database; only an unknown name makes us look at the
    categories of stored comparisons.
    """
    names = split_categories(raw)
    if len(names) > MAX_CATEGORIES:
        raise InvalidField("categories", f"at most {MAX_CATEGORIES} categories")
    if not names:
        return []
    canonical = {c.lower(): c for c in KNOWN_CATEGORIES}
    if session is not None and any(n.lower() not in canonical for n in names):
        canonical.update({c.lower(): c for c in available_categories(session)})
    unknown = [n for n in names if n.lower() not in canonical]
    if unknown:
        raise InvalidField("categories", f"unknown category {unknown[0][:100]!r}")
    return sorted({canonical[n.lower()] for n in names})


def available_categories(session: Session) -> list[str]:
    """The known categories plus every category a stored comparison has."""
    stored = session.scalars(
        select(Comparison.category).where(Comparison.category.is_not(None)).distinct()
    )
    return sorted(set(KNOWN_CATEGORIES) | {c for c in stored if c})


def make_signup(
    *,
    email: object,
    name: object = None,
    categories: object = None,
    frequency: object = None,
    timezone: object = None,
    session: Session | None = None,
) -> Signup:
    """Validate every field of a signup; the first problem raises InvalidField naming it."""
    return Signup(
        email=normalise_email(email),
        name=clean_name(name),
        categories=clean_categories(categories, session),
        frequency=clean_frequency(frequency),
        timezone=clean_timezone(timezone),
    )
