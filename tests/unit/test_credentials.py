from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from dispatcher.config.settings import Settings
from dispatcher.providers.blastengine.credentials import Credentials, credentials_loader
from dispatcher.providers.errors import ConfigError, TransientError
from tests.unit.test_settings import ENV

PARAM_ENV = {
    **{k: v for k, v in ENV.items() if not k.startswith("BLASTENGINE")},
    "BLASTENGINE_CREDENTIALS_PARAMETER": "/mail/creds",
}


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "GetParameter")


def test_local_credentials_come_from_the_environment() -> None:
    load = credentials_loader(Settings.from_env(ENV))
    assert load() == Credentials("me", "sk-secret-value")
    assert "sk-secret-value" not in repr(load())


def test_deployed_credentials_come_from_the_named_parameter_as_json() -> None:
    asked: list[str] = []

    def fetch(name: str) -> object:
        asked.append(name)
        return {"login_id": "prod", "api_key": "k"}

    load = credentials_loader(Settings.from_env(PARAM_ENV), fetch=fetch)
    assert load() == Credentials("prod", "k")
    assert asked == ["/mail/creds"]


@pytest.mark.parametrize("value", [None, "not json", {"login_id": "x"}, {"api_key": "y"}, []])
def test_a_malformed_secret_is_a_config_error(value: object) -> None:
    load = credentials_loader(Settings.from_env(PARAM_ENV), fetch=lambda _: value)
    with pytest.raises(ConfigError, match="/mail/creds"):
        load()


def test_a_missing_parameter_is_a_config_error_and_an_outage_is_transient() -> None:
    def missing(_: str) -> object:
        raise _client_error("ParameterNotFound")

    def throttled(_: str) -> object:
        raise RuntimeError("wrapped") from _client_error("ThrottlingException")

    with pytest.raises(ConfigError):
        credentials_loader(Settings.from_env(PARAM_ENV), fetch=missing)()
    with pytest.raises(TransientError):
        credentials_loader(Settings.from_env(PARAM_ENV), fetch=throttled)()
