"""A template version as saved: plain data, read by the function without the template engine
(which it imports only to render)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PARTS", "TemplateVersion"]

#: The parts a template renders, each in its own sandbox (``html`` escapes what it writes).
PARTS = ("subject", "text", "html")


@dataclass(frozen=True)
class TemplateVersion:
    """One saved version of a template (or of one of its language variants)."""

    name: str
    version: int  # 0 until it is saved
    subject: str
    text: str | None = None
    html: str | None = None
    language: str = ""  # "": the template's default language
    from_email: str | None = None
    from_name: str | None = None
    reply_to: str | None = None
    #: Every variable the parts name, and those a row must give (the rest are optional:
    #: the template guards them with ``is defined`` or ``default``).
    variables: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    #: Sample ``vars`` (the console's preview, ``template preview`` without ``--vars``).
    example: Mapping[str, Any] = field(default_factory=dict)
    saved_at: str = ""
    saved_by: str = ""

    @property
    def ref(self) -> str:
        """``name@version``, as a row pins it and a reason names it."""
        return f"{self.name}@{self.version}"

    def source(self, part: str) -> str | None:
        return {"subject": self.subject, "text": self.text, "html": self.html}[part]
