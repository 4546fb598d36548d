"""Request bodies of the subscriber pages: parsed into one shape, validated by pydantic models.

`POST /subscribe` accepts JSON, urlencoded and multipart forms; `parse_signup_body` reads any of
them (in the event loop) into a `ParsedBody`. The models' validators are the domain's `clean_*`
functions, so an error names the same field with the same message as the domain would, and the
same models describe the bodies in the OpenAPI document.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator
from sqlalchemy.orm import Session

from digest import subscriptions
from digest.subscriptions import InvalidField

HONEYPOT = "website"
Model = TypeVar("Model", bound=BaseModel)


def _session(info: ValidationInfo) -> Session | None:
    """The session a validator may consult (categories outside the known list), if given."""
    return (info.context or {}).get("session")


def _text_or_none(value: object) -> str | None:
    """Fields only ever read as text (honeypot, redirect): anything else counts as absent."""
    return value if isinstance(value, str) else None


class SubscribeRequest(BaseModel):
    """A signup, as JSON or as form fields (categories: repeated field or comma-separated)."""

    email: str = Field(description="The address to subscribe (validated, normalised).")
    name: str | None = Field(default=None, max_length=200)
    categories: list[str] = Field(
        default_factory=list, description="Categories to receive; empty means all."
    )
    frequency: str = Field(
        default="weekly", description="`weekly` digest or `every` comparison as it is published."
    )
    timezone: str | None = Field(default=None, description="IANA time zone, e.g. Europe/Berlin.")
    website: str | None = Field(default=None, description="Leave empty (bot trap).")
    redirect: str | None = Field(
        default=None,
        description="Form posts only: where to go after submitting, on an allowlisted origin.",
    )

    # Fields in the order `subscriptions.make_signup` checks them: the first error is reported.
    clean_email = field_validator("email", mode="before")(subscriptions.normalise_email)
    clean_name = field_validator("name", mode="before")(subscriptions.clean_name)
    clean_frequency = field_validator("frequency", mode="before")(subscriptions.clean_frequency)
    clean_timezone = field_validator("timezone", mode="before")(subscriptions.clean_timezone)
    clean_text = field_validator("website", "redirect", mode="before")(_text_or_none)

    @field_validator("categories", mode="before")
    @classmethod
    def clean_categories(cls, value: object, info: ValidationInfo) -> list[str]:
        return subscriptions.clean_categories(value, _session(info))

    def signup(self) -> subscriptions.Signup:
        return subscriptions.Signup(
            email=self.email,
            name=self.name,
            categories=self.categories,
            frequency=self.frequency,
            timezone=self.timezone,
        )


class PreferencesForm(BaseModel):
    categories: list[str] = Field(default_factory=list)
    frequency: str = "weekly"
    timezone: str | None = None
    paused: str | None = Field(default=None, description="Present (any value) to pause mail.")

    clean_frequency = field_validator("frequency", mode="before")(subscriptions.clean_frequency)
    clean_timezone = field_validator("timezone", mode="before")(subscriptions.clean_timezone)
    clean_paused = field_validator("paused", mode="before")(_text_or_none)

    @field_validator("categories", mode="before")
    @classmethod
    def clean_categories(cls, value: object, info: ValidationInfo) -> list[str]:
        return subscriptions.clean_categories(value, _session(info))


def validated(model: type[Model], data: dict[str, Any], session: Session | None) -> Model:
    """`model` validated from `data`; the first problem raises InvalidField, as the domain does."""
    try:
        return model.model_validate(data, context={"session": session})
    except ValidationError as exc:
        raise first_invalid(exc) from exc


def first_invalid(exc: ValidationError) -> InvalidField:
    """The domain's InvalidField behind the first error (pydantic keeps it), else one like it."""
    error = exc.errors()[0]
    original = (error.get("ctx") or {}).get("error")
    if isinstance(original, InvalidField):
        return original
    field = str(error["loc"][0]) if error["loc"] else "body"
    return InvalidField(field, error["msg"])


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema.pop("title", None)
    return schema


# Hand-declared request bodies: the routes read the raw body themselves (three encodings).
SUBSCRIBE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _schema(SubscribeRequest)},
            "application/x-www-form-urlencoded": {"schema": _schema(SubscribeRequest)},
        },
    }
}
PREFERENCES_BODY = {
    "requestBody": {
        "required": False,
        "content": {"application/x-www-form-urlencoded": {"schema": _schema(PreferencesForm)}},
    }
}
UNSUBSCRIBE_BODY = {
    "requestBody": {
        "required": False,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "List-Unsubscribe": {
                            "type": "string",
                            "enum": ["One-Click"],
                            "description": "RFC 8058 one-click unsubscribe.",
                        }
                    },
                }
            }
        },
    }
}


@dataclass(frozen=True)
class ParsedBody:
    """The raw fields of a POST /subscribe, whichever encoding they came in."""

    is_json: bool
    data: dict[str, Any]

    @property
    def honeypot(self) -> bool:
        return bool(self.data.get(HONEYPOT))


def form_fields(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Form pairs as one dict: `categories` collects every value, other fields keep the first."""
    data: dict[str, Any] = {}
    categories: list[str] = []
    for key, value in pairs:
        if key == "categories":
            categories.append(value)
        else:
            data.setdefault(key, value)  # the first of a repeated single field wins
    data["categories"] = categories
    return data


def json_error(status: int, field: str | None, message: str, kind: str) -> JSONResponse:
    """A 4xx in FastAPI's validation-error shape, naming the field when there is one."""
    loc = ["body", field] if field else ["body"]
    return JSONResponse({"detail": [{"loc": loc, "msg": message, "type": kind}]}, status)


async def parse_signup_body(request: Request) -> ParsedBody | Response:
    """Parse the body in the event loop; the handler then runs in the thread pool."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return json_error(422, None, "the body is not valid JSON", "json_invalid")
        if not isinstance(data, dict):
            return json_error(422, None, "the body must be a JSON object", "model_type")
        return ParsedBody(True, data)
    if content_type == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100)
        except (ValueError, UnicodeDecodeError):
            return json_error(422, None, "the form body is not valid", "form_invalid")
        return ParsedBody(False, form_fields(pairs))
    if content_type == "multipart/form-data":
        try:
            form = await request.form(max_files=0, max_fields=100)
        except Exception:  # python-multipart's parse errors and Starlette's limits
            return json_error(422, None, "the form body is not valid", "form_invalid")
        pairs = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
        return ParsedBody(False, form_fields(pairs))
    return JSONResponse(
        {"detail": "send application/x-www-form-urlencoded, multipart/form-data or JSON"}, 415
    )


async def form_pairs(request: Request) -> list[tuple[str, str]]:
    """Urlencoded form fields, in the event loop; anything unparseable reads as no fields."""
    body = await request.body()
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
    except (ValueError, UnicodeDecodeError):
        return []
