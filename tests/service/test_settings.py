"""Settings: one place, documented names, and no silent defaults for secrets in production."""

from __future__ import annotations

import pytest

from digest.settings import ConfigurationError, Settings


def test_defaults_are_the_embedded_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DIGEST_DATABASE_URL", "DIGEST_BROKER_URL", "DIGEST_EMAIL_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)
    assert settings.database_url.startswith("sqlite:///")
    assert settings.broker_url == ""
    assert settings.email_backend == "outbox"


def test_production_without_secrets_is_a_startup_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DIGEST_SECRET_KEY", "DIGEST_ADMIN_TOKEN", "DIGEST_INGEST_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DIGEST_ENV", "production")
    with pytest.raises(ConfigurationError) as error:
        Settings(_env_file=None)
    message = str(error.value)
    assert "DIGEST_SECRET_KEY" in message
    assert "DIGEST_ADMIN_TOKEN" in message
    assert "DIGEST_INGEST_TOKEN" in message


def test_production_sendgrid_needs_an_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_ENV", "production")
    monkeypatch.setenv("DIGEST_SECRET_KEY", "s")
    monkeypatch.setenv("DIGEST_ADMIN_TOKEN", "a")
    monkeypatch.setenv("DIGEST_INGEST_TOKEN", "i")
    monkeypatch.setenv("DIGEST_EMAIL_BACKEND", "sendgrid")
    monkeypatch.delenv("SENDGRID_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="SENDGRID_API_KEY"):
        Settings(_env_file=None)


def test_sendgrid_api_key_is_read_without_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.test")
    assert Settings(_env_file=None).sendgrid_api_key == "SG.test"


def test_unknown_timezone_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_TIMEZONE", "Mars/Olympus_Mons")
    with pytest.raises(ValueError, match="timezone"):
        Settings(_env_file=None)


def test_env_file_is_read(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIGEST_PUBLIC_URL", raising=False)
    env = tmp_path / ".env"
    env.write_text("DIGEST_PUBLIC_URL=https://news.example\n")
    assert Settings(_env_file=env).public_url == "https://news.example"
