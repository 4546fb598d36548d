"""Every setting of the service, in one place.

Names are a public contract (README, docker-compose.yml, Procfile): `DIGEST_*` variables, plus
`SENDGRID_API_KEY` as SendGrid's own tools name it. A `.env` file in the working directory is read
too.

Safe by default: with no `DIGEST_ENV` the service assumes production, and production refuses to
start (naming the setting) without secrets of at least 32 characters that are not a known
placeholder, and without `DIGEST_PUBLIC_URL`. Only `DIGEST_ENV=development` or `test` allows the
development defaults (a fixed, clearly named signing key; links to http://127.0.0.1:8000).
"""

from __future__ import annotations

import json
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from digest.cron import parse_cron
from digest.substitution import is_attribute_safe_url

DEV_SECRET_KEY = "dev-only-secret-key-do-not-use-in-production"
DEV_PUBLIC_URL = "http://127.0.0.1:8000"
SECRET_MIN_LENGTH = 32
# Values people paste from examples and docs; a secret containing one of these is not a secret.
PLACEHOLDER_FRAGMENTS = (
    "change-me",
    "changeme",
    "change_me",
    "replace-me",
    "your-secret",
    "secret-key-here",
    "xxxxx",
    "example",
    "dev-only",
    "do-not-use",
)


class ConfigurationError(RuntimeError):
    """Raised at start-up when the settings cannot run the service safely."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DIGEST_", env_file=".env", extra="ignore", populate_by_name=True
    )

    env: Literal["development", "production", "test"] = "production"

    # Storage and infrastructure
    database_url: str = "sqlite:///./var/digest.db"
    # Connections each process keeps open to PostgreSQL, and extra ones opened (and closed again)
    # under bursts: size the pool for the threads that use it, or connect/close churn costs CPU.
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_max_overflow: int = Field(default=10, ge=0, le=200)
    broker_url: str = ""  # empty: tasks run in-process (embedded default)
    redis_url: str = ""  # rate limits, beat lock, health; empty: in-process equivalents

    # Email
    email_backend: Literal["outbox", "sendgrid"] = "outbox"
    outbox_dir: Path = Path("./var/outbox")
    sendgrid_api_key: str = Field(
        default="", validation_alias=AliasChoices("SENDGRID_API_KEY", "sendgrid_api_key")
    )
    sendgrid_host: str = "https://api.sendgrid.com"
    sendgrid_timeout: float = Field(default=30.0, gt=0)  # seconds per /v3/mail/send request
    # Sending (digest/sending.py). Retries: base * 2**(attempt-1), capped, with jitter; the cap
    # stays well under the broker's visibility timeout (workers/app.py) so no waiting retry is
    # ever redelivered as a duplicate.
    send_max_attempts: int = Field(default=8, ge=1, le=50)  # claims of one batch before failing
    send_retry_base_delay: float = Field(default=5.0, ge=0)  # seconds before the first retry
    send_retry_max_delay: float = Field(default=900.0, ge=0, le=3600)  # cap on any retry delay
    # A batch still `sending` this long after its claim lost its worker mid-request: ambiguous.
    send_claim_timeout: float = Field(default=180.0, gt=0)
    # A `pending` batch of a sending digest untouched this long has lost its task: re-enqueue.
    send_orphan_after: float = Field(default=3 * 3600.0, gt=0)
    send_reap_interval: float = Field(default=60.0, gt=0)  # seconds between reaper runs
    # A digest still `planned` this long after it was requested lost its planning task (broker
    # restarted empty, worker lost): beat queues it again. Planning a digest twice is a no-op.
    plan_requeue_after: float = Field(default=90.0, gt=0)
    # Seconds before Redis hands an unacknowledged task (its worker died) to another worker.
    # Longer than any retry delay: a task waiting for its countdown is held unacknowledged.
    visibility_timeout: float = Field(default=2 * 3600.0, gt=0)
    sendgrid_webhook_public_key: str = ""
    webhook_max_age: int = 600  # seconds; 0 turns the age check off
    webhook_max_future: int = 300  # seconds a signed timestamp may run ahead of our clock
    webhook_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)  # larger bodies get 413
    # A stored webhook body still unprocessed this long lost its task: beat queues it again.
    webhook_requeue_after: float = Field(default=300.0, gt=0)
    # Raw webhook bodies hold addresses: deleted this many hours after processing (0 = at the
    # next prune, every DIGEST_WEBHOOK_PRUNE_INTERVAL seconds).
    webhook_body_retention_hours: float = Field(default=24.0, ge=0)
    webhook_prune_interval: float = Field(default=600.0, gt=0)
    soft_bounce_limit: int = Field(default=3, ge=1)  # consecutive soft bounces → bounced
    machine_click_seconds: int = Field(default=10, ge=0)  # click this soon after delivery: a bot
    machine_click_links: int = Field(default=3, ge=2)  # this many links clicked in that window
    # Largest HTML part of a digest, with the longest per-recipient values filled in: Gmail
    # clips past ~102 KB and hides the footer; past this, low-ranked items go compact.
    email_max_bytes: int = Field(default=90_000, ge=20_000, le=10_000_000)
    from_email: str = "Weekly AI Tool Verdicts <verdicts@example.com>"
    postal_address: str = "Weekly AI Tool Verdicts, 1 Example Street, Example City"

    # Web and secrets
    secret_key: str = ""
    public_url: str = ""  # required in production; development and test use DEV_PUBLIC_URL
    site_url: str = "https://shiporskip.example"  # where comparison pages live
    admin_token: str = ""
    ingest_token: str = ""
    # Origins as a JSON list or comma-separated: '["https://a.example"]' or 'https://a.example,...'
    cors_origins: Annotated[list[str], NoDecode] = []
    redirect_origins: Annotated[list[str], NoDecode] = []

    # Public subscription endpoints (limits syntax "N/period", several joined by ";"; "" = off)
    subscribe_rate_per_ip: str = "20/minute;200/day"
    subscribe_rate_per_email: str = "5/hour"
    max_body_bytes: int = Field(default=16 * 1024, ge=1024)  # form/JSON bodies; larger get 413
    ingest_max_bytes: int = Field(default=1024 * 1024, ge=1024)  # POST /api/events bodies
    default_max_bytes: int = Field(default=64 * 1024, ge=1024)  # any other path (admin, …)
    confirmation_resend_seconds: int = Field(default=600, ge=0)  # one confirmation per address
    send_goodbye: bool = True  # a short goodbye email after unsubscribing
    # Export and delete need a fresh link emailed to the address, valid this many minutes.
    data_link_minutes: int = Field(default=60, ge=1, le=24 * 60)
    data_link_rate: str = "3/hour"  # data-link emails per subscriber (limits syntax)

    # Operator console (/console): how long a sign-in lasts, and sign-in attempts allowed
    console_session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    console_login_rate_per_ip: str = "30/minute;300/day"
    # every attempt counts, right or wrong: nine a minute, the tenth is answered 429
    console_login_rate_per_account: str = "9/minute;60/hour"
    # Reader verdicts (Ship it / Skip it links in digests; digest/votes.py)
    vote_days: int = Field(default=30, ge=1, le=3650)  # links work this long after the digest
    vote_rate_per_reader: str = "30/minute;500/day"  # verdicts per reader token (limits syntax)
    vote_rate_per_ip: str = "120/minute"  # vote POSTs per client IP (limits syntax)
    # The site's endpoint for `reader_vote.cast` events; empty: none are written or sent.
    site_webhook_url: str = ""
    site_webhook_secret: str = ""  # HMAC-SHA256 key of X-Verdicts-Signature
    site_webhook_timeout: float = Field(default=10.0, gt=0)
    site_webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    site_webhook_retry_base_delay: float = Field(default=2.0, ge=0)  # doubled per attempt
    site_webhook_retry_max_delay: float = Field(default=600.0, ge=0, le=3600)
    # An event still undelivered this long after its last try lost its task: beat queues it.
    site_webhook_requeue_after: float = Field(default=900.0, gt=0)
    # Subscriber lists uploaded in the console (digest/list_imports.py): the largest upload, and
    # how long an import may show no progress before beat queues its task again (it resumes).
    list_upload_max_bytes: int = Field(default=100 * 1024 * 1024, ge=1024)
    list_import_requeue_after: float = Field(default=300.0, gt=0)
    # GET /metrics (Prometheus): empty = off (404); otherwise the bearer token a scraper sends.
    metrics_token: str = ""

    # Scheduling
    timezone: str = "UTC"
    weekly_cron: str = "0 9 * * 1"  # minute hour day-of-month month day-of-week
    # A weekly slot missed while beat was down still fires (once) if it is at most this old.
    weekly_grace_hours: float = Field(default=24.0, gt=0)
    # "required": a weekly wave fires only once its edition is approved (digest/edition_review.py)
    weekly_approval: Literal["auto", "required"] = "auto"
    beat_interval: float = Field(default=60.0, gt=0, le=3600)  # seconds between beat's checks
    batch_size: int = Field(default=1000, ge=1, le=1000)

    # Ranking weights (see digest/ranking.py for the formula)
    rank_confidence_z: float = Field(default=1.0, ge=0)  # Wilson z for the panel's lower bound
    rank_panel_weight: float = Field(default=1.0, ge=0)
    rank_community_weight: float = Field(default=1.0, ge=0)
    # community votes weigh n / (n + half): 50 votes count half as much as a sure thing
    rank_community_half_votes: float = Field(default=50.0, gt=0)
    rank_score_weight: float = Field(default=0.1, ge=0)  # reviewer scores refine
    # a comparison scores max(tool) + this × min(tool); in (0, 1] so the better tool leads
    rank_runner_up_weight: float = Field(default=0.5, gt=0, le=1)
    # readers' verdicts from our own vote links join the community term with this weight (0: off,
    # since the site's totals will include the verdicts we forward)
    rank_reader_weight: float = Field(default=0.0, ge=0)

    @field_validator("cors_origins", "redirect_origins", mode="before")
    @classmethod
    def _origin_list(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip().rstrip("/") for part in text.split(",") if part.strip()]
        return value

    @field_validator(
        "subscribe_rate_per_ip",
        "subscribe_rate_per_email",
        "data_link_rate",
        "console_login_rate_per_ip",
        "console_login_rate_per_account",
        "vote_rate_per_reader",
        "vote_rate_per_ip",
    )
    @classmethod
    def _rate_limit_syntax(cls, value: str) -> str:
        from limits import parse_many

        if value.strip():
            try:
                parse_many(value)
            except ValueError as exc:
                raise ValueError(f"not a rate limit like '20/minute': {value!r}") from exc
        return value.strip()

    @model_validator(mode="after")
    def _visibility_outlives_retries(self) -> Settings:
        if self.visibility_timeout <= self.send_retry_max_delay + self.sendgrid_timeout:
            raise ValueError(
                "DIGEST_VISIBILITY_TIMEOUT must be longer than DIGEST_SEND_RETRY_MAX_DELAY plus "
                "DIGEST_SENDGRID_TIMEOUT, or Redis would hand a task still waiting for its retry "
                "to a second worker"
            )
        return self

    @model_validator(mode="after")
    def _claim_outlives_request(self) -> Settings:
        if self.send_claim_timeout <= self.sendgrid_timeout:
            raise ValueError(
                "DIGEST_SEND_CLAIM_TIMEOUT must be longer than DIGEST_SENDGRID_TIMEOUT, or "
                "batches still waiting for SendGrid's answer would be called ambiguous"
            )
        return self

    @field_validator("weekly_cron")
    @classmethod
    def _cron_syntax(cls, value: str) -> str:
        parse_cron(value)  # CronError is a ValueError naming the bad field
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA timezone {value!r}") from exc
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url_is_link_safe(cls, value: str) -> str:
        """Every email's links start with it, raw in HTML attributes and headers."""
        value = value.strip().rstrip("/")
        if value and not is_attribute_safe_url(value):
            raise ValueError(
                "DIGEST_PUBLIC_URL must be an http(s) URL without spaces, quotes, '<', '>' or '&'"
            )
        return value

    @model_validator(mode="after")
    def _secrets_in_production(self) -> Settings:
        if self.env != "production":
            if not self.public_url:
                self.public_url = DEV_PUBLIC_URL
            return self
        secrets = [
            ("DIGEST_SECRET_KEY", self.secret_key),
            ("DIGEST_ADMIN_TOKEN", self.admin_token),
            ("DIGEST_INGEST_TOKEN", self.ingest_token),
        ]
        if self.email_backend == "sendgrid":
            secrets.append(("SENDGRID_API_KEY", self.sendgrid_api_key))
        if self.metrics_token:  # optional, but never a weak one
            secrets.append(("DIGEST_METRICS_TOKEN", self.metrics_token))
        problems = [
            f"{name} {why}" for name, value in secrets if (why := weak_secret_reason(value))
        ]
        if not self.public_url:
            problems.append("DIGEST_PUBLIC_URL is missing (the base URL of links in emails)")
        if problems:
            raise ConfigurationError(
                "production mode (the default; set DIGEST_ENV=development for a local try-out) "
                "refuses to start: " + "; ".join(problems)
            )
        if self.database_url.startswith("sqlite"):
            warnings.warn("production mode on SQLite: use PostgreSQL", stacklevel=2)
        return self

    @property
    def signing_key(self) -> str:
        """The key for signed links; development and test fall back to a fixed, named key
        (production cannot get here without a real one: see `_secrets_in_production`)."""
        return self.secret_key or DEV_SECRET_KEY

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def weak_secret_reason(value: str) -> str | None:
    """Why `value` is no production secret (missing, short, a placeholder), or None."""
    if not value:
        return "is missing"
    if len(value) < SECRET_MIN_LENGTH:
        return f"is shorter than {SECRET_MIN_LENGTH} characters"
    folded = value.lower()
    if any(fragment in folded for fragment in PLACEHOLDER_FRAGMENTS) or len(set(value)) < 8:
        return "looks like a placeholder, not a random secret"
    return None


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once. Tests call `get_settings.cache_clear()`."""
    return Settings()
