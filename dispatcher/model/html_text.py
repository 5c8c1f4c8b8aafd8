"""The plain-text part of a mail that has only HTML: readable text, not stripped tags.

blastengine requires ``text_part``; a row may carry only ``html``. The text keeps what a
reader of the plain part needs: paragraphs and headings as blocks, line breaks, list items
as ``- item``, and every link's target (``label (https://...)``), since a plain-text reader
cannot click. Scripts, styles and the document head are left out.

Built on the standard library's :class:`html.parser.HTMLParser`, which tolerates the broken
HTML mail is full of and decodes entities. The maintained converter (``html2text``) is GPL,
and it would be one more dependency in the Lambda package for a few dozen lines of rules.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

__all__ = ["html_to_text"]

_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "fieldset",
        "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
        "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "tr", "ul",
    }
)  # fmt: skip
_SKIPPED = frozenset({"head", "script", "style", "template", "title"})
_SPACES = re.compile(r"[ \t\r\n\f\v]+")


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[str, bool]] = []  # (text, is a list item)
        self._line: list[str] = []
        self._skipping = 0
        self._links: list[str | None] = []
        self._pre = 0
        self._item = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self._skipping += 1
        elif tag == "br":
            self._line.append("\n")
        elif tag in _BLOCKS:
            self._end_block()
            self._item = tag == "li"
            if tag == "li":
                self._line.append("- ")
            if tag == "pre":
                self._pre += 1
        elif tag == "a":
            self._links.append(dict(attrs).get("href"))
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self._line.append(alt)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BLOCKS:
            self._end_block()
            if tag == "pre":
                self._pre = max(0, self._pre - 1)
        elif tag == "a" and self._links:
            href = self._links.pop()
            if href and href.startswith(("http://", "https://", "mailto:")):
                label = "".join(self._line).rsplit("\n", 1)[-1]
                if href.removeprefix("mailto:") not in label:
                    self._line.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self._line.append(data if self._pre else _SPACES.sub(" ", data))

    def close(self) -> None:
        super().close()
        self._end_block()

    def _end_block(self) -> None:
        text = "".join(self._line)
        self._line = []
        lines = [line.strip() if not self._pre else line.rstrip() for line in text.split("\n")]
        block = "\n".join(lines).strip("\n")
        if block.strip() and block.strip() != "-":
            self.blocks.append((block, self._item))
        self._item = False


def html_to_text(html: str) -> str:
    """Readable plain text for ``html``: blocks separated by a blank line, links kept.

    Example
    -------
    >>> html_to_text('<p>Hello <b>Hanako</b>,</p><p>see <a href="https://x.jp/o/7">your'
    ...              ' order</a>.<br>Thanks</p>')
    'Hello Hanako,\\n\\nsee your order (https://x.jp/o/7).\\nThanks'
    """
    parser = _Text()
    parser.feed(html)
    parser.close()
    out: list[str] = []
    previous_item = False
    for block, item in parser.blocks:
        if out:
            out.append("\n" if item and previous_item else "\n\n")  # a list stays together
        out.append(block)
        previous_item = item
    return "".join(out)
