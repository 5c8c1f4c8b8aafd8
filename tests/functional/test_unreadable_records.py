"""A stream record botocore cannot parse is reported and skipped; the poller goes on.

The streams client is a real botocore client; its HTTP answers are canned (botocore's
``before-send`` hook), so the mangled record goes through botocore's real parser, the way
the reported one came from the local endpoint.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse

from dispatcher.local.dynamodb.stream import UnreadableRecords, readable
from dispatcher.local.lambda_service.mapping import MappingConfig
from dispatcher.local.lambda_service.poller import StreamPoller

ARN = "arn:aws:dynamodb:us-east-1:000000000000:table/send/stream/2026-12-01T00:00:00.000"


def _record(seq: int, row_id: str, new_image: dict[str, Any]) -> dict[str, Any]:
    return {
        "eventID": f"e{seq}",
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "eventVersion": "1.1",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": int(time.time()),
            "Keys": {"id": {"S": row_id}},
            "NewImage": {"id": {"S": row_id}, **new_image},
            "SequenceNumber": f"{seq:021}",
            "SizeBytes": 10,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }


POISON = _record(2, "poison-2", {"insert_code": {"M": {"S": "x"}}})  # as it came back
PAGE = [
    _record(1, "before", {"to": {"S": "a@example.com"}}),
    POISON,
    _record(3, "after", {"to": {"S": "b@example.com"}}),
]


class _CannedStreams:
    """The three calls the poller makes, answered as DynamoDB Streams would."""

    def __init__(self) -> None:
        self.read = False

    def __call__(self, request: Any, **_: Any) -> AWSResponse:
        target = request.headers["X-Amz-Target"].decode().rsplit(".", 1)[-1]
        if target == "DescribeStream":
            body: dict[str, Any] = {
                "StreamDescription": {
                    "StreamArn": ARN,
                    "StreamStatus": "ENABLED",
                    "Shards": [
                        {"ShardId": "shardId-00000001764547200000-0000", "SequenceNumberRange": {}}
                    ],
                }
            }
        elif target == "GetShardIterator":
            body = {"ShardIterator": "it-0"}
        else:
            body = {"Records": [] if self.read else PAGE, "NextShardIterator": "it-1"}
            self.read = True
        return AWSResponse(request.url, 200, {}, _Raw(json.dumps(body).encode()))


class _Raw:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Any:
        yield self._data


def test_an_unreadable_record_is_skipped_named_and_the_rest_delivered() -> None:
    # GIVEN a real streams client whose first page holds a record botocore cannot parse
    client = boto3.client(
        "dynamodbstreams",
        region_name="us-east-1",
        aws_access_key_id="t",
        aws_secret_access_key="t",
    )
    client.meta.events.register("before-send.dynamodb-streams.*", _CannedStreams())
    delivered: list[str] = []
    reported: list[dict[str, Any]] = []

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        delivered.extend(r["dynamodb"]["Keys"]["id"]["S"] for r in event["Records"])
        return {"batchItemFailures": []}

    config = replace(MappingConfig.from_template(), batching_window=0.0, filters=())
    poller = StreamPoller(client, ARN, config, invoke, reported.append)

    # WHEN the poller reads and delivers
    while poller.poll_once():
        pass

    # THEN the records around it are delivered in order, and it is reported by position
    assert delivered == ["before", "after"]
    [report] = reported
    assert report["requestContext"]["condition"] == "UnreadableRecord"
    assert report["DDBStreamBatchInfo"]["shardId"] == "shardId-00000001764547200000-0000"
    assert (
        report["DDBStreamBatchInfo"]["startSequenceNumber"] == POISON["dynamodb"]["SequenceNumber"]
    )
    assert report["keys"] == [{"id": {"S": "poison-2"}}]


def test_what_counts_as_readable() -> None:
    assert readable(PAGE[0])
    assert not readable(POISON)
    assert not readable({"dynamodb": {"SequenceNumber": "1", "Keys": {"id": {"S": 5}}}})
    assert not readable({"dynamodb": {"SequenceNumber": "1", "OldImage": {"l": {"L": [{}]}}}})
    assert readable(
        {"dynamodb": {"SequenceNumber": "1", "NewImage": {"s": {"SS": ["a"]}, "n": {"NULL": True}}}}
    )


def test_a_page_with_nothing_unreadable_is_left_as_it_is() -> None:
    filter_ = UnreadableRecords()
    body = json.dumps({"Records": PAGE[:1]}).encode()
    response = {"status_code": 200, "body": body}

    filter_._filter(response)

    assert response["body"] is body
    assert filter_.take() == []
