"""Sending planned batches: the request, the ledger, every SendGrid answer, operators' decisions.

Real PostgreSQL, the fake SendGrid over real HTTP through the official client; `send_batch` is
called directly here (tests/test_worker_dispatch.py runs it in a real Celery worker).
"""

from __future__ import annotations

import json
import socket
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from digest import operations, sending, tokens
from digest.batch_ledger import claim
from digest.cli import app as cli
from digest.db import reset_caches, session_scope
from digest.email_backends import Message, Recipient, SendGridBackend, get_backend
from digest.ledger_counts import count_by_status
from digest.settings import get_settings
from digest.substitution import greeting_name
from schema.models import Delivery, DeliveryBatch, Digest, utcnow
from tests.support.planned_rows import KEYS, PlannedDigest, plan_rows
from tests.support.sendgrid_server import DEFAULT_KEY, FakeSendGrid
from tests.support.services import read_outbox
from workers.app import VISIBILITY_TIMEOUT

runner = CliRunner()


def plan(recipients: int, **kwargs: object) -> PlannedDigest:
    with session_scope() as session:
        return plan_rows(session, recipients, **kwargs)


def drain(batch_ids: list[int]) -> list[sending.SendOutcome]:
    """What a worker does with the outcomes: retry, enqueue split halves, until all settle."""
    queue, outcomes = deque(batch_ids), []
    while queue:
        batch_id = queue.popleft()
        outcome = sending.send_batch(batch_id)
        outcomes.append(outcome)
        queue.extend(outcome.enqueue)
        if outcome.retry_in is not None:
            queue.append(batch_id)
    return outcomes


def send_until_settled(batch_id: int) -> sending.SendOutcome:
    """One worker's view of a batch: sent again at once while SendGrid did not take it (eight
    requests at once may find the stand-in's listen queue full on a busy machine)."""
    outcome = sending.send_batch(batch_id)
    while outcome.status == sending.SendStatus.RETRY:
        outcome = sending.send_batch(batch_id)
    return outcome


def batch(batch_id: int) -> DeliveryBatch:
    with session_scope() as session:
        return session.get(DeliveryBatch, batch_id)


def digest(digest_id: int) -> Digest:
    with session_scope() as session:
        return session.get(Digest, digest_id)


def deliveries(digest_id: int) -> Counter[str]:
    """The digest's deliveries by status, as every reader counts them (a pending delivery of a
    sent batch was sent: digest.ledger_counts)."""
    with session_scope() as session:
        return +count_by_status(session, Delivery, digest_id)


def status(digest_id: int) -> dict:
    with session_scope() as session:
        return operations.digest_status(session, digest_id)


# --- the request ----------------------------------------------------------------------------


def test_one_request_carries_shared_content_and_a_personalization_per_recipient(
    sendgrid_env: FakeSendGrid,
) -> None:
    planned = plan(3)
    assert sending.send_batch(planned.batch_ids[0]).status == "sent"
    [request] = sendgrid_env.received()
    assert request["subject"] == digest(planned.digest_id).subject
    assert [c["type"] for c in request["content"]] == ["text/plain", "text/html"]
    assert KEYS.name in request["content"][1]["value"]  # filled per recipient by SendGrid
    assert request["categories"] == ["weekly-digest", f"digest-{planned.digest_id}"]
    assert [p["to"][0]["email"] for p in request["personalizations"]] == planned.emails


def test_personalization_fills_name_links_and_one_click_unsubscribe_headers(
    sendgrid_env: FakeSendGrid,
) -> None:
    planned = plan(2)
    sending.send_batch(planned.batch_ids[0])
    with session_scope() as session:
        rows = session.execute(
            select(Delivery.id, Delivery.subscriber_id).order_by(Delivery.id)
        ).all()
    first, second = sendgrid_env.received()[0]["personalizations"]
    assert first["substitutions"][KEYS.name] == "there"  # subscriber 0 gave no name
    assert second["substitutions"][KEYS.name] == "Reader 1"
    delivery_id, subscriber_id = rows[1]
    unsubscribe = tokens.unsubscribe_url(subscriber_id)
    assert second["substitutions"][KEYS.unsubscribe_url] == unsubscribe
    assert second["substitutions"][KEYS.preferences_url] == tokens.preferences_url(subscriber_id)
    assert second["headers"] == {
        "List-Unsubscribe": f"<{unsubscribe}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert second["custom_args"] == {
        "digest_id": str(planned.digest_id),
        "delivery_id": str(delivery_id),
    }


def test_names_lose_markup_before_substitution() -> None:
    assert greeting_name('<b>Ada</b> "&" Co') == "bAda/b Co"
    assert greeting_name("  \r\n ") == "there"


def test_outbox_backend_writes_the_same_messages_as_eml_files(pg: str, outbox) -> None:
    planned = plan(3)
    assert sending.send_batch(planned.batch_ids[0]).status == "sent"
    messages = read_outbox(outbox)
    assert sorted(str(m["To"]).rsplit("<", 1)[-1].rstrip(">") for m in messages) == sorted(
        planned.emails
    )
    named = next(m for m in messages if "Reader 1" in str(m["To"]))
    text = named.get_body(("plain",)).get_content()
    assert text.startswith("Hi Reader 1,")
    assert KEYS.unsubscribe_url not in text
    assert named["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert str(named["List-Unsubscribe"]).strip().startswith("<http://testserver/unsubscribe/")


# --- the ledger -----------------------------------------------------------------------------


def test_sent_batch_records_message_id_and_its_deliveries_are_sent(
    sendgrid_env: FakeSendGrid,
) -> None:
    planned = plan(5)
    outcome = sending.send_batch(planned.batch_ids[0])
    sent = batch(planned.batch_ids[0])
    assert (sent.status, sent.attempts, sent.message_id) == ("sent", 1, outcome.message_id)
    assert sent.message_id == sendgrid_env.received()[0]["_message_id"]
    assert deliveries(planned.digest_id) == {"sent": 5}


def test_last_batch_sent_finishes_the_digest(sendgrid_env: FakeSendGrid) -> None:
    planned = plan(5, batch_size=2)
    sending.send_batch(planned.batch_ids[0])
    assert digest(planned.digest_id).status == "sending"
    drain(planned.batch_ids[1:])
    finished = digest(planned.digest_id)
    assert finished.status == "sent"
    assert finished.finished_at is not None
    assert finished.status_reason == "5 delivered to SendGrid"


def test_batches_finishing_together_still_finish_their_digest(sendgrid_env: FakeSendGrid) -> None:
    """The last batches sent at the same moment by different workers: whichever looks last
    sees no batch open and closes the digest (the unlocked look in `sending._finish`)."""
    for round_ in range(3):
        planned = plan(8, batch_size=1, prefix=f"round{round_}-")
        with ThreadPoolExecutor(max_workers=8) as pool:
            outcomes = list(pool.map(send_until_settled, planned.batch_ids))
        assert [o.status for o in outcomes] == ["sent"] * 8
        finished = digest(planned.digest_id)
        assert (finished.status, finished.status_reason) == ("sent", "8 delivered to SendGrid")


def test_a_second_run_of_the_same_batch_sends_nothing(sendgrid_env: FakeSendGrid) -> None:
    planned = plan(4)
    sending.send_batch(planned.batch_ids[0])
    again = sending.send_batch(planned.batch_ids[0])
    assert (again.status, again.detail) == ("skipped", "batch already sent")
    assert sendgrid_env.stats()["requests"] == 1
    assert batch(planned.batch_ids[0]).attempts == 1


def test_batch_of_a_digest_not_yet_sending_is_not_claimed(sendgrid_env: FakeSendGrid) -> None:
    planned = plan(2, status="planned")
    outcome = sending.send_batch(planned.batch_ids[0])
    assert (outcome.status, outcome.detail) == ("skipped", "digest is planned")
    assert batch(planned.batch_ids[0]).status == "pending"
    assert sendgrid_env.stats()["requests"] == 0


# --- SendGrid's answers -----------------------------------------------------------------------


def test_429_releases_the_claim_and_retries_after_rate_limit_reset(
    sendgrid_env: FakeSendGrid,
) -> None:
    planned = plan(3)
    sendgrid_env.fail_next(429, reset_in=1.5)
    outcome = sending.send_batch(planned.batch_ids[0])
    assert outcome.status == "retry"
    assert outcome.retry_in is not None and outcome.retry_in >= 1.0
    released = batch(planned.batch_ids[0])
    assert (released.status, released.attempts) == ("pending", 1)
    assert "429" in released.error


def test_500_then_success_sends_each_recipient_exactly_once(sendgrid_env: FakeSendGrid) -> None:
    planned = plan(30, batch_size=10)
    sendgrid_env.fail_next(500, count=2)
    sendgrid_env.fail_next(429, count=1, reset_in=0)
    outcomes = drain(planned.batch_ids)
    assert [o.status for o in outcomes].count("retry") == 3
    assert sendgrid_env.addresses() == Counter(planned.emails)
    assert deliveries(planned.digest_id) == {"sent": 30}
    assert digest(planned.digest_id).status == "sent"


def test_refused_connection_is_retried_not_ambiguous(
    sendgrid_env: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("DIGEST_SENDGRID_HOST", f"http://127.0.0.1:{port}")
    reset_caches()
    planned = plan(2)
    outcome = sending.send_batch(planned.batch_ids[0])
    assert outcome.status == "retry"
    assert "unreachable" in outcome.detail
    assert batch(planned.batch_ids[0]).status == "pending"


def test_retries_stop_after_max_attempts_and_fail_the_batch(sendgrid_env: FakeSendGrid) -> None:
    planned = plan(2)
    sendgrid_env.fail_next(503, count=10)
    outcomes = drain(planned.batch_ids)
    assert [o.status for o in outcomes] == ["retry", "retry", "retry", "failed"]
    failed = batch(planned.batch_ids[0])
    assert (failed.status, failed.attempts) == ("failed", 4)
    assert failed.error.startswith("gave up after 4 attempts")
    assert deliveries(planned.digest_id) == {"failed": 2}
    assert digest(planned.digest_id).status == "failed"


def test_timeout_leaves_the_batch_ambiguous_and_status_lists_it(
    sendgrid_env: FakeSendGrid,
) -> None:
    planned = plan(4, batch_size=2)
    sendgrid_env.stall_next(2.0)  # past the 1 s client timeout; SendGrid took it
    outcomes = drain(planned.batch_ids)
    assert [o.status for o in outcomes] == ["ambiguous", "sent"]
    report = status(planned.digest_id)
    assert report["batches"]["ambiguous"] == 1
    assert report["ambiguous"] == [
        {
            "batch_id": planned.batch_ids[0],
            "seq": 1,
            "recipients": 2,
            "attempts": 1,
            "claimed_at": report["ambiguous"][0]["claimed_at"],
            "error": report["ambiguous"][0]["error"],
        }
    ]
    assert "no answer" in report["ambiguous"][0]["error"]
    assert report["deliveries"]["pending"] == 2
    assert report["status"] == "sent"
    assert "1 batch(es) ambiguous" in report["status_reason"]
    assert sending.send_batch(planned.batch_ids[0]).status == "skipped"  # never resent alone
    assert sum(sendgrid_env.addresses().values()) == 4


def test_413_splits_the_batch_and_both_halves_are_sent(sendgrid_env: FakeSendGrid) -> None:
    planned = plan(8)
    with session_scope() as session:  # a limit that 8 recipients exceed and 4 fit under
        claimed = claim(session, planned.batch_ids[0])  # built under a claim, so: rolled back
        assert claimed is not None
        message = sending.build_message(session, claimed)
        session.rollback()
    backend = get_backend()
    whole = len(backend.encoded_body(message))
    message.recipients = message.recipients[:4]
    half = len(backend.encoded_body(message))
    sendgrid_env.set_max_bytes((whole + half) // 2)
    first = sending.send_batch(planned.batch_ids[0])
    assert first.status == "split"
    original, new = first.enqueue
    assert original == planned.batch_ids[0]
    assert (batch(original).size, batch(new).size) == (4, 4)
    assert (batch(original).status, batch(new).status) == ("pending", "pending")
    drain(first.enqueue)
    assert sendgrid_env.addresses() == Counter(planned.emails)
    assert deliveries(planned.digest_id) == {"sent": 8}
    assert digest(planned.digest_id).status == "sent"


def test_400_naming_addresses_fails_them_and_sends_the_rest(sendgrid_env: FakeSendGrid) -> None:
    planned = plan(5)
    bad = [planned.emails[1], planned.emails[3]]
    sendgrid_env.reject_addresses(bad)
    outcome = sending.send_batch(planned.batch_ids[0])
    assert outcome.status == "sent"
    assert sendgrid_env.addresses() == Counter(e for e in planned.emails if e not in bad)
    with session_scope() as session:
        failed = dict(
            session.execute(
                select(Delivery.email, Delivery.error).where(Delivery.status == "failed")
            ).all()
        )
    assert failed == {a: f"rejected by SendGrid: Invalid email address {a}" for a in bad}
    assert digest(planned.digest_id).status_reason == "3 delivered to SendGrid; 2 failed"


def test_401_pauses_the_digest_and_leaves_its_batches_pending(
    sendgrid_env: FakeSendGrid,
) -> None:
    planned = plan(6, batch_size=2)
    sendgrid_env.fail_next(401)
    outcome = sending.send_batch(planned.batch_ids[0])
    assert (outcome.status, outcome.retry_in) == ("paused", None)
    paused = digest(planned.digest_id)
    assert paused.status == "paused"
    assert "401" in paused.status_reason and "SENDGRID_API_KEY" in paused.status_reason
    assert sending.send_batch(planned.batch_ids[1]).status == "skipped"
    assert [batch(b).status for b in planned.batch_ids] == ["pending"] * 3
    assert sendgrid_env.stats()["requests"] == 1


def test_resume_sends_the_batches_a_paused_digest_left(sendgrid_env: FakeSendGrid) -> None:
    planned = plan(4, batch_size=2)
    sendgrid_env.fail_next(403)
    sending.send_batch(planned.batch_ids[0])
    with session_scope() as session:
        resumed = operations.resume_digest(session, planned.digest_id)
    assert resumed["enqueue"] == planned.batch_ids
    drain(resumed["enqueue"])
    assert digest(planned.digest_id).status == "sent"
    assert sendgrid_env.addresses() == Counter(planned.emails)


# --- cancel -----------------------------------------------------------------------------------


def test_cancel_marks_pending_batches_and_their_deliveries_cancelled(
    sendgrid_env: FakeSendGrid,
) -> None:
    planned = plan(6, batch_size=2)
    sending.send_batch(planned.batch_ids[0])
    with session_scope() as session:
        result = operations.cancel_digest(session, planned.digest_id)
    assert (result["batches_cancelled"], result["deliveries_cancelled"]) == (2, 4)
    assert digest(planned.digest_id).status == "cancelled"
    assert deliveries(planned.digest_id) == {"sent": 2, "cancelled": 4}
    assert sending.send_batch(planned.batch_ids[1]).status == "skipped"
    assert sendgrid_env.stats()["requests"] == 1


def test_batch_released_for_retry_after_cancel_is_cancelled_not_sent(
    sendgrid_env: FakeSendGrid,
) -> None:
    planned = plan(2)
    sendgrid_env.fail_next(500)
    assert sending.send_batch(planned.batch_ids[0]).status == "retry"
    with session_scope() as session:
        session.execute(update(Digest).values(status="cancelled"))  # cancel raced the retry
    assert sending.send_batch(planned.batch_ids[0]).status == "cancelled"
    assert deliveries(planned.digest_id) == {"cancelled": 2}


def test_cancel_while_a_refused_request_was_out_cancels_the_batch(
    sendgrid_env: FakeSendGrid,
) -> None:
    planned = plan(2)
    sendgrid_env.fail_next(500)
    sendgrid_env.delay_each(0.3)  # well under the 1 s client timeout
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(sending.send_batch, planned.batch_ids[0])
        deadline = time.monotonic() + 5
        while batch(planned.batch_ids[0]).status != "sending" and time.monotonic() < deadline:
            time.sleep(0.02)
        with session_scope() as session:
            assert operations.cancel_digest(session, planned.digest_id)["batches_in_flight"] == 1
        outcome = running.result(timeout=10)
    assert outcome.status == "cancelled"
    assert batch(planned.batch_ids[0]).status == "cancelled"
    assert deliveries(planned.digest_id) == {"cancelled": 2}


def test_cancelling_a_sent_digest_is_refused(sendgrid_env: FakeSendGrid) -> None:
    planned = plan(1)
    drain(planned.batch_ids)
    with session_scope() as session, pytest.raises(operations.OperationRefused, match="sent"):
        operations.cancel_digest(session, planned.digest_id)


# --- ambiguity: the reaper and the operator's decisions -------------------------------------


def make_ambiguous(fake: FakeSendGrid, recipients: int = 4, batch_size: int = 2) -> PlannedDigest:
    planned = plan(recipients, batch_size=batch_size)
    fake.stall_next(2.0)
    drain(planned.batch_ids)
    assert batch(planned.batch_ids[0]).status == "ambiguous"
    return planned


def test_reaper_makes_a_batch_left_sending_by_a_lost_worker_ambiguous(pg: str) -> None:
    planned = plan(4, batch_size=2)
    with session_scope() as session:  # a worker claimed both, then died during one request
        session.execute(
            update(DeliveryBatch).values(status="sending", claimed_at=utcnow() - timedelta(hours=1))
        )
        session.execute(
            update(DeliveryBatch)
            .where(DeliveryBatch.id == planned.batch_ids[1])
            .values(claimed_at=utcnow())
        )
    assert status(planned.digest_id)["stale_sending"] == 1  # seen before the reaper runs
    with session_scope() as session:
        reaped = operations.reap_stale_claims(session, get_settings().send_claim_timeout)
    assert reaped == [planned.batch_ids[0]]
    assert status(planned.digest_id)["stale_sending"] == 0
    assert [batch(b).status for b in planned.batch_ids] == ["ambiguous", "sending"]


def test_orphaned_pending_batches_are_requeued_once_per_period(pg: str) -> None:
    planned = plan(4, batch_size=2)
    with session_scope() as session:
        session.execute(update(Digest).values(started_at=utcnow() - timedelta(hours=5)))
        session.execute(
            update(DeliveryBatch)
            .where(DeliveryBatch.id == planned.batch_ids[1])
            .values(claimed_at=utcnow())
        )
        assert operations.requeue_orphaned_batches(session, 3600) == [planned.batch_ids[0]]
        assert operations.requeue_orphaned_batches(session, 3600) == []  # not again right away


def test_resend_decision_sends_the_ambiguous_batch_again(sendgrid_env: FakeSendGrid) -> None:
    planned = make_ambiguous(sendgrid_env)
    with session_scope() as session:
        result = operations.resend_ambiguous(session, "resend", digest_id=planned.digest_id)
    assert result["enqueue"] == [planned.batch_ids[0]]
    assert digest(planned.digest_id).status == "sending"
    drain(result["enqueue"])
    assert digest(planned.digest_id).status == "sent"
    # The stalled request had been accepted: the operator chose to risk this duplicate.
    assert sendgrid_env.stats()["duplicates"] == 2


def test_mark_sent_decision_closes_the_batch_without_a_request(
    sendgrid_env: FakeSendGrid,
) -> None:
    planned = make_ambiguous(sendgrid_env)
    requests = sendgrid_env.stats()["requests"]
    with session_scope() as session:
        operations.resend_ambiguous(session, "mark-sent", batch_id=planned.batch_ids[0])
    assert batch(planned.batch_ids[0]).status == "sent"
    assert deliveries(planned.digest_id) == {"sent": 4}
    assert digest(planned.digest_id).status_reason == "4 delivered to SendGrid"
    assert sendgrid_env.stats()["requests"] == requests


def test_mark_failed_decision_fails_the_batch_deliveries(sendgrid_env: FakeSendGrid) -> None:
    planned = make_ambiguous(sendgrid_env)
    with session_scope() as session:
        operations.resend_ambiguous(session, "mark-failed", digest_id=planned.digest_id)
    assert batch(planned.batch_ids[0]).status == "failed"
    assert deliveries(planned.digest_id) == {"sent": 2, "failed": 2}


def test_decision_without_ambiguous_batches_is_refused(sendgrid_env: FakeSendGrid) -> None:
    planned = plan(2)
    with session_scope() as session, pytest.raises(operations.OperationRefused, match="no amb"):
        operations.resend_ambiguous(session, "resend", digest_id=planned.digest_id)


# --- retry timing -----------------------------------------------------------------------------


def test_retry_delay_doubles_with_jitter_and_stays_under_the_cap(pg: str) -> None:
    settings = get_settings().model_copy(
        update={"send_retry_base_delay": 4.0, "send_retry_max_delay": 60.0}
    )
    for attempt, step in ((1, 4.0), (2, 8.0), (3, 16.0), (8, 60.0)):
        delays = [sending.retry_delay(attempt, None, settings) for _ in range(200)]
        assert step / 2 <= min(delays) and max(delays) <= step
        assert max(delays) - min(delays) > step / 10  # jittered, not fixed
    assert 30 <= sending.retry_delay(1, 30.0, settings) <= 34  # waits for X-RateLimit-Reset
    assert sending.retry_delay(1, 3600.0, settings) == 60.0


def test_no_retry_delay_can_outlast_the_broker_visibility_timeout(pg: str) -> None:
    settings = get_settings()
    assert settings.send_retry_max_delay + settings.sendgrid_timeout < VISIBILITY_TIMEOUT
    assert type(settings).model_fields["send_retry_max_delay"].metadata[-1].le < VISIBILITY_TIMEOUT


# --- the CLI --------------------------------------------------------------------------------


def test_status_command_prints_json_with_counts_and_ambiguous_batches(
    sendgrid_env: FakeSendGrid,
) -> None:
    planned = make_ambiguous(sendgrid_env)
    result = runner.invoke(cli, ["status", str(planned.digest_id), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["batches"]["sent"] == 1
    assert [b["batch_id"] for b in report["ambiguous"]] == [planned.batch_ids[0]]


def test_status_command_lists_recent_digests(sendgrid_env: FakeSendGrid) -> None:
    first, second = plan(2), plan(3, prefix="other")
    result = runner.invoke(cli, ["status", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)["digests"]
    assert [(d["id"], d["recipients"]) for d in listed] == [
        (second.digest_id, 3),
        (first.digest_id, 2),
    ]
    table = runner.invoke(cli, ["status"])
    assert table.exit_code == 0 and f"{second.digest_id}" in table.output


def test_cancel_command_stops_a_digest(sendgrid_env: FakeSendGrid) -> None:
    planned = plan(4, batch_size=2)
    result = runner.invoke(cli, ["cancel", str(planned.digest_id)])
    assert result.exit_code == 0, result.output
    assert "2 batch(es)" in result.output
    assert digest(planned.digest_id).status == "cancelled"


def test_cancel_command_names_an_unknown_digest(sendgrid_env: FakeSendGrid) -> None:
    result = runner.invoke(cli, ["cancel", "999"])
    assert result.exit_code == 1
    assert "no digest with id 999" in result.output


def test_resend_ambiguous_command_needs_exactly_one_decision(
    sendgrid_env: FakeSendGrid,
) -> None:
    planned = make_ambiguous(sendgrid_env)
    result = runner.invoke(cli, ["resend-ambiguous", str(planned.digest_id)])
    assert result.exit_code == 2
    assert "--resend, --mark-sent or --mark-failed" in result.output
    assert str(planned.batch_ids[0]) in result.output  # lists what there is to decide


def test_resend_ambiguous_command_resends_through_the_task(sendgrid_env: FakeSendGrid) -> None:
    planned = make_ambiguous(sendgrid_env)
    before = sendgrid_env.stats()["requests"]
    result = runner.invoke(cli, ["resend-ambiguous", str(planned.digest_id), "--resend"])
    assert result.exit_code == 0, result.output
    deadline = time.monotonic() + 10  # the embedded default runs the task in-process
    while batch(planned.batch_ids[0]).status != "sent" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert batch(planned.batch_ids[0]).status == "sent"
    assert sendgrid_env.stats()["requests"] == before + 1


def test_resend_ambiguous_command_marks_sent(sendgrid_env: FakeSendGrid) -> None:
    planned = make_ambiguous(sendgrid_env)
    result = runner.invoke(cli, ["resend-ambiguous", str(planned.digest_id), "--mark-sent"])
    assert result.exit_code == 0, result.output
    assert batch(planned.batch_ids[0]).status == "sent"


# --- the embedded default ---------------------------------------------------------------------


def test_without_a_broker_the_task_sends_in_process_on_sqlite_and_retries(
    sqlite: str, fake_sendgrid: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers.tasks import app as celery_app
    from workers.tasks import send_batch

    for name, value in {
        "DIGEST_EMAIL_BACKEND": "sendgrid",
        "DIGEST_SENDGRID_HOST": fake_sendgrid.url,
        "SENDGRID_API_KEY": DEFAULT_KEY,
        "DIGEST_SEND_RETRY_BASE_DELAY": "0.1",
    }.items():
        monkeypatch.setenv(name, value)
    reset_caches()
    assert celery_app.conf.task_always_eager
    planned = plan(3, batch_size=2)
    fake_sendgrid.fail_next(500)
    for batch_id in planned.batch_ids:
        send_batch.delay(batch_id)
    assert digest(planned.digest_id).status == "sent"
    assert fake_sendgrid.addresses() == Counter(planned.emails)
    assert fake_sendgrid.stats()["statuses"] == {"202": 2, "500": 1}
    with session_scope() as session:
        assert operations.digest_status(session, planned.digest_id)["deliveries"]["sent"] == 3


def test_the_request_body_is_the_same_json_as_the_stdlib_would_send() -> None:
    """orjson encodes the body (README Benchmarks); the document is the client's own."""
    backend = SendGridBackend("SG.test", "http://127.0.0.1:9", "news@example.com")
    message = Message(
        subject="Week 48 · “Ship” or skip",
        html="<p>Hi -n-abc-</p>",
        text="Hi -n-abc-",
        recipients=[Recipient(email="ada@example.com", substitutions={"-n-abc-": "Ada"})],
        custom_args={"digest_id": "7"},
    )
    assert json.loads(backend.encoded_body(message)) == backend.request_body(message)


def test_a_body_orjson_refuses_is_encoded_the_stdlib_way() -> None:
    """A lone surrogate (which no validated field should carry) still makes a request."""
    backend = SendGridBackend("SG.test", "http://127.0.0.1:9", "news@example.com")
    message = Message(
        subject="broken \ud800 subject",
        html="<p>x</p>",
        text="x",
        recipients=[Recipient(email="ada@example.com")],
    )
    assert backend.encoded_body(message) == json.dumps(backend.request_body(message)).encode()


def test_the_clients_debug_log_names_the_body_size_and_no_recipient(
    sendgrid_env: FakeSendGrid, caplog: pytest.LogCaptureFixture
) -> None:
    """python-http-client logs `PAYLOAD: …` at DEBUG: it sees the body's size, never the
    addresses and signed links in it (and formatting 600 KB per batch cost a tenth of a
    worker's CPU)."""
    planned = plan(3)
    with caplog.at_level("DEBUG", logger="python_http_client"):
        assert sending.send_batch(planned.batch_ids[0]).status == "sent"
    [payload] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("PAYLOAD")]
    assert payload.startswith("PAYLOAD: <") and payload.endswith(" bytes of JSON>")
    logged = caplog.text
    assert not [address for address in planned.emails if address in logged]
    assert "/unsubscribe/" not in logged
