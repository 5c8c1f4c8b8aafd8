"""What every command shares: the Typer app, the consoles, options, the stack a command
talks to, and how a domain error becomes one line on stderr and exit status 2."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from dispatcher.config.settings import SettingsError
from dispatcher.model.row import checked_address
from dispatcher.support.clock import parse_iso


class _Provider(StrEnum):
    BLASTENGINE = "blastengine"
    SES = "ses"


app = typer.Typer(
    help=(
        "A visible queue for outgoing mail: DynamoDB rows in, provider deliveries out.\n\n"
        "Every command but dev, demo and invoke talks to a stack: the local one dispatcher dev "
        "runs (found through local.json in --state-dir), or a deployed one (--stack NAME, "
        "from its CloudFormation outputs, with your AWS credentials).\n\n"
        "Data goes to stdout, a table or with --json JSON for scripts; messages go to stderr. "
        "A bad argument, an unknown id or an unreachable endpoint is one line on stderr and "
        "exit status 2."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
LiveOption = Annotated[
    bool,
    typer.Option(
        "--live",
        help="Also ask blastengine (GET /deliveries/ID) how each sent mail's delivery stands.",
    ),
]


class CommandError(Exception):
    """A failure to report as one line and exit status 2."""


@dataclass
class _Factory:
    """Builds what commands need, once, from the global options (chalice's CLIFactory)."""

    stack: str | None
    state_dir: Path
    _target: Any = None

    def target(self) -> Any:
        if self._target is None:
            from dispatcher.ops.targets import deployed_stack, local_stack

            self._target = deployed_stack(self.stack) if self.stack else local_stack(self.state_dir)
        return self._target


@app.callback()
def _options(
    ctx: typer.Context,
    stack: Annotated[
        str | None,
        typer.Option(
            "--stack",
            envvar="DISPATCHER_STACK",
            help="A deployed stack's name; default: the local stack `dispatcher dev` runs.",
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            envvar="DISPATCHER_STATE_DIR",
            help="Where `dispatcher dev` keeps local.json (default: ./.dispatcher).",
        ),
    ] = None,
) -> None:
    """A visible queue for outgoing mail: DynamoDB rows in, provider deliveries out."""
    from dispatcher.ops.targets import default_state_dir

    ctx.obj = _Factory(stack, state_dir or default_state_dir())


# ----------------------------------------------------------------------------- the stack


# ----------------------------------------------------------------------------- helpers


def duration(value: str, option: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = value[:-1], value[-1:].lower()
    if unit not in units or not number.isdigit() or int(number) <= 0:
        raise CommandError(f"{option} wants a duration such as 30m, 2h or 7d, got {value!r}")
    return timedelta(seconds=int(number) * units[unit])


def target_of(ctx: typer.Context) -> Any:
    return ctx.find_root().obj.target()


def suppressions_of(ctx: typer.Context) -> Any:
    suppressions = target_of(ctx).suppressions
    if suppressions is None:
        raise CommandError("this stack has no suppression table")
    return suppressions


@contextlib.contextmanager
def errors_as_exit() -> Iterator[None]:
    """At the command edge: a domain error is one stderr line and exit status 2."""
    from dispatcher.ops.targets import TargetError
    from dispatcher.providers.attachments import AttachmentsUnavailableError
    from dispatcher.providers.errors import ProviderError
    from dispatcher.storage.dynamodb import StoreError
    from dispatcher.templates.library import UnknownTemplateError

    try:
        yield
    except (CommandError, SettingsError, TargetError, StoreError, UnknownTemplateError) as exc:
        fail(str(exc))
    except (AttachmentsUnavailableError, ProviderError) as exc:
        fail(str(exc))
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as exc:
        # Still one line (a table the CLI cannot read, an answer it did not expect); the
        # traceback is there for whoever asks.
        if os.environ.get("DISPATCHER_DEBUG"):
            raise
        fail(f"unexpected {type(exc).__name__}: {exc} (DISPATCHER_DEBUG=1 shows the traceback)")


def fail(message: str) -> None:
    err.print(f"dispatcher: error: {message}", markup=False, highlight=False)
    raise typer.Exit(2)


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CommandError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {what} {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise CommandError(f"{what} {path} is not JSON: {exc}") from None


def json_object(raw: str, option: str) -> dict[str, Any]:
    """An option's JSON object, given inline or as ``@FILE`` (numbers as Decimal, as
    DynamoDB takes them)."""
    from decimal import Decimal

    if raw.startswith("@"):
        value = read_json(Path(raw[1:]), f"{option} file")
    else:
        try:
            value = json.loads(raw, parse_float=Decimal)
        except json.JSONDecodeError as exc:
            raise CommandError(f"{option} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CommandError(f"{option} must be a JSON object")
    return value


def read_jsonl(path: Path) -> list[Any]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise CommandError(f"rows file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read rows file {path}: {exc}") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise CommandError(f"{path}:{number} is not JSON: {exc}") from None
    if not rows:
        raise CommandError(f"{path} holds no rows")
    return rows


def key_value(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise CommandError(f"--insert-code wants KEY=VALUE, got {item!r}")
    return key, value


def take(items: Iterator[Any], limit: int) -> tuple[list[Any], bool]:
    taken: list[Any] = []
    for item in items:
        if len(taken) == limit:
            return taken, True
        taken.append(item)
    return taken, False


def iso(value: str, option: str) -> str:
    from dispatcher.support.clock import iso_utc

    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{option} wants an ISO-8601 time, got {value!r}") from None
    return iso_utc(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def moment(value: str, option: str) -> str:
    """A time as the history keys it (ISO-8601, UTC), from a duration back from now (``2h``,
    ``7d``) or an ISO-8601 time."""
    from dispatcher.support.clock import iso_utc

    if value[-1:].lower() in "smhd" and value[:-1].isdigit():
        return iso_utc(datetime.now(UTC) - duration(value, option))
    try:
        return iso(value, option)
    except CommandError:
        raise CommandError(
            f"{option} wants a duration such as 2h or 7d, or an ISO-8601 time, got {value!r}"
        ) from None


def address_argument(value: str, option: str) -> str:
    """An address argument, lower-cased as the history and the suppression list key it."""
    try:
        return checked_address(value)
    except ValueError as exc:
        raise CommandError(f"{option}: {exc}") from None


def age(stamp: Any) -> str:
    then = parse_iso(stamp)
    if then is None:
        return ""
    seconds = int((datetime.now(UTC) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def deliveries_of(ctx: typer.Context, history: list[dict[str, Any]]) -> dict[str, Any]:
    """blastengine's current detail of each history item's delivery, by delivery id (SES
    has no such look-up: its deliveries come as events, on the history item already)."""
    provider = target_of(ctx).provider()
    return {
        str(item["delivery_id"]): provider.delivery(str(item["delivery_id"]))
        for item in history
        if item.get("delivery_id") is not None
        and item.get("provider", "blastengine") == "blastengine"
    }


def delivery_line(detail: dict[str, Any]) -> str:
    counts = ", ".join(
        f"{detail.get(key, 0)} {label}"
        for key, label in (
            ("sent_count", "sent"),
            ("hard_error_count", "hard error"),
            ("soft_error_count", "soft error"),
            ("drop_count", "dropped"),
        )
    )
    return f"{detail.get('status', '?')} ({counts})"
