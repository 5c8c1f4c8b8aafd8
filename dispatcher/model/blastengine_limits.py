"""What blastengine's transaction API accepts, as ``../shared/BLASTENGINE.md`` records it.

One statement of the documented limits, for the two parts that answer to them: the row's
parser (:mod:`dispatcher.model.message`: a row over a limit fails ``invalid`` before any API call)
and the local sandbox (:mod:`dispatcher.local.sandbox.rules`: it refuses what the API
refuses). Neither takes them from the other; both take them from here, and
``tests/unit/test_blastengine_limits.py`` checks every value here against BLASTENGINE.md's
own words, so a wrong number is caught by the document, not shared unnoticed.

Sizes are bytes as sent, in the mail's encoding; "KB" is read as 1,000 bytes, the reading
that never passes a part the API would refuse.
"""

from __future__ import annotations

import re

__all__ = [
    "ADDRESS_CHARS",
    "ATTACHMENT_BYTES",
    "ATTACHMENT_FILES",
    "ENCODINGS",
    "HTML_BYTES",
    "INSERT_CODES",
    "INSERT_CODE_NAME",
    "LIST_ADDRESSES",
    "NAME_CHARS",
    "REFUSED_EXTENSIONS",
    "SUBJECT_CHARS",
    "TEXT_BYTES",
    "UNSUBSCRIBE_CHARS",
]

#: Fewest and most characters of an address.
ADDRESS_CHARS = (6, 254)
#: Most characters of a display name (``from.name``, ``reply_to.name``).
NAME_CHARS = 50
#: Fewest and most characters of the subject.
SUBJECT_CHARS = (1, 256)
#: Most bytes of ``text_part`` (required, at least one character) and ``html_part``.
TEXT_BYTES = 30_000
HTML_BYTES = 70_000
#: Most addresses in ``cc``, and in ``bcc``.
LIST_ADDRESSES = 10
#: Most ``insert_code`` items; a key is ``__name__`` or ``%%name%%`` with ``name`` this.
INSERT_CODES = 50
INSERT_CODE_NAME = re.compile(r"[A-Za-z0-9]+")
#: Most characters of ``list_unsubscribe.url`` and of ``list_unsubscribe.mailto``.
UNSUBSCRIBE_CHARS = 450
#: The ``encode`` values, and the codec each sends the parts in.
ENCODINGS = {"UTF-8": "utf-8", "ISO-2022-JP": "iso2022_jp"}
#: Attachments (a third-party article, BLASTENGINE.md): most files, bytes in all by default
#: (the contract may differ: ``ATTACHMENTS_MAX_BYTES``), and the extensions refused.
ATTACHMENT_FILES = 100
ATTACHMENT_BYTES = 1_000_000
REFUSED_EXTENSIONS = frozenset(
    {
        ".ade", ".adp", ".apk", ".appx", ".appxbundle", ".bat", ".bz2", ".cab", ".chm", ".cmd",
        ".com", ".cpl", ".dll", ".dmg", ".ex", ".ex_", ".exe", ".gz", ".hta", ".ins", ".isp",
        ".iso", ".jar", ".js", ".jse", ".lib", ".lnk", ".mde", ".msc", ".msi", ".msix",
        ".msixbundle", ".msp", ".mst", ".nsh", ".pif", ".ps1", ".scr", ".sct", ".shb", ".sys",
        ".tgz", ".vb", ".vbe", ".vbs", ".vxd", ".wsc", ".wsf", ".wsh", ".zip",
    }
)  # fmt: skip
