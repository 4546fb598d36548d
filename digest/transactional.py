"""One-off emails to one subscriber: confirmation, welcome, goodbye, data link.

Each function takes a subscriber id, re-reads the row (the state may have changed since the task
was queued) and sends only if the email still makes sense: a confirmation to a pending address,
a welcome to an active one, a goodbye to one that just left — never to a suppressed address.
Rendering lives in `digest.rendering`; the backend is `digest.email_backends.get_backend()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from digest import tokens
from digest.addresses import is_suppressed
from digest.db import session_scope
from digest.email_backends import Message, Recipient, SendResult, get_backend
from digest.rendering import (
    render_confirmation,
    render_data_link,
    render_goodbye,
    render_welcome,
)
from digest.settings import get_settings
from digest.signup_cycles import current_cycle
from schema.models import Subscriber
from schema.statuses import SubscriberStatus


class Rendered(Protocol):
    """What `digest.rendering` returns (RenderedEmail): the parts an email needs."""

    subject: str
    html: str
    text: str


@dataclass(frozen=True)
class Addressee:
    """The few fields an email needs, read in a short session that closes before sending."""

    id: int
    email: str
    name: str | None


def _addressee(subscriber_id: int, status: SubscriberStatus) -> Addressee | None:
    """The subscriber if it is in `status` and its address is not suppressed."""
    with session_scope() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        if subscriber is None or subscriber.status != status:
            return None
        if is_suppressed(session, subscriber.email):
            return None
        return Addressee(subscriber.id, subscriber.email, subscriber.name)


def _send(to: Addressee, rendered: Rendered, kind: str, *, list_headers: bool) -> SendResult:
    """One message to one recipient, rendered with its real values: no substitutions at all,
    so nothing the recipient (or a stranger signing them up) typed is ever substituted raw."""
    # RFC 2369 + RFC 8058 one-click list headers, for mail sent to a subscribed address only
    unsubscribe = tokens.unsubscribe_url(to.id) if list_headers else None
    message = Message(
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        recipients=[
            Recipient(
                email=to.email,
                name=to.name,
                custom_args={"kind": kind, "subscriber_id": str(to.id)},
                unsubscribe_url=unsubscribe,
            )
        ],
        categories=[kind],
    )
    return get_backend().send(message)


def send_confirmation(subscriber_id: int) -> bool:
    """The double opt-in email with the signed, expiring confirm link. False if not sent.

    No List-Unsubscribe header: the address is not subscribed to anything yet.
    """

    to = _addressee(subscriber_id, SubscriberStatus.PENDING)
    if to is None:
        return False
    with session_scope() as session:  # the link names the signup cycle it belongs to
        cycle = current_cycle(session, subscriber_id)
    if cycle is None:
        return False
    rendered = render_confirmation(name=to.name, confirm_url=tokens.confirm_url(to.id, cycle))
    _send(to, rendered, "confirmation", list_headers=False)
    return True


def send_welcome(subscriber_id: int) -> bool:
    """The first email after confirming, with working unsubscribe and preferences links."""

    to = _addressee(subscriber_id, SubscriberStatus.ACTIVE)
    if to is None:
        return False
    rendered = render_welcome(
        name=to.name,
        unsubscribe_url=tokens.unsubscribe_url(to.id),
        preferences_url=tokens.preferences_url(to.id),
    )
    _send(to, rendered, "welcome", list_headers=True)
    return True


def send_goodbye(subscriber_id: int) -> bool:
    """A short note confirming the unsubscribe; the only mail an unsubscribed address gets."""

    to = _addressee(subscriber_id, SubscriberStatus.UNSUBSCRIBED)
    if to is None:
        return False
    _send(to, render_goodbye(name=to.name), "goodbye", list_headers=False)
    return True


def send_data_link(subscriber_id: int) -> bool:
    """A fresh, expiring link to export or delete one's data, sent only to the address itself.

    Whoever holds a manage link (it is in every email, and emails get forwarded) can ask for
    it; only the mailbox owner receives it. Any status but deleted may ask (an unsubscribed
    person still has data); never to a suppressed address. No List-Unsubscribe header.
    """
    with session_scope() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        if subscriber is None or subscriber.status == SubscriberStatus.DELETED:
            return False
        if is_suppressed(session, subscriber.email):
            return False
        to = Addressee(subscriber.id, subscriber.email, subscriber.name)
    rendered = render_data_link(
        name=to.name,
        data_url=tokens.data_url(to.id, to.email),
        minutes=get_settings().data_link_minutes,
    )
    _send(to, rendered, "data_link", list_headers=False)
    return True
