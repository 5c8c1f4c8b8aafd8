"""The bounce webhook: blastengine POSTs bounce events to a URL whose last segment is a secret.

The webhook carries no signature and no auth header (``../shared/BLASTENGINE.md``), so the
URL is the secret: ``POST /hooks/{secret}``. The secret is compared in constant time and
never logged; a wrong or missing one gets the same answer as any unknown path (404), so the
endpoint does not even confirm it exists. A body that is not blastengine's shape gets a 400
with a short reason and writes nothing (the log line names the reason, never the body: it
holds addresses). Every event of a POST is applied through :class:`~dispatcher.bounces.ledger.
BounceLedger`, idempotently; if one cannot be (DynamoDB down), the POST fails with a 500 and
blastengine's retry applies them all again, changing nothing that was already applied.

Routing and the function URL event are Powertools' (``LambdaFunctionUrlResolver``).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import LambdaFunctionUrlResolver, Response

from dispatcher.bounces.ledger import BounceLedger
from dispatcher.bounces.payload import BadBounceError, parse_events
from dispatcher.config.settings import MIN_WEBHOOK_SECRET_CHARS, Settings, SettingsError
from dispatcher.support.observability import logger

__all__ = ["MAX_BODY_BYTES", "receiver_from_settings", "secret_loader", "webhook_app"]

#: A sane ceiling for one POST: MAX_EVENTS events of a few hundred bytes each.
MAX_BODY_BYTES = 256 * 1024
SECRET_CACHE_SECONDS = 300
#: A URL secret shorter than this could be guessed; the how-to says how to make one.
MIN_SECRET_CHARS = MIN_WEBHOOK_SECRET_CHARS


def _answer(status: int, message: str) -> Response[str]:
    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps({"message": message}),
    )


def webhook_app(ledger: BounceLedger, secret: Callable[[], str]) -> LambdaFunctionUrlResolver:
    """The receiver, routes and all, over ``ledger``; ``secret`` is read per request (it is
    cached by its loader, so a rotated secret is picked up within the cache's time)."""
    app = LambdaFunctionUrlResolver()

    @app.post("/hooks/<token>")
    def receive(token: str) -> Response[str]:
        if not hmac.compare_digest(token.encode(), secret().encode()):
            return _answer(404, "not found")
        raw = app.current_event.decoded_body or ""
        if len(raw.encode()) > MAX_BODY_BYTES:
            logger.warning("bounce webhook refused", extra={"reason": "body too large"})
            return _answer(413, f"the body is over {MAX_BODY_BYTES} bytes")
        try:
            events = parse_events(json.loads(raw))
        except RecursionError:  # a body of nested arrays deeper than the parser's stack
            logger.warning("bounce webhook refused", extra={"reason": "nested too deep"})
            return _answer(400, "the body is nested too deep to be blastengine's")
        except (ValueError, BadBounceError) as exc:
            reason = str(exc) if isinstance(exc, BadBounceError) else "the body is not JSON"
            logger.warning("bounce webhook refused", extra={"reason": reason})
            return _answer(400, reason)
        joined = 0
        try:
            for event in events:  # an error here is a 500: blastengine retries the whole POST
                joined += ledger.apply(event).joined
        finally:
            ledger.flush_events()
        logger.info("bounces recorded", extra={"events": len(events), "joined": joined})
        return _answer(200, f"{len(events)} event(s) recorded")

    @app.not_found
    def unknown(_: Exception) -> Response[str]:
        return _answer(404, "not found")

    return app


def secret_loader(settings: Settings) -> Callable[[], str]:
    """The URL's secret: ``WEBHOOK_SECRET`` locally, else the SSM SecureString named by
    ``WEBHOOK_SECRET_PARAMETER``, cached 5 minutes (a rotation is picked up within that)."""
    if settings.webhook_secret:
        static = settings.webhook_secret
        return lambda: static
    name = settings.webhook_secret_parameter
    if not name:
        raise SettingsError("WEBHOOK_SECRET_PARAMETER (or WEBHOOK_SECRET locally) is required")

    def load() -> str:
        from aws_lambda_powertools.utilities import parameters

        value = parameters.get_parameter(name, decrypt=True, max_age=SECRET_CACHE_SECONDS)
        if not isinstance(value, str) or len(value) < MIN_SECRET_CHARS:
            raise SettingsError(f"the webhook secret {name!r} must be {MIN_SECRET_CHARS}+ chars")
        return value

    return load


def receiver_from_settings(settings: Settings, *, dynamodb_client: Any = None) -> Any:
    """The webhook's resolver over the stack's tables, as the Lambda entry builds it."""
    ledger = BounceLedger.from_settings(settings, dynamodb_client=dynamodb_client)
    return webhook_app(ledger, secret_loader(settings))
