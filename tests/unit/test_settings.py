from __future__ import annotations

import pytest

from dispatcher.config.settings import DEFAULT_BLASTENGINE_BASE_URL, Settings, SettingsError
from tests.conftest import FUNCTION_ENV

ENV = {
    "SEND_TABLE_NAME": "send",
    "HISTORY_TABLE_NAME": "history",
    "IDEMPOTENCY_TABLE_NAME": "idem",
    "DEFAULT_FROM_EMAIL": "noreply@example.com",
    "BLASTENGINE_LOGIN_ID": "me",
    "BLASTENGINE_API_KEY": "sk-secret-value",
}


def test_reads_every_variable_with_types_and_defaults() -> None:
    settings = Settings.from_env(
        {
            **ENV,
            "RATE_LIMIT_RPS": "25.5",
            "SEND_CONCURRENCY": "16",
            "MAX_ATTEMPTS": "5",
            "REQUEST_TIMEOUT_SECONDS": "3",
        }
    )
    assert settings.rate_limit_rps == 25.5
    assert settings.send_concurrency == 16
    assert settings.max_attempts == 5
    assert settings.request_timeout_seconds == 3.0
    assert settings.blastengine_base_url == DEFAULT_BLASTENGINE_BASE_URL
    assert settings.idempotency_expiry_seconds > 24 * 3600


@pytest.mark.parametrize(
    "missing",
    ["SEND_TABLE_NAME", "HISTORY_TABLE_NAME", "IDEMPOTENCY_TABLE_NAME", "DEFAULT_FROM_EMAIL"],
)
def test_a_missing_setting_fails_fast_naming_the_variable(missing: str) -> None:
    env = {k: v for k, v in ENV.items() if k != missing}
    with pytest.raises(SettingsError, match=missing):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RATE_LIMIT_RPS", "fast"),
        ("RATE_LIMIT_RPS", "0"),
        ("SEND_CONCURRENCY", "2.5"),
        ("MAX_ATTEMPTS", "-1"),
        ("REQUEST_TIMEOUT_SECONDS", "soon"),
        ("DEFAULT_FROM_EMAIL", "not-an-address"),
        ("BLASTENGINE_BASE_URL", "app.engn.jp"),
        ("IDEMPOTENCY_EXPIRY_SECONDS", "3600"),
        ("LOOKUP_DELAY_SECONDS", "-1"),
        ("LOOKUP_DELAY_SECONDS", "later"),
    ],
)
def test_a_malformed_setting_fails_fast_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({**ENV, name: value})


def test_credentials_are_required_one_way_or_the_other() -> None:
    env = {k: v for k, v in ENV.items() if not k.startswith("BLASTENGINE")}
    with pytest.raises(SettingsError, match="BLASTENGINE_CREDENTIALS_PARAMETER"):
        Settings.from_env(env)
    assert Settings.from_env({**env, "BLASTENGINE_CREDENTIALS_PARAMETER": "/mail/creds"})


def test_explicit_arguments_beat_the_environment() -> None:
    settings = Settings.from_env({**ENV, "RATE_LIMIT_RPS": "5"}, rate_limit_rps=50.0)
    assert settings.rate_limit_rps == 50.0


def test_repr_hides_the_api_key() -> None:
    settings = Settings.from_env(ENV)
    assert "sk-secret-value" not in repr(settings)
    assert "sk-secret-value" not in str(settings)


def test_allowed_from_defaults_to_the_default_senders_domain_and_names_a_bad_entry() -> None:
    from dispatcher.config.settings import Settings, SettingsError

    base = {**FUNCTION_ENV, "DEFAULT_FROM_EMAIL": "noreply@Example.com"}
    assert Settings.from_env(base).allowed_senders == ("@example.com",)
    listed = Settings.from_env({**base, "ALLOWED_FROM": "a@example.com, @news.example.com"})
    assert listed.allowed_senders == ("a@example.com", "@news.example.com")
    with pytest.raises(SettingsError, match="ALLOWED_FROM: 'not' is neither"):
        Settings.from_env({**base, "ALLOWED_FROM": "not"})
