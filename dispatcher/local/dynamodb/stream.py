"""Handing DynamoDB stream records over in exactly Lambda's event shape.

Lambda's records differ from ``GetRecords``' in two ways that matter to consumers
(``DESIGN.md``, "The local stack"): ``ApproximateCreationDateTime`` is epoch seconds (boto3
gives a datetime), and each record carries ``eventSourceARN``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

__all__ = ["UnreadableRecords", "lambda_record", "readable", "well_formed"]


def lambda_record(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    """One ``GetRecords`` record as Lambda delivers it."""
    out = dict(record)
    stream = dict(out.get("dynamodb", {}))
    created = stream.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        stream["ApproximateCreationDateTime"] = int(created.timestamp())
    out["dynamodb"] = stream
    out["eventSourceARN"] = stream_arn
    return out


_TYPES = {"S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"}


def well_formed(value: Any) -> bool:
    """True if ``value`` is a DynamoDB attribute value botocore can parse, nested ones too."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    [(tag, payload)] = value.items()
    if tag not in _TYPES:
        return False
    if tag == "M":
        return isinstance(payload, dict) and all(well_formed(v) for v in payload.values())
    if tag == "L":
        return isinstance(payload, list) and all(well_formed(v) for v in payload)
    if tag in ("SS", "NS", "BS"):
        return isinstance(payload, list) and all(isinstance(v, str) for v in payload)
    if tag == "BOOL":
        return isinstance(payload, bool)
    if tag == "NULL":
        return payload is True
    return isinstance(payload, str)


def readable(record: Any) -> bool:
    """True if a raw ``GetRecords`` record's keys and images are all well formed."""
    stream = record.get("dynamodb") if isinstance(record, dict) else None
    if not isinstance(stream, dict) or not isinstance(stream.get("SequenceNumber"), str):
        return False
    for part in ("Keys", "NewImage", "OldImage"):
        image = stream.get(part)
        if image is not None and not (
            isinstance(image, dict) and all(well_formed(v) for v in image.values())
        ):
            return False
    return True


class UnreadableRecords:
    """Takes records botocore could not parse out of ``GetRecords`` answers, before it tries.

    Lambda's event source mapping goes on past a record it cannot deliver; a poller thread
    that died on one would stop every row behind it. Installed on a streams client, this
    removes each unreadable record from the raw answer (the page's next iterator still moves
    past it) and keeps it for :meth:`take`, so the poller can report it.
    """

    def __init__(self) -> None:
        self._taken: list[Any] = []

    def install(self, client: Any) -> None:
        """Hook ``client`` (a boto3 streams client; a fake without botocore's events parses
        nothing, so it has nothing to filter)."""
        events = getattr(getattr(client, "meta", None), "events", None)
        if events is not None:
            events.register("before-parse.dynamodb-streams.GetRecords", self._filter)

    def take(self) -> list[Any]:
        taken, self._taken = self._taken, []
        return taken

    def _filter(self, response_dict: dict[str, Any], **_: Any) -> None:
        body = response_dict.get("body")
        if response_dict.get("status_code", 500) >= 300 or not isinstance(body, bytes):
            return
        try:
            page = json.loads(body)
        except ValueError:
            return
        records = page.get("Records") if isinstance(page, dict) else None
        if not isinstance(records, list):
            return
        kept = [r for r in records if readable(r)]
        if len(kept) == len(records):
            return
        self._taken.extend(r for r in records if not readable(r))
        response_dict["body"] = json.dumps({**page, "Records": kept}).encode()
