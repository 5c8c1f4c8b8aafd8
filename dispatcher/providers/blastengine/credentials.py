"""The provider's credentials: from the environment locally, from SSM or Secrets Manager deployed.

Deployed, the template passes only the *name* of a SecureString parameter (or secret) holding
``{"login_id": "...", "api_key": "..."}``; Powertools Parameters fetches, decrypts and caches
it, so warm invocations make no extra call and the key never sits in an environment variable.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dispatcher.config.settings import Settings
from dispatcher.providers.errors import ConfigError, TransientError

__all__ = [
    "CREDENTIALS_CACHE_SECONDS",
    "Credentials",
    "credentials_loader",
    "parameter_loader",
]

#: How long a fetched secret is reused; a rotated key is picked up within this time.
CREDENTIALS_CACHE_SECONDS = 300

# SSM/Secrets Manager answers that no retry will change.
_PERMANENT_CODES = frozenset(
    {
        "ParameterNotFound",
        "ParameterVersionNotFound",
        "ResourceNotFoundException",
        "AccessDeniedException",
        "AccessDenied",
        "InvalidKeyId",
        "KMSAccessDeniedException",
        "DecryptionFailure",
        "ValidationException",
    }
)


@dataclass(frozen=True)
class Credentials:
    """A blastengine login id and API key; the key is left out of ``repr``."""

    login_id: str
    api_key: str = field(repr=False)


def credentials_loader(
    settings: Settings, *, fetch: Callable[[str], Any] | None = None
) -> Callable[[], Credentials]:
    """A callable returning current credentials, read lazily on the first send.

    Raises (when called) :class:`ConfigError` if the secret is missing or malformed and
    :class:`TransientError` if the parameter store is unreachable, so a passing outage is
    retried rather than failing every row.
    """
    if settings.blastengine_login_id and settings.blastengine_api_key:
        static = Credentials(settings.blastengine_login_id, settings.blastengine_api_key)
        return lambda: static
    name = settings.blastengine_credentials_parameter
    assert name is not None  # Settings guarantees one source or the other
    return parameter_loader(name, fetch=fetch)


def parameter_loader(
    name: str, *, fetch: Callable[[str], Any] | None = None
) -> Callable[[], Credentials]:
    """Credentials from the SSM SecureString (or Secrets Manager secret) ``name``, cached;
    the CLI's ``--live`` uses it with the operator's own AWS credentials."""
    fetcher = fetch or _powertools_fetch

    def load() -> Credentials:
        try:
            value = fetcher(name)
        except Exception as exc:
            code = _error_code(exc)
            if code in _PERMANENT_CODES:
                raise ConfigError(f"cannot read credentials parameter {name!r}: {code}") from exc
            raise TransientError(
                f"cannot read credentials parameter {name!r} ({code or type(exc).__name__})"
            ) from exc
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                value = None
        if not isinstance(value, dict) or not all(
            isinstance(value.get(k), str) and value.get(k) for k in ("login_id", "api_key")
        ):
            raise ConfigError(
                f"credentials parameter {name!r} must hold JSON "
                '{"login_id": "...", "api_key": "..."}'
            )
        return Credentials(value["login_id"], value["api_key"])

    return load


def _powertools_fetch(name: str) -> Any:
    # Imported lazily: local runs with a plain key never pay for the parameters module.
    from aws_lambda_powertools.utilities import parameters

    if name.startswith("arn:aws:secretsmanager:"):
        return parameters.get_secret(name, transform="json", max_age=CREDENTIALS_CACHE_SECONDS)
    return parameters.get_parameter(
        name, decrypt=True, transform="json", max_age=CREDENTIALS_CACHE_SECONDS
    )


def _error_code(exc: BaseException) -> str | None:
    """The AWS error code behind ``exc``, looking through Powertools' wrapping."""
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
            if isinstance(code, str):
                return code
        seen = seen.__cause__ or seen.__context__
    return None
