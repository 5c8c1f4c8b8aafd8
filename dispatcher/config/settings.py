"""Configuration, read once from the environment into one typed, frozen object.

Every name here is fixed by the design contract (``DESIGN.md``, "Interfaces"), so that users'
deploy scripts and the SAM template can rely on them. A missing or malformed value fails fast
with a :class:`SettingsError` naming the variable at fault.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from email_validator import EmailNotValidError, validate_email

from dispatcher.model.row import PROVIDERS, parse_categories

__all__ = [
    "DEFAULT_BLASTENGINE_BASE_URL",
    "DEFAULT_LOOKUP_DELAY_SECONDS",
    "DEFAULT_ORPHAN_RETENTION_DAYS",
    "MIN_WEBHOOK_SECRET_CHARS",
    "Settings",
    "SettingsError",
    "parse_allowlist",
]

DEFAULT_BLASTENGINE_BASE_URL = "https://app.engn.jp/api/v1"
#: Ten minutes: blastengine documents no visibility lag for its look-ups, a transaction is
#: logged once it is queued (seconds, normally), and a queue backed up for minutes is what a
#: provider's bad hour looks like. The price is only that rare ambiguous rows wait this long.
DEFAULT_LOOKUP_DELAY_SECONDS = 600.0
#: Days a bounce that matches no sent mail is kept, waiting for its history item.
DEFAULT_ORPHAN_RETENTION_DAYS = 14
#: A URL secret shorter than this could be guessed (the generated one is 43 characters).
MIN_WEBHOOK_SECRET_CHARS = 32
#: The mail providers a deployment (MAIL_PROVIDER, FAILOVER_PROVIDER) or a row may name.

#: The stream keeps records 24 hours; an idempotency record must outlive any redelivery.
_STREAM_RETENTION_SECONDS = 24 * 60 * 60

_T = TypeVar("_T")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the environment variable."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the dispatcher is configured with.

    Example
    -------
    >>> s = Settings.from_env({"SEND_TABLE_NAME": "send", "HISTORY_TABLE_NAME": "history",
    ...     "IDEMPOTENCY_TABLE_NAME": "idem", "DEFAULT_FROM_EMAIL": "noreply@example.com",
    ...     "BLASTENGINE_LOGIN_ID": "me", "BLASTENGINE_API_KEY": "secret"})
    >>> s.rate_limit_rps
    10.0
    >>> "secret" in repr(s)
    False
    """

    send_table_name: str
    history_table_name: str
    idempotency_table_name: str
    default_from_email: str
    default_from_name: str = ""
    blastengine_base_url: str = DEFAULT_BLASTENGINE_BASE_URL
    blastengine_login_id: str | None = None
    blastengine_api_key: str | None = field(default=None, repr=False)
    blastengine_credentials_parameter: str | None = None
    rate_limit_rps: float = 10.0
    rate_limit_table_name: str | None = None
    #: Which provider sends a row that names none, and which one takes over when it fails
    #: in a way that proves the mail was not taken (docs/concepts/providers.md).
    mail_provider: str = "blastengine"
    failover_provider: str | None = None
    #: SES's sending rate (``aws sesv2 get-account``: ``SendQuota.MaxSendRate``); 1/s is
    #: what every account has in the SES sandbox.
    ses_rate_limit_rps: float = 1.0
    ses_configuration_set: str | None = None
    #: Requests the primary provider gets for a row before the failover provider takes it.
    failover_after_attempts: int = 2
    #: Failures of the primary across the deployment within the window that open its
    #: circuit: it is skipped for the cool-down, then probed again.
    failover_threshold: int = 5
    failover_window_seconds: float = 60.0
    failover_cooldown_seconds: float = 120.0
    send_concurrency: int = 8
    max_attempts: int = 8
    attempts_per_invocation: int = 3
    request_timeout_seconds: float = 10.0
    history_retention_days: int = 90
    deferral_base_seconds: float = 30.0
    #: How long after an ambiguous send's window a taken mail is assumed visible to the
    #: provider's look-ups (docs/concepts/exactly-once.md).
    lookup_delay_seconds: float = DEFAULT_LOOKUP_DELAY_SECONDS
    idempotency_expiry_seconds: int = 2 * _STREAM_RETENTION_SECONDS
    suppression_table_name: str | None = None
    #: The event bus delivery events go to (docs/how-to/subscribe-to-events.md); unset: none.
    event_bus_name: str | None = None
    #: Staging safety (docs/how-to/staging.md; :mod:`dispatcher.recipients.staging`).
    recipient_allowlist: str | None = None
    redirect_all_to: str | None = None
    bounce_table_name: str | None = None
    webhook_secret: str | None = field(default=None, repr=False)
    webhook_secret_parameter: str | None = None
    attachments_bucket: str | None = None
    attachments_max_bytes: int = 1_000_000
    #: Who a row may send as (``from``): addresses and ``@domain``\\ s; empty: any address at
    #: ``DEFAULT_FROM_EMAIL``'s domain.
    allowed_from: str | None = None
    #: Where the mail as sent is kept, and for how many days (0: none is kept).
    sent_mail_table_name: str | None = None
    #: Templates rows name (``template``); None: a template row fails ``template``.
    templates_table_name: str | None = None
    history_body_days: int = 30
    #: The categories rows may name besides ``transactional`` (comma-separated): what
    #: unsubscribes, suppressions and the reputation guard are kept by.
    mail_categories: str | None = None
    #: One-click unsubscribe (docs/concepts/senders-duties.md): the endpoint's URL, the
    #: signing keys (newest first; locally) or their SSM parameter, how long a link lasts,
    #: and an address for List-Unsubscribe's mailto.
    unsubscribe_base_url: str | None = None
    unsubscribe_keys: str | None = field(default=None, repr=False)
    unsubscribe_keys_parameter: str | None = None
    unsubscribe_token_days: int = 365
    unsubscribe_mailto: str | None = None
    #: The reputation guard (dispatcher/reputation/guard.py): its counts, and the shares
    #: of the last 24 hours that pause a category's new sends (half of each: a warning).
    reputation_table_name: str | None = None
    pause_bounce_rate: float = 0.05
    pause_complaint_rate: float = 0.003
    pause_min_volume: int = 200
    #: Days a bounce event that joined no history item is kept (the bounce table's TTL).
    orphan_retention_days: int = DEFAULT_ORPHAN_RETENTION_DAYS

    def __post_init__(self) -> None:
        """Refuse a setting no deployment could run with, naming the variable."""
        self._check_numbers()
        self._check_providers()
        for name in ("send_table_name", "history_table_name", "idempotency_table_name"):
            if not getattr(self, name):
                raise SettingsError(f"{name.upper()} is required")
        parse_allowlist(self.recipient_allowlist)  # raises naming the entry
        parse_allowlist(self.allowed_from, "ALLOWED_FROM")
        try:
            parse_categories(self.mail_categories)
        except ValueError as exc:
            raise SettingsError(f"MAIL_CATEGORIES: {exc}") from None
        for name, address in (
            ("REDIRECT_ALL_TO", self.redirect_all_to),
            ("DEFAULT_FROM_EMAIL", self.default_from_email),
        ):
            try:
                if address is not None:
                    validate_email(address, check_deliverability=False)
            except EmailNotValidError as exc:
                raise SettingsError(f"{name} is not a valid address: {exc}") from exc

    def _check_providers(self) -> None:
        for name, value in (
            ("MAIL_PROVIDER", self.mail_provider),
            ("FAILOVER_PROVIDER", self.failover_provider),
        ):
            if value is not None and value not in PROVIDERS:
                raise SettingsError(f"{name} must be one of {', '.join(PROVIDERS)}, got {value!r}")
        if self.failover_provider == self.mail_provider:
            raise SettingsError(
                f"FAILOVER_PROVIDER must differ from MAIL_PROVIDER ({self.mail_provider})"
            )
        if not self.blastengine_base_url.startswith(("http://", "https://")):
            raise SettingsError(
                f"BLASTENGINE_BASE_URL must be an http(s) URL, got {self.blastengine_base_url!r}"
            )
        if "blastengine" in self.providers and not self.has_blastengine:
            raise SettingsError(
                "blastengine credentials are required: set BLASTENGINE_CREDENTIALS_PARAMETER "
                "(deployed) or both BLASTENGINE_LOGIN_ID and BLASTENGINE_API_KEY (local)"
            )

    def _check_numbers(self) -> None:
        _positive("RATE_LIMIT_RPS", self.rate_limit_rps)
        _positive("SES_RATE_LIMIT_RPS", self.ses_rate_limit_rps)
        _positive("FAILOVER_AFTER_ATTEMPTS", self.failover_after_attempts)
        _positive("FAILOVER_THRESHOLD", self.failover_threshold)
        _positive("FAILOVER_WINDOW_SECONDS", self.failover_window_seconds)
        _positive("FAILOVER_COOLDOWN_SECONDS", self.failover_cooldown_seconds)
        _positive("SEND_CONCURRENCY", self.send_concurrency)
        _positive("MAX_ATTEMPTS", self.max_attempts)
        _positive("ATTEMPTS_PER_INVOCATION", self.attempts_per_invocation)
        _positive("REQUEST_TIMEOUT_SECONDS", self.request_timeout_seconds)
        _positive("HISTORY_RETENTION_DAYS", self.history_retention_days)
        _positive("DEFERRAL_BASE_SECONDS", self.deferral_base_seconds)
        _positive("ATTACHMENTS_MAX_BYTES", self.attachments_max_bytes)
        _positive("ORPHAN_RETENTION_DAYS", self.orphan_retention_days)
        _positive("UNSUBSCRIBE_TOKEN_DAYS", self.unsubscribe_token_days)
        _positive("PAUSE_BOUNCE_RATE", self.pause_bounce_rate)
        _positive("PAUSE_COMPLAINT_RATE", self.pause_complaint_rate)
        _positive("PAUSE_MIN_VOLUME", self.pause_min_volume)
        if self.history_body_days < 0:
            raise SettingsError(
                f"HISTORY_BODY_DAYS must be 0 or more, got {self.history_body_days}"
            )
        if self.webhook_secret is not None and len(self.webhook_secret) < MIN_WEBHOOK_SECRET_CHARS:
            raise SettingsError(
                f"WEBHOOK_SECRET must be at least {MIN_WEBHOOK_SECRET_CHARS} characters "
                f"(a URL secret shorter could be guessed), got {len(self.webhook_secret)}"
            )
        if not self.lookup_delay_seconds >= 0:
            raise SettingsError(
                f"LOOKUP_DELAY_SECONDS must be 0 or more, got {self.lookup_delay_seconds!r}"
            )
        if self.idempotency_expiry_seconds <= _STREAM_RETENTION_SECONDS:
            raise SettingsError(
                "IDEMPOTENCY_EXPIRY_SECONDS must exceed the stream's 24-hour retention "
                f"({_STREAM_RETENTION_SECONDS}s), got {self.idempotency_expiry_seconds}"
            )

    @property
    def categories(self) -> tuple[str, ...]:
        """``transactional`` and the ``MAIL_CATEGORIES`` a row may name."""
        return parse_categories(self.mail_categories)

    @property
    def allowed_senders(self) -> tuple[str, ...]:
        """The ``from`` a row may name: ``ALLOWED_FROM``, or the default sender's domain."""
        entries = parse_allowlist(self.allowed_from, "ALLOWED_FROM")
        return entries or ("@" + self.default_from_email.rpartition("@")[2].lower(),)

    @property
    def providers(self) -> tuple[str, ...]:
        """The deployment's providers: the primary, then the failover one if any."""
        return (self.mail_provider, *((self.failover_provider,) if self.failover_provider else ()))

    @property
    def has_blastengine(self) -> bool:
        """blastengine credentials are configured (a row may pin it only then)."""
        pair = bool(self.blastengine_login_id and self.blastengine_api_key)
        return pair or bool(self.blastengine_credentials_parameter)

    def provider_rate(self, provider: str) -> float:
        """The account limit of ``provider``, requests per second."""
        return self.ses_rate_limit_rps if provider == "ses" else self.rate_limit_rps

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read the settings from ``environ`` (default: ``os.environ``).

        Explicit keyword arguments win over the environment, so tests and the CLI can pin a
        value without touching process state.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in overrides:
                values[f.name] = overrides[f.name]
                continue
            raw = env.get(f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _PARSERS.get(f.name, _text)(f.name.upper(), raw)
        for required in (
            "send_table_name",
            "history_table_name",
            "idempotency_table_name",
            "default_from_email",
        ):
            if required not in values:
                raise SettingsError(f"{required.upper()} is required but not set")
        return cls(**values)


def parse_allowlist(raw: str | None, name: str = "RECIPIENT_ALLOWLIST") -> tuple[str, ...]:
    """``RECIPIENT_ALLOWLIST`` or ``ALLOWED_FROM`` (addresses and ``@domain``\\ s, comma- or
    space-separated) as lowercased entries; raises ``SettingsError`` naming the entry that is
    neither."""
    entries = tuple(e for e in (raw or "").replace(",", " ").split() if e)
    for entry in entries:
        address = f"x{entry}" if entry.startswith("@") else entry
        try:
            validate_email(address, check_deliverability=False)
        except EmailNotValidError:
            raise SettingsError(f"{name}: {entry!r} is neither an address nor an @domain") from None
    return tuple(e.strip().lower() for e in entries)


def _number(kind: Callable[[str], _T]) -> Callable[[str, str], _T]:
    def parse(name: str, raw: str) -> _T:
        try:
            return kind(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number ({kind.__name__}), got {raw!r}") from None

    return parse


def _text(_name: str, raw: str) -> str:
    return raw.strip()


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise SettingsError(f"{name} must be greater than 0, got {value!r}")


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "rate_limit_rps": _number(float),
    "ses_rate_limit_rps": _number(float),
    "failover_after_attempts": _number(int),
    "failover_threshold": _number(int),
    "failover_window_seconds": _number(float),
    "failover_cooldown_seconds": _number(float),
    "mail_provider": lambda _name, raw: raw.strip().lower(),
    "failover_provider": lambda _name, raw: raw.strip().lower(),
    "send_concurrency": _number(int),
    "max_attempts": _number(int),
    "attempts_per_invocation": _number(int),
    "request_timeout_seconds": _number(float),
    "history_retention_days": _number(int),
    "deferral_base_seconds": _number(float),
    "lookup_delay_seconds": _number(float),
    "idempotency_expiry_seconds": _number(int),
    "attachments_max_bytes": _number(int),
    "orphan_retention_days": _number(int),
    "history_body_days": _number(int),
    "unsubscribe_token_days": _number(int),
    "pause_bounce_rate": _number(float),
    "pause_complaint_rate": _number(float),
    "pause_min_volume": _number(int),
}
