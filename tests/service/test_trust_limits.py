"""Finding 12: limits hold before anything is parsed.

- The bearer token of /api/events and /admin/* is checked from the headers alone: a client
  without it gets 401 at once, over a real socket, while its declared body is still unsent.
- Every path has a body-size limit (public forms, ingest, webhook, and a default elsewhere).
- JSON nested thousands deep gets a 4xx naming the problem, never a 500.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bench.procs import free_port, port_open, wait_for
from digest.db import reset_caches, session_scope
from digest.json_limits import MAX_JSON_DEPTH, json_depth, too_deep
from digest.web.app import create_app
from schema.models import Comparison, Digest, InboundEvent, Subscriber, WebhookBatch
from tests.support.services import ADMIN_TOKEN, INGEST_TOKEN
from tests.support.signed_webhooks import ENDPOINT as WEBHOOK
from tests.support.signed_webhooks import Signer

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
INGEST = {"Authorization": f"Bearer {INGEST_TOKEN}"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def server(pg: str) -> Iterator[int]:
    """The app under uvicorn on loopback, in a thread: a real socket, as attackers use."""
    port = free_port()
    config = uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning")
    served = uvicorn.Server(config)
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    wait_for(lambda: port_open(port), 30, what="uvicorn to listen")
    yield port
    served.should_exit = True
    thread.join(10)


def send_head(port: int, request: bytes, timeout: float = 5.0) -> tuple[bytes, float]:
    """Send `request` (headers and a few body bytes), then wait for the status line."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        answer = b""
        try:
            while b"\r\n" not in answer:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            pass
    return answer, time.monotonic() - started


def declared_post(path: str, length: int, auth: str | None = None) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {length}",
    ]
    if auth:
        lines.append(f"Authorization: {auth}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + b'{"type": "comparison.pub'


def count(model: type) -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


# --- the bearer token before the body ---------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/events", "/admin/digests"])
@pytest.mark.parametrize("length", [60_000, 60 * 1024 * 1024])
@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", f"Basic {ADMIN_TOKEN}"])
def test_unauthenticated_body_is_answered_401_before_it_is_sent(
    server: int, path: str, length: int, auth: str | None
) -> None:
    """The body is declared but never sent: only a server that does not wait for it answers."""
    answer, elapsed = send_head(server, declared_post(path, length, auth))
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert elapsed < 3, f"401 took {elapsed:.1f}s: the server waited for the body"


def test_the_ingest_token_does_not_open_the_admin_api_before_the_body(server: int) -> None:
    answer, _ = send_head(server, declared_post("/admin/digests", 60_000, f"Bearer {INGEST_TOKEN}"))
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]


def test_an_authenticated_body_is_awaited_as_before(server: int) -> None:
    """Control: with the right token the server does wait for the declared body."""
    answer, elapsed = send_head(
        server, declared_post("/api/events", 60_000, f"Bearer {INGEST_TOKEN}"), timeout=1.5
    )
    assert answer == b"" and elapsed >= 1.4


def test_401_from_the_gate_names_the_scheme(client: TestClient) -> None:
    response = client.post("/api/events", content=b"{}", headers=JSON)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json() == {"detail": "missing or wrong bearer token"}


# --- a size limit on every path -----------------------------------------------------------------


@pytest.fixture
def client(pg: str) -> TestClient:
    return TestClient(create_app(), raise_server_exceptions=False)


def test_authenticated_ingest_body_over_its_limit_is_413_and_stores_nothing(
    client: TestClient,
) -> None:
    body = b'{"type": "comparison.published", "data": {"title": "' + b"x" * (1024 * 1024) + b'"}}'
    response = client.post("/api/events", content=body, headers={**INGEST, **JSON})
    assert response.status_code == 413
    assert count(InboundEvent) == 0 and count(Comparison) == 0


def test_ingest_limit_is_its_own_setting(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_INGEST_MAX_BYTES", "2048")
    reset_caches()
    small_limit = TestClient(create_app(), raise_server_exceptions=False)
    body = b'{"type": "x", "data": "' + b"y" * 3000 + b'"}'
    response = small_limit.post("/api/events", content=body, headers={**INGEST, **JSON})
    assert response.status_code == 413


def test_authenticated_admin_body_over_the_default_limit_is_413(client: TestClient) -> None:
    body = b'{"subject": "' + b"x" * (70 * 1024) + b'"}'
    response = client.post("/admin/digests", content=body, headers={**ADMIN, **JSON})
    assert response.status_code == 413
    assert count(Digest) == 0


def test_chunked_admin_body_over_the_limit_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"subject": "'
        for _ in range(80):
            yield b"x" * 1024
        yield b'"}'

    response = client.post("/admin/digests", content=chunks(), headers={**ADMIN, **JSON})
    assert response.status_code == 413
    assert count(Digest) == 0


def test_a_path_without_its_own_limit_gets_the_default(client: TestClient) -> None:
    response = client.post("/no/such/path", content=b"x" * (65 * 1024))
    assert response.status_code == 413


def test_authenticated_ingest_body_over_the_limit_is_413_over_a_real_socket(server: int) -> None:
    answer, elapsed = send_head(
        server, declared_post("/api/events", 60 * 1024 * 1024, f"Bearer {INGEST_TOKEN}")
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert elapsed < 3


def test_the_webhook_keeps_its_own_limit(signer: Signer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_WEBHOOK_MAX_BYTES", "2048")
    reset_caches()
    body = b"[" + b",".join([b'{"event": "delivered"}'] * 200) + b"]"
    response = TestClient(create_app()).post(WEBHOOK, content=body, headers=signer.headers(body))
    assert response.status_code == 413
    assert count(WebhookBatch) == 0


# --- deep nesting -------------------------------------------------------------------------------


def nested(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize("kind", ["array", "object"])
@pytest.mark.parametrize(
    ("path", "headers"),
    [("/api/events", INGEST), ("/admin/digests", ADMIN), ("/subscribe", {})],
)
def test_5000_nested_brackets_get_422_naming_the_problem(
    client: TestClient, path: str, headers: dict[str, str], kind: str
) -> None:
    body = nested(5000, kind)
    response = client.post(path, content=body, headers={**headers, **JSON})
    if path == "/subscribe" and len(body) > 16 * 1024:  # the signup's size limit comes first
        assert response.status_code == 413
    else:
        assert response.status_code == 422, response.text
        assert "nested deeper than" in response.text
    assert count(Subscriber) == count(Digest) == count(InboundEvent) == 0


@pytest.mark.parametrize("kind", ["array", "object"])
def test_5000_nested_brackets_in_a_signed_webhook_get_400(signer: Signer, kind: str) -> None:
    body = nested(5000, kind)
    response = TestClient(create_app(), raise_server_exceptions=False).post(
        WEBHOOK, content=body, headers=signer.headers(body)
    )
    assert response.status_code == 400
    assert "nested deeper than" in response.text
    assert count(WebhookBatch) == 0


def test_deep_nesting_inside_a_valid_field_is_refused_too(client: TestClient) -> None:
    """A well-formed event whose one field holds the depth: the limit is on the document."""
    inner = nested(900, "array").decode()
    body = f'{{"type": "comparison.published", "data": {{"slug": {inner}}}}}'.encode()
    response = client.post("/api/events", content=body, headers={**INGEST, **JSON})
    assert response.status_code == 422
    assert "nested deeper than" in response.text


ENDPOINTS = st.sampled_from(["/api/events", "/admin/digests", "/subscribe", WEBHOOK])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=ENDPOINTS,
    depth=st.integers(min_value=1, max_value=20_000),
    kind=st.sampled_from(["array", "object"]),
    inside=st.booleans(),
)
def test_any_nesting_depth_gets_4xx_never_5xx(
    signer: Signer, path: str, depth: int, kind: str, inside: bool
) -> None:
    body = nested(depth, kind)
    if inside:  # the depth inside an otherwise plausible document
        body = b'{"type": "comparison.published", "email": "a@example.com", "data": ' + body + b"}"
    client = TestClient(create_app(), raise_server_exceptions=False)
    headers = {
        "/api/events": INGEST,
        "/admin/digests": ADMIN,
        "/subscribe": {},
        WEBHOOK: signer.headers(body),
    }[path]
    response = client.post(path, content=body, headers={**headers, **JSON})
    assert response.status_code < 500, response.text
    if json_depth(body) > MAX_JSON_DEPTH:
        assert 400 <= response.status_code < 500
        if response.status_code != 413:
            assert "nested deeper than" in response.text


# json_depth must never under-count a real document (an attacker would hide depth in strings).
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab\n'),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(alphabet='[]{}"\\ab', max_size=4), children, max_size=3)
    ),
    max_leaves=30,
)


def true_depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((true_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((true_depth(v) for v in value.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(value=JSON_VALUES, indent=st.sampled_from([None, 1]), ascii_only=st.booleans())
def test_json_depth_is_exact_for_any_document(
    value: object, indent: int | None, ascii_only: bool
) -> None:
    import json

    document = json.dumps(value, indent=indent, ensure_ascii=ascii_only)
    assert json_depth(document) == true_depth(value)


@settings(max_examples=300, deadline=None)
@given(value=JSON_VALUES, limit=st.integers(min_value=0, max_value=6))
def test_too_deep_answers_as_the_exact_depth_does_for_any_limit(value: object, limit: int) -> None:
    import json

    document = json.dumps(value)
    assert too_deep(document, limit) == (true_depth(value) > limit)


def test_a_deeply_nested_line_in_an_imported_file_is_reported_and_the_rest_lands(
    pg: str, tmp_path: Path
) -> None:
    import json

    from typer.testing import CliRunner

    from digest.cli import app
    from tests.support.factories import published

    path = tmp_path / "deep.ndjson"
    deep = nested(5000, "object").decode()
    path.write_text(json.dumps(published()) + "\n" + deep + "\n")
    result = CliRunner().invoke(app, ["import", str(path)])
    assert result.exit_code == 1, result.output
    assert "deep.ndjson line 2" in result.output and "nested deeper than" in result.output
    assert count(Comparison) == 1
