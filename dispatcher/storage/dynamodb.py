"""DynamoDB calls as every table here makes them: failures translated, conditions as yes/no.

``ClientError`` codes are translated in one place, :func:`translated`: a failed condition
means :class:`RowChangedError` (someone edited or removed the row; leave it alone), anything
else means :class:`StoreUnavailableError`, which the handler reports as a batch item failure
so Lambda retries the record. The row is never lost either way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = [
    "BATCH_GET_LIMIT",
    "RowChangedError",
    "StoreError",
    "StoreUnavailableError",
    "batch_get",
    "conditionally",
    "seconds_value",
    "translated",
]


class StoreError(Exception):
    """A DynamoDB call did not do what was asked."""


class RowChangedError(StoreError):
    """The row no longer holds the content this write was conditioned on (edited or gone)."""


class StoreUnavailableError(StoreError):
    """DynamoDB throttled, timed out or failed; the record should be retried."""


#: BatchGetItem's own limit on keys per request, and how often unprocessed keys are asked again.
BATCH_GET_LIMIT = 100
BATCH_GET_ATTEMPTS = 5


def batch_get(
    client: DynamoDBClient, table: str, keys: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The items of ``keys`` (at most :data:`BATCH_GET_LIMIT`), read consistently; keys with
    no item are left out. Keys DynamoDB leaves unprocessed are asked again with a backoff;
    still unprocessed after :data:`BATCH_GET_ATTEMPTS`, it is :class:`StoreUnavailableError`."""
    if not keys:  # DynamoDB refuses an empty request ("Invalid length for RequestItems")
        return []
    items: list[dict[str, Any]] = []
    request: Any = {table: {"Keys": keys, "ConsistentRead": True}}
    for attempt in range(BATCH_GET_ATTEMPTS):
        if attempt:
            time.sleep(min(1.0, 0.05 * 2**attempt))  # DynamoDB asks for a backoff
        with translated():
            response = client.batch_get_item(RequestItems=request)
        items.extend(response.get("Responses", {}).get(table, []))
        request = response.get("UnprocessedKeys") or {}
        if not request:
            return items
    raise StoreUnavailableError(
        f"DynamoDB left {len(request[table]['Keys'])} of {len(keys)} keys of {table} unread "
        f"after {BATCH_GET_ATTEMPTS} attempts (throttled); try again"
    )


def conditionally(call: Callable[..., Any], **kwargs: Any) -> bool:
    """Make a conditional write; False if its condition failed (the row moved on)."""
    try:
        with translated():
            call(**kwargs)
    except RowChangedError:
        return False
    return True


@contextmanager
def translated() -> Iterator[None]:
    """Map DynamoDB failures onto :class:`RowChangedError` / :class:`StoreUnavailableError`."""
    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ConditionalCheckFailedException" or (
            code == "TransactionCanceledException" and _only_condition_failures(exc)
        ):
            raise RowChangedError(code) from exc
        raise StoreUnavailableError(f"DynamoDB {code}: {exc}") from exc
    except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError) as exc:
        raise StoreUnavailableError(f"DynamoDB unreachable: {exc}") from exc
    except BotoCoreError as exc:  # e.g. a request botocore refuses to send
        raise StoreUnavailableError(f"DynamoDB call failed: {exc}") from exc


def _only_condition_failures(exc: ClientError) -> bool:
    """True if a cancelled transaction failed on conditions alone, not on throttling."""
    reasons = exc.response.get("CancellationReasons") or []
    codes = {r.get("Code") for r in reasons if r.get("Code") not in (None, "None")}
    if not codes:  # no reasons given: fall back to the message, as moto and DynamoDB word it
        return "ConditionalCheckFailed" in str(exc)
    return codes == {"ConditionalCheckFailed"}


def seconds_value(seconds: float) -> dict[str, str]:
    """A time in seconds as a DynamoDB number, to the microsecond (the limit table's slots
    and the circuit's cool-down)."""
    return {"N": f"{seconds:.6f}"}
