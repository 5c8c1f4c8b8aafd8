"""Mail providers: one interface, one file per backend, one error tree."""

from dispatcher.providers.base import MailProvider
from dispatcher.providers.blastengine import BlastengineClient, bearer_token
from dispatcher.providers.errors import (
    AmbiguousSendError,
    ConfigError,
    InvalidMessageError,
    ProviderError,
    RateLimitedError,
    RejectedError,
    TransientError,
    error_for_status,
)

__all__ = [
    "AmbiguousSendError",
    "BlastengineClient",
    "ConfigError",
    "InvalidMessageError",
    "MailProvider",
    "ProviderError",
    "RateLimitedError",
    "RejectedError",
    "TransientError",
    "bearer_token",
    "error_for_status",
]
