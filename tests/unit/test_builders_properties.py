"""Property: whatever a producer writes, a row the parser accepts is built by both providers
within what the parser measured, and no header carries a line break, a control character or
a character outside the declared encoding."""

from __future__ import annotations

import email
import email.policy
from email.header import decode_header
from typing import Any

from hypothesis import given, settings

from dispatcher.model.blastengine_limits import HTML_BYTES, SUBJECT_CHARS, TEXT_BYTES
from dispatcher.model.checks import header_problem
from dispatcher.model.message import Encode, Message, parse_message
from dispatcher.model.row import Row
from dispatcher.providers.blastengine.client import build_request
from dispatcher.providers.ses.client import build_mime
from tests.conftest import image
from tests.strategies import producer_rows

CODECS = {Encode.UTF_8: "utf-8", Encode.ISO_2022_JP: "iso2022_jp"}


def _parsed(values: dict[str, Any]) -> Message | list[str]:
    return parse_message(
        Row.from_image("p-1", image(values)), default_from_email="noreply@example.com"
    )


def _no_attachment(_: Any) -> bytes:
    raise AssertionError("no attachment was asked for")


@settings(max_examples=300)
@given(producer_rows())
def test_an_accepted_row_is_built_within_what_the_parser_measured(values: dict[str, Any]) -> None:
    message = _parsed(values)
    if not isinstance(message, Message):
        assert message  # refused, with reasons
        return
    codec = CODECS[message.encode]
    filled = message.filled()
    # what either provider ends up sending fits the API's limits, filled in
    assert len(filled.subject) <= SUBJECT_CHARS[1]
    assert len(filled.text.encode(codec)) <= TEXT_BYTES
    assert filled.html is None or len(filled.html.encode(codec)) <= HTML_BYTES
    # blastengine's request: every header field header-safe and in the declared encoding
    request = build_request(message)
    fields = [request["subject"], request["from"].get("name", "")]
    fields += [request.get("reply_to", {}).get("name", ""), filled.subject]
    for field in fields:
        assert header_problem(field) is None, field
        field.encode(codec)
    # SES's MIME: every header line ASCII, unfolded without a break, decodable as declared
    raw = build_mime(message, _no_attachment)
    parsed = email.message_from_bytes(raw, policy=email.policy.compat32)
    for name, value in parsed.items():
        assert "\r" not in value.replace("\r\n ", "").replace("\r\n\t", ""), name
        for chunk, charset in decode_header(value):
            if isinstance(chunk, bytes) and charset is not None:
                assert charset.lower() in {"utf-8", "iso-2022-jp", "us-ascii"}, charset
                text = chunk.decode(charset)
                assert header_problem(text) is None, (name, text)
