"""Unsubscribe, preferences, export and delete, through the links of the welcome email."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from digest.addresses import email_hash
from digest.db import reset_caches, session_scope
from digest.tokens import manage_token
from schema.models import Delivery, Digest, EmailEvent, Subscriber, Suppression
from tests.support.services import read_outbox
from tests.support.subscriber_fixtures import (
    count_subscribers,
    count_suppressions,
    find,
    link,
    mail,
    mails_to,
    path_of,
)

ADA = "ada.lindqvist@example.com"
ONE_CLICK = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
def welcome(client: TestClient, outbox: Path):
    """Ada signed up, confirmed, and holds the welcome email."""
    client.post(
        "/subscribe",
        json={"email": ADA, "name": "Ada", "categories": ["Writing"], "timezone": "Europe/Berlin"},
    )
    client.post(path_of(link(mail(outbox, ADA, "confirmation"), "confirm")))
    return mail(outbox, ADA, "welcome")


def unsubscribe_path(welcome) -> str:
    return path_of(link(welcome, "unsubscribe"))


def preferences_path(welcome) -> str:
    return path_of(link(welcome, "preferences"))


def data_path(client: TestClient, welcome, outbox: Path) -> str:
    """Ask for the data link on the preferences page; the path of the link it emails."""
    response = client.post(preferences_path(welcome) + "/data-link")
    assert response.status_code == 200, response.text
    return path_of(link(mails_to(outbox, ADA, "data_link")[-1], "data"))


def tampered(path: str) -> str:
    return path[:-2] + ("xy" if not path.endswith("xy") else "zw")


# --- unsubscribe ---------------------------------------------------------------------------


def test_unsubscribe_page_shows_a_button_and_changes_nothing(
    client: TestClient, welcome, outbox: Path
) -> None:
    sent = len(read_outbox(outbox))
    response = client.get(unsubscribe_path(welcome))
    assert response.status_code == 200
    assert f'<form method="post" action="{unsubscribe_path(welcome)}">' in response.text
    assert "<button" in response.text
    assert find(ADA).status == "active"
    assert len(read_outbox(outbox)) == sent
    assert response.headers["referrer-policy"] == "no-referrer"


def test_unsubscribe_button_unsubscribes(client: TestClient, welcome) -> None:
    response = client.post(unsubscribe_path(welcome))
    assert response.status_code == 200
    assert "unsubscribed" in response.text
    row = find(ADA)
    assert row.status == "unsubscribed" and row.unsubscribed_at is not None


def test_one_click_post_unsubscribes(client: TestClient, welcome) -> None:
    url = welcome["List-Unsubscribe"].strip().strip("<>")
    client.cookies.clear()
    response = client.post(path_of(url), content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
    assert response.status_code == 200
    assert "set-cookie" not in response.headers
    assert find(ADA).status == "unsubscribed"


def test_unsubscribing_sends_one_goodbye_and_nothing_after(
    client: TestClient, welcome, outbox: Path
) -> None:
    client.post(unsubscribe_path(welcome))
    client.post(unsubscribe_path(welcome))
    goodbye = mail(outbox, ADA, "goodbye")
    assert "unsubscribed" in goodbye["Subject"]
    assert goodbye["List-Unsubscribe"] is None


def test_goodbye_can_be_switched_off(
    client: TestClient, welcome, outbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SEND_GOODBYE", "false")
    reset_caches()
    client.post(unsubscribe_path(welcome))
    assert find(ADA).status == "unsubscribed"
    assert mails_to(outbox, ADA, "goodbye") == []


def test_unsubscribed_address_gets_no_welcome_from_an_old_queued_task(
    client: TestClient, welcome, outbox: Path
) -> None:
    from digest.transactional import send_confirmation, send_welcome

    client.post(unsubscribe_path(welcome))
    sent = len(read_outbox(outbox))
    subscriber_id = find(ADA).id
    assert send_welcome(subscriber_id) is False
    assert send_confirmation(subscriber_id) is False
    assert len(read_outbox(outbox)) == sent


def test_tampered_unsubscribe_token_is_400_and_changes_nothing(
    client: TestClient, welcome, outbox: Path
) -> None:
    sent = len(read_outbox(outbox))
    for method in (client.get, client.post):
        assert method(tampered(unsubscribe_path(welcome))).status_code == 400
    assert find(ADA).status == "active"
    assert len(read_outbox(outbox)) == sent


def test_unsubscribe_token_does_not_reveal_the_address(welcome) -> None:
    token = unsubscribe_path(welcome).rsplit("/", 1)[1]
    import base64

    payload = token.split(".")[0]
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    assert b"@" not in decoded and b"ada" not in decoded.lower()


def test_unsubscribe_for_an_unknown_subscriber_is_404(client: TestClient) -> None:
    assert client.post(f"/unsubscribe/{manage_token(999)}").status_code == 404


# --- preferences ---------------------------------------------------------------------------


def test_preferences_page_shows_current_choices(client: TestClient, welcome) -> None:
    response = client.get(preferences_path(welcome))
    assert response.status_code == 200
    html = response.text
    assert re.search(r'value="Writing"\s+checked', html)
    assert not re.search(r'value="Design"\s+checked', html)
    assert 'value="Europe/Berlin"' in html
    assert "a•••@example.com" in html
    assert ADA not in html


def test_saving_preferences_changes_categories_frequency_timezone_and_pause(
    client: TestClient, welcome
) -> None:
    body = "categories=Design&categories=Research&frequency=every&timezone=Asia%2FTokyo&paused=on"
    response = client.post(preferences_path(welcome), content=body, headers=ONE_CLICK)
    assert response.status_code == 200
    assert "Saved" in response.text
    row = find(ADA)
    assert (row.categories, row.frequency, row.timezone, row.paused, row.status) == (
        ["Design", "Research"],
        "every",
        "Asia/Tokyo",
        True,
        "active",
    )


def test_invalid_timezone_in_preferences_is_422_and_saves_nothing(
    client: TestClient, welcome
) -> None:
    body = "categories=Design&frequency=every&timezone=Atlantis%2FCapital"
    response = client.post(preferences_path(welcome), content=body, headers=ONE_CLICK)
    assert response.status_code == 422
    assert 'id="timezone-error"' in response.text
    row = find(ADA)
    assert (row.categories, row.frequency, row.timezone) == (["Writing"], "weekly", "Europe/Berlin")


def test_saving_preferences_does_not_resubscribe(client: TestClient, welcome) -> None:
    client.post(unsubscribe_path(welcome))
    client.post(preferences_path(welcome), content="frequency=every", headers=ONE_CLICK)
    assert find(ADA).status == "unsubscribed"


def test_tampered_preferences_token_is_400_and_changes_nothing(client: TestClient, welcome) -> None:
    response = client.post(
        tampered(preferences_path(welcome)), content="frequency=every", headers=ONE_CLICK
    )
    assert response.status_code == 400
    assert find(ADA).frequency == "weekly"


# --- export and delete ---------------------------------------------------------------------


def add_delivery(subscriber_id: int, address: str) -> None:
    with session_scope() as session:
        digest = Digest(kind="weekly", status="sent", subject="Five verdicts this week")
        session.add(digest)
        session.flush()
        session.add(Delivery(digest_id=digest.id, subscriber_id=subscriber_id, email=address))
        session.add(
            EmailEvent(
                event="open",
                email=address,
                occurred_at=datetime.now(UTC),
                digest_id=digest.id,
                payload={"email": address, "event": "open"},
            )
        )


def test_export_is_a_json_attachment_with_the_row_and_deliveries(
    client: TestClient, welcome, outbox: Path
) -> None:
    add_delivery(find(ADA).id, ADA)
    response = client.post(data_path(client, welcome, outbox) + "/export")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["content-disposition"].startswith("attachment;")
    data = json.loads(response.content)
    assert data["subscriber"]["email"] == ADA
    assert data["subscriber"]["categories"] == ["Writing"]
    assert data["subscriber"]["consent_source"] == "api"
    assert [d["subject"] for d in data["deliveries"]] == ["Five verdicts this week"]


def test_delete_anonymises_the_row_its_deliveries_and_events(
    client: TestClient, welcome, outbox: Path
) -> None:
    subscriber_id = find(ADA).id
    add_delivery(subscriber_id, ADA)
    response = client.post(data_path(client, welcome, outbox) + "/delete")
    assert response.status_code == 200
    assert "erased" in response.text
    with session_scope() as session:
        row = session.get(Subscriber, subscriber_id)
        assert (row.email, row.name, row.status) == (
            f"deleted-{subscriber_id}@invalid",
            None,
            "deleted",
        )
        assert row.consent_ip_hash is None and row.timezone is None
        assert session.scalars(select(Delivery.email)).all() == [row.email]
        event = session.scalars(select(EmailEvent)).one()
        assert event.email is None and "email" not in event.payload
        assert (
            session.scalar(
                select(func.count())
                .select_from(Subscriber)
                .where(func.lower(Subscriber.email) == ADA)
            )
            == 0
        )


def test_delete_keeps_only_a_hashed_suppression(client: TestClient, welcome, outbox: Path) -> None:
    client.post(data_path(client, welcome, outbox) + "/delete")
    with session_scope() as session:
        suppression = session.scalars(select(Suppression)).one()
    assert (suppression.email_hash, suppression.reason) == (email_hash(ADA), "deleted")


def test_deleted_address_cannot_sign_up_again(client: TestClient, welcome, outbox: Path) -> None:
    client.post(data_path(client, welcome, outbox) + "/delete")
    sent = len(read_outbox(outbox))
    response = client.post("/subscribe", json={"email": ADA.upper()})
    assert response.status_code == 202
    assert count_subscribers() == 1  # the anonymised row only
    assert find(ADA) is None
    assert len(read_outbox(outbox)) == sent


def test_deleting_twice_is_harmless_and_links_then_say_gone(
    client: TestClient, welcome, outbox: Path
) -> None:
    delete_path = data_path(client, welcome, outbox) + "/delete"
    assert client.post(delete_path).status_code == 200
    assert client.post(delete_path).status_code == 410
    assert count_suppressions() == 1
    assert client.get(preferences_path(welcome)).status_code == 410
    assert client.get(preferences_path(welcome) + "/export").status_code == 410
