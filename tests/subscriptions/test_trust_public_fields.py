"""Every field a stranger can fill, filled with anything: no 5xx, no live markup, no foreign link.

Property tests (hypothesis) over the public signup and preferences forms, as JSON and as HTML
forms: arbitrary Unicode, placeholder syntax, markup and control characters in the address, the
name, the categories, the frequency, the time zone and the redirect. What comes back (the page or
the JSON answer) and what goes out (the confirmation email) carry nothing the stranger wrote as
live HTML, and no link but ours.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.db import reset_caches
from digest.substitution import ANY_PLACEHOLDER
from digest.tokens import manage_token
from tests.support.html import Page
from tests.support.recipients import add_subscribers
from tests.support.services import read_outbox

HOSTILE = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        [
            "<script>alert(1)</script>",
            '"><img src=x onerror=alert(1)>',
            '-name-<a href="https://evil.example/login">Your account is locked</a>',
            "-unsubscribe_url-",
            "-p-0123456789ab-",
            "javascript:alert(1)",
            "https://evil.example/",
            "\r\nBcc: all@example.com",
            "\x00\x01\x08",
            "Europe/Berlin",
            "Writing",
            "every",
        ]
    ),
)
ADDRESS = st.one_of(st.emails(), HOSTILE)
PAGE_TAGS = {
    "html", "head", "meta", "title", "style", "body", "main", "header", "footer", "section",
    "h1", "h2", "h3", "p", "a", "form", "fieldset", "legend", "label", "input", "select",
    "option", "button", "div", "span", "ul", "li", "br", "small", "strong", "em", "datalist",
    "nav", "abbr", "code", "details", "summary", "output", "noscript",
}  # fmt: skip
# Attributes a browser follows or submits to: only our own URLs may stand there.
URL_ATTRIBUTES = {"href", "src", "action", "formaction"}
PROPERTY = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def open_client(
    pg: str, redis_url: str, eager_tasks: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    """The app with rate limits out of the way (the property sends many requests)."""
    monkeypatch.setenv("DIGEST_SUBSCRIBE_RATE_PER_IP", "100000/minute")
    monkeypatch.setenv("DIGEST_SUBSCRIBE_RATE_PER_EMAIL", "100000/hour")
    monkeypatch.setenv("DIGEST_REDIRECT_ORIGINS", "https://blog.example")
    reset_caches()
    from digest.web.app import create_app

    with TestClient(create_app(), follow_redirects=False) as client:
        yield client


def assert_inert_page(html: str) -> None:
    page = Page(html)
    tags = {tag for tag, _ in page.elements}
    assert tags <= PAGE_TAGS | {"script"}, tags - PAGE_TAGS
    scripts = [attributes for tag, attributes in page.elements if tag == "script"]
    assert all(a == {"src": "/static/timezone.js", "defer": None} for a in scripts), scripts
    for _tag, attributes in page.elements:
        assert not any(name.startswith("on") for name in attributes)
        for name in URL_ATTRIBUTES & set(attributes):
            target = (attributes[name] or "").strip().lower()
            assert target.startswith(("/", "#", "http://testserver", "https://blog.example")) or (
                target == ""
            ), target
    assert "evil.example" not in " ".join(page.hrefs())


def assert_inert_emails(outbox) -> None:
    for message in read_outbox(outbox):
        for part in message.walk():
            if part.get_content_maintype() != "text":
                continue
            body = part.get_content()
            assert not ANY_PLACEHOLDER.search(body)
            assert "evil.example" not in body
            if part.get_content_subtype() == "html":
                page = Page(body)
                assert "script" not in {tag for tag, _ in page.elements}
                for href in page.hrefs():
                    assert href.startswith("http://testserver/"), href


@given(email=ADDRESS, name=HOSTILE, categories=st.lists(HOSTILE, max_size=3), frequency=HOSTILE,
       timezone=HOSTILE, website=st.sampled_from(["", "x"]))  # fmt: skip
@PROPERTY
def test_json_signup_with_any_fields_is_answered_cleanly_and_mails_nothing_live(
    open_client: TestClient,
    outbox,
    email: str,
    name: str,
    categories: list[str],
    frequency: str,
    timezone: str,
    website: str,
) -> None:
    body = {"email": email, "name": name, "categories": categories, "frequency": frequency,
            "timezone": timezone, "website": website}  # fmt: skip
    response = open_client.post("/subscribe", json=body)
    assert response.status_code in (202, 422), response.text
    if response.status_code == 422:
        detail = response.json()["detail"]
        assert detail and all(item["loc"][0] == "body" for item in detail)
    assert_inert_emails(outbox)


@given(email=ADDRESS, name=HOSTILE, categories=st.lists(HOSTILE, max_size=3), frequency=HOSTILE,
       timezone=HOSTILE, redirect=HOSTILE)  # fmt: skip
@PROPERTY
def test_form_signup_with_any_fields_shows_only_our_markup(
    open_client: TestClient,
    outbox,
    email: str,
    name: str,
    categories: list[str],
    frequency: str,
    timezone: str,
    redirect: str,
) -> None:
    form = {"email": email, "name": name, "categories": categories, "frequency": frequency,
            "timezone": timezone, "redirect": redirect}  # fmt: skip
    response = open_client.post("/subscribe", data=form)
    assert response.status_code in (303, 422), response.text
    if response.status_code == 303:
        location = response.headers["location"]
        assert location == "/thanks" or location.startswith("https://blog.example/")
    else:
        assert_inert_page(response.text)
    assert_inert_emails(outbox)


@given(categories=st.lists(HOSTILE, max_size=3), frequency=HOSTILE, timezone=HOSTILE,
       paused=st.sampled_from(["", "on", "<b>"]))  # fmt: skip
@PROPERTY
def test_preferences_form_with_any_fields_saves_or_names_the_field(
    open_client: TestClient, categories: list[str], frequency: str, timezone: str, paused: str
) -> None:
    from digest.db import session_scope
    from schema.models import Subscriber

    with session_scope() as session:
        subscriber = session.query(Subscriber).filter_by(email="prefs000000@example.com").first()
        if subscriber is None:
            add_subscribers(session, 1, prefix="prefs")
            subscriber = session.query(Subscriber).filter_by(email="prefs000000@example.com").one()
        token = manage_token(subscriber.id)
    form = {"categories": categories, "frequency": frequency, "timezone": timezone}
    if paused:
        form["paused"] = paused
    response = open_client.post(f"/preferences/{token}", data=form)
    assert response.status_code in (200, 422), response.text
    assert_inert_page(response.text)


def test_hostile_name_through_the_signup_form_reaches_the_inbox_inert(
    open_client: TestClient,
    outbox: Path,
) -> None:
    name = '-name-<a href="https://evil.example/login">Your account is locked</a>'
    response = open_client.post("/subscribe", data={"email": "victim@example.com", "name": name})
    assert response.status_code == 303
    [confirmation] = read_outbox(outbox)
    assert_inert_emails(outbox)
    text = confirmation.get_body(("plain",)).get_content()
    assert text.startswith("WEEKLY AI TOOL VERDICTS") and "Hi there," in text
