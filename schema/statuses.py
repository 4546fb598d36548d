"""Every status, kind and outcome a row can hold, as `StrEnum`s shared by models, code and tests.

Each member equals its string (`DigestStatus.SENT == "sent"`), so the database stores plain text
and the check constraints list the same values; a typo (`DigestStatus.SNET`) fails at import
instead of passing every check.
"""

from __future__ import annotations

from enum import StrEnum


class SubscriberStatus(StrEnum):
    PENDING = "pending"  # signed up, not confirmed: never mailed a digest
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    DELETED = "deleted"  # erased: the row is anonymised, a hashed suppression remains


class Frequency(StrEnum):
    WEEKLY = "weekly"  # the weekly digest
    EVERY = "every"  # an alert for every comparison as it is published


class SuppressionReason(StrEnum):
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    DELETED = "deleted"


class DigestKind(StrEnum):
    WEEKLY = "weekly"
    ADHOC = "adhoc"
    ALERT = "alert"
    TEST = "test"  # one test copy to one address (`digest send --to`)


class DigestStatus(StrEnum):
    PLANNED = "planned"
    SENDING = "sending"
    SENT = "sent"
    CANCELLED = "cancelled"
    FAILED = "failed"
    PAUSED = "paused"  # SendGrid refused the API key: an operator resumes


class BatchStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"  # claimed: a request is (or was) in flight
    SENT = "sent"
    FAILED = "failed"
    AMBIGUOUS = "ambiguous"  # SendGrid may have accepted it: an operator decides
    CANCELLED = "cancelled"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # the reader left between planning and the batch's request


class VerdictLabel(StrEnum):
    SHIP = "Ship"
    MIXED = "Mixed"
    SKIP = "Skip"


class Persona(StrEnum):
    BUILDER = "Builder"
    SKEPTIC = "Skeptic"
    FUTURIST = "Futurist"
    FOUNDER = "Founder"
    CREATOR = "Creator"


class ListImportStatus(StrEnum):
    QUEUED = "queued"  # uploaded and stored; its task not yet started (or the broker was down)
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  # the file could not be read on (a CSV error): the reason says where
