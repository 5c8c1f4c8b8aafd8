"""The function's environment on the local stack: what it would be in Lambda, pointed here.

The user's own settings (``RATE_LIMIT_RPS``, ``DEFAULT_FROM_EMAIL``, staging safety...) where
given, this stack's endpoint, tables, bus and provider otherwise. Every process that runs a
function of the stack (an execution environment, ``dispatcher invoke``, SAM's container)
starts from it, so all of them agree, above all on the account's one rate limit.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping

from dispatcher.config.settings import Settings
from dispatcher.local.dynamodb.tables import (
    BOUNCE_TABLE,
    HISTORY_TABLE,
    IDEMPOTENCY_TABLE,
    RATE_LIMIT_TABLE,
    REPUTATION_TABLE,
    SEND_TABLE,
    SENT_MAIL_TABLE,
    SUPPRESSION_TABLE,
    TEMPLATES_TABLE,
)
from dispatcher.local.options import StackOptions
from dispatcher.local.sandbox.model import SANDBOX_API_KEY

__all__ = [
    "ATTACHMENTS_BUCKET",
    "REGION",
    "TABLE_NAMES",
    "function_environment",
    "shareable_environment",
]

TABLE_NAMES = {
    SEND_TABLE: "mail-dispatcher-send",
    HISTORY_TABLE: "mail-dispatcher-history",
    IDEMPOTENCY_TABLE: "mail-dispatcher-idempotency",
    SUPPRESSION_TABLE: "mail-dispatcher-suppression",
    BOUNCE_TABLE: "mail-dispatcher-bounces",
    RATE_LIMIT_TABLE: "mail-dispatcher-rate-limit",
    SENT_MAIL_TABLE: "mail-dispatcher-sent-mail",
    TEMPLATES_TABLE: "mail-dispatcher-templates",
    REPUTATION_TABLE: "mail-dispatcher-reputation",
}
#: The reputation guard's settings a user's environment may give the local functions.
_GUARD = ("PAUSE_BOUNCE_RATE", "PAUSE_COMPLAINT_RATE", "PAUSE_MIN_VOLUME")
#: The categories the local stack accepts unless MAIL_CATEGORIES says others.
LOCAL_CATEGORIES = "newsletter,marketing,notifications"
#: The template's AttachmentsBucket, as the local endpoint's S3 serves it.
ATTACHMENTS_BUCKET = "mail-dispatcher-attachments"
REGION = "us-east-1"
#: Seconds past the sandbox's look-up lag after which the function trusts a "not found".
LOOKUP_DELAY_MARGIN_SECONDS = 2.0


def function_environment(
    options: StackOptions,
    *,
    endpoint: str,
    provider_url: str,
    credentials: Mapping[str, str],
    bus_name: str,
    sandboxed: bool,
    unsubscribe_url: str = "",
    unsubscribe_keys: str = "",
    environ: Mapping[str, str] = os.environ,
) -> tuple[dict[str, str], Settings]:
    """The functions' environment, and the settings they will read from it.

    ``credentials`` are the sandbox's ``BLASTENGINE_*`` (empty for an external API: the
    user's environment has them); ``sandboxed``: the provider is this stack's sandbox.
    """
    env: dict[str, str] = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": environ.get("AWS_ACCESS_KEY_ID") or "local",
        "AWS_SECRET_ACCESS_KEY": environ.get("AWS_SECRET_ACCESS_KEY") or "local",
        "SEND_TABLE_NAME": TABLE_NAMES[SEND_TABLE],
        "HISTORY_TABLE_NAME": TABLE_NAMES[HISTORY_TABLE],
        "IDEMPOTENCY_TABLE_NAME": TABLE_NAMES[IDEMPOTENCY_TABLE],
        "SUPPRESSION_TABLE_NAME": TABLE_NAMES[SUPPRESSION_TABLE],
        "BOUNCE_TABLE_NAME": TABLE_NAMES[BOUNCE_TABLE],
        "RATE_LIMIT_TABLE_NAME": TABLE_NAMES[RATE_LIMIT_TABLE],
        "SENT_MAIL_TABLE_NAME": TABLE_NAMES[SENT_MAIL_TABLE],
        "TEMPLATES_TABLE_NAME": TABLE_NAMES[TEMPLATES_TABLE],
        "REPUTATION_TABLE_NAME": TABLE_NAMES[REPUTATION_TABLE],
        # A fresh secret per run unless you pin one: the URL is the webhook's only key.
        "WEBHOOK_SECRET": environ.get("WEBHOOK_SECRET") or secrets.token_urlsafe(32),
        "BLASTENGINE_BASE_URL": provider_url,
        "DEFAULT_FROM_EMAIL": environ.get("DEFAULT_FROM_EMAIL") or "noreply@example.com",
        "ATTACHMENTS_BUCKET": ATTACHMENTS_BUCKET,
        "EVENT_BUS_NAME": bus_name,
        # One-click unsubscribe: the stack's endpoint, and keys kept with its state
        "UNSUBSCRIBE_BASE_URL": unsubscribe_url,
        "UNSUBSCRIBE_KEYS": environ.get("UNSUBSCRIBE_KEYS") or unsubscribe_keys,
        "MAIL_CATEGORIES": environ.get("MAIL_CATEGORIES") or LOCAL_CATEGORIES,
        "POWERTOOLS_METRICS_DISABLED": environ.get("POWERTOOLS_METRICS_DISABLED") or "true",
        **credentials,
    }
    if sandboxed:
        # The sandbox's look-ups lag as blastengine's may; an unanswered send is looked
        # up a little after that lag rather than after production's ten minutes.
        lag = options.sandbox_faults.lookup_lag
        env["LOOKUP_DELAY_SECONDS"] = (
            environ.get("LOOKUP_DELAY_SECONDS") or f"{lag + LOOKUP_DELAY_MARGIN_SECONDS:g}"
        )
    for name, value in (
        ("MAIL_PROVIDER", options.mail_provider),
        ("FAILOVER_PROVIDER", options.failover_provider),
        # Staging safety travels with the ready line's env: a process started with it
        # (dispatcher invoke) and the console keep to the same recipients.
        ("RECIPIENT_ALLOWLIST", environ.get("RECIPIENT_ALLOWLIST") or None),
        ("REDIRECT_ALL_TO", environ.get("REDIRECT_ALL_TO") or None),
        ("ALLOWED_FROM", environ.get("ALLOWED_FROM") or None),
        # The reputation guard's thresholds, to watch it pause with a little mail locally.
        *((name, environ.get(name) or None) for name in _GUARD),
    ):
        if value is not None:
            env[name] = value
    settings = Settings.from_env({**environ, **env})
    # Every sender sharing the account's limit must agree on it: a process started with
    # the ready line's env (`dispatcher invoke`) paces at the stack's R, not the default.
    env["RATE_LIMIT_RPS"] = f"{settings.rate_limit_rps:g}"
    return env, settings


def shareable_environment(env: Mapping[str, str], *, sandboxed: bool) -> dict[str, str]:
    """The function's environment without what the user gave as a secret: the sandbox's
    own fixed credentials are no secret, theirs for a real API (or AWS) are."""
    secret = {"WEBHOOK_SECRET"}
    if not sandboxed or env.get("BLASTENGINE_API_KEY") != SANDBOX_API_KEY:
        secret.add("BLASTENGINE_API_KEY")
    shared = {k: v for k, v in env.items() if k not in secret}
    # The local endpoint takes any credentials: never pass on the user's own AWS ones.
    return {**shared, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
