"""A row that names a template: its ``template``, ``language`` and ``vars``, read and checked.

Such a row carries no ``text``, ``html`` or ``insert_code``: its parts come from the template,
rendered with ``vars`` before a provider is chosen (so a failover sends the same bytes). Its
own ``subject``, ``from``, ``from_name`` and ``reply_to`` win over the template's. The names
of templates and languages are the row's vocabulary, so they are here, under the parser.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from dispatcher.model.row import Image, Row, string_attribute

__all__ = [
    "LANGUAGE",
    "MAX_VARS_DEPTH",
    "NAME",
    "NOT_WITH_TEMPLATE",
    "TEMPLATE_DEFAULTS",
    "TemplateRequest",
    "parse_ref",
    "template_image",
    "template_request",
]

#: A template's name: lower-case letters, digits, ``.``, ``_`` and ``-``, up to 64.
NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
#: A language variant's tag, as BCP 47's short forms: ``ja``, ``en``, ``pt-BR``.
LANGUAGE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})?")
#: How deep ``vars`` may nest (a map in a list in a map...).
MAX_VARS_DEPTH = 5
#: What a template gives a row that does not say it itself, by row attribute.
TEMPLATE_DEFAULTS = ("subject", "from", "from_name", "reply_to")
#: A row's attributes a template row may not carry: its parts come from the template.
NOT_WITH_TEMPLATE = ("text", "html", "insert_code", "insert_code_unescaped")


@dataclass(frozen=True)
class TemplateRequest:
    """What a template row asks for: a template (``name`` or ``name@version``), a language
    (``""``: the template's default) and the values to render it with."""

    ref: str
    language: str
    vars: dict[str, Any]


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``name`` or ``name@version`` as (name, version or None); ValueError with the reason."""
    name, _, pinned = ref.partition("@")
    if not NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a template name (lower-case letters, digits, '.', '_', '-'; "
            "at most 64)"
        )
    if not pinned:
        return name, None
    if not pinned.isdigit() or int(pinned) < 1:
        raise ValueError(f"{ref!r}: a version is a number from 1 (name@3)")
    return name, int(pinned)


def template_request(row: Row) -> TemplateRequest | list[str] | None:
    """The row's template request, its problems (each naming its attribute), or None for a
    row that names no template."""
    image = row.image
    if not {"template", "vars", "language"} & set(image):
        return None
    problems: list[str] = []
    ref = string_attribute(image, "template")
    if ref is None:
        problems.append("template: must be a template's name (S): vars and language need one")
    else:
        try:
            parse_ref(ref)
        except ValueError as exc:
            problems.append(f"template: {exc}")
    language = string_attribute(image, "language") or ""
    if "language" in image and not LANGUAGE.fullmatch(language):
        problems.append(f"language: {language!r} is not a language tag (ja, en, pt-BR)")
    for name in NOT_WITH_TEMPLATE:
        if name in image:
            problems.append(
                f"{name}: a row that names a template takes its parts from it; leave {name} "
                "out (put the values in vars)"
            )
    variables = _vars(image, problems)
    if problems or ref is None:
        return problems
    return TemplateRequest(ref, language, variables)


def template_image(image: Image, parts: Mapping[str, str | None]) -> dict[str, Any]:
    """The image the parser reads for a template row: the rendered ``parts`` (``subject``,
    ``text``, ``html``, and the template's ``from``/``from_name``/``reply_to``), each
    where the row gives none itself, and the row's own attributes but the template's."""
    own = {k: v for k, v in image.items() if k not in ("template", "language", "vars")}
    given = {k: {"S": v} for k, v in parts.items() if v is not None and k not in own}
    return {**given, **own}


def _vars(image: Image, problems: list[str]) -> dict[str, Any]:
    value = image.get("vars")
    if value is None:
        return {}
    if not isinstance(value, dict) or "M" not in value:
        problems.append("vars: must be a map (M) of the template's values")
        return {}
    depth = _depth(value)
    if depth > MAX_VARS_DEPTH:
        problems.append(f"vars: nests {depth} deep, over the limit of {MAX_VARS_DEPTH}")
        return {}
    if _has_binary(value):
        problems.append("vars: binary values (B, BS) cannot be rendered")
        return {}
    plain = TypeDeserializer().deserialize(value)  # type: ignore[arg-type]
    return {str(k): _listed(v) for k, v in plain.items()}


def _depth(value: Any) -> int:
    if isinstance(value, dict) and "M" in value and isinstance(value["M"], dict):
        return 1 + max((_depth(v) for v in value["M"].values()), default=0)
    if isinstance(value, dict) and "L" in value and isinstance(value["L"], list):
        return 1 + max((_depth(v) for v in value["L"]), default=0)
    return 0


def _has_binary(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    if "B" in value or "BS" in value:
        return True
    inner = value.get("M", {}).values() if isinstance(value.get("M"), dict) else value.get("L")
    return any(_has_binary(v) for v in inner or ())


def _listed(value: Any) -> Any:
    """DynamoDB's sets as sorted lists (a template iterates them in a stable order)."""
    if isinstance(value, set):
        return sorted(value, key=str)
    if isinstance(value, dict):
        return {str(k): _listed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_listed(v) for v in value]
    return value
