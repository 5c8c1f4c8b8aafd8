"""The providers a deployment's settings name, built once per container: their clients, the
routes between them (with the primary's circuit) and their look-ups.

Only what the settings name is built: a blastengine-only deployment builds no SES client (no
botocore service model loaded at a cold start), an SES-only one needs no blastengine
credentials. A row that pins a provider the deployment lacks fails ``config``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dispatcher.providers.base import DeliveryLookup, MailProvider
from dispatcher.providers.blastengine.credentials import credentials_loader
from dispatcher.providers.circuit import Circuit
from dispatcher.providers.routing import Routes
from dispatcher.support.clock import Clock

if TYPE_CHECKING:
    import httpx
    from mypy_boto3_dynamodb import DynamoDBClient

    from dispatcher.config.settings import Settings
    from dispatcher.providers.attachments import Attachments

__all__ = ["build_providers"]


def build_providers(
    settings: Settings,
    *,
    dynamodb_client: DynamoDBClient,
    attachments: Attachments,
    clock: Clock,
    http_client: httpx.Client | None = None,
    ses_client: Any = None,
    providers: Mapping[str, MailProvider] | None = None,
) -> tuple[Routes, dict[str, DeliveryLookup]]:
    """The routes and look-ups; ``providers`` replaces built clients by name (tests)."""
    built: dict[str, MailProvider] = {}
    lookups: dict[str, DeliveryLookup] = {}
    if settings.has_blastengine:
        from dispatcher.providers.blastengine.client import BlastengineClient
        from dispatcher.providers.blastengine.lookup import BlastengineLookup

        blastengine = BlastengineClient(
            base_url=settings.blastengine_base_url,
            credentials=credentials_loader(settings),
            http_client=http_client,
            max_connections=settings.send_concurrency,
            open_attachment=attachments.open,
        )
        built["blastengine"] = blastengine
        lookups["blastengine"] = BlastengineLookup(blastengine)
    if "ses" in settings.providers or ses_client is not None:
        from dispatcher.providers.ses.client import SesClient, client_config
        from dispatcher.providers.ses.lookup import SesLookup, SesSendLog

        if ses_client is None:
            import boto3

            ses_client = boto3.client(
                "sesv2", config=client_config(settings.request_timeout_seconds)
            )
        built["ses"] = SesClient(
            client=ses_client,
            configuration_set=settings.ses_configuration_set,
            open_attachment=attachments.open,
        )
        log = (
            SesSendLog(dynamodb_client, settings.bounce_table_name)
            if settings.bounce_table_name and settings.ses_configuration_set
            else None
        )
        lookups["ses"] = SesLookup(log)
    built.update(providers or {})
    circuit = (
        Circuit(
            dynamodb_client,
            settings.rate_limit_table_name,
            settings.mail_provider,
            threshold=settings.failover_threshold,
            window_seconds=settings.failover_window_seconds,
            cooldown_seconds=settings.failover_cooldown_seconds,
            clock=clock,
        )
        if settings.failover_provider and settings.rate_limit_table_name
        else None
    )
    routes = Routes(
        built,
        primary=settings.mail_provider,
        failover=settings.failover_provider,
        circuit=circuit,
        failover_after_attempts=settings.failover_after_attempts,
    )
    return routes, lookups
