"""The tables, created from ``template.yaml`` itself, so local runs and tests match production.

The template is the one source of truth for keys, indexes, stream and TTL; this module only
reads it (with a YAML loader that accepts CloudFormation's ``!Ref``-style tags) and turns each
``AWS::DynamoDB::Table`` into ``CreateTable`` arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = [
    "TEMPLATE_PATH",
    "TableDefinition",
    "create_bucket",
    "create_tables",
    "enable_streams",
    "load_template",
    "table_definitions",
]

TEMPLATE_PATH = Path(__file__).resolve().parents[3] / "template.yaml"

# The template's logical ids, and the settings each table's name goes to.
SEND_TABLE = "SendTable"
HISTORY_TABLE = "HistoryTable"
IDEMPOTENCY_TABLE = "IdempotencyTable"
SUPPRESSION_TABLE = "SuppressionTable"
BOUNCE_TABLE = "BounceTable"
RATE_LIMIT_TABLE = "RateLimitTable"
SENT_MAIL_TABLE = "SentMailTable"
TEMPLATES_TABLE = "TemplatesTable"
REPUTATION_TABLE = "ReputationTable"


class _CloudFormationLoader(yaml.SafeLoader):
    """A safe loader that keeps ``!Ref x`` as ``{"Ref": x}`` and ``!Sub``… as ``Fn::Sub``."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = suffix if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CloudFormationLoader.add_multi_constructor("!", _tag)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        document = yaml.load(handle, Loader=_CloudFormationLoader)  # noqa: S506 (safe subclass)
    if not isinstance(document, dict):
        raise ValueError(f"{path} is not a CloudFormation template")
    return document


@dataclass(frozen=True)
class TableDefinition:
    """One table of the template, as ``CreateTable`` and ``UpdateTimeToLive`` need it."""

    logical_id: str
    key_schema: list[dict[str, str]]
    attribute_definitions: list[dict[str, str]]
    global_secondary_indexes: list[dict[str, Any]]
    stream_view_type: str | None
    ttl_attribute: str | None

    def create_table_args(self, table_name: str, *, stream: bool = True) -> dict[str, Any]:
        args: dict[str, Any] = {
            "TableName": table_name,
            "KeySchema": self.key_schema,
            "AttributeDefinitions": self.attribute_definitions,
            "BillingMode": "PAY_PER_REQUEST",
        }
        if self.global_secondary_indexes:
            args["GlobalSecondaryIndexes"] = self.global_secondary_indexes
        if self.stream_view_type and stream:
            args["StreamSpecification"] = {
                "StreamEnabled": True,
                "StreamViewType": self.stream_view_type,
            }
        return args


def table_definitions(template: Mapping[str, Any] | None = None) -> dict[str, TableDefinition]:
    """Every ``AWS::DynamoDB::Table`` in the template, by logical id."""
    document = template if template is not None else load_template()
    out: dict[str, TableDefinition] = {}
    for logical_id, resource in document.get("Resources", {}).items():
        if resource.get("Type") != "AWS::DynamoDB::Table":
            continue
        props = resource.get("Properties", {})
        ttl = props.get("TimeToLiveSpecification") or {}
        out[logical_id] = TableDefinition(
            logical_id=logical_id,
            key_schema=props["KeySchema"],
            attribute_definitions=props["AttributeDefinitions"],
            global_secondary_indexes=props.get("GlobalSecondaryIndexes", []),
            stream_view_type=(props.get("StreamSpecification") or {}).get("StreamViewType"),
            ttl_attribute=ttl.get("AttributeName") if ttl.get("Enabled") else None,
        )
    return out


def create_tables(
    client: DynamoDBClient,
    names: Mapping[str, str],
    *,
    template: Mapping[str, Any] | None = None,
    streams: bool = True,
) -> dict[str, str]:
    """Create the template's tables under ``names`` (logical id -> table name).

    Returns the stream ARN of each table that has one, by logical id. With ``streams=False``
    none is enabled yet (:func:`enable_streams` does it later: a restore writes first).
    """
    definitions = table_definitions(template)
    arns: dict[str, str] = {}
    for logical_id, table_name in names.items():
        definition = definitions[logical_id]
        description = client.create_table(
            **definition.create_table_args(table_name, stream=streams)
        )
        arn = description["TableDescription"].get("LatestStreamArn")
        if arn:
            arns[logical_id] = arn
        if definition.ttl_attribute:
            client.update_time_to_live(
                TableName=table_name,
                TimeToLiveSpecification={
                    "AttributeName": definition.ttl_attribute,
                    "Enabled": True,
                },
            )
    return arns


def enable_streams(
    client: DynamoDBClient,
    names: Mapping[str, str],
    *,
    template: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Turn on the template's streams of tables created with ``streams=False``; their ARNs."""
    definitions = table_definitions(template)
    arns: dict[str, str] = {}
    for logical_id, table_name in names.items():
        view = definitions[logical_id].stream_view_type
        if view:
            description = client.update_table(
                TableName=table_name,
                StreamSpecification={"StreamEnabled": True, "StreamViewType": view},  # type: ignore[typeddict-item]
            )
            arns[logical_id] = description["TableDescription"]["LatestStreamArn"]
    return arns


def create_bucket(client: Any, name: str, *, template: Mapping[str, Any] | None = None) -> None:
    """Create the template's attachments bucket under ``name``, with its encryption and its
    public access block (what an S3 endpoint without IAM can hold of it)."""
    document = template if template is not None else load_template()
    props = document["Resources"]["AttachmentsBucket"]["Properties"]
    client.create_bucket(Bucket=name)
    # CloudFormation's ServerSideEncryptionByDefault is the S3 API's ApplyServerSide...
    rules = [
        {"ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"]}
        for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    ]
    client.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
    client.put_public_access_block(
        Bucket=name, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
    )
