"""SendGrid's rules for `POST /v3/mail/send`: its published OpenAPI schema and documented limits.

The stand-in (`tests/sendgrid_server.py`) checks every request against both, so a test fails when
our code sends something SendGrid would refuse — or, worse, accept and silently drop (a recipient
name containing `,` or `;` gets 202 from SendGrid and is never delivered).

The schema is read at test time from `../shared/sendgrid-oai/tsg_mail_v3.json` (next to the
repository; `DIGEST_SENDGRID_SPEC` points elsewhere), never copied here. CI always has it, so a
missing file fails there; elsewhere the documented limits still apply and a warning says the
schema was skipped. The schema's `$ref`s (OpenAPI's requestBody reference, then JSON Schema
references into `components`) are resolved with `referencing` against the whole document.

The documented limits the schema does not encode are below, each with the page that states it.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.support.paths import SHARED

SPEC_ENV = "DIGEST_SENDGRID_SPEC"
SPEC_URI = "urn:sendgrid-oai:tsg_mail_v3.json"
SEND_PATH = "/v3/mail/send"

# Pages that state the limits (cited next to each rule).
LIMITATIONS = "https://docs.sendgrid.com/api-reference/mail-send/limitations"
ERRORS = "https://www.twilio.com/docs/sendgrid/api-reference/mail-send/errors"
API_REFERENCE = "https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send"
CATEGORIES = "https://docs.sendgrid.com/for-developers/sending-email/categories/"
SUBSTITUTIONS = (
    "https://www.twilio.com/docs/sendgrid/for-developers/sending-email/substitution-tags"
)

MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_MESSAGE_BYTES = 30 * 1024 * 1024
MAX_SUBSTITUTION_BYTES = 10_000
MAX_CUSTOM_ARGS_BYTES = 10_000
MAX_CATEGORIES = 10
MAX_CATEGORY_CHARS = 255
# The API reference's `headers` description (the schema types it as a bare object): "You may not
# override the following headers: x-sg-id, x-sg-eid, received, dkim-signature, Content-Type,
# Content-Transfer-Encoding, To, From, Subject, Reply-To, CC, BCC."
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "Content-Type",
        "Content-Transfer-Encoding",
        "To",
        "From",
        "Subject",
        "Reply-To",
        "CC",
        "BCC",
    )
)
_ADDRESS = r"[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+"
_EMAIL = re.compile(rf"^{_ADDRESS}$")
# All of a request's addresses in one match, joined by spaces (no valid address has one); `\n?`
# is what `$` lets one address end with. The groups are atomic so that a failing match does not
# retry every earlier address's split at its dots.
_EMAILS = re.compile(rf"(?>{_ADDRESS}\n?)(?: (?>{_ADDRESS}\n?))*")
_KINDS = ("to", "cc", "bcc")
_KEYED_PARTS = ("substitutions", "headers", "custom_args")


@dataclass(frozen=True)
class Violation:
    """One broken rule: SendGrid's error shape plus which rule it was (for the tests)."""

    rule: str
    field: str | None
    message: str
    help: str | None = None

    def as_error(self) -> dict[str, Any]:
        return {"message": self.message, "field": self.field, "help": self.help}


@dataclass(frozen=True)
class Checked:
    """What checking a request found: the rules it breaks, and every recipient's address,
    lower-cased, in the order of the request (None when the addresses could not be listed in
    passing, e.g. a to/cc/bcc that is not a list of objects), for the server's record."""

    violations: list[Violation]
    addresses: list[str] | None


class SpecMissing(FileNotFoundError):
    """The published OpenAPI file is not where the tests look for it."""


# --- the published schema --------------------------------------------------------------------


def spec_file() -> Path:
    """`DIGEST_SENDGRID_SPEC`, or `../shared/sendgrid-oai/tsg_mail_v3.json` beside the repo."""
    default = SHARED / "sendgrid-oai" / "tsg_mail_v3.json"
    return Path(os.environ.get(SPEC_ENV) or default)


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def request_schema_pointer(document: dict[str, Any]) -> str:
    """JSON pointer to the `application/json` schema of POST /v3/mail/send's request body.

    The operation's `requestBody` is an OpenAPI `$ref` (to `components/requestBodies/...`); it is
    followed here, so a regenerated file that moves the body still resolves.
    """
    resolver = Registry().with_resource(SPEC_URI, _resource(document)).resolver(SPEC_URI)
    pointer = _pointer("paths", SEND_PATH, "post", "requestBody")
    body = resolver.lookup(pointer).contents
    while "$ref" in body:
        pointer = body["$ref"]
        body = resolver.lookup(pointer).contents
    return pointer + "/" + "/".join(("content", "application~1json", "schema"))


def _resource(document: dict[str, Any]) -> Resource[Any]:
    return Resource(contents=document, specification=DRAFT202012)


def _patch(document: dict[str, Any], pointer: str) -> None:
    """Fix the one known error of the published file, in the loaded copy only.

    The file types message-level `custom_args` as a string, but the API takes (and the official
    client sends) an object of string values, as the personalization-level field is typed.
    """
    node: Any = document
    for part in pointer.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    custom_args = node["properties"]["custom_args"]
    if custom_args.get("type") == "string":
        custom_args["type"] = "object"
        custom_args["additionalProperties"] = {"type": "string"}


@lru_cache(maxsize=4)
def _validator(path: str) -> Draft202012Validator:
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    pointer = request_schema_pointer(document)
    _patch(document, pointer)
    registry = Registry().with_resource(SPEC_URI, _resource(document))
    return Draft202012Validator(
        {"$ref": SPEC_URI + pointer},
        registry=registry,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def schema_validator(required: bool | None = None) -> Draft202012Validator | None:
    """The validator of the published schema, or None (with a warning) when the file is missing
    outside CI. In CI (or with `required`) a missing file raises `SpecMissing`."""
    path = spec_file()
    if not path.is_file():
        message = f"SendGrid's OpenAPI file {path} not found (set {SPEC_ENV})"
        if required or (required is None and os.environ.get("CI")):
            raise SpecMissing(message)
        warnings.warn(message + "; only the documented limits are checked", stacklevel=2)
        return None
    return _validator(str(path))


def schema_violations(validator: Draft202012Validator, body: Any) -> list[Violation]:
    found = []
    for error in sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.path))):
        field = ".".join(str(p) for p in error.absolute_path) or None
        message = error.message if len(error.message) <= 300 else error.message[:297] + "..."
        found.append(Violation("schema", field, message, API_REFERENCE))
    return found


# --- the documented limits -------------------------------------------------------------------
#
# Every request is checked per recipient, so the checks are made in two steps: a bulk look at all
# recipients (or personalizations) at once, with C-level joins, maps and sets, that can only
# prove nothing is wrong; and, when it cannot, the itemised check, which names each rule broken
# and where. The rules' errors all come from the itemised checks. (The itemised checks alone were
# nearly two thirds of the stand-in's CPU on a 1000-recipient request without the schema, py-spy;
# the bulk look takes about a third of their time.)

_Report = Callable[[str, str | None, str, str], None]


def _recipients(
    personalizations: list[dict[str, Any]],
) -> Iterator[tuple[int, str, int, dict[str, Any]]]:
    """(personalization index, "to"/"cc"/"bcc", index, the recipient object) of every recipient;
    the field path (`_field`) is only spelled out for a violation."""
    for i, item in enumerate(personalizations):
        for kind in _KINDS:
            people = item.get(kind)
            if people.__class__ is not list:
                continue
            for j, who in enumerate(people):
                if isinstance(who, dict):
                    yield i, kind, j, who


def _recipient_objects(personalizations: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """The recipient objects `_recipients` walks, in its order, without their positions; and
    whether every non-empty to/cc/bcc was a list of objects only (what the server's own walk of
    an accepted request, `_addresses`, takes for granted)."""
    groups = [people for item in personalizations for kind in _KINDS if (people := item.get(kind))]
    found = [
        who
        for people in groups
        if people.__class__ is list
        for who in people
        if isinstance(who, dict)
    ]
    regular = set(map(type, groups)) <= {list} and len(found) == sum(map(len, groups))
    return found, regular


def _field(i: int, kind: str, j: int) -> str:
    return f"personalizations.{i}.{kind}.{j}"


def _personalizations(body: dict[str, Any]) -> list[dict[str, Any]]:
    items = body.get("personalizations")
    return [p if isinstance(p, dict) else {} for p in items] if isinstance(items, list) else []


def _utf8_len(value: Any) -> int:
    text = value if isinstance(value, str) else str(value)
    return len(text) if text.isascii() else len(text.encode())  # isascii() reads a flag


def _bytes(mapping: dict[str, Any]) -> int:
    """Size of a key/value collection as SendGrid counts it: keys and values, UTF-8. All-string
    collections are measured joined, without encoding ASCII text."""
    try:
        text = "".join(mapping) + "".join(mapping.values())
    except TypeError:  # a value that is not a string (reported by its own rule)
        return sum(_utf8_len(k) + _utf8_len(v) for k, v in mapping.items())
    return len(text) if text.isascii() else len(text.encode())


def _all_strings(values: dict[str, Any]) -> bool:
    return set(map(type, values.values())) <= {str}


def _values(mappings: list[dict[str, Any]]) -> list[Any]:
    """Every value of every mapping, in one list (for the bulk checks). The views are made one
    at a time: a list of them (a tracked object each) set off the cyclic GC's collections, which
    then cost more than the checks."""
    return list(chain.from_iterable(m.values() for m in mappings))


def _within(mappings: list[dict[str, str]], values: list[str], limit: int) -> bool:
    """Whether each of `mappings` (string values only; `values` all of them) measures at most
    `limit` bytes as `_bytes` counts. Bounded first from maxima over all of them, entries times
    longest key plus longest value, when all is ASCII: enough for the usual few short entries
    without a Python step per mapping. Otherwise measured one by one."""
    if not mappings:
        return True
    try:
        keys = list(chain.from_iterable(mappings))
        ascii_only = ("".join(keys) + "".join(values)).isascii()
        longest = max(map(len, keys), default=0) + max(map(len, values), default=0)
    except TypeError:  # a key that is not a string
        ascii_only = False
    if ascii_only and max(map(len, mappings)) * longest <= limit:
        return True
    return max(map(_bytes, mappings)) <= limit


def _plain_addresses(people: list[dict[str, Any]]) -> list[str] | None:
    """Every recipient's address, lower-cased, when a bulk look shows that none breaks a
    recipient rule (`recipient-email`, `recipient-unique`, `recipient-name-characters`); None
    when one may, for `_recipient_violations` to say which. The joined names are searched for
    `,` and `;`, the space-joined addresses matched by `_EMAILS` at once (with exactly one space
    per join, no address holds one), and the lower-cased addresses counted in a set."""
    if not people:
        return []
    names = "".join([name for who in people if isinstance(name := who.get("name"), str)])
    if "," in names or ";" in names:
        return None
    addresses = [who.get("email") for who in people]
    try:
        joined = " ".join(addresses)
    except TypeError:  # an address that is not a string
        return None
    if joined.count(" ") != len(addresses) - 1 or _EMAILS.fullmatch(joined) is None:
        return None
    if max(map(len, addresses)) > 320:
        return None
    lowered = list(map(str.lower, addresses))
    return lowered if len(set(lowered)) == len(lowered) else None


def _recipient_violations(personalizations: list[dict[str, Any]], violation: _Report) -> None:
    """The recipient rules, recipient by recipient (see `_plain_addresses`)."""
    recipients = list(_recipients(personalizations))
    # Errors page: "Each unique email address in the personalizations array should only be
    # included once. You have included [email address] more than once." (ERRORS)
    seen: dict[str, tuple[int, str, int]] = {}
    for i, kind, j, who in recipients:
        address = who.get("email")
        if not isinstance(address, str) or not _EMAIL.match(address) or len(address) > 320:
            violation(
                "recipient-email",
                f"{_field(i, kind, j)}.email",
                "Does not contain a valid address.",
                ERRORS,
            )
            continue
        first = seen.setdefault(address.lower(), (i, kind, j))
        if first != (i, kind, j):
            violation(
                "recipient-unique",
                f"{_field(i, kind, j)}.email",
                f"Each unique email address in the personalizations array should only be "
                f"included once. You have included {address} more than once "
                f"(first in {_field(*first)}).",
                ERRORS,
            )

    # Limitations page: "The to.name, cc.name, and bcc.name personalizations cannot include
    # either the ; or , characters." SendGrid answers 202 to such a request and then drops the
    # message; the stand-in answers 400 so that a test notices. (LIMITATIONS)
    for i, kind, j, who in recipients:
        name = who.get("name")
        if isinstance(name, str) and ("," in name or ";" in name):
            violation(
                "recipient-name-characters",
                f"{_field(i, kind, j)}.name",
                "The to.name, cc.name, and bcc.name personalizations cannot include either the "
                "; or , characters.",
                LIMITATIONS,
            )


def _personalizations_plainly_fine(
    personalizations: list[dict[str, Any]], message_args: dict[str, Any]
) -> bool:
    """Whether a bulk look shows that no personalization breaks `string-values`,
    `reserved-header`, `substitutions-size` or `custom-args-size`; when it cannot,
    `_personalization_violations` decides. A personalization's merged custom_args measure at most
    its own plus the message's."""
    substitutions, headers, custom_args = (
        [m for item in personalizations if isinstance(m := item.get(part), dict)]
        for part in _KEYED_PARTS
    )
    substitution_values, header_values, argument_values = map(
        _values, (substitutions, headers, custom_args)
    )
    types = set(map(type, chain(substitution_values, header_values, argument_values)))
    if not types <= {str}:
        return False
    names = set(chain.from_iterable(headers))  # the few distinct header names
    if any(str(name).strip().lower() in RESERVED_HEADERS for name in names):
        return False
    message_size = _bytes(message_args)
    return (
        _within(substitutions, substitution_values, MAX_SUBSTITUTION_BYTES)
        and message_size < MAX_CUSTOM_ARGS_BYTES
        and _within(custom_args, argument_values, MAX_CUSTOM_ARGS_BYTES - 1 - message_size)
    )


def _personalization_violations(
    personalizations: list[dict[str, Any]], message_args: dict[str, Any], violation: _Report
) -> None:
    """The per-personalization rules, personalization by personalization."""
    for i, item in enumerate(personalizations):
        # API reference, personalizations.substitutions: "The total collective size of your
        # substitutions may not exceed 10,000 bytes per personalization object." (The
        # substitution-tags guide, SUBSTITUTIONS, says 50,000; the stricter figure is kept.)
        substitutions = item.get("substitutions")
        if isinstance(substitutions, dict) and _bytes(substitutions) > MAX_SUBSTITUTION_BYTES:
            violation(
                "substitutions-size",
                f"personalizations.{i}.substitutions",
                "The total collective size of your substitutions may not exceed 10,000 bytes "
                "per personalization object.",
                API_REFERENCE,
            )
        # Limitations page: "The total length of custom arguments must be less than 10000
        # bytes." A personalization's custom_args are merged over the message's. (LIMITATIONS)
        own_args = item.get("custom_args")
        merged = {**message_args, **own_args} if isinstance(own_args, dict) else message_args
        if _bytes(merged) >= MAX_CUSTOM_ARGS_BYTES:
            violation(
                "custom-args-size",
                f"personalizations.{i}.custom_args",
                "The total length of custom arguments must be less than 10000 bytes.",
                LIMITATIONS,
            )
        # Errors page: substitutions, headers and custom_args values must be strings (SendGrid
        # answers "... must be a string" for each); the substitution-tags guide: "make sure to
        # only use strings". (ERRORS)
        for part in _KEYED_PARTS:
            values = item.get(part)
            if isinstance(values, dict) and not _all_strings(values):
                violation(
                    "string-values",
                    f"personalizations.{i}.{part}",
                    f"The {part} values must be strings.",
                    ERRORS,
                )
        _reserved_headers(item.get("headers"), f"personalizations.{i}.headers", violation)


def size_violation(size: int) -> Violation | None:
    """Limitations page: "The total size of your email, including attachments, must be less
    than 30MB." (LIMITATIONS; SendGrid answers 413.)"""
    if size < MAX_MESSAGE_BYTES:
        return None
    return Violation("message-size", None, "The email must be smaller than 30MB.", LIMITATIONS)


def documented_violations(body: dict[str, Any], size: int) -> list[Violation]:
    """Every documented limit `body` (of `size` bytes on the wire) breaks."""
    return _documented(body, size).violations


def _documented(body: dict[str, Any], size: int) -> Checked:
    found: list[Violation] = []

    def violation(rule: str, field: str | None, message: str, help: str) -> None:
        found.append(Violation(rule, field, message, help))

    too_big = size_violation(size)
    if too_big is not None:
        found.append(too_big)

    # Errors page: "The personalization block is limited to 1000 personalizations per API
    # request" and "You must have at least one personalization." (ERRORS)
    personalizations = _personalizations(body)
    if not personalizations:
        violation(
            "personalizations-required",
            "personalizations",
            "You must have at least one personalization.",
            ERRORS,
        )
    elif len(personalizations) > MAX_PERSONALIZATIONS:
        violation(
            "personalizations-count",
            "personalizations",
            f"The personalization block is limited to 1000 personalizations per API request. "
            f"You have provided {len(personalizations)} personalizations.",
            ERRORS,
        )

    # Limitations and errors pages: "The total number of recipients must be no more than 1000.
    # This includes all recipients defined within the to, cc, and bcc parameters, across each
    # object that you include in the personalizations array." (LIMITATIONS)
    people, regular = _recipient_objects(personalizations)
    if len(people) > MAX_RECIPIENTS:
        violation(
            "recipients-count",
            "personalizations",
            f"There is a limit of 1000 total recipients (to + cc + bcc) per request; "
            f"this request has {len(people)}.",
            LIMITATIONS,
        )

    addresses = _plain_addresses(people)
    if addresses is None:
        _recipient_violations(personalizations, violation)

    message_args = body.get("custom_args") if isinstance(body.get("custom_args"), dict) else {}
    if not _personalizations_plainly_fine(personalizations, message_args):
        _personalization_violations(personalizations, message_args, violation)
    for part in ("headers", "custom_args"):
        values = body.get(part)
        if isinstance(values, dict) and not _all_strings(values):
            violation("string-values", part, f"The {part} values must be strings.", ERRORS)
    _reserved_headers(body.get("headers"), "headers", violation)

    # Categories guide: "you can assign up to 10 categories per message"; API reference: "A
    # category name cannot exceed 255 characters." (CATEGORIES)
    categories = body.get("categories")
    if isinstance(categories, list):
        if len(categories) > MAX_CATEGORIES:
            violation(
                "categories-count",
                "categories",
                "You may not have more than 10 categories per request.",
                CATEGORIES,
            )
        for k, category in enumerate(categories):
            if not isinstance(category, str) or len(category) > MAX_CATEGORY_CHARS:
                violation(
                    "category-length",
                    f"categories.{k}",
                    "A category name cannot exceed 255 characters.",
                    CATEGORIES,
                )

    # Errors page, subject: "The subject is required. You can get around this requirement if you
    # use a template with a subject defined or if every single personalization has a subject
    # defined." (ERRORS)
    if (
        not body.get("template_id")
        and not body.get("subject")
        and not (personalizations and all(p.get("subject") for p in personalizations))
    ):
        violation(
            "subject-required",
            "subject",
            "The subject is required. You can get around this requirement if you use a template "
            "with a subject defined or if every single personalization has a subject defined.",
            ERRORS,
        )

    # Errors page, content: "Unless a valid template_id is provided, the content parameter is
    # required. There must be at least one defined content block." and "The content value must
    # be a string at least one character in length." and "If present, text/plain content must
    # be first, followed by text/html, followed by any other content." (ERRORS)
    content = body.get("content")
    if not isinstance(content, list) or not content:
        if not body.get("template_id"):
            violation(
                "content-required",
                "content",
                "Unless a valid template_id is provided, the content parameter is required.",
                ERRORS,
            )
    else:
        types = [part.get("type") if isinstance(part, dict) else None for part in content]
        for k, part in enumerate(content):
            value = part.get("value") if isinstance(part, dict) else None
            if not isinstance(value, str) or not value:
                violation(
                    "content-value",
                    f"content.{k}.value",
                    "The content value must be a string at least one character in length.",
                    ERRORS,
                )
        order = [t for t in types if t in ("text/plain", "text/html")]
        first_other = next(
            (k for k, t in enumerate(types) if t not in ("text/plain", "text/html")), len(types)
        )
        plain_html_last = max(
            (k for k, t in enumerate(types) if t in ("text/plain", "text/html")), default=-1
        )
        if order not in ([], ["text/plain"], ["text/html"], ["text/plain", "text/html"]) or (
            plain_html_last > first_other
        ):
            violation(
                "content-order",
                "content",
                "If present, text/plain content must be first, followed by text/html, followed "
                "by any other content.",
                ERRORS,
            )

    # Limitations page: "Unicode encoding is not supported for the from field." (LIMITATIONS)
    sender = body.get("from")
    if isinstance(sender, dict) and isinstance(sender.get("email"), str):
        if not sender["email"].isascii():
            violation(
                "from-ascii",
                "from.email",
                "Unicode encoding is not supported for the from field.",
                LIMITATIONS,
            )
        elif not _EMAIL.match(sender["email"]):
            violation(
                "from-email",
                "from.email",
                "The from email does not contain a valid address.",
                ERRORS,
            )
    # The server records an accepted request's addresses from these, unless the request holds
    # what its own walk (`_addresses`) does not expect: then it walks the request as before.
    items = body.get("personalizations")
    listed = regular and isinstance(items, list) and set(map(type, items)) <= {dict}
    return Checked(found, addresses if listed else None)


def _reserved_headers(headers: Any, field: str, violation: _Report) -> None:
    """API reference, `headers`: the reserved names may not be set. (API_REFERENCE)"""
    if not isinstance(headers, dict):
        return
    for name in headers:
        if str(name).strip().lower() in RESERVED_HEADERS:
            violation(
                "reserved-header",
                f"{field}.{name}",
                f"The header {name} is reserved and may not be set in headers.",
                API_REFERENCE,
            )


# --- both ------------------------------------------------------------------------------------


def check(body: Any, size: int, validator: Draft202012Validator | None) -> list[Violation]:
    """Every rule `body` breaks: the published schema's, then the documented limits."""
    return inspect(body, size, validator).violations


def inspect(body: Any, size: int, validator: Draft202012Validator | None) -> Checked:
    """`check`, and the recipients' addresses found on the way (`Checked`)."""
    found = schema_violations(validator, body) if validator is not None else []
    if not isinstance(body, dict):
        found = found or [Violation("schema", None, "The body must be a JSON object.", ERRORS)]
        return Checked(found, None)
    documented = _documented(body, size)
    return Checked(found + documented.violations, documented.addresses)
