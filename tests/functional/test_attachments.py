"""Attachments: looked up in the bucket before the send, streamed into the multipart request."""

from __future__ import annotations

import email.parser
import email.policy
import json
from typing import Any

import boto3
import pytest

from tests.conftest import row
from tests.functional.conftest import attr, failed_ids

BUCKET = "attachments-test"


@pytest.fixture
def s3(dynamodb: Any) -> Any:  # inside the same mock_aws as the tables
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def attaching(make_dispatcher, s3):  # type: ignore[no-untyped-def]
    return make_dispatcher(attachments_bucket=BUCKET, attachments_max_bytes=1000)


def _parts(request: Any) -> list[Any]:
    raw = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode() + request.content
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
    return list(message.iter_parts())


def _with(files: list[dict[str, str]], **values: Any) -> dict[str, Any]:
    return row(values.pop("id", "att-1"), attachments=files, **values)


def test_a_row_with_attachments_goes_as_multipart_with_a_data_part(
    attaching, s3, table, stream_record, blastengine, invoke
) -> None:
    # GIVEN two objects in the bucket, one renamed by the row
    s3.put_object(Bucket=BUCKET, Key="orders/7/invoice.pdf", Body=b"%PDF-1.7 invoice")
    s3.put_object(Bucket=BUCKET, Key="orders/7/terms", Body=b"terms text", ContentType="text/plain")
    raw = table.put(
        _with([{"key": "orders/7/invoice.pdf"}, {"key": "orders/7/terms", "filename": "terms.txt"}])
    )

    response = invoke(attaching, stream_record("INSERT", raw_new=raw))

    # THEN one multipart request: the JSON as `data`, then each file as `file`
    assert failed_ids(response) == []
    request = blastengine.route.calls.last.request
    assert request.headers["content-type"].startswith("multipart/form-data")
    assert "content-length" in request.headers  # streamed with its length known
    data, invoice, terms = _parts(request)
    assert data.get_param("name", header="content-disposition") == "data"
    assert json.loads(data.get_content())["to"] == "alice@example.com"
    assert invoice.get_filename() == "invoice.pdf"
    assert invoice.get_content_type() == "application/pdf"
    assert invoice.get_content() == b"%PDF-1.7 invoice"
    assert (terms.get_filename(), terms.get_content_type()) == ("terms.txt", "text/plain")
    assert table.get("att-1") is None  # sent and moved


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ([{"key": "nowhere/missing.pdf"}], "not in the bucket attachments-test"),
        ([{"key": "big.bin"}], "over the limit of 1,000"),
        ([{"key": "tool.exe"}], "blastengine refuses .exe files"),
        ([{"key": f"k{i}.txt"} for i in range(101)], "over the API's 100"),
        ([{"filename": "x.txt"}], "needs a key"),
    ],
)
def test_an_attachment_the_api_would_refuse_fails_the_row_before_any_call(
    attaching, s3, table, stream_record, blastengine, invoke, files, problem
) -> None:
    s3.put_object(Bucket=BUCKET, Key="big.bin", Body=b"x" * 1001)
    s3.put_object(Bucket=BUCKET, Key="tool.exe", Body=b"MZ")
    raw = table.put(_with(files))

    invoke(attaching, stream_record("INSERT", raw_new=raw))

    current = table.get("att-1")
    assert (attr(current, "status"), attr(current, "error_kind")) == ("failed", "invalid")
    assert problem in attr(current, "last_error")
    assert blastengine.route.call_count == 0


def test_an_object_replaced_under_the_same_key_is_a_new_mail(
    attaching, s3, table, stream_record, blastengine, invoke
) -> None:
    # GIVEN a row sent with an attachment
    s3.put_object(Bucket=BUCKET, Key="report.csv", Body=b"a,b\n1,2\n")
    first = table.put(_with([{"key": "report.csv"}]))
    invoke(attaching, stream_record("INSERT", raw_new=first))

    # WHEN the same row is inserted again after the object was replaced
    s3.put_object(Bucket=BUCKET, Key="report.csv", Body=b"a,b\n3,4\n")
    again = table.put(_with([{"key": "report.csv"}]))
    invoke(attaching, stream_record("INSERT", raw_new=again))

    # THEN it is sent again (same row content, other file), not taken for a duplicate
    assert blastengine.route.call_count == 2
    assert _parts(blastengine.route.calls.last.request)[1].get_payload(decode=True) == b"a,b\n3,4\n"


def test_a_deployment_without_a_bucket_fails_such_rows_config(
    dispatcher, table, stream_record, blastengine, invoke
) -> None:
    raw = table.put(_with([{"key": "a.pdf"}]))

    invoke(dispatcher, stream_record("INSERT", raw_new=raw))

    current = table.get("att-1")
    assert (attr(current, "status"), attr(current, "error_kind")) == ("failed", "config")
    assert "no attachments bucket" in attr(current, "last_error")


def test_the_sample_attachment_event_sends_both_files(
    attaching, s3, table, blastengine, invoke
) -> None:
    from tests.conftest import load_event

    event = load_event("attachment.json")
    s3.put_object(Bucket=BUCKET, Key="invoice-0013/invoice-2026-11.pdf", Body=b"%PDF invoice")
    s3.put_object(Bucket=BUCKET, Key="invoice-0013/terms", Body=b"terms")
    for record in event["Records"]:
        table.put_raw(record["dynamodb"]["NewImage"])

    response = invoke(attaching, *event["Records"])

    assert failed_ids(response) == []
    names = [p.get_filename() for p in _parts(blastengine.route.calls.last.request)[1:]]
    assert names == ["invoice-2026-11.pdf", "terms.txt"]
