"""POST /subscribe and double opt-in, against PostgreSQL, Redis and the outbox."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from digest.addresses import email_hash
from digest.db import session_scope
from digest.subscriptions import ip_hash
from digest.tokens import SignupCycle, confirm_token
from schema.models import Subscriber, Suppression
from tests.support.factories import comparison, published, store, tool
from tests.support.services import read_outbox
from tests.support.subscriber_fixtures import count_subscribers, find, link, mail, mails_to, path_of

ADA = "ada.lindqvist@example.com"
FORM = {"content-type": "application/x-www-form-urlencoded"}


def signup_json(client: TestClient, email: str = ADA, **fields: object):
    return client.post("/subscribe", json={"email": email, **fields})


def signup_form(client: TestClient, email: str = ADA, **fields: object):
    return client.post("/subscribe", data={"email": email, **fields})


def confirm(client: TestClient, outbox: Path, address: str = ADA) -> None:
    confirmation = mails_to(outbox, address, "confirmation")[-1]
    response = client.post(path_of(link(confirmation, "confirm")))
    assert response.status_code == 200, response.text


def make_active(client: TestClient, outbox: Path, address: str = ADA) -> None:
    assert signup_json(client, address).status_code == 202
    confirm(client, outbox, address)
    assert find(address).status == "active"


# --- accepting a signup --------------------------------------------------------------------


def test_json_signup_answers_202_pending(client: TestClient) -> None:
    response = signup_json(client)
    assert response.status_code == 202
    assert response.json() == {"status": "pending"}


def test_json_signup_stores_a_pending_subscriber_with_its_consent_record(
    client: TestClient,
) -> None:
    signup_json(
        client,
        "Ada.Lindqvist@EXAMPLE.com",
        name="Ada Lindqvist",
        categories=["Writing", "research"],
        frequency="every",
        timezone="Europe/Berlin",
    )
    row = find(ADA)
    assert row is not None
    assert row.email == "Ada.Lindqvist@example.com"  # email-validator lower-cases the domain only
    assert row.status == "pending"
    assert (row.name, row.categories, row.frequency, row.timezone) == (
        "Ada Lindqvist",
        ["Research", "Writing"],
        "every",
        "Europe/Berlin",
    )
    assert row.consent_source == "api"
    assert row.consent_at is not None and row.confirmed_at is None
    assert row.consent_ip_hash == ip_hash("testclient")
    assert "testclient" not in row.consent_ip_hash


def test_signup_sends_one_confirmation_without_list_unsubscribe(
    client: TestClient, outbox: Path
) -> None:
    signup_json(client, name="Ada")
    [message] = mails_to(outbox, ADA)
    assert "Confirm" in message["Subject"]
    assert message["To"] == "Ada <ada.lindqvist@example.com>"
    assert link(message, "confirm").startswith("http://testserver/confirm/")
    assert message["List-Unsubscribe"] is None
    assert "-unsubscribe_url-" not in message.as_string()


def test_form_signup_redirects_303_to_thanks(client: TestClient) -> None:
    response = signup_form(client)
    assert response.status_code == 303
    assert response.headers["location"] == "/thanks"
    assert client.get("/thanks").status_code == 200


def test_form_signup_records_the_forms_origin_as_consent_source(client: TestClient) -> None:
    client.post(
        "/subscribe",
        data={"email": ADA},
        headers={"Origin": "https://blog.example", "Referer": "https://blog.example/p?x=1"},
    )
    assert find(ADA).consent_source == "https://blog.example"


def test_form_without_origin_records_the_referer_without_its_query(client: TestClient) -> None:
    client.post("/subscribe", data={"email": ADA}, headers={"Referer": "https://a.example/p?q=1"})
    assert find(ADA).consent_source == "https://a.example/p"


def test_form_categories_may_repeat_or_be_comma_separated(client: TestClient) -> None:
    body = "email=ada.lindqvist%40example.com&categories=Writing&categories=Design%2C+Research"
    response = client.post("/subscribe", content=body, headers=FORM)
    assert response.status_code == 303
    assert find(ADA).categories == ["Design", "Research", "Writing"]


def test_multipart_form_is_accepted(client: TestClient) -> None:
    response = client.post("/subscribe", files={"email": (None, ADA)})
    assert response.status_code == 303
    assert find(ADA) is not None


def test_category_of_a_stored_comparison_is_accepted(client: TestClient) -> None:
    with session_scope() as session:
        store(
            session,
            published(
                comparison(
                    "hummtone-vs-wavecrest",
                    category="Audio",
                    tools=[tool("Hummtone", category="Audio"), tool("Wavecrest", category="Audio")],
                )
            ),
        )
    assert signup_json(client, categories=["audio"]).status_code == 202
    assert find(ADA).categories == ["Audio"]


def test_redirect_to_an_allowlisted_origin_is_followed(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.db import reset_caches

    monkeypatch.setenv("DIGEST_REDIRECT_ORIGINS", "https://blog.example")
    reset_caches()
    response = signup_form(client, redirect="https://blog.example/thanks?from=digest")
    assert response.status_code == 303
    assert response.headers["location"] == "https://blog.example/thanks?from=digest"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/phish",
        "https://blog.example.evil.example/",
        "https://user@blog.example/",
        "//blog.example/x",
        "javascript:alert(1)",
    ],
)
def test_redirect_elsewhere_goes_to_the_thank_you_page(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    from digest.db import reset_caches

    monkeypatch.setenv("DIGEST_REDIRECT_ORIGINS", '["https://blog.example"]')
    reset_caches()
    response = signup_form(client, redirect=target)
    assert response.status_code == 303
    assert response.headers["location"] == "/thanks"


# --- saying nothing about who is subscribed -------------------------------------------------

SAME_HEADERS = ("content-type", "content-length", "location", "set-cookie", "retry-after")


def fingerprint(response) -> tuple:
    return (
        response.status_code,
        tuple(response.headers.get(h) for h in SAME_HEADERS),
        response.content,
    )


@pytest.mark.parametrize("encoding", ["json", "form"])
def test_response_is_identical_for_new_pending_active_and_suppressed_addresses(
    client: TestClient, outbox: Path, encoding: str
) -> None:
    send = signup_json if encoding == "json" else signup_form
    make_active(client, outbox, "active@example.com")
    signup_json(client, "pending@example.com")
    with session_scope() as session:
        session.add(Suppression(email_hash=email_hash("gone@example.com"), reason="complained"))
    answers = {
        state: fingerprint(send(client, f"{state}@example.com"))
        for state in ("new", "pending", "active", "gone")
    }
    assert len(set(answers.values())) == 1, answers


def test_pending_address_gets_at_most_one_confirmation_per_ten_minutes(
    client: TestClient, outbox: Path
) -> None:
    for _ in range(3):
        assert signup_json(client).status_code == 202
    assert len(mails_to(outbox, ADA)) == 1


def test_pending_address_gets_a_new_confirmation_after_ten_minutes(
    client: TestClient, outbox: Path
) -> None:
    signup_json(client)
    with session_scope() as session:
        session.execute(
            update(Subscriber).values(
                confirmation_sent_at=datetime.now(UTC) - timedelta(minutes=11)
            )
        )
    signup_json(client)
    assert len(mails_to(outbox, ADA)) == 2


def test_active_address_signing_up_again_gets_no_email_and_keeps_its_preferences(
    client: TestClient, outbox: Path
) -> None:
    assert signup_json(client, categories=["Writing"]).status_code == 202
    confirm(client, outbox)
    sent = len(read_outbox(outbox))
    signup_json(client, categories=["Design"], frequency="every")
    assert len(read_outbox(outbox)) == sent
    row = find(ADA)
    assert (row.status, row.categories, row.frequency) == ("active", ["Writing"], "weekly")


def test_suppressed_address_is_neither_stored_nor_mailed(client: TestClient, outbox: Path) -> None:
    with session_scope() as session:
        session.add(Suppression(email_hash=email_hash(ADA), reason="bounced"))
    assert signup_json(client, ADA.upper()).status_code == 202
    assert count_subscribers() == 0
    assert read_outbox(outbox) == []


def test_same_address_in_other_case_is_one_subscriber(client: TestClient) -> None:
    signup_json(client, "ada.lindqvist@example.com")
    signup_json(client, "ADA.LINDQVIST@example.com")
    assert count_subscribers() == 1


# --- double opt-in -------------------------------------------------------------------------


def test_confirm_button_activates_and_shows_confirmed(client: TestClient, outbox: Path) -> None:
    signup_json(client)
    response = client.post(path_of(link(mail(outbox, ADA, "confirmation"), "confirm")))
    assert response.status_code == 200
    assert "confirmed" in response.text.lower()
    row = find(ADA)
    assert row.status == "active" and row.confirmed_at is not None


def test_confirming_sends_a_welcome_with_one_click_unsubscribe_headers(
    client: TestClient, outbox: Path
) -> None:
    signup_json(client, name="Ada")
    confirm(client, outbox)
    welcome = mail(outbox, ADA, "welcome")
    assert "Welcome" in welcome["Subject"]
    unsubscribe = link(welcome, "unsubscribe")
    assert welcome["List-Unsubscribe"].strip() == f"<{unsubscribe}>"
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "-unsubscribe_url-" not in welcome.as_string()
    assert link(welcome, "preferences")


def test_confirming_twice_is_harmless(client: TestClient, outbox: Path) -> None:
    signup_json(client)
    url = path_of(link(mail(outbox, ADA, "confirmation"), "confirm"))
    first, second = client.post(url), client.post(url)
    assert (first.status_code, second.status_code) == (200, 200)
    assert "already" in second.text
    assert mail(outbox, ADA, "welcome")  # exactly one


def test_tampered_confirm_token_is_400_and_changes_nothing(
    client: TestClient, outbox: Path
) -> None:
    signup_json(client)
    token = link(mail(outbox, ADA, "confirmation"), "confirm").rsplit("/", 1)[1]
    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    assert client.get(f"/confirm/{tampered}").status_code == 400
    assert client.post(f"/confirm/{tampered}").status_code == 400
    assert find(ADA).status == "pending"


def test_unsubscribe_token_is_not_a_confirm_token(client: TestClient, outbox: Path) -> None:
    make_active(client, outbox)
    with session_scope() as session:
        session.execute(update(Subscriber).values(status="pending"))
    manage = link(mail(outbox, ADA, "welcome"), "unsubscribe").rsplit("/", 1)[1]
    assert client.get(f"/confirm/{manage}").status_code == 400
    assert client.post(f"/confirm/{manage}").status_code == 400
    assert find(ADA).status == "pending"


def test_expired_confirm_token_is_400(client: TestClient) -> None:
    signup_json(client)
    row = find(ADA)
    eight_days_ago = datetime.now(UTC) - timedelta(days=8)
    old = confirm_token(row.id, SignupCycle(row.signup_cycle, eight_days_ago))
    for method in (client.get, client.post):
        response = method(f"/confirm/{old}")
        assert response.status_code == 400
        assert "expired" in response.text
    assert find(ADA).status == "pending"


def test_confirm_link_after_unsubscribing_does_not_resubscribe(
    client: TestClient, outbox: Path
) -> None:
    make_active(client, outbox)
    client.post(path_of(link(mail(outbox, ADA, "welcome"), "unsubscribe")))
    response = client.post(path_of(link(mail(outbox, ADA, "confirmation"), "confirm")))
    assert response.status_code == 410
    assert find(ADA).status == "unsubscribed"


def test_unsubscribed_address_resubscribes_through_double_opt_in(
    client: TestClient, outbox: Path
) -> None:
    make_active(client, outbox)
    client.post(path_of(link(mail(outbox, ADA, "welcome"), "unsubscribe")))
    with session_scope() as session:  # the first confirmation went out long ago
        session.execute(
            update(Subscriber).values(confirmation_sent_at=datetime.now(UTC) - timedelta(hours=1))
        )
    assert signup_json(client, frequency="every").status_code == 202
    row = find(ADA)
    assert (row.status, row.frequency, row.unsubscribed_at) == ("pending", "every", None)
    assert len(mails_to(outbox, ADA, "confirmation")) == 2


# --- bots and mistakes ---------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["json", "form"])
def test_honeypot_hit_gets_the_normal_response_and_stores_nothing(
    client: TestClient, outbox: Path, encoding: str
) -> None:
    send = signup_json if encoding == "json" else signup_form
    normal = send(client, "human@example.com")
    trapped = send(client, "bot@example.com", website="https://spam.example")
    assert fingerprint(trapped) == fingerprint(normal)
    assert find("bot@example.com") is None
    assert mails_to(outbox, "bot@example.com") == []


@pytest.mark.parametrize(
    "address",
    ["", "not-an-address", "ada@", "@example.com", "ada@@example.com", "ada lindqvist@example.com"],
)
def test_invalid_email_as_json_is_422_naming_the_email_field(
    client: TestClient, address: str
) -> None:
    response = signup_json(client, address)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "email"]
    assert count_subscribers() == 0


def test_missing_email_as_json_is_422_naming_the_email_field(client: TestClient) -> None:
    response = client.post("/subscribe", json={"name": "Ada"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "email"]


def test_invalid_email_in_a_form_shows_the_form_again_with_the_error(
    client: TestClient,
) -> None:
    response = signup_form(client, "not-an-address", name="<b>Ada</b>")
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("text/html")
    assert 'id="email-error"' in response.text
    assert 'aria-invalid="true"' in response.text
    assert "&lt;b&gt;Ada&lt;/b&gt;" in response.text  # the value comes back, escaped
    assert count_subscribers() == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timezone", "Mars/Olympus_Mons"),
        ("frequency", "daily"),
        ("categories", ["Cooking"]),
        ("name", "x" * 201),
    ],
)
def test_invalid_field_is_422_naming_it_and_stores_nothing(
    client: TestClient, field: str, value: object
) -> None:
    response = signup_json(client, **{field: value})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", field]
    assert count_subscribers() == 0


def test_malformed_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/subscribe", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


def test_unsupported_content_type_is_415(client: TestClient) -> None:
    response = client.post(
        "/subscribe", content=b"email=a@example.com", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 415


def test_body_over_the_limit_is_413_and_stores_nothing(client: TestClient) -> None:
    response = signup_form(client, name="x" * 20_000)
    assert response.status_code == 413
    assert count_subscribers() == 0


def test_chunked_body_over_the_limit_is_413(client: TestClient) -> None:
    def chunks():
        yield b"email=ada%40example.com&name="
        for _ in range(40):
            yield b"x" * 1024

    response = client.post("/subscribe", content=chunks(), headers=FORM)
    assert response.status_code == 413
    assert count_subscribers() == 0


def test_name_with_line_breaks_is_stored_on_one_line(client: TestClient) -> None:
    signup_json(client, name="Ada\r\nBcc: victim@example.com")
    assert find(ADA).name == "Ada Bcc: victim@example.com"


def test_subscription_page_is_accessible_html(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    html = response.text
    assert "<title>Weekly AI Tool Verdicts — get the next comparison in your inbox</title>" in html
    assert '<label for="email">' in html and 'id="email"' in html
    assert 'action="/subscribe"' in html and 'method="post"' in html
    # the one script is our own file (time-zone pre-fill); nothing inline, nothing from elsewhere
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/timezone.js" defer>']
    assert ":focus-visible" in html
    csp = response.headers["content-security-policy"]
    assert csp.startswith("default-src 'none'") and csp.endswith("script-src 'self'")


def test_non_ascii_case_variants_are_one_subscriber_on_postgresql(client: TestClient) -> None:
    for address in ("Åsa@example.com", "åsa@example.com"):
        assert signup_json(client, address).status_code == 202
    assert count_subscribers() == 1


def test_openapi_describes_form_and_json_bodies_of_subscribe(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/subscribe"]["post"]
    content = operation["requestBody"]["content"]
    assert set(content) >= {"application/json", "application/x-www-form-urlencoded"}
    for media in content.values():
        assert media["schema"]["required"] == ["email"]
        assert {"email", "name", "categories", "frequency", "timezone", "website"} <= set(
            media["schema"]["properties"]
        )
    assert {"202", "303", "413", "422", "429"} <= set(operation["responses"])
