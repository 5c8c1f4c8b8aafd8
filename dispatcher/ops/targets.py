"""Where the CLI's commands point: the local stack (default) or a deployed stack (``--stack``).

The local stack is found from ``local.json``, which ``dispatcher dev`` writes to its state
directory; a deployed stack from its CloudFormation outputs. Either way the commands get the
same :class:`Target`: an :class:`~dispatcher.ops.admin.Admin` over the stack's tables and,
locally, the sandbox's URL.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dispatcher.bounces.ledger import BounceLedger
from dispatcher.config.settings import DEFAULT_BLASTENGINE_BASE_URL
from dispatcher.local.options import STATE_FILE, default_state_dir
from dispatcher.ops.admin import Admin
from dispatcher.providers.attachments import Attachments
from dispatcher.providers.blastengine.client import BlastengineClient
from dispatcher.providers.blastengine.credentials import Credentials, parameter_loader
from dispatcher.recipients.suppression import SuppressionList
from dispatcher.reputation.guard import ReputationGuard, Thresholds
from dispatcher.storage.store import Store
from dispatcher.templates.library import TemplateLibrary

__all__ = [
    "Target",
    "TargetError",
    "default_state_dir",
    "deployed_stack",
    "local_stack",
    "local_state",
]


#: Where README "Deploy to AWS", step 1, puts the credentials (the template's default).
DEFAULT_PARAMETER = "/mail-dispatcher/blastengine"


class TargetError(Exception):
    """No stack could be found to talk to."""


@dataclass(frozen=True)
class Target:
    """The tables (through the operator's queries) and, for the local stack, the sandbox."""

    name: str
    admin: Admin
    sandbox_url: str | None = None
    attachments: Attachments | None = None
    provider_url: str = DEFAULT_BLASTENGINE_BASE_URL
    suppressions: SuppressionList | None = None
    bounce_table: str | None = None
    webhook_url: str | None = None
    #: The file the local stack's tap fills with the delivery events it published.
    events_file: str | None = None
    #: The function's staging safety, described (the console's banner); empty when off.
    staging: str = ""

    def template_library(self) -> TemplateLibrary:
        """The templates rows name (``dispatcher template``, the console's Templates page)."""
        if self.admin.templates is None:
            raise TargetError("this stack has no templates table (deploy the current template)")
        return self.admin.templates

    def ledger(self) -> BounceLedger:
        """The bounce path over this stack's tables, as the webhook uses it."""
        if self.suppressions is None or self.bounce_table is None:
            raise TargetError("this stack has no bounce or suppression table")
        return BounceLedger(
            bounce_table=self.bounce_table,
            history_table=self.admin.store.history_table,
            suppressions=self.suppressions,
            boto3_client=self.admin.store.client,
        )

    def provider(self) -> BlastengineClient:
        """A blastengine client for lookups: the local stack's sandbox (its credentials),
        or, for a deployed stack, blastengine itself with the credentials parameter read
        with your own AWS credentials (``BLASTENGINE_CREDENTIALS_PARAMETER``, default
        ``/mail-dispatcher/blastengine``)."""
        login_id = os.environ.get("BLASTENGINE_LOGIN_ID")
        api_key = os.environ.get("BLASTENGINE_API_KEY")
        if login_id and api_key:
            static = Credentials(login_id, api_key)
            credentials: Callable[[], Credentials] = lambda: static  # noqa: E731
        elif self.sandbox_url is not None:
            from dispatcher.local.sandbox.model import SANDBOX_API_KEY, SANDBOX_LOGIN_ID

            local = Credentials(SANDBOX_LOGIN_ID, SANDBOX_API_KEY)
            credentials = lambda: local  # noqa: E731
        else:
            credentials = parameter_loader(
                os.environ.get("BLASTENGINE_CREDENTIALS_PARAMETER") or DEFAULT_PARAMETER
            )
        return BlastengineClient(base_url=self.provider_url, credentials=credentials)


def _client(service: str, endpoint_url: str | None = None, region: str | None = None) -> Any:
    import boto3
    from botocore.config import Config

    # A person is waiting: fail in seconds, not after botocore's default minute of retries.
    config = Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 2})
    # The local endpoint accepts any credentials; nobody should need an AWS profile for it.
    local = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        config=config,
        **(local if endpoint_url else {}),
    )


def local_state(state_dir: Path) -> dict[str, Any]:
    """What ``dispatcher dev`` wrote of the stack it runs (``local.json``: the ready line's
    facts, the function's environment, the console's URL)."""
    path = state_dir / STATE_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TargetError(
            f"no local stack is running (no {path}); start one with `dispatcher dev`, "
            "or name a deployed one with --stack"
        ) from None
    except (OSError, ValueError) as exc:
        raise TargetError(f"cannot read {path}: {exc}") from None
    if not isinstance(info, dict) or "endpoint_url" not in info:
        raise TargetError(f"{path} is not a local stack's state file")
    return info


def local_stack(state_dir: Path) -> Target:
    """The stack ``dispatcher dev`` is running, from its ``local.json``."""
    info = local_state(state_dir)
    client = _client("dynamodb", info["endpoint_url"], info["region"])
    store = Store(
        send_table=info["send_table"],
        history_table=info["history_table"],
        boto3_client=client,
        sent_mail_table=info.get("sent_mail_table") or None,
    )
    attachments = Attachments(
        bucket=info.get("attachments_bucket"),
        max_total_bytes=1,  # the CLI only uploads; the function checks sizes
        s3_client=_client("s3", info["endpoint_url"], info["region"]),
    )
    suppressions = (
        SuppressionList(table=info["suppression_table"], boto3_client=client)
        if info.get("suppression_table")
        else None
    )
    return Target(
        f"local stack at {info['endpoint_url']}",
        Admin(
            store,
            suppressions,
            _templates(info.get("templates_table"), client),
            _guard(info.get("env", {}).get("REPUTATION_TABLE_NAME"), client),
        ),
        info.get("sandbox_url"),
        attachments,
        info.get("provider_url") or DEFAULT_BLASTENGINE_BASE_URL,
        suppressions,
        info.get("bounce_table"),
        info.get("webhook_url"),
        info.get("events_file"),
        _staging(
            info.get("env", {}).get("RECIPIENT_ALLOWLIST"),
            info.get("env", {}).get("REDIRECT_ALL_TO"),
        ),
    )


def deployed_stack(name: str) -> Target:
    """A stack deployed from ``template.yaml``, found by its CloudFormation outputs."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        stacks = _client("cloudformation").describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        raise TargetError(f"stack {name!r}: {exc.response['Error'].get('Message')}") from None
    except BotoCoreError as exc:
        raise TargetError(f"cannot reach CloudFormation for stack {name!r}: {exc}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    parameters = {
        p["ParameterKey"]: p.get("ParameterValue", "") for p in stacks[0].get("Parameters", [])
    }
    missing = {"SendTableName", "HistoryTableName"} - set(outputs)
    if missing:
        raise TargetError(
            f"stack {name!r} has no {', '.join(sorted(missing))} output: "
            "is it a mail-dispatcher stack?"
        )
    store = Store(
        send_table=outputs["SendTableName"],
        history_table=outputs["HistoryTableName"],
        boto3_client=_client("dynamodb"),
        sent_mail_table=outputs.get("SentMailTableName"),
    )
    bucket = outputs.get("AttachmentsBucketName")
    attachments = Attachments(bucket=bucket, max_total_bytes=1) if bucket else None
    suppressions = (
        SuppressionList(table=outputs["SuppressionTableName"], boto3_client=store.client)
        if outputs.get("SuppressionTableName")
        else None
    )
    return Target(
        f"stack {name}",
        Admin(
            store,
            suppressions,
            _templates(outputs.get("TemplatesTableName"), store.client),
            _guard(outputs.get("ReputationTableName"), store.client),
        ),
        attachments=attachments,
        provider_url=os.environ.get("BLASTENGINE_BASE_URL") or DEFAULT_BLASTENGINE_BASE_URL,
        suppressions=suppressions,
        bounce_table=outputs.get("BounceTableName"),
        webhook_url=outputs.get("BounceWebhookUrl"),
        staging=_staging(parameters.get("RecipientAllowlist"), parameters.get("RedirectAllTo")),
    )


def _guard(table: str | None, client: Any) -> ReputationGuard | None:
    """The reputation guard's table, for resuming (the thresholds are the function's)."""
    if not table:
        return None
    return ReputationGuard(
        table=table, boto3_client=client, thresholds=Thresholds(0.05, 0.003, 200)
    )


def _templates(table: str | None, client: Any) -> TemplateLibrary | None:
    return TemplateLibrary(table=table, boto3_client=client) if table else None


def _staging(allowlist: str | None, redirect: str | None) -> str:
    """What the function's staging safety does, in a line (as its settings read it)."""
    from dispatcher.config.settings import parse_allowlist
    from dispatcher.recipients.staging import Staging

    try:
        return Staging(parse_allowlist(allowlist), redirect or None).describe()
    except ValueError as exc:  # the function itself refuses to start so: say that
        return f"misconfigured ({exc})"
