"""Attacks on the subscription links (issue 10, findings 3, 4, 5, 11, the access log and the
signup timing of the embedded default): each test performs one and checks it gains nothing."""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeSerializer, URLSafeTimedSerializer
from sqlalchemy import update

from digest import subscriptions
from digest.db import reset_caches, session_scope
from digest.settings import get_settings
from digest.subscriptions import Consent, make_signup
from digest.tokens import (
    InvalidToken,
    SignupCycle,
    confirm_token,
    data_token,
    manage_token,
    read_confirm_token,
    read_data_token,
)
from digest.web.log_redaction import RedactTokens, redact
from schema.models import Subscriber
from tests.support.services import read_outbox
from tests.support.subscriber_fixtures import (
    count_suppressions,
    find,
    free_port,
    link,
    mail,
    mails_to,
    path_of,
)

ADA = "ada.lindqvist@example.com"
FORM = {"content-type": "application/x-www-form-urlencoded"}
HOSTILE_NAME = '-name-<a href="https://evil.example/login">Your account is locked</a>'


def sign_up(client: TestClient, email: str = ADA, **fields: object) -> None:
    assert client.post("/subscribe", json={"email": email, **fields}).status_code == 202


def confirm_paths(outbox: Path, address: str = ADA) -> set[str]:
    return {path_of(link(m, "confirm")) for m in mails_to(outbox, address, "confirmation")}


def allow_resend() -> None:
    """As if the last confirmation went out an hour ago (past the resend interval)."""
    with session_scope() as session:
        session.execute(
            update(Subscriber).values(confirmation_sent_at=datetime.now(UTC) - timedelta(hours=1))
        )


def activate(client: TestClient, outbox: Path, address: str = ADA) -> str:
    """Sign up and confirm; the confirmation path that did it."""
    sign_up(client, address, name="Ada", categories=["Writing"])
    [path] = confirm_paths(outbox, address)
    assert client.post(path).status_code == 200
    assert find(address).status == "active"
    return path


def manage_path(outbox: Path, kind: str, address: str = ADA) -> str:
    return path_of(link(mail(outbox, address, "welcome"), kind))


def request_data_path(client: TestClient, outbox: Path, address: str = ADA) -> str:
    response = client.post(manage_path(outbox, "preferences", address) + "/data-link")
    assert response.status_code == 200, response.text
    return path_of(link(mails_to(outbox, address, "data_link")[-1], "data"))


def snapshot(address: str = ADA) -> dict[str, object]:
    """Every stored detail of the row except its bookkeeping (updated_at, the resend claim)."""
    row = find(address)
    skip = {"updated_at", "confirmation_sent_at"}
    return {c.key: getattr(row, c.key) for c in Subscriber.__table__.columns if c.key not in skip}


def whole_row(address: str = ADA) -> dict[str, object]:
    row = find(address)
    return {c.key: getattr(row, c.key) for c in Subscriber.__table__.columns}


# --- finding 3: a confirmation link is bound to the signup cycle that issued it ---------------


def test_old_confirmation_link_does_nothing_after_unsubscribe_and_new_signup(
    client: TestClient, outbox: Path
) -> None:
    old = activate(client, outbox)
    client.post(manage_path(outbox, "unsubscribe"))
    allow_resend()
    sign_up(client)  # anyone may post the address again
    assert find(ADA).status == "pending"
    response = client.post(old)
    assert response.status_code == 410
    assert find(ADA).status == "pending"
    assert len(mails_to(outbox, ADA, "welcome")) == 1  # no second welcome


def test_old_confirmation_link_page_says_gone_after_unsubscribe_and_new_signup(
    client: TestClient, outbox: Path
) -> None:
    old = activate(client, outbox)
    client.post(manage_path(outbox, "unsubscribe"))
    allow_resend()
    sign_up(client)
    assert client.get(old).status_code == 410


def test_new_signup_after_unsubscribe_gets_a_new_working_link(
    client: TestClient, outbox: Path
) -> None:
    old = activate(client, outbox)
    client.post(manage_path(outbox, "unsubscribe"))
    allow_resend()
    sign_up(client)
    [new] = confirm_paths(outbox) - {old}
    assert client.post(new).status_code == 200
    assert find(ADA).status == "active"


def test_confirmation_link_of_a_pending_signup_does_nothing_after_it_was_stopped(
    client: TestClient, outbox: Path
) -> None:
    sign_up(client)
    [old] = confirm_paths(outbox)
    client.post(f"/unsubscribe/{manage_token(find(ADA).id)}")  # "stop" before confirming
    allow_resend()
    sign_up(client)
    assert client.post(old).status_code == 410
    assert find(ADA).status == "pending"


def test_old_confirmation_link_does_nothing_after_erasure_through_the_data_link(
    client: TestClient, outbox: Path
) -> None:
    old = activate(client, outbox)
    subscriber_id = find(ADA).id
    client.post(request_data_path(client, outbox) + "/delete")
    sign_up(client)
    assert client.post(old).status_code == 410
    with session_scope() as session:
        row = session.get(Subscriber, subscriber_id)
        assert row.status == "deleted" and row.signup_cycle is None


def test_old_confirmation_link_does_nothing_after_an_operator_erasure(
    client: TestClient, outbox: Path
) -> None:
    sign_up(client)
    [old] = confirm_paths(outbox)
    subscriber_id = find(ADA).id
    with session_scope() as session:
        subscriptions.delete_subscriber(session, subscriber_id)
    assert client.post(old).status_code == 410
    with session_scope() as session:
        assert session.get(Subscriber, subscriber_id).status == "deleted"


def test_confirmation_token_without_a_cycle_is_refused(client: TestClient) -> None:
    """The format before cycles existed: a timed token of the bare subscriber id."""
    sign_up(client)
    legacy = URLSafeTimedSerializer(get_settings().signing_key, salt="digest.confirm").dumps(
        find(ADA).id
    )
    assert client.post(f"/confirm/{legacy}").status_code == 400
    assert find(ADA).status == "pending"


def test_confirmation_token_naming_another_cycle_is_refused(client: TestClient) -> None:
    sign_up(client)
    row = find(ADA)
    other = confirm_token(row.id, SignupCycle("another-cycle", row.signup_cycle_at))
    assert client.post(f"/confirm/{other}").status_code == 410
    assert find(ADA).status == "pending"


def test_confirmation_token_signed_with_another_key_is_400(client: TestClient) -> None:
    sign_up(client)
    row = find(ADA)
    forged = URLSafeTimedSerializer("not-our-key", salt="digest.confirm").dumps(
        [row.id, row.signup_cycle]
    )
    assert client.post(f"/confirm/{forged}").status_code == 400
    assert find(ADA).status == "pending"


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(max_size=200))
def test_arbitrary_text_is_never_a_confirm_or_data_token(text: str) -> None:
    for read in (read_confirm_token, read_data_token):
        with pytest.raises(InvalidToken):
            read(text)


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(token=st.text(min_size=1, max_size=120))
def test_arbitrary_tokens_confirm_export_and_delete_nothing(
    client: TestClient, outbox: Path, token: str
) -> None:
    if find(ADA) is None:
        activate(client, outbox)
    before = whole_row()
    quoted = quote(token, safe="")
    for path in (f"/confirm/{quoted}", f"/data/{quoted}/export", f"/data/{quoted}/delete"):
        response = client.post(path)
        assert 400 <= response.status_code < 500, (path, response.status_code)
        assert ADA not in response.text
    assert whole_row() == before
    assert count_suppressions() == 0


# --- finding 4: a pending signup's details change only through its confirmation ---------------


def test_repost_of_a_pending_address_changes_no_stored_detail(
    client: TestClient, outbox: Path
) -> None:
    sign_up(client, name="Ada", categories=["Writing"], timezone="Europe/Berlin")
    allow_resend()
    before = snapshot()
    response = client.post(
        "/subscribe",
        json={
            "email": ADA.upper(),
            "name": HOSTILE_NAME,
            "categories": ["Design"],
            "frequency": "every",
            "timezone": "Asia/Tokyo",
        },
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 202
    assert snapshot() == before
    assert "evil.example" not in "".join(m.as_string() for m in read_outbox(outbox))


def test_batched_repost_of_a_pending_address_changes_no_stored_detail(
    client: TestClient,
) -> None:
    sign_up(client, name="Ada")
    allow_resend()
    before = snapshot()
    stranger = make_signup(email=ADA, name=HOSTILE_NAME, categories=["Design"], frequency="every")
    with session_scope() as session:
        [result] = subscriptions.subscribe_many(session, [(stranger, Consent("evil", None))])
    assert result.send_confirmation  # the same confirmation may go out again
    assert snapshot() == before


def test_repost_of_a_pending_address_resends_the_same_link(
    client: TestClient, outbox: Path
) -> None:
    sign_up(client)
    allow_resend()
    sign_up(client, name=HOSTILE_NAME)
    messages = mails_to(outbox, ADA, "confirmation")
    assert len(messages) == 2
    assert len({link(m, "confirm") for m in messages}) == 1


def test_repost_of_a_pending_address_keeps_the_owners_link_working(
    client: TestClient, outbox: Path
) -> None:
    sign_up(client, name="Ada")
    [owners] = confirm_paths(outbox)
    allow_resend()
    sign_up(client, name=HOSTILE_NAME)
    assert client.post(owners).status_code == 200
    row = find(ADA)
    assert (row.status, row.name) == ("active", "Ada")


def test_resent_confirmation_greets_the_owner_not_the_stranger(
    client: TestClient, outbox: Path
) -> None:
    sign_up(client, name="Ada")
    allow_resend()
    sign_up(client, name=HOSTILE_NAME)
    for message in mails_to(outbox, ADA, "confirmation"):
        assert "evil.example" not in message.as_string()
        assert message["To"] == f"Ada <{ADA}>"


def test_pending_signup_whose_link_expired_starts_a_new_cycle_on_repost(
    client: TestClient, outbox: Path
) -> None:
    """No live link to protect: a re-post after 7 days is a new signup (new link, new details)."""
    sign_up(client, name="Ada")
    [expired] = confirm_paths(outbox)
    with session_scope() as session:
        session.execute(
            update(Subscriber).values(
                signup_cycle_at=datetime.now(UTC) - timedelta(days=8),
                confirmation_sent_at=datetime.now(UTC) - timedelta(days=8),
            )
        )
    sign_up(client, name="Ada L.")
    [fresh] = confirm_paths(outbox) - {expired}
    assert client.post(fresh).status_code == 200
    assert (find(ADA).status, find(ADA).name) == ("active", "Ada L.")


# --- finding 11: opening a confirmation link changes nothing ---------------------------------


def test_opening_the_confirmation_link_changes_nothing(client: TestClient, outbox: Path) -> None:
    sign_up(client)
    [path] = confirm_paths(outbox)
    before = whole_row()
    for _ in range(3):  # a scanner may fetch it several times
        response = client.get(path)
        assert response.status_code == 200
    assert whole_row() == before
    assert mails_to(outbox, ADA, "welcome") == []


def test_confirmation_page_is_a_form_posting_to_its_own_url_without_script(
    client: TestClient, outbox: Path
) -> None:
    sign_up(client)
    [path] = confirm_paths(outbox)
    html = client.get(path).text
    assert f'<form method="post" action="{path}">' in html
    assert '<button type="submit">Confirm my subscription</button>' in html
    assert "<script" not in html.lower()


def test_confirmation_page_is_accessible(client: TestClient, outbox: Path) -> None:
    sign_up(client)
    [path] = confirm_paths(outbox)
    response = client.get(path)
    assert '<html lang="en">' in response.text
    assert "<title>Confirm your subscription — Weekly AI Tool Verdicts</title>" in response.text
    assert "<h1>Confirm your subscription</h1>" in response.text
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "script-src" not in response.headers["content-security-policy"]


def test_confirmation_page_after_confirming_says_already(client: TestClient, outbox: Path) -> None:
    path = activate(client, outbox)
    response = client.get(path)
    assert response.status_code == 200 and "already" in response.text


# --- finding 5: export and delete need a fresh link emailed to the address --------------------


def test_manage_link_export_path_exports_nothing(client: TestClient, outbox: Path) -> None:
    activate(client, outbox)
    response = client.get(manage_path(outbox, "preferences") + "/export")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "content-disposition" not in response.headers
    assert ADA not in response.text and "Writing" not in response.text
    assert "/data-link" in response.text  # it offers the emailed link instead


def test_manage_link_delete_path_deletes_nothing(client: TestClient, outbox: Path) -> None:
    activate(client, outbox)
    response = client.post(manage_path(outbox, "preferences") + "/delete")
    assert response.status_code == 200
    assert "Email me a link" in response.text
    assert find(ADA).status == "active"
    assert count_suppressions() == 0


def test_asking_for_a_data_link_emails_it_to_the_address_only(
    client: TestClient, outbox: Path
) -> None:
    activate(client, outbox)
    response = client.post(manage_path(outbox, "preferences") + "/data-link")
    assert response.status_code == 200
    assert "emailed you a link" in response.text
    assert "/data/" not in response.text  # the link is in the mailbox, not on the page
    message = mail(outbox, ADA, "data_link")
    assert message["To"] == f"Ada <{ADA}>"
    assert message["List-Unsubscribe"] is None
    assert link(message, "data")


def test_preferences_page_offers_the_data_link_button_not_export_or_delete(
    client: TestClient, outbox: Path
) -> None:
    activate(client, outbox)
    html = client.get(manage_path(outbox, "preferences")).text
    assert "Email me a link to export or delete my data" in html
    assert "/export" not in html and "/delete" not in html


def test_opening_the_data_link_changes_nothing_and_offers_two_buttons(
    client: TestClient, outbox: Path
) -> None:
    activate(client, outbox)
    path = request_data_path(client, outbox)
    before = whole_row()
    response = client.get(path)
    assert response.status_code == 200
    assert f'action="{path}/export"' in response.text and f'action="{path}/delete"' in response.text
    assert "Download my data" in response.text and "Delete me" in response.text
    assert whole_row() == before


def test_data_link_exports_the_persons_data(client: TestClient, outbox: Path) -> None:
    activate(client, outbox)
    response = client.post(request_data_path(client, outbox) + "/export")
    assert response.status_code == 200
    assert response.headers["content-disposition"].startswith("attachment;")
    assert response.json()["subscriber"]["email"] == ADA


def test_data_link_stops_working_once_used_to_delete(client: TestClient, outbox: Path) -> None:
    activate(client, outbox)
    path = request_data_path(client, outbox)
    assert client.post(path + "/delete").status_code == 200
    assert client.get(path).status_code == 410
    assert client.post(path + "/export").status_code == 410
    assert client.post(path + "/delete").status_code == 410


def test_data_link_issued_before_an_operator_erasure_stops_working(
    client: TestClient, outbox: Path
) -> None:
    activate(client, outbox)
    path = request_data_path(client, outbox)
    with session_scope() as session:
        subscriptions.delete_subscriber(session, find(ADA).id)
    response = client.post(path + "/export")
    assert response.status_code == 410
    assert ADA not in response.text


def test_data_link_still_works_after_unsubscribing(client: TestClient, outbox: Path) -> None:
    activate(client, outbox)
    client.post(manage_path(outbox, "unsubscribe"))
    path = request_data_path(client, outbox)
    assert client.post(path + "/export").json()["subscriber"]["status"] == "unsubscribed"


def test_expired_data_link_is_400_and_changes_nothing(
    client: TestClient, outbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    activate(client, outbox)
    path = request_data_path(client, outbox)
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 61 * 60)
    for response in (client.get(path), client.post(path + "/delete")):
        assert response.status_code == 400
        assert "expired" in response.text
    monkeypatch.setattr(time, "time", real_time)
    assert find(ADA).status == "active"


def test_data_link_lifetime_is_a_setting(
    client: TestClient, outbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_DATA_LINK_MINUTES", "5")
    reset_caches()
    activate(client, outbox)
    path = request_data_path(client, outbox)
    assert "5 minutes" in mail(outbox, ADA, "data_link").as_string()
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 6 * 60)
    assert client.get(path).status_code == 400


@pytest.mark.parametrize("kind", ["manage", "confirm", "forged", "other-address"])
def test_other_tokens_are_not_data_tokens(client: TestClient, outbox: Path, kind: str) -> None:
    activate(client, outbox)
    row = find(ADA)
    token = {
        "manage": manage_token(row.id),
        "confirm": confirm_token(row.id, SignupCycle(row.signup_cycle, row.signup_cycle_at)),
        "forged": URLSafeTimedSerializer("not-our-key", salt="digest.data").dumps([row.id, "x"]),
        "other-address": data_token(row.id, "mallory@example.com"),
    }[kind]
    for method, suffix in ((client.get, ""), (client.post, "/export"), (client.post, "/delete")):
        response = method(f"/data/{token}{suffix}")
        assert 400 <= response.status_code < 500
        assert ADA not in response.text
    assert find(ADA).status == "active"


def test_data_token_is_not_a_manage_token(client: TestClient, outbox: Path) -> None:
    activate(client, outbox)
    token = request_data_path(client, outbox).rsplit("/", 1)[1]
    assert client.post(f"/unsubscribe/{token}").status_code == 400
    assert client.get(f"/preferences/{token}").status_code == 400
    assert find(ADA).status == "active"


def test_data_link_requests_are_rate_limited_per_subscriber(
    client: TestClient, outbox: Path
) -> None:
    activate(client, outbox)
    path = manage_path(outbox, "preferences") + "/data-link"
    answers = [client.post(path).status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]
    assert len(mails_to(outbox, ADA, "data_link")) == 3


def test_tampered_manage_token_gets_no_data_link_sent(client: TestClient, outbox: Path) -> None:
    activate(client, outbox)
    path = manage_path(outbox, "preferences")
    tampered = path[:-2] + ("xy" if not path.endswith("xy") else "zw")
    assert client.post(tampered + "/data-link").status_code == 400
    assert mails_to(outbox, ADA, "data_link") == []


def test_no_data_link_is_sent_to_an_erased_subscriber(client: TestClient, outbox: Path) -> None:
    from digest.transactional import send_data_link

    activate(client, outbox)
    subscriber_id = find(ADA).id
    with session_scope() as session:
        subscriptions.delete_subscriber(session, subscriber_id)
    assert send_data_link(subscriber_id) is False
    assert client.post(manage_path(outbox, "preferences") + "/data-link").status_code == 410
    assert mails_to(outbox, ADA, "data_link") == []


def test_manage_token_cannot_be_made_into_a_data_token_by_resigning(client: TestClient) -> None:
    """A never-expiring signature replayed under the data salt is not valid."""
    sign_up(client)
    subscriber_id = find(ADA).id
    untimed = URLSafeSerializer(get_settings().signing_key, salt="digest.data").dumps(
        [subscriber_id, "x"]
    )
    assert client.get(f"/data/{untimed}").status_code == 400


# --- tokens never appear in logs -------------------------------------------------------------

TOKEN = "MTIz.abc-DEF_ghi.jkl"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (f"/confirm/{TOKEN}", "/confirm/[redacted]"),
        (f"/unsubscribe/{TOKEN}", "/unsubscribe/[redacted]"),
        (f"/preferences/{TOKEN}", "/preferences/[redacted]"),
        (f"/preferences/{TOKEN}/export", "/preferences/[redacted]/export"),
        (f"/preferences/{TOKEN}/data-link", "/preferences/[redacted]/data-link"),
        (f"/data/{TOKEN}/delete", "/data/[redacted]/delete"),
        (f"/confirm/{TOKEN}?utm=x", "/confirm/[redacted]?utm=x"),
    ],
)
def test_uvicorn_access_record_has_its_token_redacted(pg: str, path: str, expected: str) -> None:
    from uvicorn.logging import AccessFormatter

    from digest.web.app import create_app

    create_app()  # installs the filter
    logger = logging.getLogger("uvicorn.access")
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.setFormatter(AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s'))
    logger.addHandler(handler)
    # Another test's logging set-up (alembic's fileConfig) may have disabled or quietened it.
    saved = logger.level, logger.disabled
    logger.setLevel(logging.INFO)  # setLevel, not assignment: it clears the logger's cache
    logger.disabled = False
    try:  # exactly as uvicorn's httptools/h11 protocols log a request
        logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5555", "GET", path, "1.1", 200)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.disabled = saved[1]
    assert TOKEN not in written.getvalue()
    assert f"GET {expected} HTTP/1.1" in written.getvalue()


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["confirm", "unsubscribe", "preferences", "data"]),
    st.text(
        alphabet=st.characters(categories=["L", "N", "P", "S"], exclude_characters="/?#\"'<> "),
        min_size=1,
        max_size=80,
    ),
)
def test_redaction_leaves_no_token_segment(prefix: str, token: str) -> None:
    assert redact(f"/{prefix}/{token}/export?x=1") == f"/{prefix}/[redacted]/export?x=1"


@pytest.fixture
def logged_app(pg: str, redis_url: str, eager_tasks: None, monkeypatch: pytest.MonkeyPatch):
    """The app under uvicorn with its access log on (level info), records captured."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("DIGEST_PUBLIC_URL", base)
    reset_caches()
    from digest.web.app import create_app

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    uv = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="info"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    keep = Keep()
    access = logging.getLogger("uvicorn.access")
    access.addHandler(keep)
    yield base, records
    access.removeHandler(keep)
    uv.should_exit = True
    thread.join(timeout=10)


def wait_for_mail(outbox: Path, kind: str, address: str = ADA):  # type: ignore[no-untyped-def]
    """Served by uvicorn, the embedded default sends the confirmation after the answer."""
    deadline = time.monotonic() + 15
    while not (found := mails_to(outbox, address, kind)):
        assert time.monotonic() < deadline, f"no {kind} email to {address}"
        time.sleep(0.05)
    return found[0]


def test_served_access_log_never_holds_a_token(logged_app, outbox: Path) -> None:
    base, records = logged_app
    with httpx.Client(base_url=base, timeout=10) as http:
        http.post("/subscribe", json={"email": ADA})
        confirm = path_of(link(wait_for_mail(outbox, "confirmation"), "confirm"))
        http.get(confirm)
        http.post(confirm)
        preferences = path_of(link(mail(outbox, ADA, "welcome"), "preferences"))
        http.get(preferences)
        http.post(preferences + "/data-link")
        data = path_of(link(mail(outbox, ADA, "data_link"), "data"))
        http.get(data)
    tokens = {p.split("/")[2] for p in (confirm, preferences, data)}
    lines = [record.getMessage() for record in records]
    assert len(lines) >= 6, lines
    assert not [line for line in lines for token in tokens if token in line]
    assert any("/confirm/[redacted]" in line for line in lines)


def test_no_log_record_of_the_service_formats_a_token(
    client: TestClient, outbox: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    activate(client, outbox)
    preferences = manage_path(outbox, "preferences")
    client.get(preferences)
    client.post(preferences + "/data-link")
    data = request_data_path(client, outbox)
    client.get(data)
    client.post(data + "/export")
    client.post(manage_path(outbox, "unsubscribe"))
    client.post(data + "/delete")
    tokens = {p.split("/")[2] for p in (*confirm_paths(outbox), preferences, data)}
    # httpx is the test client's own logger (it writes the URLs it requests), not the service's.
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("httpx")]
    assert ours, "expected some log records"
    assert not [line for line in ours for token in tokens if token in line]


def test_access_log_filter_is_installed_once_however_often_the_app_is_built(pg: str) -> None:
    from digest.web.app import create_app

    create_app()
    create_app()
    filters = logging.getLogger("uvicorn.access").filters
    assert sum(isinstance(f, RedactTokens) for f in filters) == 1


# --- finding 12: the embedded default answers before sending the confirmation ---------------


@pytest.fixture
def served_sqlite(sqlite: str, eager_tasks: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The embedded default under uvicorn: SQLite, no broker, no Redis."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("DIGEST_PUBLIC_URL", base)
    reset_caches()
    from digest.web.app import create_app

    uv = uvicorn.Server(
        uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield base
    uv.should_exit = True
    thread.join(timeout=10)


SLOW_SEND = 2.0


def test_new_address_is_answered_before_its_confirmation_is_sent_on_sqlite(
    served_sqlite: str, outbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.email_backends import OutboxBackend

    real_send = OutboxBackend.send

    def slow_send(self, message):  # type: ignore[no-untyped-def]
        time.sleep(SLOW_SEND)
        return real_send(self, message)

    monkeypatch.setattr(OutboxBackend, "send", slow_send)
    with httpx.Client(base_url=served_sqlite, timeout=30) as http:
        http.get("/healthz")  # warm up: the first request pays for imports
        started = time.monotonic()
        response = http.post("/subscribe", json={"email": "new.reader@example.com"})
        answered = time.monotonic() - started
    assert response.status_code == 202
    assert answered < SLOW_SEND / 2, f"answered after {answered:.2f} s: it waited for the email"
    assert wait_for_mail(outbox, "confirmation", "new.reader@example.com")
    assert find("new.reader@example.com").status == "pending"


def test_failed_background_confirmation_releases_the_claim_on_sqlite(
    served_sqlite: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.email_backends import OutboxBackend

    def broken_send(self, message):  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    monkeypatch.setattr(OutboxBackend, "send", broken_send)
    with httpx.Client(base_url=served_sqlite, timeout=30) as http:
        response = http.post("/subscribe", json={"email": "unlucky@example.com"})
    assert response.status_code == 202
    deadline = time.monotonic() + 15
    while find("unlucky@example.com").confirmation_sent_at is not None:
        assert time.monotonic() < deadline, "the claim was never released"
        time.sleep(0.1)


def test_data_link_email_carries_only_an_http_link() -> None:
    from digest.rendering import render_data_link

    with pytest.raises(ValueError, match="data_url"):
        render_data_link(name=None, data_url="javascript:alert(1)", minutes=60)


# --- the same guarantees on the embedded default (SQLite hands back naive datetimes) ---------


@pytest.fixture
def lite(sqlite: str, eager_tasks: None) -> TestClient:
    from digest.web.app import create_app

    return TestClient(create_app(), follow_redirects=False)


def test_old_confirmation_link_does_nothing_after_unsubscribe_and_new_signup_on_sqlite(
    lite: TestClient, outbox: Path
) -> None:
    old = activate(lite, outbox)
    lite.post(manage_path(outbox, "unsubscribe"))
    allow_resend()
    sign_up(lite)
    assert lite.post(old).status_code == 410
    [new] = confirm_paths(outbox) - {old}
    assert lite.post(new).status_code == 200
    assert find(ADA).status == "active"


def test_repost_of_a_pending_address_keeps_link_and_details_on_sqlite(
    lite: TestClient, outbox: Path
) -> None:
    sign_up(lite, name="Ada")
    allow_resend()
    before = snapshot()
    sign_up(lite, name=HOSTILE_NAME, frequency="every")
    assert snapshot() == before
    assert len({link(m, "confirm") for m in mails_to(outbox, ADA, "confirmation")}) == 1
    [path] = confirm_paths(outbox)
    assert lite.post(path).status_code == 200


def test_data_link_exports_and_then_deletes_on_sqlite(lite: TestClient, outbox: Path) -> None:
    activate(lite, outbox)
    path = request_data_path(lite, outbox)
    assert lite.post(path + "/export").json()["subscriber"]["email"] == ADA
    assert lite.post(path + "/delete").status_code == 200
    assert lite.get(path).status_code == 410
    assert find(ADA) is None
