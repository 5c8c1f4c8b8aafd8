"""The header fields the sandbox shows for a mail it took: what the request states, and a
plain word where blastengine's API reference is silent."""

from __future__ import annotations

from dispatcher.local.sandbox.headers import UNSTATED, header_fields


def test_a_newsletter_request_shows_its_list_unsubscribe_and_says_what_is_not_stated() -> None:
    fields = dict(
        header_fields(
            {
                "from": {"email": "news@example.com", "name": "The Shop"},
                "to": "hanako@example.com",
                "subject": "December news",
                "list_unsubscribe": {
                    "url": "https://u.example/u/TOKEN",
                    "mailto": "mailto:u@example.com?subject=unsubscribe",
                },
            }
        )
    )
    assert fields["From"] == "The Shop <news@example.com>"
    assert fields["List-Unsubscribe"] == (
        "<mailto:u@example.com?subject=unsubscribe>, <https://u.example/u/TOKEN>"
    )
    assert fields["List-Unsubscribe-Post"] == UNSTATED


def test_a_transactional_request_carries_no_list_unsubscribe() -> None:
    fields = dict(header_fields({"from": {"email": "a@example.com"}, "to": "b@example.com",
                                 "subject": "Reset", "cc": ["c@example.com"]}))  # fmt: skip
    assert "List-Unsubscribe" not in fields
    assert (fields["From"], fields["Cc"]) == ("a@example.com", "c@example.com")
