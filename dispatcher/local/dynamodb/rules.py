"""What DynamoDB refuses and moto 5.2 accepts, refused by the local endpoint before moto sees it.

A local endpoint that stores what DynamoDB would refuse lets a test pass on data that cannot
exist in production, and moto hands some of it back mangled (a map with an empty key came
back from ``GetRecords`` as ``{"M": {"S": "x"}}``, which botocore cannot parse). Two rules so
far, each as DynamoDB applies it:

- **Empty attribute names.** DynamoDB refuses an attribute name that is the empty string
  wherever a request carries one: an item's attribute, a map key at any depth inside a value,
  a key, an ``ExpressionAttributeNames`` value (ValidationException, "Empty attribute name").
- **Key attribute types.** An attribute that is a key of the table or of one of its indexes
  must have the type its ``AttributeDefinitions`` give (ValidationException, "Type mismatch
  for Index Key"): ``status`` stored as a number would break the sweeper's index.

The key types are learnt from the ``CreateTable`` requests that pass through, so the rules
hold for every table created on the endpoint, the template's among them.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["DynamoDBRules"]

_INVALID = "One or more parameter values were invalid: "
_SET_ASSIGNMENT = re.compile(r"(#?[A-Za-z0-9_]+)\s*=\s*(:[A-Za-z0-9_]+)")
_CLAUSE = re.compile(r"\b(SET|REMOVE|ADD|DELETE)\b", re.IGNORECASE)


class DynamoDBRules:
    """Checks one request; :meth:`check` returns DynamoDB's refusal, or None to let it pass."""

    def __init__(self) -> None:
        self._key_types: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    def check(self, operation: str, request: Mapping[str, Any]) -> str | None:
        if operation == "CreateTable":
            self._learn(request)
            return None
        for writes in _writes(operation, request):
            problem = self._check_write(writes)
            if problem is not None:
                return problem
        return None

    def _learn(self, request: Mapping[str, Any]) -> None:
        types = {
            d.get("AttributeName", ""): d.get("AttributeType", "")
            for d in request.get("AttributeDefinitions", [])
            if isinstance(d, Mapping)
        }
        with self._lock:
            self._key_types[str(request.get("TableName"))] = types

    def _check_write(self, op: Mapping[str, Any]) -> str | None:
        for field in ("Item", "Key", "ExpressionAttributeValues"):
            value = op.get(field)
            if isinstance(value, Mapping) and _has_empty_name(value):
                return _INVALID + "Empty attribute name"
        names = op.get("ExpressionAttributeNames")
        if isinstance(names, Mapping):
            for alias, name in names.items():
                if name == "":
                    return (
                        "ExpressionAttributeNames contains invalid value: "
                        f"Empty attribute name for key {alias}"
                    )
        with self._lock:
            key_types = dict(self._key_types.get(str(op.get("TableName")), {}))
        for name, value in _assigned(op):
            expected = key_types.get(name)
            actual = next(iter(value), None) if isinstance(value, Mapping) else None
            if expected and actual and actual != expected:
                return (
                    _INVALID + f"Type mismatch for Index Key {name} "
                    f"Expected: {expected} Actual: {actual}"
                )
        return None


def _writes(operation: str, request: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """The single-item operations a request carries, each with its ``TableName``."""
    if operation in ("PutItem", "UpdateItem", "DeleteItem"):
        yield request
    elif operation == "TransactWriteItems":
        for entry in request.get("TransactItems", []):
            for op in entry.values() if isinstance(entry, Mapping) else ():
                if isinstance(op, Mapping):
                    yield op
    elif operation == "BatchWriteItem":
        for table, entries in (request.get("RequestItems") or {}).items():
            for entry in entries if isinstance(entries, list) else ():
                for op in entry.values() if isinstance(entry, Mapping) else ():
                    if isinstance(op, Mapping):
                        yield {"TableName": table, **op}


def _has_empty_name(attributes: Mapping[str, Any]) -> bool:
    return any(name == "" or _value_has_empty_name(v) for name, v in attributes.items())


def _value_has_empty_name(value: Any) -> bool:
    if not isinstance(value, Mapping):
        return False
    if isinstance(value.get("M"), Mapping):
        return _has_empty_name(value["M"])
    if isinstance(value.get("L"), list):
        return any(_value_has_empty_name(v) for v in value["L"])
    return False


def _assigned(op: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """(attribute name, wire value) for each attribute a write sets to a known value: a Put's
    item, and an UpdateItem's ``SET name = :value`` assignments."""
    item = op.get("Item")
    if isinstance(item, Mapping):
        yield from item.items()
    expression = op.get("UpdateExpression")
    if not isinstance(expression, str):
        return
    names = op.get("ExpressionAttributeNames") or {}
    values = op.get("ExpressionAttributeValues") or {}
    parts = _CLAUSE.split(expression)
    for keyword, clause in zip(parts[1::2], parts[2::2], strict=False):
        if keyword.upper() != "SET":
            continue
        for target, placeholder in _SET_ASSIGNMENT.findall(clause):
            name = names.get(target, target) if target.startswith("#") else target
            if placeholder in values:
                yield name, values[placeholder]
