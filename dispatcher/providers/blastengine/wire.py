"""blastengine's wire shapes for ``POST /deliveries/transaction`` (../shared/BLASTENGINE.md)."""

from __future__ import annotations

from typing import NotRequired, TypedDict

__all__ = [
    "ErrorResponse",
    "From",
    "InsertCode",
    "ListUnsubscribe",
    "ReplyTo",
    "TransactionRequest",
    "TransactionResponse",
]


class From(TypedDict):
    email: str
    name: NotRequired[str]  # left out when empty


class ReplyTo(TypedDict):
    email: str
    name: NotRequired[str]


class ListUnsubscribe(TypedDict, total=False):
    url: str  # an http(s) URL
    mailto: str  # a mailto: URI


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
        "text_part": str,
        "html_part": NotRequired[str],
        "cc": NotRequired[list[str]],
        "bcc": NotRequired[list[str]],
        "insert_code": NotRequired[list[InsertCode]],
        "reply_to": NotRequired[ReplyTo],
        "list_unsubscribe": NotRequired[ListUnsubscribe],
    },
)


class TransactionResponse(TypedDict):
    delivery_id: int


class ErrorResponse(TypedDict):
    error_messages: dict[str, list[str]]
