"""Our requests keep SendGrid's rules (finding 9 of the trust issue).

The attack: a stranger signs up with a name containing `,` or `;`. SendGrid's documentation
forbids both in a recipient's name; it answers 202 and then drops the message, so the ledger says
`sent` for mail nobody received. The SendGrid stand-in refuses such a request (and records the
violation), so these tests send a digest, and arbitrary names, through our real backend and
assert that no rule is broken.

`digest/mail_headers.display_name` makes names safe for SendGrid; these tests hold it to that.
"""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from digest import sending
from digest.db import session_scope
from digest.email_backends import Message, Recipient, SendGridBackend, get_backend
from schema.models import Subscriber
from tests.support.planned_rows import plan_rows
from tests.support.sendgrid_server import FakeSendGrid

HOSTILE_NAMES = ["Lovelace, Ada", "Ada; DROP", "a,b;c", "Grace Hopper,"]


def test_digest_to_names_with_comma_or_semicolon_breaks_no_sendgrid_rule(
    sendgrid_env: FakeSendGrid,
) -> None:
    with session_scope() as session:
        planned = plan_rows(session, len(HOSTILE_NAMES))
        ids = session.scalars(
            select(Subscriber.id)
            .where(Subscriber.email.in_(planned.emails))
            .order_by(Subscriber.id)
        ).all()
        for subscriber_id, name in zip(ids, HOSTILE_NAMES, strict=True):
            session.execute(
                update(Subscriber).where(Subscriber.id == subscriber_id).values(name=name)
            )
    outcome = sending.send_batch(planned.batch_ids[0])
    broken = sendgrid_env.take_violations()  # taken here so the expected failure is this assert
    assert [(v.rule, v.field) for v in broken] == []
    assert outcome.status == "sent"
    assert sum(sendgrid_env.addresses().values()) == len(HOSTILE_NAMES)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(name=st.text(min_size=1, max_size=200))
def test_any_recipient_name_breaks_no_sendgrid_rule(sendgrid_env: FakeSendGrid, name: str) -> None:
    message = Message(
        subject="This week's verdicts",
        html="<p>Hi -name-</p>",
        text="Hi -name-",
        recipients=[Recipient(email="ada@example.com", name=name)],
    )
    with contextlib.suppress(Exception):  # a refusal is judged by the recorded violation
        get_backend().send(message)
    broken = sendgrid_env.take_violations()
    assert [(v.rule, v.field) for v in broken] == []


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(url=st.text(min_size=1, max_size=200))
def test_any_unsubscribe_url_gives_the_one_click_pair_on_one_line_each(
    sendgrid_env: FakeSendGrid, url: str
) -> None:
    """A recipient's only headers are the RFC 8058 pair, written from the URL: whatever the URL
    holds, no header line breaks (no header injection) and no SendGrid rule is broken."""
    message = Message(
        subject="s",
        html="h",
        text="t",
        recipients=[Recipient(email="ada@example.com", unsubscribe_url=url)],
    )
    backend = SendGridBackend("key", "http://127.0.0.1:9", "d@x.example")
    headers = backend.request_body(message)["personalizations"][0]["headers"]
    assert list(headers) == ["List-Unsubscribe", "List-Unsubscribe-Post"]
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert not any(ch in headers["List-Unsubscribe"] for ch in "\r\n\x00")
    with contextlib.suppress(Exception):  # a refusal is judged by the recorded violation
        get_backend().send(message)
    assert [(v.rule, v.field) for v in sendgrid_env.take_violations()] == []
