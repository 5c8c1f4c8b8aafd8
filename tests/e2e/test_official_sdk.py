"""blastengine's official Python SDK, pointed at the sandbox, as any client would use it.

What the SDK sends the sandbox takes as blastengine would, and what it refuses matches the
documented limits (../shared/BLASTENGINE.md). The SDK posts to fixed URLs on class attributes
and raises a bare Exception on an error answer (it has no retries, no timeouts): both are
its own, and set here the one way it allows.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("blastengine")
from blastengine.Client import Blastengine
from blastengine.Log import Log
from blastengine.MailBase import MailBase
from blastengine.Transaction import Transaction

from dispatcher.local.sandbox.model import Faults
from dispatcher.local.sandbox.server import Sandbox


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    # Results show at once: these tests read back what they just sent (the lag is the
    # dispatcher's to cope with, tested elsewhere).
    with Sandbox(login_id="sdk-user", api_key="sdk-key", faults=Faults(lookup_lag=0)) as running:
        base = running.base_url
        monkeypatch.setattr(Transaction, "post_url", base + "/deliveries/transaction")
        monkeypatch.setattr(MailBase, "base_url", base + "/deliveries")
        monkeypatch.setattr(MailBase, "endpoint_url", base)
        Blastengine("sdk-user", "sdk-key")
        yield running


def _mail(**overrides: object) -> Transaction:
    mail = Transaction()
    mail.from_address("shop@example.com", "Shop")
    mail.to("hanako@example.com")
    mail.subject(overrides.get("subject", "Your order"))
    mail.text_part(overrides.get("text", "Hello __name__"))
    return mail


def test_the_sdk_sends_everything_the_api_takes(sandbox: Sandbox, tmp_path: Path) -> None:
    # GIVEN a mail with every part the SDK can set, an attachment among them
    attachment = tmp_path / "invoice.pdf"
    attachment.write_bytes(b"%PDF-1.7 sdk")
    mail = _mail()
    mail.html_part("<p>Hello __name__</p>")
    mail.cc("cc@example.com")
    mail.bcc("bcc@example.com")
    mail.insert_code("__name__", "Hanako")
    mail.unsubscribe(url="https://example.com/u", email="u@example.com")
    mail.attachments(str(attachment))

    # WHEN the SDK sends it
    delivery_id = mail.send()

    # THEN the sandbox took it as blastengine would, and can report on it the SDK's way
    [kept] = sandbox.mails
    assert kept.delivery_id == delivery_id
    assert kept.payload["list_unsubscribe"] == {
        "url": "https://example.com/u",
        "mailto": "mailto:u@example.com",
    }
    assert kept.payload["insert_code"] == [{"key": "__name__", "value": "Hanako"}]
    assert (kept.payload["cc"], kept.payload["bcc"]) == (["cc@example.com"], ["bcc@example.com"])
    [attached] = kept.attachments
    assert (attached["filename"], attached["size"]) == ("invoice.pdf", 12)
    # The SDK 0.0.11 sends mimetypes.guess_type()'s whole tuple as the part's type
    # ("('application/pdf', None)"); the sandbox keeps what it was sent.
    assert "application/pdf" in attached["content_type"]
    looked_up = Transaction()
    looked_up.delivery_id = delivery_id
    looked_up.get()
    assert (looked_up.status, looked_up.total_count) == ("SENT", 3)
    results = Log.find({"delivery_id": delivery_id})
    assert sorted(r._to[0]["email"] for r in results) == [
        "bcc@example.com",
        "cc@example.com",
        "hanako@example.com",
    ]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"subject": "s" * 257}, "subject"),
        ({"text": ""}, "text_part"),  # the SDK's default: the API requires one
        ({"text": "t" * 30_001}, "text_part"),
    ],
)
def test_what_the_sandbox_refuses_from_the_sdk_is_the_documented_limit(
    sandbox: Sandbox, change: dict[str, str], field: str
) -> None:
    with pytest.raises(Exception, match=field):
        _mail(**change).send()
    assert sandbox.mails == []


def test_an_insert_code_key_with_an_underscore_is_refused_as_documented(sandbox: Sandbox) -> None:
    mail = _mail()
    mail.insert_code("__first_name__", "Hanako")

    with pytest.raises(Exception, match=r"insert_code\[0\]\.key"):
        mail.send()


def test_a_refused_attachment_extension_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    archive = tmp_path / "files.zip"
    archive.write_bytes(b"PK")
    mail = _mail()
    mail.attachments(str(archive))

    with pytest.raises(Exception, match=r"\.zip files are not accepted"):
        mail.send()
