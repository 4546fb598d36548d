"""The fake SendGrid validates like SendGrid, records what it accepted, and misbehaves on demand.

Every request here goes through the official `sendgrid` client over real HTTP on loopback.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from python_http_client import exceptions as http_errors
from sendgrid import SendGridAPIClient

from tests.sendgrid_server import DEFAULT_KEY, FakeSendGrid

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def module_server() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as server:
        yield server


@pytest.fixture
def server(module_server: FakeSendGrid) -> Iterator[FakeSendGrid]:
    module_server.reset()
    module_server.set_max_bytes(30 * 1024 * 1024)
    yield module_server


def client(server: FakeSendGrid, key: str = DEFAULT_KEY, timeout: float = 5) -> SendGridAPIClient:
    sg = SendGridAPIClient(key, host=server.url)
    sg.client.timeout = timeout
    return sg


def body(*addresses: str, **overrides: object) -> dict:
    request = {
        "from": {"email": "verdicts@example.com", "name": "Weekly AI Tool Verdicts"},
        "subject": "This week's verdicts",
        "content": [
            {"type": "text/plain", "value": "Hi -name-"},
            {"type": "text/html", "value": "<p>Hi -name-</p>"},
        ],
        "personalizations": [
            {"to": [{"email": a}], "substitutions": {"-name-": "there"}} for a in addresses
        ],
    }
    request.update(overrides)
    return request


def send(server: FakeSendGrid, request: dict, **kwargs: object):
    return client(server, **kwargs).client.mail.send.post(request_body=request)


def refusal(server: FakeSendGrid, request: dict, **kwargs: object) -> http_errors.HTTPError:
    with pytest.raises(http_errors.HTTPError) as caught:
        send(server, request, **kwargs)
    return caught.value


def test_valid_request_is_accepted_with_a_message_id(server: FakeSendGrid) -> None:
    response = send(server, body("ada@example.com", "grace@example.com"))
    assert response.status_code == 202
    assert len(response.headers["X-Message-Id"]) == 22
    assert server.addresses() == {"ada@example.com": 1, "grace@example.com": 1}
    assert server.received()[0]["_message_id"] == response.headers["X-Message-Id"]


def test_wrong_or_missing_api_key_is_401(server: FakeSendGrid) -> None:
    assert refusal(server, body("ada@example.com"), key="SG.wrong").status_code == 401
    request = urllib.request.Request(
        server.url + "/v3/mail/send", data=json.dumps(body("ada@example.com")).encode()
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 401
    assert server.stats()["accepted_requests"] == 0


def test_more_than_1000_recipients_is_400(server: FakeSendGrid) -> None:
    addresses = [f"r{n}@example.com" for n in range(1001)]
    error = refusal(server, body(*addresses))
    assert error.status_code == 400
    assert error.to_dict["errors"][0]["field"] == "personalizations"


def test_cc_and_bcc_count_towards_the_1000_recipients(server: FakeSendGrid) -> None:
    request = body(*[f"r{n}@example.com" for n in range(999)])
    request["personalizations"][0]["cc"] = [{"email": "cc@example.com"}]
    request["personalizations"][0]["bcc"] = [{"email": "bcc@example.com"}]
    assert refusal(server, request).status_code == 400


def test_same_address_twice_in_one_request_is_400_naming_it(server: FakeSendGrid) -> None:
    error = refusal(server, body("ada@example.com", "grace@example.com", "ADA@example.com"))
    assert error.status_code == 400
    [problem] = error.to_dict["errors"]
    assert "ADA@example.com" in problem["message"]
    assert problem["field"] == "personalizations.2.to.0.email"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"from": {}}, "from"),
        ({"from": {"email": "not-an-address"}}, "from.email"),
        ({"personalizations": []}, "personalizations"),
        ({"subject": ""}, "subject"),
        ({"content": []}, "content"),
        ({"custom_args": {"digest_id": 7}}, "custom_args"),
    ],
)
def test_missing_or_malformed_required_field_is_400_naming_it(
    server: FakeSendGrid, change: dict, field: str
) -> None:
    error = refusal(server, body("ada@example.com", **change))
    assert error.status_code == 400
    assert field in [e["field"] for e in error.to_dict["errors"]]


def test_subject_may_live_in_every_personalization(server: FakeSendGrid) -> None:
    request = body("ada@example.com", subject=None)
    del request["subject"]
    request["personalizations"][0]["subject"] = "Just for Ada"
    assert send(server, request).status_code == 202


def test_text_plain_must_come_before_text_html(server: FakeSendGrid) -> None:
    request = body("ada@example.com")
    request["content"].reverse()
    error = refusal(server, request)
    assert error.status_code == 400
    assert error.to_dict["errors"][0]["field"] == "content"


def test_request_over_the_size_limit_is_413(server: FakeSendGrid) -> None:
    server.set_max_bytes(2_000)
    error = refusal(server, body(*[f"r{n}@example.com" for n in range(40)]))
    assert error.status_code == 413
    assert send(server, body("ada@example.com")).status_code == 202


def test_429_carries_rate_limit_reset_then_service_resumes(server: FakeSendGrid) -> None:
    server.fail_next(429, count=2, reset_in=3)
    for _ in range(2):
        error = refusal(server, body("ada@example.com"))
        assert error.status_code == 429
        reset = int(error.headers["X-RateLimit-Reset"])
        assert time.time() + 2 <= reset <= time.time() + 5
    assert send(server, body("ada@example.com")).status_code == 202
    assert server.stats()["statuses"] == {"202": 1, "429": 2}


def test_500_for_the_next_request_accepts_nothing(server: FakeSendGrid) -> None:
    server.fail_next(500)
    assert refusal(server, body("ada@example.com")).status_code == 500
    assert server.addresses() == {}


def test_rejected_addresses_get_a_sendgrid_style_400(server: FakeSendGrid) -> None:
    server.reject_addresses(["bad@example.net"])
    error = refusal(server, body("ada@example.com", "bad@example.net"))
    assert error.status_code == 400
    assert error.to_dict == {
        "errors": [
            {
                "message": "Invalid email address bad@example.net",
                "field": "personalizations.1.to.0.email",
                "help": None,
            }
        ]
    }
    assert server.addresses() == {}


def test_stall_outlasts_the_client_timeout_but_the_message_was_accepted(
    server: FakeSendGrid,
) -> None:
    server.stall_next(1.5)
    with pytest.raises(TimeoutError):
        send(server, body("ada@example.com"), timeout=0.5)
    assert server.addresses() == {"ada@example.com": 1}


def test_stats_count_addresses_received_more_than_once(server: FakeSendGrid) -> None:
    send(server, body("ada@example.com", "grace@example.com"))
    send(server, body("ada@example.com"))
    stats = server.stats()
    assert stats["requests"] == 2
    assert stats["recipients"] == 3
    assert stats["unique_addresses"] == 2
    assert stats["duplicates"] == 1
    assert stats["duplicate_addresses"] == ["ada@example.com"]


def test_control_api_over_http_sets_failures_and_reports_stats(server: FakeSendGrid) -> None:
    command = json.dumps({"action": "fail_next", "status": 503, "count": 1}).encode()
    urllib.request.urlopen(urllib.request.Request(server.url + "/_control", data=command))
    assert refusal(server, body("ada@example.com")).status_code == 503
    send(server, body("ada@example.com"))
    with urllib.request.urlopen(server.url + "/_stats") as response:
        stats = json.load(response)
    assert stats["statuses"] == {"202": 1, "503": 1}
    with urllib.request.urlopen(server.url + "/_received") as response:
        assert [p["to"][0]["email"] for p in json.load(response)[0]["personalizations"]] == [
            "ada@example.com"
        ]


def test_runs_as_its_own_process_and_records_to_a_file(tmp_path: Path) -> None:
    record = tmp_path / "received.ndjson"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.sendgrid_server", "--port", "0", "--record", str(record)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        url = line.strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:")
        sg = SendGridAPIClient(DEFAULT_KEY, host=url)
        assert sg.client.mail.send.post(request_body=body("ada@example.com")).status_code == 202
        with urllib.request.urlopen(url + "/_stats") as response:
            assert json.load(response)["recipients"] == 1
    finally:
        process.terminate()
        process.wait(timeout=10)
    [entry] = [json.loads(line) for line in record.read_text().splitlines()]
    assert entry["recipients"] == ["ada@example.com"]
