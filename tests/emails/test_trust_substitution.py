"""Attacks on per-recipient substitution (trust findings 1, 2 and 9): each performs the attack
and asserts the attacker gains nothing.

A stranger chooses the name of any address they sign up; an ingested page chooses every text and
URL of a comparison. Neither may put a live link, markup or a working placeholder into an email
sent from our domain (digest/substitution.py states the rule).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from digest import sending, transactional
from digest.db import session_scope
from digest.email_backends import Message, SendResult, fill_tokens
from digest.mail_headers import cleaned_display_name, display_name
from digest.planning import plan_digest, request_digest
from digest.rendering import Entry, render_weekly
from digest.settings import get_settings
from digest.subscriptions import new_cycle
from digest.substitution import ANY_PLACEHOLDER, Placeholders, greeting_name
from schema.models import Comparison, Review, Subscriber, Tool
from tests.support.factories import comparison, published, store, tool
from tests.support.html import Page
from tests.support.recipients import MONDAY, add_subscribers
from tests.support.sendgrid_server import FakeSendGrid
from tests.support.services import read_outbox

NOW = MONDAY + timedelta(hours=9)
EVIL = "evil.example"
HOSTILE_NAME = '-name-<a href="https://evil.example/login">Your account is locked</a>'
HARVESTING_URL = "https://evil.example/c?u=-preferences_url-&v=-unsubscribe_url-&n=-name-"


def html_and_text(message: EmailMessage) -> tuple[str, str]:
    html = message.get_body(("html",))
    text = message.get_body(("plain",))
    assert html is not None and text is not None
    return html.get_content(), text.get_content()


def as_sendgrid_fills(request: dict, index: int = 0) -> tuple[str, str]:
    """The HTML and text that SendGrid delivers to personalization `index` of a request."""
    substitutions = request["personalizations"][index].get("substitutions", {})
    text, html = (part["value"] for part in request["content"])
    return fill_tokens(html, substitutions), fill_tokens(text, substitutions)


def assert_no_foreign_link(html: str, text: str) -> None:
    """No link to the attacker's host, no trace of it in either part, no placeholder left."""
    assert not [href for href in Page(html).hrefs() if EVIL in href]
    assert EVIL not in html and EVIL not in text
    assert '<a href="https://evil' not in html
    assert not ANY_PLACEHOLDER.search(html) and not ANY_PLACEHOLDER.search(text)


def hostile_subscriber(status: str = "pending", name: str = HOSTILE_NAME) -> int:
    """A subscriber a stranger named; a pending one is in a live signup cycle."""
    cycle = new_cycle(datetime.now(UTC)) if status == "pending" else {}
    with session_scope() as session:
        subscriber = Subscriber(email="victim@example.com", name=name, status=status, **cycle)
        session.add(subscriber)
        session.flush()
        return subscriber.id


# --- finding 1: a stranger's name in our one-off emails -----------------------------------------


def test_hostile_signup_name_puts_no_live_link_in_the_confirmation_email(pg: str, outbox) -> None:
    assert transactional.send_confirmation(hostile_subscriber("pending"))
    [message] = read_outbox(outbox)
    assert_no_foreign_link(*html_and_text(message))


def test_hostile_signup_name_puts_no_live_link_in_the_welcome_email(pg: str, outbox) -> None:
    assert transactional.send_welcome(hostile_subscriber("active"))
    [message] = read_outbox(outbox)
    assert_no_foreign_link(*html_and_text(message))


def test_hostile_signup_name_puts_no_live_link_in_the_goodbye_email(pg: str, outbox) -> None:
    assert transactional.send_goodbye(hostile_subscriber("unsubscribed"))
    [message] = read_outbox(outbox)
    assert_no_foreign_link(*html_and_text(message))


def test_one_off_emails_are_sent_without_substitutions(
    pg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing is left for a provider to substitute raw into a confirmation."""
    sent: list[Message] = []

    class Spy:
        def send(self, message: Message) -> SendResult:
            sent.append(message)
            return SendResult(message_id="spy")

    monkeypatch.setattr(transactional, "get_backend", Spy)
    assert transactional.send_confirmation(hostile_subscriber("pending"))
    [message] = sent
    assert message.recipients[0].substitutions == {}


# --- finding 1 in digests, and finding 2: ingested text harvesting manage links -----------------


@pytest.fixture
def hostile_week(sendgrid_env: FakeSendGrid) -> FakeSendGrid:
    """A comparison whose URL and texts carry placeholders, read by a hostile-named subscriber."""
    a = tool("Quillmate", tagline="Try -unsubscribe_url- and -name- today")
    b = tool("Parsewell", best_for="Readers of -preferences_url-")
    data = comparison(
        "quillmate-vs-parsewell", a=a, b=b, url=HARVESTING_URL, published_at=NOW - timedelta(days=1)
    )
    with session_scope() as session:
        store(session, published(data))
        add_subscribers(session, 1, prefix="victim", name=HOSTILE_NAME)
        add_subscribers(session, 1, prefix="reader", start=1, name="Ada")
    with session_scope() as session:
        digest = request_digest(session, now=NOW)
        report = plan_digest(session, digest, now=NOW)
    for batch_id in report.batch_ids:
        assert sending.send_batch(batch_id).status == "sent"
    return sendgrid_env


def test_ingested_url_with_placeholders_collects_no_manage_link(hostile_week: FakeSendGrid) -> None:
    [request] = hostile_week.received()
    for index in range(len(request["personalizations"])):
        html, _text = as_sendgrid_fills(request, index)
        foreign = [href for href in Page(html).hrefs() if EVIL in href]
        assert foreign, "the comparison's own link is still there"
        for href in foreign:
            assert "/preferences/" not in href and "/unsubscribe/" not in href
            assert "testserver" not in href


def test_ingested_text_with_placeholders_stays_text(hostile_week: FakeSendGrid) -> None:
    [request] = hostile_week.received()
    html, text = as_sendgrid_fills(request, 0)
    assert "Try -unsubscribe_url- and -name- today" in text
    assert "Readers of -preferences_url-" in Page(html).text


def test_hostile_subscriber_name_is_substituted_as_a_plain_greeting(
    hostile_week: FakeSendGrid,
) -> None:
    [request] = hostile_week.received()
    victim = next(
        i
        for i, p in enumerate(request["personalizations"])
        if p["to"][0]["email"].startswith("victim")
    )
    for value in request["personalizations"][victim]["substitutions"].values():
        assert "<" not in value and ">" not in value and EVIL not in value
    html, text = as_sendgrid_fills(request, victim)
    assert "Hi there," in text
    assert "Your account is locked" not in html


def test_placeholders_of_an_earlier_render_are_inert_in_a_later_one(pg: str) -> None:
    """A subscriber who saw last week's keys cannot plant them in this week's text."""
    with session_scope() as session:
        store(session, published(comparison("first-vs-second")))
        first = render_weekly([Entry(1, session.query(Comparison).one(), "why")])
    assert first.placeholders is not None
    planted = f"{first.placeholders.preferences_url} {first.placeholders.name}"
    with session_scope() as session:
        row = session.query(Comparison).one()
        row.title = planted
        second = render_weekly([Entry(1, row, "why")])
    assert second.placeholders is not None
    assert second.placeholders.nonce != first.placeholders.nonce
    values = second.placeholders.values("Ada", "https://p.example/u/x", "https://p.example/p/x")
    filled = fill_tokens(second.html, values)
    assert first.placeholders.preferences_url in filled  # still text, not a link


# --- property: whatever a name or an ingested field holds --------------------------------------

HOSTILE_TEXT = st.one_of(
    st.text(max_size=120),
    st.sampled_from(
        [
            HOSTILE_NAME,
            HARVESTING_URL,
            "-name-",
            "-unsubscribe_url-",
            "-p-0123456789ab-",
            "<script>alert(1)</script>",
            "javascript:alert(1)",
            "www.evil.example",
            "a@evil.example",
            "evil．example/login",  # fullwidth dot
            "\r\nBcc: all@example.com",
            "\u202eelpmaxe.live",
            'O\'Brien & Sons "Ltd"',
        ]
    ),
    st.lists(
        st.sampled_from(["-name-", "<a href='x'>", "&amp;", "\x00", "\n", "://", "Ada", " "]),
        max_size=8,
    ).map("".join),
)


@given(HOSTILE_TEXT)
def test_greeting_name_is_safe_raw_in_html_and_text(name: str) -> None:
    greeting = greeting_name(name)
    assert greeting and len(greeting) <= 60
    assert not set(greeting) & set('<>&"`')
    assert greeting.isprintable()
    assert "://" not in greeting and "@" not in greeting and "www." not in greeting.lower()
    assert not ANY_PLACEHOLDER.search(greeting)


@given(HOSTILE_TEXT)
def test_display_name_keeps_sendgrids_rules(name: str) -> None:
    shown = display_name(name)
    if shown is not None:
        assert not set(shown) & set(',;"<>\\')
        assert shown.isprintable() and shown == shown.strip() and len(shown) <= 100


PLAIN_NAMES = st.from_regex(r"[A-Za-z0-9]{1,20}( [A-Za-z0-9]{1,20}){0,6}", fullmatch=True)


@given(st.one_of(HOSTILE_TEXT, PLAIN_NAMES))
def test_display_names_fast_path_gives_what_the_rules_give(name: str) -> None:
    """Plain names skip the cleaning (once per recipient): never with another result."""
    assert display_name(name) == (cleaned_display_name(name) if name else None)


TOOL_TEXT_FIELDS = ("name", "tagline", "category", "pricing", "entry_price", "best_for")


@given(
    title=HOSTILE_TEXT,
    url_tail=HOSTILE_TEXT,
    explanation=HOSTILE_TEXT,
    tool_fields=st.fixed_dictionaries({f: HOSTILE_TEXT for f in TOOL_TEXT_FIELDS}),
    review=HOSTILE_TEXT,
    name=HOSTILE_TEXT,
)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_ingested_text_renders_inert(
    title: str,
    url_tail: str,
    explanation: str,
    tool_fields: dict[str, str],
    review: str,
    name: str,
) -> None:
    """Arbitrary text in every ingested field and in the reader's name: the filled email has only
    our markup, no link but ours and the comparison's own page, and no placeholder left."""
    item = Comparison(
        slug="x-vs-y",
        title=title or "t",
        url="https://shiporskip.example/compare/" + url_tail,
        category=tool_fields["category"],
    )
    a = Tool(position=0, verdict_label="Ship", panel_ship=3, panel_skip=1, **tool_fields)
    a.name = a.name or "X"
    a.reviews = [Review(position=0, persona="Skeptic", score=90, verdict="ship", text=review)]
    item.tools = [a, Tool(position=1, name="Y", tagline=title, reviews=[])]
    email = render_weekly([Entry(1, item, explanation)], archive_url="https://p.example/archive")
    keys = email.placeholders
    assert isinstance(keys, Placeholders)
    values = keys.values(name, "https://p.example/unsubscribe/t", "https://p.example/preferences/t")
    html, text = fill_tokens(email.html, values), fill_tokens(email.text, values)
    page = Page(html)
    assert {tag for tag, _ in page.elements} <= ALLOWED_TAGS
    # issue 15 added our own vote links ({public_url}/vote/...) to every card
    ours = get_settings().public_url.rstrip("/") + "/vote/"
    for href in page.hrefs():
        assert href.startswith(("https://shiporskip.example/", "https://p.example/", ours)), href
    for key in (keys.name, keys.unsubscribe_url, keys.preferences_url):
        assert key not in html and key not in text
    assert "\r" not in email.subject and "\n" not in email.subject


ALLOWED_TAGS = {
    "html", "head", "title", "meta", "style", "body", "div", "table", "tbody", "tr", "td",
    "p", "a", "span", "br", "img", "b", "strong", "i", "em", "h1", "h2", "h3", "center",
    "o:officedocumentsettings", "o:allowpng", "o:pixelsperinch", "xml", "u", "col", "colgroup",
}  # fmt: skip


# --- finding 9: names SendGrid would silently drop ----------------------------------------------


def test_recipient_name_with_comma_and_semicolon_is_sent_without_them(
    sendgrid_env: FakeSendGrid,
) -> None:
    from tests.support.planned_rows import plan_rows

    with session_scope() as session:
        planned = plan_rows(session, 2)
        session.execute(update(Subscriber).values(name="Smith, John; CEO"))
    assert sending.send_batch(planned.batch_ids[0]).status == "sent"
    [request] = sendgrid_env.received()
    names = [p["to"][0].get("name") for p in request["personalizations"]]
    assert names == ["Smith John CEO", "Smith John CEO"]
