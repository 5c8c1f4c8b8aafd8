"""What people do with templates, for the CLI and the console alike: save a checked version,
preview one with sample ``vars``, compare two versions, and find the rows failing on each."""

from __future__ import annotations

import difflib
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from dispatcher.model.row import ErrorKind, string_attribute
from dispatcher.model.template_row import parse_ref
from dispatcher.ops.template_source import source_problems, variables_of
from dispatcher.templates.library import TemplateLibrary, UnknownTemplateError
from dispatcher.templates.render import Rendered, TemplateError, render
from dispatcher.templates.version import PARTS, TemplateVersion

if TYPE_CHECKING:
    from dispatcher.ops.admin import Admin

__all__ = [
    "TemplateRefusedError",
    "failing_rows",
    "find_version",
    "preview",
    "save_template",
    "version_diff",
]


class TemplateRefusedError(ValueError):
    """A template that cannot be saved, or rendered, with every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Preview:
    version: TemplateVersion
    rendered: Rendered


def save_template(
    library: TemplateLibrary,
    draft: TemplateVersion,
    *,
    optional: tuple[str, ...] = (),
    expected: int | str | None = "current",
    by: str = "",
) -> TemplateVersion:
    """Check ``draft`` and save it as the next version: every variable it names is required
    but those in ``optional``. ``expected`` is the version the edit started from (the
    console's form carries it); ``"current"`` takes whatever is current now (the CLI)."""
    named = variables_of(draft)
    unknown = sorted(set(optional) - set(named))
    checked = replace(draft, variables=named, required=tuple(n for n in named if n not in optional))
    problems = source_problems(checked)
    if unknown:
        problems.append(f"optional: {', '.join(unknown)} not named in the template")
    if problems:
        raise TemplateRefusedError(problems)
    if expected == "current":
        current = library.current(draft.name, draft.language)
        expected = current.version if current else None
    assert not isinstance(expected, str)
    return library.save(checked, expected=expected, by=by)


def find_version(
    library: TemplateLibrary, name: str, *, version: int | None = None, language: str = ""
) -> TemplateVersion:
    """``name``'s version ``version``, or its current one in ``language``."""
    parse_ref(name)
    found = library.version(name, version) if version else library.current(name, language)
    if found is None:
        what = f"version {version}" if version else f"language {language!r}" if language else ""
        raise UnknownTemplateError(f"no template {name!r}{' ' + what if what else ''}")
    return found


def preview(version: TemplateVersion, variables: Mapping[str, Any] | None = None) -> Preview:
    """``version`` rendered with ``variables`` (default: its example), as a row would be."""
    try:
        return Preview(version, render(version, dict(variables or version.example)))
    except TemplateError as exc:
        raise TemplateRefusedError([str(exc)]) from None


def version_diff(old: TemplateVersion | None, new: TemplateVersion) -> str:
    """The differences between two versions, part by part, as a unified diff."""
    lines: list[str] = []
    for part in PARTS:
        before = (old.source(part) if old else None) or ""
        after = new.source(part) or ""
        lines.extend(
            difflib.unified_diff(
                before.splitlines(keepends=True),
                after.splitlines(keepends=True),
                fromfile=f"{part} @{old.version if old else 0}",
                tofile=f"{part} @{new.version or 'draft'}",
            )
        )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def failing_rows(admin: Admin) -> dict[str, list[str]]:
    """The ids of the rows failed ``template``, by the template they name."""
    found: dict[str, list[str]] = defaultdict(list)
    for row in admin.stamped_rows("failed", error_kind=ErrorKind.TEMPLATE.value):
        ref = string_attribute(row.image, "template") or "?"
        found[ref.partition("@")[0]].append(row.id)
    return dict(found)
