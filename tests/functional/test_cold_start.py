"""The Tracer, and its X-Ray SDK, exist only where Powertools would trace: a cold import of
the handler in a fresh interpreter, as Lambda does it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FUNCTION_ENV

LAMBDA = {"LAMBDA_TASK_ROOT": "/var/task"}


@pytest.mark.parametrize(("disabled", "traced"), [("false", True), ("true", False)])
def test_the_xray_sdk_is_imported_only_when_tracing(disabled: str, traced: bool) -> None:
    # GIVEN a fresh interpreter that looks like Lambda, with tracing on or off
    env = {
        **os.environ,
        **LAMBDA,
        "POWERTOOLS_TRACE_DISABLED": disabled,
        **FUNCTION_ENV,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    code = (
        "import json, sys; import dispatcher.handler; "
        "from dispatcher.support.observability import tracer; "
        "print(json.dumps(['aws_xray_sdk.core' in sys.modules, tracer is not None]))"
    )

    # WHEN the handler module is imported
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )

    # THEN the X-Ray SDK is loaded, and the handler traced, only with tracing on
    sdk_loaded, has_tracer = json.loads(out.stdout.strip().splitlines()[-1])
    assert sdk_loaded is traced
    assert has_tracer is traced


ENTRIES = [
    "dispatcher.handler",
    "dispatcher.sweeper",
    "dispatcher.webhook",
    "dispatcher.ses_handler",
    "dispatcher.unsubscribe",
]


#: What the dispatcher imports only when a row names a template (the template engine).
LAZY = ["dispatcher.templates.render"]

#: Every function's environment as the template gives it (secrets by parameter name).
DEPLOYED = {
    "SEND_TABLE_NAME": "s",
    "HISTORY_TABLE_NAME": "h",
    "IDEMPOTENCY_TABLE_NAME": "i",
    "SUPPRESSION_TABLE_NAME": "x",
    "BOUNCE_TABLE_NAME": "b",
    "DEFAULT_FROM_EMAIL": "a@example.com",
    "BLASTENGINE_CREDENTIALS_PARAMETER": "/mail-dispatcher/blastengine",
    "WEBHOOK_SECRET_PARAMETER": "/mail-dispatcher/webhook-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "UNSUBSCRIBE_KEYS": "k" * 32,  # the SSM parameter's, as the functions would read it
    "UNSUBSCRIBE_BASE_URL": "https://unsub.example/",
}


@pytest.mark.parametrize("entry", ENTRIES)
def test_each_lambda_entry_imports_from_its_environment(entry: str) -> None:
    env = {**os.environ, **DEPLOYED}
    # ... and none of the operator's tools, which the Lambda package leaves out
    code = (
        f"import sys, {entry} as m; print(callable(m.lambda_handler)); "
        "print(sorted(n for n in sys.modules if n.split('.')[0] in "
        "('starlette', 'jinja2', 'uvicorn', 'multipart', 'moto', 'typer') or "
        "n.startswith(('dispatcher.ops', 'dispatcher.local', 'dispatcher.producer'))))"
    )

    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )

    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-2:] == ["True", "[]"]


def test_the_lambda_package_holds_only_what_the_functions_import() -> None:
    """Every module the build ships (dispatcher/ without ops/, local/, producer/) is loaded by
    some function's entry: nothing rides along to Lambda unused."""
    root = Path(__file__).resolve().parents[2]
    shipped = set()
    for path in (root / "dispatcher").rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[1] not in ("ops", "local", "producer"):
            shipped.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    env = {**os.environ, **DEPLOYED}
    # ... the entries, and what the first row that names a template imports
    code = (
        f"import json, sys; import {', '.join(ENTRIES)}, {', '.join(LAZY)}; "
        "print(json.dumps(sorted(n for n in sys.modules if n.startswith('dispatcher'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert shipped - loaded == set()
