"""The templates table: every saved version, and each variant's current one.

Items share the template's ``name`` (the partition key) and differ by ``key``: ``v#0000000003``
is version 3 (of whichever language it was saved in: versions count per name), and
``current#`` or ``current#ja`` a copy of the default or the ``ja`` variant's current
version. A save writes both in one transaction, the version on condition that it is new and
the copy on condition that it is still the version the person started from, so two people
saving at once never lose an edit silently: the second is told. Reading the current version
is one GetItem (two for a language that falls back to the default); the function reads each
template once per batch (:meth:`TemplateLibrary.fresh` starts a batch).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from dispatcher.model.template_row import parse_ref
from dispatcher.storage.dynamodb import StoreError, conditionally, translated
from dispatcher.support.clock import iso_utc
from dispatcher.templates.version import TemplateVersion

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from dispatcher.config.settings import Settings

__all__ = ["SaveConflictError", "TemplateLibrary", "TemplateSet", "UnknownTemplateError"]

_VERSION = "v#"
_CURRENT = "current#"
_FIELDS = (
    "subject", "text", "html", "language", "from_email", "from_name", "reply_to",
    "variables", "required", "example", "saved_at", "saved_by",
)  # fmt: skip


class UnknownTemplateError(LookupError):
    """No such template, version or language; the message names it."""


class SaveConflictError(StoreError):
    """Someone saved the template since this edit started; nothing was written."""


class TemplateLibrary:
    """Reads and saves templates."""

    def __init__(self, *, table: str, boto3_client: DynamoDBClient) -> None:
        self.table = table
        self._client = boto3_client
        self._cache: dict[tuple[str, str], TemplateVersion | None] = {}
        self._loading: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: Settings, *, dynamodb_client: Any = None
    ) -> TemplateLibrary | None:
        """Over the stack's table; None where the deployment has none."""
        if not settings.templates_table_name:
            return None
        import boto3

        return cls(
            table=settings.templates_table_name,
            boto3_client=dynamodb_client or boto3.client("dynamodb"),
        )

    def fresh(self) -> None:
        """Forget what was read: a new batch reads each template again (once)."""
        with self._lock:
            self._cache.clear()
            self._loading.clear()

    def resolve(self, ref: str, language: str = "") -> TemplateVersion:
        """The version a row's ``template`` (``name`` or ``name@N``) and ``language`` name:
        the pinned version, or the language's current one, else the default language's.
        Raises :class:`UnknownTemplateError` or ValueError (a ref that is no name)."""
        key = (ref, language)
        with self._lock:
            loading = self._loading.setdefault(key, threading.Lock())
        # One read per template per batch, however many send threads ask at once: the first
        # reads, the others wait for what it read.
        with loading:
            with self._lock:
                known = key in self._cache
                found = self._cache.get(key)
            if not known:
                found = _resolved(self, ref, language)
                with self._lock:
                    self._cache[key] = found
        if found is None:
            raise UnknownTemplateError(_unknown(ref, language))
        return found

    def current(self, name: str, language: str = "") -> TemplateVersion | None:
        return self._get(name, _CURRENT + language)

    def version(self, name: str, number: int) -> TemplateVersion | None:
        return self._get(name, f"{_VERSION}{number:010d}")

    def versions(self, name: str) -> list[TemplateVersion]:
        """Every saved version of ``name``, oldest first."""
        return [
            _from_item(item)
            for item in self._query(
                KeyConditionExpression="#n = :n AND begins_with(#k, :v)",
                ExpressionAttributeNames={"#n": "name", "#k": "key"},
                ExpressionAttributeValues={":n": {"S": name}, ":v": {"S": _VERSION}},
            )
        ]

    def currents(self) -> list[TemplateVersion]:
        """Each template's current version of each language, by name (a Scan: the table
        holds a few hundred items, read by people, never by the functions)."""
        items: list[TemplateVersion] = []
        paginator = self._client.get_paginator("scan")
        with translated():
            for page in paginator.paginate(
                TableName=self.table,
                FilterExpression="begins_with(#k, :c)",
                ExpressionAttributeNames={"#k": "key"},
                ExpressionAttributeValues={":c": {"S": _CURRENT}},
            ):
                items.extend(_from_item(item) for item in page.get("Items", []))
        return sorted(items, key=lambda t: (t.name, t.language))

    def save(
        self, draft: TemplateVersion, *, expected: int | None, by: str = ""
    ) -> TemplateVersion:
        """Save ``draft`` as the next version of its name and its language's current one.
        ``expected`` is the variant's current version the edit started from (None: it had
        none); raises :class:`SaveConflictError` if that is no longer so."""
        latest = self._query(
            KeyConditionExpression="#n = :n AND begins_with(#k, :v)",
            ExpressionAttributeNames={"#n": "name", "#k": "key"},
            ExpressionAttributeValues={":n": {"S": draft.name}, ":v": {"S": _VERSION}},
            ScanIndexForward=False,
            Limit=1,
        )
        number = int(latest[0]["version"]["N"]) + 1 if latest else 1
        saved = replace(draft, version=number, saved_at=iso_utc(datetime.now(UTC)), saved_by=by)
        item = _to_item(saved)
        current_condition: dict[str, Any] = (
            {"ConditionExpression": "attribute_not_exists(#k)",
             "ExpressionAttributeNames": {"#k": "key"}}
            if expected is None
            else {"ConditionExpression": "version = :expected",
                  "ExpressionAttributeValues": {":expected": {"N": str(expected)}}}
        )  # fmt: skip
        written = conditionally(
            self._client.transact_write_items,
            TransactItems=[
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": {**item, "key": {"S": f"{_VERSION}{number:010d}"}},
                        "ConditionExpression": "attribute_not_exists(#k)",
                        "ExpressionAttributeNames": {"#k": "key"},
                    }
                },
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": {**item, "key": {"S": _CURRENT + draft.language}},
                        **current_condition,
                    }
                },
            ],
        )
        if not written:
            now = self.current(draft.name, draft.language)
            raise SaveConflictError(
                f"{draft.name}{' (' + draft.language + ')' if draft.language else ''} was saved "
                f"meanwhile (now version {now.version if now else 'none'}; you started from "
                f"{expected or 'none'}): look at it again; nothing was written"
            )
        return saved

    def _get(self, name: str, key: str) -> TemplateVersion | None:
        with translated():
            item = self._client.get_item(
                TableName=self.table, Key={"name": {"S": name}, "key": {"S": key}}
            ).get("Item")
        return _from_item(item) if item else None

    def _query(self, **request: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        with translated():
            for page in _pages(self._client, TableName=self.table, **request):
                items.extend(page.get("Items", []))
                if "Limit" in request:
                    break
        return items


class TemplateSet:
    """Templates held in memory, read as the table's are: a producer's tests check template
    rows against the versions they give (``check_row(row, templates=[...])``)."""

    def __init__(self, versions: Iterable[TemplateVersion]) -> None:
        self._versions = {(v.name, v.version): v for v in versions}
        self._current: dict[tuple[str, str], TemplateVersion] = {}
        for version in sorted(self._versions.values(), key=lambda v: v.version):
            self._current[(version.name, version.language)] = version

    def current(self, name: str, language: str = "") -> TemplateVersion | None:
        return self._current.get((name, language))

    def version(self, name: str, number: int) -> TemplateVersion | None:
        return self._versions.get((name, number))

    def resolve(self, ref: str, language: str = "") -> TemplateVersion:
        found = _resolved(self, ref, language)
        if found is None:
            raise UnknownTemplateError(_unknown(ref, language))
        return found


def _resolved(
    source: TemplateLibrary | TemplateSet, ref: str, language: str
) -> TemplateVersion | None:
    """The pinned version, or the language's current one, else the default language's."""
    name, pinned = parse_ref(ref)
    if pinned:
        return source.version(name, pinned)
    found = source.current(name, language)
    if found is None and language:
        found = source.current(name, "")
    return found


def _pages(client: Any, **request: Any) -> Iterator[dict[str, Any]]:
    while True:
        page = client.query(**request)
        yield page
        if "LastEvaluatedKey" not in page:
            return
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _unknown(ref: str, language: str) -> str:
    where = f" (language {language!r}, nor the default)" if language else ""
    return f"template {ref}: no such template or version{where}"


def _to_item(version: TemplateVersion) -> dict[str, Any]:
    serializer = TypeSerializer()
    values: dict[str, Any] = {"name": version.name, "version": version.version}
    for name in _FIELDS:
        value = getattr(version, name)
        if isinstance(value, tuple):
            value = list(value)
        if value in (None, "", [], {}) and name != "language":
            continue
        values[name] = value
    return {k: serializer.serialize(v) for k, v in values.items()}


def _from_item(item: Mapping[str, Any]) -> TemplateVersion:
    deserializer = TypeDeserializer()
    data = {k: deserializer.deserialize(v) for k, v in item.items()}
    return TemplateVersion(
        name=str(data["name"]),
        version=int(data["version"]),
        subject=str(data.get("subject", "")),
        text=data.get("text"),
        html=data.get("html"),
        language=str(data.get("language", "")),
        from_email=data.get("from_email"),
        from_name=data.get("from_name"),
        reply_to=data.get("reply_to"),
        variables=tuple(data.get("variables", ())),
        required=tuple(data.get("required", ())),
        example=dict(data.get("example", {})),
        saved_at=str(data.get("saved_at", "")),
        saved_by=str(data.get("saved_by", "")),
    )
