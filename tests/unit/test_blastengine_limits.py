"""The one statement of blastengine's limits says what ../shared/BLASTENGINE.md says.

The row's parser and the sandbox both read dispatcher.model.blastengine_limits; this holds that
module to the document, so neither can drift from the real API through the other.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dispatcher.model import blastengine_limits as limits

DOCUMENT = Path(__file__).resolve().parents[2].parent / "shared" / "BLASTENGINE.md"


@pytest.fixture(scope="module")
def words() -> str:
    if not DOCUMENT.exists():
        pytest.skip(f"{DOCUMENT} is not beside the repository")
    return " ".join(DOCUMENT.read_text(encoding="utf-8").split())


@pytest.mark.parametrize(
    "phrase",
    [
        f"name at most {limits.NAME_CHARS} characters",
        f"`cc`/`bcc` (lists, at most {limits.LIST_ADDRESSES} each)",
        f"`subject` ({limits.SUBJECT_CHARS[0]}-{limits.SUBJECT_CHARS[1]} characters)",
        f"`encode` ({' | '.join(f'`{name}`' for name in limits.ENCODINGS)})",
        f"1 character to {limits.TEXT_BYTES // 1000} KB",
        f"`html_part` (optional, at most {limits.HTML_BYTES // 1000} KB)",
        f"`insert_code` (at most {limits.INSERT_CODES} items",
        "`name` ASCII letters and digits only",
        f"most {limits.UNSUBSCRIBE_CHARS} characters",
        f"Addresses are {limits.ADDRESS_CHARS[0]}-{limits.ADDRESS_CHARS[1]} characters",
        f"{limits.ATTACHMENT_BYTES // 1_000_000} MB per delivery in all by default",
        f"at most {limits.ATTACHMENT_FILES} files",
    ],
)
def test_each_limit_is_the_documents(words: str, phrase: str) -> None:
    assert phrase in words


def test_the_insert_code_name_is_letters_and_digits_only() -> None:
    assert limits.INSERT_CODE_NAME.fullmatch("orderNo7")
    for name in ("order_no", "注文", "a-b", ""):
        assert not limits.INSERT_CODE_NAME.fullmatch(name)


def test_the_refused_extensions_are_the_documents(words: str) -> None:
    listed = re.search(r"extensions refused: (.*?)\.(?= -|$)", words)
    assert listed is not None
    assert frozenset(listed.group(1).split()) == limits.REFUSED_EXTENSIONS
