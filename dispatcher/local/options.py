"""How the local stack is asked to run, and what it says once it runs (the ready line)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dispatcher.local.sandbox.model import Faults

__all__ = ["STATE_FILE", "ReadyInfo", "StackOptions", "default_state_dir"]

#: What the CLI reads to find a running stack, in its state directory; removed on stop.
STATE_FILE = "local.json"


def default_state_dir() -> Path:
    """``$DISPATCHER_STATE_DIR``, or ``.dispatcher`` in the current directory."""
    return Path(os.environ.get("DISPATCHER_STATE_DIR") or ".dispatcher")


@dataclass(frozen=True)
class StackOptions:
    """How ``dispatcher dev`` was asked to run."""

    port: int = 0
    provider_url: str | None = None
    sandbox_faults: Faults = field(default_factory=Faults)
    sweep_interval: float = 10.0
    state_dir: Path = field(default_factory=default_state_dir)
    crash_rate: float = 0.0  # share of invocations that crash after the handler ran
    kill_rate: float = 0.0  # share of invocations killed mid-batch (function in its own process)
    dynamodb_fault_rate: float = 0.0  # share of the handler's DynamoDB calls throttled
    seed: int | None = None
    fresh: bool = False  # start with empty tables, discarding what the state dir kept
    persist: bool = True  # keep the tables across restarts (off: in memory only)
    shards: int = 1  # the send table's stream fanned out as a table with this many partitions
    #: The mapping's settings instead of the template's defaults, as `sam deploy
    #: --parameter-overrides` would set them (``batching_window``, ``parallelization_factor``).
    mapping_overrides: dict[str, Any] = field(default_factory=dict)
    log_format: str = "json"  # the functions' logs: json (Lambda's lines) or human
    log_colour: bool = False
    log_level: str | None = None  # the functions' (POWERTOOLS_LOG_LEVEL); None: theirs
    #: MAIL_PROVIDER / FAILOVER_PROVIDER for the functions; None: the environment's. SES is
    #: moto's, on the stack's endpoint, with the default sender's domain verified.
    mail_provider: str | None = None
    failover_provider: str | None = None
    #: The stack's address from SAM's Lambda container, in the --env-vars file it writes.
    sam_host: str = "host.docker.internal"


@dataclass(frozen=True)
class ReadyInfo:
    """The ``ready`` line (``DESIGN.md``, "Interfaces") and what the CLI needs besides."""

    endpoint_url: str
    region: str
    send_table: str
    history_table: str
    idempotency_table: str
    provider_url: str
    sandbox_url: str | None
    on_failure_file: str
    stream_arn: str
    attachments_bucket: str
    suppression_table: str
    bounce_table: str
    webhook_url: str = ""
    #: The one-click unsubscribe endpoint (its links end /u/TOKEN).
    unsubscribe_url: str = ""
    #: The mail as sent (``dispatcher resend`` reads it).
    sent_mail_table: str = ""
    #: Templates (``dispatcher template`` writes it).
    templates_table: str = ""
    #: The delivery events' bus on the endpoint, and the file the stack's own tap fills.
    event_bus: str = ""
    events_file: str = ""
    #: ``sam local invoke --env-vars`` file pointing the built function at this stack.
    sam_env_file: str = ""
    #: The web console's URL with its token, when ``dispatcher dev`` serves it.
    console_url: str = ""
    #: What another process needs to run the function against this stack (``dispatcher
    #: invoke``, a second shard): the function's environment, secrets the user gave left out.
    env: dict[str, str] = field(default_factory=dict)

    def ready_line(self) -> str:
        keys = (
            "endpoint_url",
            "region",
            "send_table",
            "history_table",
            "idempotency_table",
            "provider_url",
            "attachments_bucket",
            "webhook_url",
            "unsubscribe_url",
            "event_bus",
            "console_url",
            "env",
        )
        return json.dumps({"event": "ready", **{k: getattr(self, k) for k in keys}})
