"""Reading a DynamoDB stream and handing its records over in exactly Lambda's event shape.

Lambda's records differ from ``GetRecords``' in two ways that matter to consumers
(``DESIGN.md``, "The local stack"): ``ApproximateCreationDateTime`` is epoch seconds (boto3
gives a datetime), and each record carries ``eventSourceARN``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient

__all__ = ["StreamReader", "lambda_record"]


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


class StreamReader:
    """Reads every shard of one stream from its start, remembering where it got to."""

    def __init__(self, client: DynamoDBStreamsClient, stream_arn: str) -> None:
        self._client = client
        self._arn = stream_arn
        self._iterators: dict[str, str | None] = {}

    def read(self, limit: int = 100) -> Iterator[dict[str, Any]]:
        """Yield the records written since the last call, in Lambda's shape."""
        shards = self._client.describe_stream(StreamArn=self._arn)["StreamDescription"]
        for shard in shards.get("Shards", []):
            shard_id = shard["ShardId"]
            if shard_id not in self._iterators:
                self._iterators[shard_id] = self._client.get_shard_iterator(
                    StreamArn=self._arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
            while (iterator := self._iterators[shard_id]) is not None:
                page = self._client.get_records(ShardIterator=iterator, Limit=limit)
                records = page.get("Records", [])
                self._iterators[shard_id] = page.get("NextShardIterator")
                for record in records:
                    yield lambda_record(dict(record), self._arn)
                if not records:
                    break
