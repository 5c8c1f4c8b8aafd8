"""The marker a row keeps of a send that may have been taken, and the digests compared."""

from __future__ import annotations

from datetime import timedelta

from dispatcher.model.message import Message
from dispatcher.model.unsettled import Unsettled, content_digest
from tests.fakes import EPOCH

MARKER = Unsettled(
    provider="blastengine",
    to="alice@example.com",
    opened_at=EPOCH,
    closed_at=EPOCH + timedelta(seconds=10),
    digests=("a" * 64, "b" * 64),
    content_hash="c" * 64,
    reason="no answer from blastengine within 10.0s (ReadTimeout)",
    subject="Hello",
)


def test_the_marker_survives_dynamodb_and_json_unchanged() -> None:
    assert Unsettled.from_attribute(MARKER.to_attribute()) == MARKER
    assert Unsettled.from_plain(MARKER.to_plain()) == MARKER


def test_a_hand_edited_marker_is_no_marker_rather_than_an_error() -> None:
    broken = MARKER.to_attribute()
    broken["M"]["opened_at"] = {"S": "yesterday"}
    assert Unsettled.from_attribute(broken) is None
    assert Unsettled.from_attribute({"S": "x"}) is None
    assert Unsettled.from_attribute(None) is None


def test_the_lookup_is_trusted_only_after_the_delay() -> None:
    assert MARKER.visible_from(600) == EPOCH + timedelta(seconds=610)


def test_digests_ignore_line_endings_and_outer_blank_space_but_not_content() -> None:
    assert content_digest("S", "a\r\nb\n", None) == content_digest("S", "a\nb", "")
    assert content_digest("S", "a b", None) != content_digest("S", "a  b", None)
    assert content_digest("S", "t", "<p>x</p>") != content_digest("S", "t", "<p>y</p>")


def test_a_personalised_message_matches_its_template_and_its_filled_copy() -> None:
    message = Message(
        id="r",
        to="alice@example.com",
        subject="Hi __name__",
        from_email="f@example.com",
        from_name="",
        text="Dear __name__, your code is __code__",
        insert_code={"name": "Alice", "code": "42"},
    )
    template, filled = message.digests()
    assert template == content_digest("Hi __name__", "Dear __name__, your code is __code__", None)
    assert filled == content_digest("Hi Alice", "Dear Alice, your code is 42", None)
