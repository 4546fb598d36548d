"""The fake SendGrid validates like SendGrid, records what it accepted, and misbehaves on demand.

Every request here goes through the official `sendgrid` client over real HTTP on loopback. Each of
SendGrid's rules (`tests/sendgrid_rules.py`: the published OpenAPI schema and every documented
limit) has a test that breaks it and finds both the 400 and the recorded violation; a test that
leaves a violation it did not take fails at teardown.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from python_http_client import exceptions as http_errors
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    Category,
    CustomArg,
    Header,
    Mail,
    Personalization,
    Substitution,
    To,
)

from tests.support import sendgrid_rules
from tests.support.paths import REPO
from tests.support.sendgrid_fixtures import assert_no_violations
from tests.support.sendgrid_server import DEFAULT_KEY, FakeSendGrid

ROOT = REPO


@pytest.fixture(scope="module")
def module_server() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as server:
        yield server


@pytest.fixture
def server(module_server: FakeSendGrid) -> Iterator[FakeSendGrid]:
    module_server.reset()
    module_server.set_max_bytes(30 * 1024 * 1024)
    module_server.take_violations()
    yield module_server
    assert_no_violations(module_server)


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


def broken_rules(server: FakeSendGrid, request: dict, status: int = 400) -> set[str]:
    """Send a request that breaks rules: SendGrid's answer, then the rules the fake recorded."""
    error = refusal(server, request)
    assert error.status_code == status
    if status == 400:
        assert set(error.to_dict) == {"errors"}
        assert all(set(e) == {"message", "field", "help"} for e in error.to_dict["errors"])
    violations = server.take_violations()
    assert violations, "a broken rule must be recorded, not only answered"
    assert server.addresses() == {}
    return {v.rule for v in violations}


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
    rules = {v.rule for v in server.take_violations()}
    assert {"personalizations-count", "recipients-count"} <= rules


def test_cc_and_bcc_count_towards_the_1000_recipients(server: FakeSendGrid) -> None:
    request = body(*[f"r{n}@example.com" for n in range(999)])
    request["personalizations"][0]["cc"] = [{"email": "cc@example.com"}]
    request["personalizations"][0]["bcc"] = [{"email": "bcc@example.com"}]
    assert broken_rules(server, request) == {"recipients-count"}


def test_same_address_twice_in_one_request_is_400_naming_it(server: FakeSendGrid) -> None:
    error = refusal(server, body("ada@example.com", "grace@example.com", "ADA@example.com"))
    assert error.status_code == 400
    [problem] = error.to_dict["errors"]
    assert "ADA@example.com" in problem["message"]
    assert problem["field"] == "personalizations.2.to.0.email"
    assert [v.rule for v in server.take_violations()] == ["recipient-unique"]


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
    assert field in [v.field for v in server.take_violations()]


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
    assert [v.rule for v in server.take_violations()] == ["content-order"]


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
        [
            sys.executable,
            "-m",
            "tests.support.sendgrid_server",
            "--port",
            "0",
            "--record",
            str(record),
        ],
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


# --- SendGrid's published schema and documented limits (tests/sendgrid_rules.py) -------------


def test_the_published_schema_is_read_from_the_shared_folder() -> None:
    path = sendgrid_rules.spec_file()
    if not path.is_file() and not os.environ.get("CI"):
        pytest.skip(f"{path} not found (set {sendgrid_rules.SPEC_ENV}); CI always has it")
    assert sendgrid_rules.schema_validator(required=True) is not None


def test_a_missing_schema_fails_loudly_in_ci(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(sendgrid_rules.SPEC_ENV, str(tmp_path / "absent.json"))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(sendgrid_rules.SpecMissing):
        sendgrid_rules.schema_validator()


def test_a_request_built_with_the_official_helpers_passes(server: FakeSendGrid) -> None:
    """Message-level custom_args as an object: the published file's one typing error is patched."""
    mail = Mail(
        from_email="verdicts@example.com",
        subject="This week's verdicts",
        plain_text_content="Hi -name-",
        html_content="<p>Hi -name-</p>",
    )
    personalization = Personalization()
    personalization.add_to(To("ada@example.com", "Ada Lovelace"))
    personalization.add_substitution(Substitution("-name-", "Ada"))
    personalization.add_header(Header("List-Unsubscribe", "<https://example.com/u/1>"))
    personalization.add_custom_arg(CustomArg("delivery_id", "1"))
    mail.add_personalization(personalization)
    mail.custom_arg = CustomArg("digest_id", "7")
    mail.category = Category("weekly")
    response = client(server).send(mail)
    assert response.status_code == 202
    assert server.received()[0]["custom_args"] == {"digest_id": "7"}


def test_schema_type_errors_are_400_naming_the_field(server: FakeSendGrid) -> None:
    request = body("ada@example.com")
    request["personalizations"][0]["send_at"] = "tomorrow"
    error = refusal(server, request)
    assert error.status_code == 400
    assert error.to_dict["errors"][0]["field"] == "personalizations.0.send_at"
    assert [v.rule for v in server.take_violations()] == ["schema"]


def test_message_custom_args_must_be_an_object_of_strings(server: FakeSendGrid) -> None:
    assert "schema" in broken_rules(server, body("ada@example.com", custom_args="digest=7"))
    assert "schema" in broken_rules(server, body("ada@example.com", custom_args={"d": 7}))


def test_personalization_without_to_breaks_the_schema(server: FakeSendGrid) -> None:
    request = body("ada@example.com")
    del request["personalizations"][0]["to"]
    assert "schema" in broken_rules(server, request)


def test_more_than_1000_personalizations_is_a_violation(server: FakeSendGrid) -> None:
    request = body("ada@example.com")
    request["personalizations"] = [{"to": [{"email": f"r{n}@example.com"}]} for n in range(1001)]
    assert "personalizations-count" in broken_rules(server, request)


def test_1000_recipients_in_1000_personalizations_pass(server: FakeSendGrid) -> None:
    assert send(server, body(*[f"r{n}@example.com" for n in range(1000)])).status_code == 202


def test_the_same_address_in_to_and_bcc_is_a_violation(server: FakeSendGrid) -> None:
    request = body("ada@example.com")
    request["personalizations"][0]["bcc"] = [{"email": "Ada@Example.com"}]
    assert broken_rules(server, request) == {"recipient-unique"}


@pytest.mark.parametrize("name", ["Lovelace, Ada", "Ada; Grace", "a,", ";"])
@pytest.mark.parametrize("kind", ["to", "cc", "bcc"])
def test_recipient_name_with_comma_or_semicolon_is_400_not_a_silent_drop(
    server: FakeSendGrid, kind: str, name: str
) -> None:
    """SendGrid answers 202 and drops the message; the stand-in refuses so a test notices."""
    request = body("ada@example.com")
    request["personalizations"][0].setdefault(kind, []).append(
        {"email": "grace@example.com", "name": name}
    )
    if kind == "to":
        request["personalizations"][0]["to"] = [{"email": "grace@example.com", "name": name}]
    error = refusal(server, request)
    assert error.status_code == 400
    assert error.to_dict["errors"][0]["field"] == f"personalizations.0.{kind}.0.name"
    assert [v.rule for v in server.take_violations()] == ["recipient-name-characters"]


def test_names_with_other_punctuation_pass(server: FakeSendGrid) -> None:
    request = body("ada@example.com")
    request["personalizations"][0]["to"][0]["name"] = 'Ada "AL" O\'Lovelace-Byron (Dr.)'
    assert send(server, request).status_code == 202


def test_substitutions_over_10000_bytes_per_personalization_are_a_violation(
    server: FakeSendGrid,
) -> None:
    request = body("ada@example.com")
    request["personalizations"][0]["substitutions"] = {"-name-": "é" * 5000}  # 10,000 bytes + key
    assert broken_rules(server, request) == {"substitutions-size"}


def test_substitutions_just_under_the_limit_pass(server: FakeSendGrid) -> None:
    request = body("ada@example.com")
    request["personalizations"][0]["substitutions"] = {"-name-": "x" * (10_000 - 6)}
    assert send(server, request).status_code == 202


def test_custom_args_of_10000_bytes_are_a_violation(server: FakeSendGrid) -> None:
    request = body("ada@example.com", custom_args={"digest_id": "x" * 5000})
    request["personalizations"][0]["custom_args"] = {"delivery_id": "y" * 5000}
    assert broken_rules(server, request) == {"custom-args-size"}


def test_substitutions_over_the_limit_in_one_of_many_personalizations_are_named(
    server: FakeSendGrid,
) -> None:
    request = body(*[f"r{n}@example.com" for n in range(50)])
    request["personalizations"][37]["substitutions"] = {"-name-": "x" * 10_000}
    error = refusal(server, request)
    assert [e["field"] for e in error.to_dict["errors"]] == ["personalizations.37.substitutions"]
    assert [v.rule for v in server.take_violations()] == ["substitutions-size"]


def test_message_custom_args_of_10000_bytes_are_a_violation_in_every_personalization(
    server: FakeSendGrid,
) -> None:
    request = body("ada@example.com", "grace@example.com", custom_args={"d": "x" * 9_999})
    error = refusal(server, request)
    assert [e["field"] for e in error.to_dict["errors"]] == [
        "personalizations.0.custom_args",
        "personalizations.1.custom_args",
    ]
    assert {v.rule for v in server.take_violations()} == {"custom-args-size"}


def test_a_personalization_value_that_is_not_a_string_is_a_violation(
    server: FakeSendGrid,
) -> None:
    request = body(*[f"r{n}@example.com" for n in range(20)])
    request["personalizations"][12]["substitutions"] = {"-name-": 7}
    assert "string-values" in broken_rules(server, request)


def test_a_reserved_header_in_one_of_many_personalizations_is_a_violation(
    server: FakeSendGrid,
) -> None:
    request = body(*[f"r{n}@example.com" for n in range(20)])
    for item in request["personalizations"]:
        item["headers"] = {"List-Unsubscribe": "<https://example.com/u/1>"}
    request["personalizations"][12]["headers"]["  cc "] = "x@example.com"
    assert broken_rules(server, request) == {"reserved-header"}


def test_an_invalid_recipient_address_among_many_is_a_violation_naming_it(
    server: FakeSendGrid,
) -> None:
    request = body(*[f"r{n}@example.com" for n in range(20)], "r20@example")
    error = refusal(server, request)
    assert "personalizations.20.to.0.email" in [e["field"] for e in error.to_dict["errors"]]
    assert "recipient-email" in {v.rule for v in server.take_violations()}


def test_an_address_with_a_space_is_a_violation(server: FakeSendGrid) -> None:
    """One address holding a space must not pass as two when addresses are checked together."""
    request = body("ada@example.com grace@example.com", "alan@example.com")
    assert "recipient-email" in broken_rules(server, request)


def test_a_recipient_name_with_a_comma_among_many_is_a_violation(server: FakeSendGrid) -> None:
    request = body(*[f"r{n}@example.com" for n in range(20)])
    request["personalizations"][12]["to"][0]["name"] = "Lovelace, Ada"
    assert broken_rules(server, request) == {"recipient-name-characters"}


def test_more_than_10_categories_is_a_violation(server: FakeSendGrid) -> None:
    request = body("ada@example.com", categories=[f"c{n}" for n in range(11)])
    assert "categories-count" in broken_rules(server, request)


def test_category_over_255_characters_is_a_violation(server: FakeSendGrid) -> None:
    request = body("ada@example.com", categories=["weekly", "x" * 256])
    assert "category-length" in broken_rules(server, request)


@pytest.mark.parametrize("header", sorted(sendgrid_rules.RESERVED_HEADERS))
def test_reserved_headers_may_not_be_set_per_personalization(
    server: FakeSendGrid, header: str
) -> None:
    request = body("ada@example.com")
    request["personalizations"][0]["headers"] = {header.title(): "x"}
    assert broken_rules(server, request) == {"reserved-header"}


def test_reserved_headers_may_not_be_set_on_the_message(server: FakeSendGrid) -> None:
    request = body("ada@example.com", headers={"Reply-To": "someone@example.com"})
    assert broken_rules(server, request) == {"reserved-header"}


def test_list_unsubscribe_headers_are_allowed(server: FakeSendGrid) -> None:
    request = body("ada@example.com")
    request["personalizations"][0]["headers"] = {
        "List-Unsubscribe": "<https://example.com/u/1>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert send(server, request).status_code == 202


def test_no_subject_anywhere_is_a_violation(server: FakeSendGrid) -> None:
    request = body("ada@example.com", "grace@example.com")
    del request["subject"]
    request["personalizations"][0]["subject"] = "Only Ada has one"
    assert broken_rules(server, request) == {"subject-required"}


def test_empty_content_value_is_a_violation(server: FakeSendGrid) -> None:
    request = body("ada@example.com")
    request["content"][1]["value"] = ""
    assert "content-value" in broken_rules(server, request)


def test_missing_content_without_a_template_is_a_violation(server: FakeSendGrid) -> None:
    request = body("ada@example.com")
    del request["content"]
    assert broken_rules(server, request) == {"content-required"}


def test_unicode_in_the_from_address_is_a_violation(server: FakeSendGrid) -> None:
    request = body("ada@example.com", **{"from": {"email": "verdïcts@example.com"}})
    assert "from-ascii" in broken_rules(server, request)


def test_a_message_of_30mb_is_refused_and_recorded(server: FakeSendGrid) -> None:
    request = body("ada@example.com")
    request["content"][1]["value"] = "x" * sendgrid_rules.MAX_MESSAGE_BYTES
    assert broken_rules(server, request, status=413) == {"message-size"}


def test_a_body_that_is_not_json_is_a_violation(server: FakeSendGrid) -> None:
    request = urllib.request.Request(
        server.url + "/v3/mail/send",
        data=b"{not json",
        headers={"Authorization": f"Bearer {DEFAULT_KEY}"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 400
    assert [v.rule for v in server.take_violations()] == ["json"]


def test_violations_outlive_reset_and_fail_the_test(server: FakeSendGrid) -> None:
    """A 400 the code under test tolerated still fails the test (the fixtures' teardown)."""
    request = body("ada@example.com")
    request["personalizations"][0]["to"][0]["name"] = "Lovelace, Ada"
    refusal(server, request)
    server.reset()
    with pytest.raises(pytest.fail.Exception, match="recipient-name-characters"):
        assert_no_violations(server)
    assert server.take_violations() == []


def test_injected_failures_and_rejected_addresses_are_not_violations(
    server: FakeSendGrid,
) -> None:
    server.fail_next(503)
    server.reject_addresses(["bad@example.net"])
    assert refusal(server, body("ada@example.com")).status_code == 503
    assert refusal(server, body("bad@example.net")).status_code == 400
    assert server.take_violations() == []


def test_violations_are_served_over_http(server: FakeSendGrid) -> None:
    request = body("ada@example.com", categories=["x" * 300])
    refusal(server, request)
    with urllib.request.urlopen(server.url + "/_violations") as response:
        served = json.load(response)
    assert "category-length" in {v["rule"] for v in served}
    assert server.stats()["violations"] == len(served)
    server.take_violations()
