"""blastengine's wire shapes for ``POST /deliveries/transaction`` (JSON, no attachments)."""

from __future__ import annotations

from typing import NotRequired, TypedDict

__all__ = ["ErrorResponse", "From", "InsertCode", "TransactionRequest", "TransactionResponse"]


class From(TypedDict):
    email: str
    name: str


class InsertCode(TypedDict):
    key: str
    value: str


# `from` is a Python keyword, hence the functional syntax. Absent optional parts are left out,
# never sent empty.
TransactionRequest = TypedDict(
    "TransactionRequest",
    {
        "from": From,
        "to": str,
        "subject": str,
        "encode": str,
        "text_part": NotRequired[str],
        "html_part": NotRequired[str],
        "cc": NotRequired[list[str]],
        "bcc": NotRequired[list[str]],
        "insert_code": NotRequired[list[InsertCode]],
    },
)


class TransactionResponse(TypedDict):
    delivery_id: int


class ErrorResponse(TypedDict):
    error_messages: dict[str, list[str]]
