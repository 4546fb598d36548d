"""The tutorial way, as `make bench`'s baseline: one Celery task per recipient, each rendering and
sending its own message through the official `sendgrid` client.

This is how the newsletter tutorials build it (a loop that queues `send_newsletter(subscriber)`;
the task loads the week's content, renders the template for that person, and calls
`SendGridAPIClient.send(Mail(...))`). It runs against the same SendGrid stand-in, database and
machine as the real path, so `bench.dispatch` can print the ratio of the two rates.

The tasks live on their own Celery app and queue (`tutorial`), so they never mix with the
service's workers. Nothing here is used by the service.
"""

from __future__ import annotations

import os
from datetime import datetime

from celery import Celery
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Mail

QUEUE = "tutorial"

app = Celery("bench.tutorial")
app.conf.update(
    broker_url=os.environ.get("DIGEST_BROKER_URL") or "memory://",
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_default_queue=QUEUE,
    worker_hijack_root_logger=False,
)


@app.task(name="tutorial.send_one")
def send_one(subscriber_id: int, since: str, until: str) -> None:
    """One recipient: load them and the week, rank it, render it for them, send it."""
    from digest import tokens
    from digest.collect import collect_comparisons
    from digest.db import session_scope
    from digest.email_backends import fill_tokens
    from digest.plan_items import categories_of
    from digest.ranking import rank_comparisons
    from digest.rendering import Entry, render_weekly
    from digest.settings import get_settings
    from digest.votes import reader_counts
    from schema.models import Subscriber

    settings = get_settings()
    with session_scope() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        if subscriber is None or subscriber.status != "active" or subscriber.paused:
            return
        chosen = collect_comparisons(
            session, datetime.fromisoformat(since), datetime.fromisoformat(until)
        )
        wanted = {c.casefold() for c in subscriber.categories or []}
        mine = [c for c in chosen if not wanted or categories_of(c) & wanted]
        ranked = rank_comparisons(mine, readers=reader_counts(session, mine))
        entries = [Entry(n, r.comparison, r.explanation) for n, r in enumerate(ranked, start=1)]
        if not entries:
            return
        email = render_weekly(entries)
        unsubscribe, preferences = tokens.manage_urls(subscriber.id)
        keys = email.placeholders
        assert keys is not None
        values = keys.values(subscriber.name, unsubscribe, preferences, "")
        address = subscriber.email
    mail = Mail(
        from_email=settings.from_email,
        to_emails=address,
        subject=email.subject,
        html_content=fill_tokens(email.html, values),
        plain_text_content=fill_tokens(email.text, values),
    )
    client = SendGridAPIClient(os.environ["SENDGRID_API_KEY"], host=settings.sendgrid_host)
    client.send(mail)
