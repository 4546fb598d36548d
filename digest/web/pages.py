"""The HTML of the subscriber pages: one Jinja environment, the page headers, message pages.

Every page carries a strict Content-Security-Policy (no script at all) and `no-referrer`, since
most of these pages have a signed token in their URL that must not leak to another site.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

TITLE = "Weekly AI Tool Verdicts — get the next comparison in your inbox"

templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"], default_for_string=True, default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",  # token pages must not leak their URL to other sites
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}

# Pages without a token add one script of our own origin (digest/web/static/).
PUBLIC_CSP = PAGE_HEADERS["Content-Security-Policy"] + "; script-src 'self'"
STATIC_DIR = Path(__file__).parent / "static"

# The OpenAPI description of an HTML answer (error pages included).
HTML_PAGE = {"content": {"text/html": {}}}


def page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = templates.get_template(name).render(title=TITLE, **context)
    return HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)


def public_page(response: HTMLResponse) -> HTMLResponse:
    """Pages without a token may tell our own endpoints where a form was (consent source), and
    may run our own scripts (the subscription form's time-zone pre-fill), never anyone else's."""
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = PUBLIC_CSP
    return response


def message_page(status_code: int, heading: str, text: str) -> HTMLResponse:
    return page("message.html", status_code, heading=heading, text=text)


def gone_page() -> HTMLResponse:
    """410 for a manage link whose subscriber was erased."""
    return message_page(
        410, "This subscription was deleted", "We keep no personal data for it any more."
    )
