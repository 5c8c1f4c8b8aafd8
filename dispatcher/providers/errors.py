"""The provider error tree, one leaf per ``error_kind`` the dispatcher stamps on a row.

Transient errors are worth another try; everything else fails the row for good until a person
edits or re-fires it. HTTP statuses map onto the tree in one flat function,
:func:`error_for_status`, so the whole policy reads in one place.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from dispatcher.model.row import ErrorKind

__all__ = [
    "AmbiguousSendError",
    "ConfigError",
    "InvalidMessageError",
    "ProviderError",
    "RateLimitedError",
    "RejectedError",
    "TransientError",
    "building",
    "error_for_status",
    "unexpected",
]


class ProviderError(Exception):
    """A send that did not succeed; ``kind`` is stamped on the row as ``error_kind``."""

    kind: ErrorKind = ErrorKind.TRANSIENT

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status


class InvalidMessageError(ProviderError):
    """The message cannot be expressed in this provider's request format."""

    kind = ErrorKind.INVALID


class RejectedError(ProviderError):
    """The provider refused the message (4xx other than 401/403/429); resending won't help."""

    kind = ErrorKind.REJECTED


class ConfigError(ProviderError):
    """Credentials or endpoint are wrong (401/403, a redirect, a missing secret)."""

    kind = ErrorKind.CONFIG


class TransientError(ProviderError):
    """A 5xx, a timeout or a broken connection: the same request may succeed later."""

    kind = ErrorKind.TRANSIENT


class RateLimitedError(TransientError):
    """HTTP 429; ``retry_after`` is the provider's requested pause in seconds, if it sent one."""

    kind = ErrorKind.RATE_LIMITED

    def __init__(
        self, message: str, *, http_status: int | None = 429, retry_after: float | None = None
    ) -> None:
        super().__init__(message, http_status=http_status)
        self.retry_after = retry_after


class AmbiguousSendError(TransientError):
    """The request was written and no answer came: the provider may have taken the mail.

    Never retried blindly (``DESIGN.md``, "When the provider's answer never came"): the row
    waits until a look-up says whether the mail went out. ``opened_at``/``closed_at`` bound
    when it could have been taken; the retry loop that made the request sets them.
    """

    kind = ErrorKind.AMBIGUOUS

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        opened_at: datetime | None = None,
        closed_at: datetime | None = None,
    ) -> None:
        super().__init__(message, http_status=http_status)
        self.opened_at = opened_at
        self.closed_at = closed_at


def error_for_status(
    status: int, detail: str, *, retry_after: float | None = None
) -> ProviderError:
    """Classify a non-success HTTP status (``DESIGN.md``, "Sending", step 3)."""
    text = f"HTTP {status}: {detail}" if detail else f"HTTP {status}"
    if status == 429:
        return RateLimitedError(text, retry_after=retry_after)
    if status in (401, 403):
        return ConfigError(
            f"{text} (check the blastengine login id and API key)", http_status=status
        )
    if 400 <= status < 500:
        return RejectedError(text, http_status=status)
    if status == 504:
        # A gateway gave up waiting for the service behind it, which may still have taken
        # the mail: the one 5xx that proves nothing.
        return AmbiguousSendError(f"{text} (the provider may have taken it)", http_status=status)
    if 300 <= status < 400:
        return ConfigError(
            f"{text} (unexpected redirect: check the provider base URL)", http_status=status
        )
    return TransientError(text, http_status=status)


@contextmanager
def building(provider: str) -> Iterator[None]:
    """Around turning a message into ``provider``'s request: anything that raises there,
    other than a provider error, is the row's content the provider cannot take (an encoder's
    ``UnicodeEncodeError``, a value a library refuses), so the row fails ``invalid`` naming
    it, instead of the record failing until the mapping gives up with the row unstamped."""
    try:
        yield
    except ProviderError:
        raise
    except Exception as exc:
        raise InvalidMessageError(
            f"{provider} could not build the request from this row ({_described(exc)})"
        ) from exc


def unexpected(provider: str, exc: Exception) -> ConfigError:
    """An exception a provider's client did not map onto the tree: the deployment's problem
    (a library, a setting), never retried, stamped with what it was."""
    return ConfigError(
        f"{provider}'s client failed unexpectedly ({_described(exc)}); please report"
    )


def _described(exc: Exception) -> str:
    text = str(exc)
    return type(exc).__name__ + (f": {text[:300]}" if text else "")
