"""Rendering one template version with a row's ``vars``, within the sandbox's limits.

Each part is rendered in its own sandbox (HTML escapes what it writes; subject and text
nothing) and streamed, so a part past its limit (the limits a row's own fields have) stops
as soon as it passes it, and the whole render within :data:`RENDER_SECONDS`. Whatever goes
wrong is a :class:`TemplateError` naming the template, its version and the variable or line:
the row fails with ``error_kind`` ``template`` and nothing is sent.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from jinja2 import Template, UndefinedError
from jinja2 import TemplateError as JinjaError

from dispatcher.model.blastengine_limits import HTML_BYTES, SUBJECT_CHARS, TEXT_BYTES
from dispatcher.templates.engine import RENDER_SECONDS, engine
from dispatcher.templates.version import PARTS, TemplateVersion
from dispatcher.templates.watchdog import RenderTimeoutError, time_limit

__all__ = ["Rendered", "TemplateError", "render"]

#: Characters each part may render to (a row's own limits; bytes are checked by the parser
#: in the row's encoding, and a character is at least a byte).
PART_CHARS = {"subject": SUBJECT_CHARS[1], "text": TEXT_BYTES, "html": HTML_BYTES}
#: Compiled parts a container keeps.
COMPILED = 256


class TemplateError(Exception):
    """The row's template cannot give its mail; the message says which and why."""


@dataclass(frozen=True)
class Rendered:
    template: TemplateVersion
    subject: str
    text: str | None
    html: str | None


def render(version: TemplateVersion, variables: Mapping[str, Any]) -> Rendered:
    """``version``'s parts rendered with ``variables``; raises :class:`TemplateError`."""
    missing = [name for name in version.required if name not in variables]
    if missing:
        raise TemplateError(
            f"template {version.ref}: vars: missing {', '.join(map(repr, missing))} (required)"
        )
    out: dict[str, str | None] = {}
    try:
        with time_limit(RENDER_SECONDS):
            for part in PARTS:
                source = version.source(part)
                out[part] = None if source is None else _render_part(version, part, variables)
    except RenderTimeoutError:
        raise TemplateError(
            f"template {version.ref}: the render took more than {RENDER_SECONDS:g} s"
        ) from None
    return Rendered(version, out["subject"] or "", out["text"], out["html"])


def _render_part(version: TemplateVersion, part: str, variables: Mapping[str, Any]) -> str:
    template = _compiled(version, part)
    limit = PART_CHARS[part]
    written, chunks = 0, []
    try:
        for chunk in template.generate(**variables):
            written += len(chunk)
            if written > limit:
                raise TemplateError(
                    f"template {version.ref}: {part} renders to more than {limit:,} characters"
                )
            chunks.append(chunk)
    except TemplateError:
        raise
    except UndefinedError as exc:
        where = _line(exc.__traceback__)
        raise TemplateError(f"template {version.ref}: {part}{where}: {exc.message}") from None
    except (JinjaError, ArithmeticError, TypeError, ValueError, LookupError, RecursionError) as exc:
        where = _line(exc.__traceback__)
        message = getattr(exc, "message", None) or str(exc)
        raise TemplateError(f"template {version.ref}: {part}{where}: {message}") from None
    rendered = "".join(chunks)
    return rendered.strip() if part == "subject" else rendered


def _line(tb: TracebackType | None) -> str:
    """`` line N`` of the template's frame nearest the error (Jinja maps its frames to
    template lines), or nothing."""
    line = ""
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = f" line {tb.tb_lineno}"
        tb = tb.tb_next
    return line


_cache: OrderedDict[tuple[str, str], Template] = OrderedDict()
_lock = threading.Lock()


def _compiled(version: TemplateVersion, part: str) -> Template:
    """The part compiled, kept by its source (a container compiles each source once)."""
    source = version.source(part) or ""
    key = (part, source)
    with _lock:
        cached = _cache.get(key)
        if cached is not None:
            _cache.move_to_end(key)
            return cached
    try:
        compiled = engine(html=part == "html").from_string(source)
    except JinjaError as exc:  # saved before a check this version did not pass
        lineno = getattr(exc, "lineno", None)
        where = f" line {lineno}" if lineno else ""
        raise TemplateError(f"template {version.ref}: {part}{where}: {exc}") from None
    with _lock:
        _cache[key] = compiled
        while len(_cache) > COMPILED:
            _cache.popitem(last=False)
    return compiled
