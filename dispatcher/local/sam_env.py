"""The ``--env-vars`` file for ``sam local invoke`` against the local stack.

``sam local invoke DispatcherFunction -e events/insert.json --env-vars .dispatcher/sam-env.json``
runs the function as built (``sam build``) in SAM's Lambda container, pointed at the running
``dispatcher dev``: its DynamoDB endpoint (and moto's SSM, S3, EventBridge and SES on it) and
its sandbox, reached from the container at ``host`` (``host.docker.internal`` with Docker
Desktop; on Linux, ``dispatcher dev --sam-host 127.0.0.1`` and ``--docker-network host``).

SAM overrides only the variables the template declares, which is why the template declares
``AWS_ENDPOINT_URL`` (empty on AWS: botocore ignores an empty one). Secrets never go in the
file: the sandbox's credentials and the webhook's secret are SSM SecureStrings on the stack's
endpoint, named by the same ``*_PARAMETER`` variables as deployed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "CREDENTIALS_PARAMETER",
    "SAM_ENV_FILE",
    "WEBHOOK_SECRET_PARAMETER",
    "store_secrets",
    "write_sam_env",
]

SAM_ENV_FILE = "sam-env.json"
CREDENTIALS_PARAMETER = "/mail-dispatcher/local/blastengine"
WEBHOOK_SECRET_PARAMETER = "/mail-dispatcher/local/webhook-secret"  # noqa: S105  (a name)
UNSUBSCRIBE_KEYS_PARAMETER = "/mail-dispatcher/local/unsubscribe-keys"
#: What the functions' environment holds that the file leaves out: secrets (as parameters
#: instead), and what SAM sets itself.
_LEFT_OUT = {
    "BLASTENGINE_LOGIN_ID",
    "BLASTENGINE_API_KEY",
    "WEBHOOK_SECRET",
    "UNSUBSCRIBE_KEYS",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
}


def store_secrets(
    ssm: Any, *, login_id: str, api_key: str, webhook_secret: str, unsubscribe_keys: str = ""
) -> None:
    """The secrets as SecureStrings on the stack's endpoint, as deployed ones are in SSM."""
    if unsubscribe_keys:
        ssm.put_parameter(
            Name=UNSUBSCRIBE_KEYS_PARAMETER,
            Type="SecureString",
            Value=unsubscribe_keys,
            Overwrite=True,
        )
    ssm.put_parameter(
        Name=CREDENTIALS_PARAMETER,
        Type="SecureString",
        Value=json.dumps({"login_id": login_id, "api_key": api_key}),
        Overwrite=True,
    )
    ssm.put_parameter(
        Name=WEBHOOK_SECRET_PARAMETER, Type="SecureString", Value=webhook_secret, Overwrite=True
    )


def _from_container(url: str, host: str) -> str:
    parts = urlsplit(url)
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def write_sam_env(path: Path, function_env: dict[str, str], *, host: str) -> dict[str, Any]:
    """Write the file (every function's variables under ``Parameters``) and return it."""
    env = {k: v for k, v in function_env.items() if k not in _LEFT_OUT}
    for name in ("AWS_ENDPOINT_URL", "BLASTENGINE_BASE_URL", "UNSUBSCRIBE_BASE_URL"):
        if name in env:
            env[name] = _from_container(env[name], host)
    env["BLASTENGINE_CREDENTIALS_PARAMETER"] = CREDENTIALS_PARAMETER
    env["WEBHOOK_SECRET_PARAMETER"] = WEBHOOK_SECRET_PARAMETER
    env["UNSUBSCRIBE_KEYS_PARAMETER"] = UNSUBSCRIBE_KEYS_PARAMETER
    document = {"Parameters": env}
    path.write_text(json.dumps(document, indent=2) + "\n")
    return document
