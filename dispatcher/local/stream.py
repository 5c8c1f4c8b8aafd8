"""Handing DynamoDB stream records over in exactly Lambda's event shape.

Lambda's records differ from ``GetRecords``' in two ways that matter to consumers
(``DESIGN.md``, "The local stack"): ``ApproximateCreationDateTime`` is epoch seconds (boto3
gives a datetime), and each record carries ``eventSourceARN``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

__all__ = ["lambda_record"]


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
