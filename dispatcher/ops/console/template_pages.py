"""The console's Templates pages: the list, a template's editor (save a new version, or
preview the draft first), its HTML rendered in the sandboxed frame, and "send a test".

Saving is a conditional write on the version the editor was opened at, so two people saving
at once never lose an edit silently: the second is shown the form again with the conflict.
A preview is rendered on the server from the example ``vars`` typed in (kept with the
template when it is saved); the HTML of a draft is kept a few minutes under a random token
for its frame, since a frame can only load it by URL.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode

from boto3.dynamodb.types import TypeSerializer
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from dispatcher.model.row import checked_address
from dispatcher.model.template_row import LANGUAGE, NAME
from dispatcher.ops.admin import RowExistsError
from dispatcher.ops.console.context import ConsoleError, Context, Form, done, row_url
from dispatcher.ops.console.views import sandboxed
from dispatcher.ops.templates import (
    TemplateRefusedError,
    failing_rows,
    preview,
    save_template,
    version_diff,
)
from dispatcher.templates.library import SaveConflictError, TemplateLibrary
from dispatcher.templates.version import TemplateVersion

__all__ = ["template_editor", "template_preview", "template_test", "templates_list"]

#: Drafts' rendered HTML kept for their frame: how many, and for how long.
DRAFTS, DRAFT_SECONDS = 64, 600.0
_drafts: OrderedDict[str, tuple[float, str]] = OrderedDict()
_drafts_lock = threading.Lock()


def templates_list(ctx: Context, request: Request, form: Form) -> Response | dict[str, Any]:
    """Every template and language variant, with the rows failing on each; ``?new=NAME``
    opens an empty editor for a new one."""
    new = (request.query_params.get("new") or "").strip()
    if new:
        if not NAME.fullmatch(new):
            raise ConsoleError(400, f"{new!r} is not a template name (a-z, 0-9, '.', '_', '-')")
        return RedirectResponse(f"/templates/{quote(new, safe='')}", status_code=303)
    library = _library(ctx)
    failing = failing_rows(ctx.admin)
    return {
        "templates": [
            {**_summary(t), "failing": len(failing.get(t.name, []))} for t in library.currents()
        ],
        "failing_rows": failing,
    }


def template_editor(ctx: Context, request: Request, form: Form) -> Response | dict[str, Any]:
    """GET: the current version (or ``?version=N``) in the editor, its preview and what it
    changed; POST ``action=preview``: the draft rendered, nothing saved; ``action=save``: a
    new version, on the version the editor was opened at."""
    library, name = _library(ctx), _name(request)
    language = _language(request.query_params.get("language") or form.get("language") or "")
    if request.method == "POST":
        return _submitted(ctx, request, form, library, name, language)
    shown = _shown_version(library, name, language, request.query_params.get("version"))
    return _page(ctx, library, name, language, shown, draft=None, status=200)


def template_preview(ctx: Context, request: Request, form: Form) -> Response:
    """The HTML of a version rendered with its example, or of a draft, for the frame."""
    token = request.query_params.get("draft")
    if token:
        with _drafts_lock:
            kept = _drafts.get(token)
        if kept is None or time.monotonic() - kept[0] > DRAFT_SECONDS:
            raise ConsoleError(404, "this draft's preview is gone: preview it again")
        return sandboxed(kept[1])
    library, name = _library(ctx), _name(request)
    language = _language(request.query_params.get("language") or "")
    version = _shown_version(library, name, language, request.query_params.get("version"))
    if version is None:
        raise ConsoleError(404, f"no template {name!r}")
    try:
        html = preview(version).rendered.html
    except TemplateRefusedError as exc:
        raise ConsoleError(422, str(exc)) from None
    if html is None:
        raise ConsoleError(404, "this template has no html part")
    return sandboxed(html)


def template_test(ctx: Context, request: Request, form: Form) -> Response | dict[str, Any]:
    """Send a test: a row naming this version, with its example vars, to the address typed
    in. It is an ordinary row (the allowlist, the redirect, suppression all apply)."""
    if request.method != "POST":
        raise ConsoleError(405, "send a test from the template's page")
    library, name = _library(ctx), _name(request)
    language = _language(str(form.get("language") or ""))
    version = _shown_version(library, name, language, str(form.get("version") or "") or None)
    if version is None:
        raise ConsoleError(404, f"no template {name!r}")
    try:
        to = checked_address(str(form.get("to") or "").strip())
    except ValueError as exc:
        raise ConsoleError(400, f"to: {exc}") from None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    row = {"id": f"test-{name}-{stamp}", "to": to, "template": version.ref,
           "vars": _dynamo_ready(version.example)}  # fmt: skip
    if version.language:
        row["language"] = version.language
    serializer = TypeSerializer()
    try:
        ctx.admin.put_row({k: serializer.serialize(v) for k, v in row.items()})
    except RowExistsError as exc:
        raise ConsoleError(409, str(exc)) from None
    return done(request, row_url("rows", row["id"]), "test-sent", {"inserted": row["id"]})


def _submitted(
    ctx: Context, request: Request, form: Form, library: TemplateLibrary, name: str, language: str
) -> Response | dict[str, Any]:
    draft, problems = _draft(form, name, language)
    typed = str(form.get("optional") or "")
    opened = str(form.get("version") or "")
    expected = int(opened) if opened.isdigit() else None

    def again(problems: list[str], status: int) -> dict[str, Any]:
        """The editor with the draft as typed (the optional variables too)."""
        page = _page(ctx, library, name, language, draft, draft=problems, status=status,
                     opened=opened)  # fmt: skip
        return {**page, "shown": {**page["shown"], "optional": typed}}

    if problems:
        return again(problems, 422)
    if form.get("action") == "preview":
        return again([], 200)
    optional = tuple(v for v in typed.replace(",", " ").split() if v)
    try:
        saved = save_template(library, draft, optional=optional, expected=expected, by="console")
    except TemplateRefusedError as exc:
        return again(exc.problems, 422)
    except SaveConflictError as exc:
        return {**again([], 409), "conflict": str(exc)}
    where = f"/templates/{quote(name, safe='')}"
    if language:
        where += "?" + urlencode({"language": language})
    return done(request, where, "template-saved", {"saved": _summary(saved)})


def _page(
    ctx: Context,
    library: TemplateLibrary,
    name: str,
    language: str,
    shown: TemplateVersion | None,
    *,
    draft: list[str] | None,
    status: int,
    opened: str | None = None,
) -> dict[str, Any]:
    """The editor: ``shown`` in the form (a saved version, or a draft with its
    ``draft`` problems), its preview, what it changes, the rows failing on the template."""
    current = library.current(name, language)
    versions = [v for v in library.versions(name) if v.language == language]
    rendered, render_problems = _rendered(shown, is_draft=draft is not None)
    earlier = [v for v in versions if shown is None or v.version < (shown.version or 10**9)]
    return {
        "name": name,
        "language": language,
        "current": _summary(current) if current else None,
        "shown": _form_values(shown),
        "opened": opened if opened is not None else str(current.version) if current else "",
        "versions": [_summary(v) for v in reversed(versions)],
        "problems": (draft or []) + render_problems,
        "preview": rendered,
        "diff": version_diff(earlier[-1] if earlier else None, shown) if shown else "",
        "failing": failing_rows(ctx.admin).get(name, []),
        "conflict": "",
        "status_code": status,
    }


def _rendered(
    version: TemplateVersion | None, *, is_draft: bool
) -> tuple[dict[str, Any] | None, list[str]]:
    if version is None:
        return None, []
    try:
        rendered = preview(version).rendered
    except TemplateRefusedError as exc:
        return None, [f"preview: {p}" for p in exc.problems]
    frame = ""
    if rendered.html is not None:
        if is_draft:
            frame = "?" + urlencode({"draft": _keep_draft(rendered.html)})
        else:
            query = {"version": version.version, "language": version.language}
            frame = "?" + urlencode({k: v for k, v in query.items() if v})
    return {"subject": rendered.subject, "text": rendered.text, "frame": frame}, []


def _draft(form: Form, name: str, language: str) -> tuple[TemplateVersion, list[str]]:
    problems: list[str] = []
    raw = str(form.get("example") or "").strip() or "{}"
    try:
        example = json.loads(raw, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        problems.append(f"example: not JSON ({exc})")
        example = {}
    if not isinstance(example, dict):
        problems.append("example: must be a JSON object of the template's variables")
        example = {}

    def field(key: str) -> str | None:
        value = str(form.get(key) or "").replace("\r\n", "\n")
        return value if value.strip() else None

    draft = TemplateVersion(
        name=name, version=0, subject=field("subject") or "", text=field("text"),
        html=field("html"), language=language, from_email=field("from_email"),
        from_name=field("from_name"), reply_to=field("reply_to"), example=example,
    )  # fmt: skip
    return draft, problems


def _form_values(version: TemplateVersion | None) -> dict[str, Any]:
    if version is None:
        return {"version": 0, "subject": "", "text": "", "html": "", "from_email": "",
                "from_name": "", "reply_to": "", "optional": "", "example": "{}"}  # fmt: skip
    optional = [v for v in version.variables if v not in version.required]
    return {
        "version": version.version,
        "subject": version.subject,
        "text": version.text or "",
        "html": version.html or "",
        "from_email": version.from_email or "",
        "from_name": version.from_name or "",
        "reply_to": version.reply_to or "",
        "optional": " ".join(optional),
        "example": json.dumps(_jsonable(version.example), indent=2, ensure_ascii=False),
    }


def _summary(version: TemplateVersion) -> dict[str, Any]:
    data = asdict(replace(version, example={}))
    data.pop("example")
    return {
        **{k: list(v) if isinstance(v, tuple) else v for k, v in data.items()},
        "ref": version.ref,
    }


def _shown_version(
    library: TemplateLibrary, name: str, language: str, version: str | None
) -> TemplateVersion | None:
    if version:
        if not version.isdigit():
            raise ConsoleError(400, f"version must be a number, not {version!r}")
        found = library.version(name, int(version))
        if found is None:
            raise ConsoleError(404, f"{name} has no version {version}")
        return found
    return library.current(name, language)


def _keep_draft(html: str) -> str:
    token = secrets.token_urlsafe(16)
    with _drafts_lock:
        _drafts[token] = (time.monotonic(), html)
        while len(_drafts) > DRAFTS:
            _drafts.popitem(last=False)
    return token


def _library(ctx: Context) -> TemplateLibrary:
    if ctx.admin.templates is None:
        raise ConsoleError(404, "this stack has no templates table")
    return ctx.admin.templates


def _name(request: Request) -> str:
    name = str(request.path_params["name"])
    if not NAME.fullmatch(name):
        raise ConsoleError(400, f"{name!r} is not a template name (a-z, 0-9, '.', '_', '-')")
    return name


def _language(value: str) -> str:
    if value and not LANGUAGE.fullmatch(value):
        raise ConsoleError(400, f"{value!r} is not a language tag (ja, pt-BR)")
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _dynamo_ready(value: Any) -> Any:
    """An example as DynamoDB takes it (numbers as Decimal)."""
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _dynamo_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dynamo_ready(v) for v in value]
    return value
