"""Signing in to the console, and every attack on it: no session, forged or old cookies, CSRF,
brute force, account probing, open redirects."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select

from digest import audit
from digest.db import session_scope
from digest.operators import remove_operator
from digest.web.console import ROUTERS
from digest.web.console.session import COOKIE, safe_next
from schema.models import Digest
from tests.support.console_fixtures import (
    OPERATOR,
    PASSWORD,
    OperatorAccount,
    csrf_in,
    sign_in,
)
from tests.support.planned_rows import plan_rows
from tests.support.services import SECRET_KEY

CONSOLE_GETS = [
    "/console",
    "/console/live",
    "/console/digests",
    "/console/digests/1",
    "/console/digests/1/progress",
    "/console/digests/1/results",
    "/console/audit",
    "/console/editions/next",
    "/console/editions/next/emails",
    "/console/digests/new",
    "/console/lists",
    "/console/lists/imports/1",
    "/console/lists/imports/1/progress",
    "/console/audience",
    "/console/subscribers",
    "/console/subscribers/1",
    "/console/subscribers/1/erase",
    "/console/suppressions",
]
CONSOLE_POSTS = [
    "/console/logout",
    "/console/digests/1/cancel",
    "/console/digests/1/resume",
    "/console/digests/1/batches/1",
    "/console/editions/next/pin",
    "/console/editions/next/exclude",
    "/console/editions/next/restore",
    "/console/editions/next/note",
    "/console/editions/next/subject",
    "/console/editions/next/preheader",
    "/console/editions/next/approve",
    "/console/editions/next/test-copy",
    "/console/digests/new",
    "/console/lists/upload",
    "/console/lists/export",
    "/console/subscribers/1/unsubscribe",
    "/console/subscribers/1/resend-confirmation",
    "/console/subscribers/1/erase",
    "/console/suppressions",
]


def _console_routes() -> set[tuple[str, str]]:
    return {
        (method, route.path)
        for router in ROUTERS
        for route in router.routes
        if route.path != "/console/login"
        for method in route.methods
    }


def test_every_console_route_is_in_these_tests(console: TestClient) -> None:
    """A new console route must be added to the lists above (and so be tested)."""
    listed = {("GET", p) for p in CONSOLE_GETS} | {("POST", p) for p in CONSOLE_POSTS}

    def shape(path: str) -> str:
        return "/".join(
            "{}" if part.isdigit() or part.startswith("{") else part for part in path.split("/")
        )

    assert {(m, shape(p)) for m, p in _console_routes() if m != "HEAD"} == {
        (m, shape(p)) for m, p in listed
    }


@pytest.mark.parametrize("path", CONSOLE_GETS)
def test_every_console_page_without_a_session_redirects_to_sign_in(
    console: TestClient, path: str
) -> None:
    answer = console.get(path, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/console/login?next={path}"


def test_an_htmx_poll_without_a_session_is_told_to_sign_in(console: TestClient) -> None:
    answer = console.get("/console/live", headers={"HX-Request": "true"}, follow_redirects=False)
    assert answer.status_code == 401
    assert answer.headers["hx-redirect"].startswith("/console/login?next=")


@pytest.mark.parametrize("path", CONSOLE_POSTS)
def test_every_console_post_without_a_session_is_403_and_changes_nothing(
    console: TestClient, path: str
) -> None:
    with session_scope() as session:
        planned = plan_rows(session, 3)
    answer = console.post(
        path.replace("/1/", f"/{planned.digest_id}/"), data={"decision": "resend"}
    )
    assert answer.status_code == 403
    with session_scope() as session:
        assert session.get(Digest, planned.digest_id).status == "sending"
        assert audit.recent(session).total == 0


def test_signing_in_leads_to_the_page_asked_for(
    console: TestClient, operator: OperatorAccount
) -> None:
    answer = sign_in(console, next="/console/audit")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/audit"
    assert console.get("/console/audit").status_code == 200


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example",
        "//evil.example/console",
        "/\\evil.example",
        "/console//evil.example",
        "/console/../admin",
        "javascript:alert(1)",
        "/console\r\nSet-Cookie: x=1",
        "/elsewhere",
    ],
)
def test_next_outside_the_console_is_refused(
    console: TestClient, operator: OperatorAccount, target: str
) -> None:
    answer = sign_in(console, next=target)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_next_is_always_a_local_console_path(target: str) -> None:
    chosen = safe_next(target)
    parts = urlsplit(chosen)
    assert chosen.startswith("/console")
    assert not parts.scheme and not parts.netloc
    assert "//" not in chosen and "\\" not in chosen and ".." not in chosen


def test_unknown_account_and_wrong_password_get_byte_identical_answers(
    console: TestClient, operator: OperatorAccount
) -> None:
    token = csrf_in(console.get("/console/login").text)

    def attempt(email: str) -> tuple[int, bytes]:
        answer = console.post(
            "/console/login",
            data={"email": email, "password": "not the password", "csrf_token": token},
            follow_redirects=False,
        )
        return answer.status_code, answer.content

    wrong, unknown = attempt(OPERATOR), attempt("nobody@example.com")
    assert wrong == unknown
    assert wrong[0] == 400
    assert COOKIE not in console.cookies


def test_the_tenth_wrong_password_in_a_minute_is_429_with_retry_after(
    console: TestClient, operator: OperatorAccount
) -> None:
    for n in range(9):
        answer = sign_in(console, password=f"wrong password {n}")
        assert answer.status_code == 400, n
    tenth = sign_in(console, password="wrong password 9")
    assert tenth.status_code == 429
    assert 1 <= int(tenth.headers["retry-after"]) <= 60
    # even the right password is refused now: the attacker cannot keep guessing
    assert sign_in(console).status_code == 429


def test_guessing_across_many_accounts_from_one_ip_is_limited_too(
    console: TestClient, operator: OperatorAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_CONSOLE_LOGIN_RATE_PER_IP", "5/minute")
    from digest.db import reset_caches

    reset_caches()
    console.app.state.console_limiter = None
    codes = [sign_in(console, email=f"guess{n}@example.com").status_code for n in range(6)]
    assert codes == [400] * 5 + [429]


def test_sign_in_without_the_forms_token_is_403_and_signs_nobody_in(
    console: TestClient, operator: OperatorAccount
) -> None:
    answer = console.post(
        "/console/login",
        data={"email": OPERATOR, "password": PASSWORD, "csrf_token": "forged"},
        follow_redirects=False,
    )
    assert answer.status_code == 403
    assert COOKIE not in console.cookies


def test_session_cookie_is_httponly_samesite_lax_scoped_and_expiring(
    console: TestClient, operator: OperatorAccount
) -> None:
    header = sign_in(console).headers["set-cookie"]
    session_part = next(
        p for p in header.split(", digest") if p.startswith(COOKIE) or "digest_console=" in p
    )
    flags = session_part.lower()
    assert "httponly" in flags
    assert "samesite=lax" in flags
    assert "path=/console" in flags
    assert "max-age=43200" in flags
    assert "secure" not in flags  # http public URL


def test_session_cookie_is_secure_when_the_public_url_is_https(
    console: TestClient, operator: OperatorAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.db import reset_caches

    monkeypatch.setenv("DIGEST_PUBLIC_URL", "https://digest.example")
    reset_caches()
    over_https = TestClient(console.app, base_url="https://testserver")
    answers = [
        value
        for name, value in sign_in(over_https).headers.multi_items()
        if name == "set-cookie" and value.startswith(f"{COOKIE}=")
    ]
    assert answers and "secure" in answers[0].lower()


def test_a_tampered_session_cookie_is_refused(signed_in: TestClient) -> None:
    value = signed_in.cookies[COOKIE]
    signed_in.cookies.set(
        COOKIE, value[:-2] + ("A" if value[-2] != "A" else "B") + value[-1], path="/console"
    )
    assert signed_in.get("/console", follow_redirects=False).status_code == 303


def test_a_cookie_forged_for_another_operator_id_is_refused(signed_in: TestClient) -> None:
    forged = URLSafeTimedSerializer("not-our-key", salt="console-session").dumps(
        {"o": 1, "k": "guess", "c": "x"}
    )
    signed_in.cookies.clear()
    signed_in.cookies.set(COOKIE, forged, path="/console")
    assert signed_in.get("/console", follow_redirects=False).status_code == 303


def test_an_expired_session_cookie_is_refused(
    signed_in: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert signed_in.get("/console", follow_redirects=False).status_code == 200
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 12 * 3600 + 5)
    assert signed_in.get("/console", follow_redirects=False).status_code == 303


def test_a_valid_signature_with_the_wrong_session_key_is_refused(signed_in: TestClient) -> None:
    """Even with our secret (e.g. a leaked old cookie), the operator's current key must match."""
    data = URLSafeTimedSerializer(SECRET_KEY, salt="console-session").loads(
        signed_in.cookies[COOKIE]
    )
    data["k"] = "an old key"
    signed_in.cookies.set(
        COOKIE,
        URLSafeTimedSerializer(SECRET_KEY, salt="console-session").dumps(data),
        path="/console",
    )
    assert signed_in.get("/console", follow_redirects=False).status_code == 303


def test_removing_the_operator_ends_their_session(signed_in: TestClient) -> None:
    assert signed_in.get("/console", follow_redirects=False).status_code == 200
    with session_scope() as session:
        assert remove_operator(session, OPERATOR)
    assert signed_in.get("/console", follow_redirects=False).status_code == 303


def test_signing_out_ends_the_session_even_for_a_copied_cookie(signed_in: TestClient) -> None:
    stolen = signed_in.cookies[COOKIE]
    token = csrf_in(signed_in.get("/console").text)
    answer = signed_in.post("/console/logout", data={"csrf_token": token}, follow_redirects=False)
    assert answer.status_code == 303
    signed_in.cookies.set(COOKIE, stolen, path="/console")
    assert signed_in.get("/console", follow_redirects=False).status_code == 303


@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_a_post_without_the_sessions_csrf_token_is_403_and_changes_nothing(
    signed_in: TestClient, token: str | None
) -> None:
    with session_scope() as session:
        planned = plan_rows(session, 3)
    data = {} if token is None else {"csrf_token": token}
    answer = signed_in.post(f"/console/digests/{planned.digest_id}/cancel", data=data)
    assert answer.status_code == 403
    with session_scope() as session:
        assert session.get(Digest, planned.digest_id).status == "sending"
        assert [e.action for e in audit.recent(session).entries] == ["console.sign-in"]


def test_another_operators_csrf_token_does_not_work(
    console: TestClient, operator: OperatorAccount
) -> None:
    from tests.support.console_fixtures import add_operator

    add_operator("second@example.com")
    sign_in(console, email="second@example.com")
    theirs = csrf_in(console.get("/console").text)
    console.cookies.clear()
    sign_in(console)
    with session_scope() as session:
        planned = plan_rows(session, 3)
    answer = console.post(
        f"/console/digests/{planned.digest_id}/cancel", data={"csrf_token": theirs}
    )
    assert answer.status_code == 403
    with session_scope() as session:
        assert (
            session.scalar(select(Digest.status).where(Digest.id == planned.digest_id)) == "sending"
        )


def test_console_pages_carry_a_strict_csp_and_load_only_our_own_script(
    signed_in: TestClient,
) -> None:
    for path in ("/console", "/console/digests", "/console/audit", "/console/login"):
        answer = signed_in.get(path)
        csp = answer.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp and "form-action 'self'" in csp
        assert "unsafe-eval" not in csp and "http" not in csp
        assert answer.headers["cache-control"] == "no-store"
        assert '<script src="/static/vendor/htmx.min.js"' in answer.text
    assert signed_in.get("/static/vendor/htmx.min.js").status_code == 200


def test_public_pages_set_no_cookie(console: TestClient) -> None:
    assert "set-cookie" not in console.get("/").headers


def test_refused_sign_ins_are_audited_alike_for_unknown_and_known_addresses(
    console: TestClient, operator: OperatorAccount
) -> None:
    sign_in(console, password="wrong password")
    sign_in(console, email="nobody@example.com")
    with session_scope() as session:
        entries = [(e.actor, e.action) for e in audit.recent(session).entries]
    assert entries == [
        ("nobody@example.com", "console.sign-in-refused"),
        (OPERATOR, "console.sign-in-refused"),
    ]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(email=st.text(max_size=400), password=st.text(max_size=300), target=st.text(max_size=100))
@example(email="\x00", password="\x00", target="\x00")  # found by this test: NUL reached SQL
@example(email="ops@example.com\x00", password=PASSWORD, target="/console\r\n")
def test_any_sign_in_form_is_answered_without_a_5xx_and_signs_nobody_in(
    console: TestClient, operator: OperatorAccount, email: str, password: str, target: str
) -> None:
    token = csrf_in(console.get("/console/login").text)
    answer = console.post(
        "/console/login",
        data={"email": email, "password": password, "csrf_token": token, "next": target},
        follow_redirects=False,
    )
    assert answer.status_code in (400, 422, 429)
    assert COOKIE not in console.cookies
