"""The ``dispatcher`` command line. Commands are thin: they compose the package's parts.

Domain errors (a bad setting, an unreadable event file, an unreachable endpoint) become one
line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from dispatcher.settings import SettingsError

app = typer.Typer(
    help="A visible queue for outgoing mail: DynamoDB rows in, blastengine deliveries out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class CommandError(Exception):
    """A failure to report as one line and exit status 2."""


@app.command()
def invoke(
    event_file: Annotated[Path, typer.Argument(help="A DynamoDB stream event (see events/).")],
    seed: Annotated[
        bool,
        typer.Option(
            "--seed",
            help="First put each INSERT/MODIFY record's NewImage into the send table, "
            "so the sample events find their rows.",
        ),
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="The simulated function timeout in seconds.", min=1)
    ] = 120.0,
) -> None:
    """Run the Lambda handler in-process on a stream event file, like `sam local invoke -e`.

    Uses the same environment as the function (SEND_TABLE_NAME, BLASTENGINE_*, ...) and
    boto3's AWS_ENDPOINT_URL; prints the partial batch response as JSON on stdout, logs on
    stderr.
    """
    with _errors_as_exit():
        event = _read_event(event_file)
        # Powertools writes logs and metrics to stdout; stdout is for the response here.
        with contextlib.redirect_stdout(sys.stderr):
            try:
                handler = importlib.import_module("dispatcher.handler")
            except SettingsError:
                raise
            except Exception as exc:
                raise CommandError(f"cannot start the handler: {exc}") from exc
            from dispatcher.local.context import LocalContext

            if seed:
                _seed_rows(handler.dispatcher.store, event)
            response = handler.lambda_handler(event, LocalContext(timeout_seconds=timeout))
    typer.echo(json.dumps(response, indent=2))


@app.command()
def demo() -> None:
    """Send the sample rows through the real handler against an in-memory DynamoDB and the
    built-in blastengine sandbox, then show what was sent and what stayed (no AWS needed)."""
    with _errors_as_exit():
        try:
            from dispatcher.local.demo import run_demo
        except ImportError as exc:
            raise CommandError(
                f"the demo needs the 'local' extra ({exc.name} is missing): "
                "pip install -e '.[local]'"
            ) from exc
        run_demo()


def _read_event(path: Path) -> dict[str, Any]:
    try:
        event = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CommandError(f"event file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read event file {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise CommandError(f"event file {path} is not JSON: {exc}") from None
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list):
        raise CommandError(f"event file {path} has no 'Records' list: not a stream event")
    return event


def _seed_rows(store: Any, event: dict[str, Any]) -> None:
    for record in event["Records"]:
        image = record.get("dynamodb", {}).get("NewImage")
        if record.get("eventName") in ("INSERT", "MODIFY") and image:
            try:
                store.client.put_item(TableName=store.send_table, Item=image)
            except Exception as exc:
                raise CommandError(f"cannot seed the send table: {exc}") from exc


@contextlib.contextmanager
def _errors_as_exit() -> Iterator[None]:
    """At the command edge: a domain error is one stderr line and exit status 2."""
    try:
        yield
    except (CommandError, SettingsError) as exc:
        typer.echo(f"dispatcher: error: {exc}", err=True)
        raise typer.Exit(2) from None


def main() -> None:
    """Console-script entry point."""
    app()
