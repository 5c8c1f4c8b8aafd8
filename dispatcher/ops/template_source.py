"""The checks a template's save makes, and the variables it names: a template that does not
compile, or reaches outside its sandbox, is refused with its part and line, never saved.
(The CLI and the console save templates; the functions only read them.)"""

from __future__ import annotations

from jinja2 import TemplateSyntaxError, meta, nodes

from dispatcher.model.blastengine_limits import HTML_BYTES, TEXT_BYTES
from dispatcher.model.template_row import LANGUAGE, NAME
from dispatcher.templates.engine import engine
from dispatcher.templates.version import PARTS, TemplateVersion

__all__ = ["SOURCE_CHARS", "source_problems", "variables_of"]

#: The longest source of each part: twice what the part may render to.
SOURCE_CHARS = {"subject": 2_000, "text": 2 * TEXT_BYTES, "html": 2 * HTML_BYTES}
#: Constructs a template may not use: they reach other templates (there is no loader).
_REACHING = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)


def source_problems(version: TemplateVersion) -> list[str]:
    """Why ``version`` cannot be saved, each naming its part and line; empty if it can."""
    problems = []
    if not NAME.fullmatch(version.name):
        problems.append(f"name: {version.name!r} is not a template name")
    if version.language and not LANGUAGE.fullmatch(version.language):
        problems.append(f"language: {version.language!r} is not a language tag (ja, pt-BR)")
    if not version.subject.strip():
        problems.append("subject: is required")
    if not (version.text or version.html):
        problems.append("text/html: a template needs a text or an html part")
    for part in PARTS:
        source = version.source(part)
        if source is None:
            continue
        if len(source) > SOURCE_CHARS[part]:
            problems.append(f"{part}: at most {SOURCE_CHARS[part]:,} characters")
            continue
        problems.extend(_compile_problems(part, source))
    unknown = set(version.required) - set(variables_of(version))
    if unknown:
        problems.append(f"required: {', '.join(sorted(unknown))} not named in the template")
    return problems


def variables_of(version: TemplateVersion) -> tuple[str, ...]:
    """Every variable the parts name (read from the sources; a part that does not compile
    names none)."""
    found: set[str] = set()
    for part in PARTS:
        source = version.source(part)
        if not source:
            continue
        try:
            found |= meta.find_undeclared_variables(engine(html=part == "html").parse(source))
        except TemplateSyntaxError:
            continue
    return tuple(sorted(found - {"range", "dict"}))


def _compile_problems(part: str, source: str) -> list[str]:
    sandbox = engine(html=part == "html")
    try:
        tree = sandbox.parse(source)
        sandbox.compile(tree)
    except TemplateSyntaxError as exc:
        return [f"{part} line {exc.lineno}: {exc.message}"]
    problems = []
    for reaching in tree.find_all(_REACHING):
        kind = type(reaching).__name__.lower()
        problems.append(
            f"{part} line {reaching.lineno}: {kind} is not allowed (a template stands alone)"
        )
    for used in tree.find_all(nodes.Filter):
        if used.name not in sandbox.filters:
            problems.append(f"{part} line {used.lineno}: no filter named {used.name!r} here")
    return problems
