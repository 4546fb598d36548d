"""Safe by default (trust finding 7): no forgeable tokens, no placeholder secrets, no guessing.

With no `DIGEST_ENV` the service is in production and refuses to start without real secrets and
a public URL; the development signing key (a public constant) is reachable only by saying
`DIGEST_ENV=development` or `test` out loud.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from digest.settings import DEV_SECRET_KEY, ConfigurationError, Settings
from tests.support.paths import REPO

REPO = REPO
STRONG = "q8Zt3LwX0vNf5Rk2Jm7Hc4Yp9Ds1Ga6E"  # 32 random-looking characters


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No DIGEST_* variable at all, as on a fresh server."""
    for key in list(os.environ):
        if key.startswith("DIGEST_") or key == "SENDGRID_API_KEY":
            monkeypatch.delenv(key)
    return monkeypatch


def production(monkeypatch: pytest.MonkeyPatch, **overrides: str) -> Settings:
    values = {
        "DIGEST_SECRET_KEY": STRONG,
        "DIGEST_ADMIN_TOKEN": STRONG[::-1],
        "DIGEST_INGEST_TOKEN": STRONG[1:] + "x",
        "DIGEST_PUBLIC_URL": "https://newsletter.example.org",
        "DIGEST_DATABASE_URL": "postgresql+psycopg://digest@127.0.0.1/digest",
        **overrides,
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return Settings(_env_file=None)


def test_no_environment_means_production(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="DIGEST_SECRET_KEY is missing"):
        Settings(_env_file=None)


def test_no_environment_never_signs_with_the_public_development_key(
    clean_env: pytest.MonkeyPatch,
) -> None:
    """The attack: forge tokens offline with the constant key. The service will not start."""
    with pytest.raises(ConfigurationError):
        Settings(_env_file=None).signing_key  # noqa: B018


@pytest.mark.parametrize(
    "value",
    ["change-me", "change-me-to-a-long-random-string", "x" * 40, "Example-secret-0123456789abcdef"],
)
def test_production_refuses_placeholder_or_short_secrets(
    clean_env: pytest.MonkeyPatch, value: str
) -> None:
    with pytest.raises(ConfigurationError, match="DIGEST_SECRET_KEY"):
        production(clean_env, DIGEST_SECRET_KEY=value)


def test_production_refuses_the_development_key_itself(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="DIGEST_SECRET_KEY looks like a placeholder"):
        production(clean_env, DIGEST_SECRET_KEY=DEV_SECRET_KEY)


def test_production_refuses_a_placeholder_sendgrid_key(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="SENDGRID_API_KEY"):
        production(clean_env, DIGEST_EMAIL_BACKEND="sendgrid", SENDGRID_API_KEY="SG.xxxxx")


def test_production_needs_the_public_url(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="DIGEST_PUBLIC_URL is missing"):
        production(clean_env, DIGEST_PUBLIC_URL="")


def test_production_starts_with_real_secrets(clean_env: pytest.MonkeyPatch) -> None:
    settings = production(clean_env)
    assert settings.env == "production"
    assert settings.signing_key == STRONG


def test_public_url_that_could_break_out_of_an_attribute_is_refused(
    clean_env: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValueError, match="DIGEST_PUBLIC_URL"):
        production(clean_env, DIGEST_PUBLIC_URL='https://x.example/"><script>')


def test_development_allows_the_named_defaults_only_when_asked(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("DIGEST_ENV", "development")
    settings = Settings(_env_file=None)
    assert settings.signing_key == DEV_SECRET_KEY
    assert settings.public_url == "http://127.0.0.1:8000"


def test_env_example_as_shipped_refuses_to_start(clean_env: pytest.MonkeyPatch) -> None:
    """Copying .env.example without filling it in must not give a running, forgeable service."""
    with pytest.raises(ConfigurationError) as error:
        Settings(_env_file=REPO / ".env.example")
    for name in ("DIGEST_SECRET_KEY", "DIGEST_ADMIN_TOKEN", "DIGEST_INGEST_TOKEN"):
        assert name in str(error.value)


def test_a_process_started_without_environment_refuses_and_names_the_settings(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.pop("SENDGRID_API_KEY", None)
    result = subprocess.run(
        [sys.executable, "-c", "import workers.app"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "DIGEST_SECRET_KEY is missing" in result.stderr
    assert "DIGEST_PUBLIC_URL is missing" in result.stderr


def test_procfile_processes_run_in_production_unless_told_otherwise() -> None:
    for line in (REPO / "Procfile").read_text().splitlines():
        if line.strip():
            assert "DIGEST_ENV=${DIGEST_ENV:-production}" in line, line
