"""Templates through the local stack and the CLI: saved, previewed, compared, sent; a row
that fails on its template, the template fixed, the row re-fired and sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import RunningStack, running_stack, wait_for


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with running_stack(tmp_path_factory.mktemp("templates"), "--no-persist") as running:
        yield running


def _ok(stack: RunningStack, *args: str) -> str:
    done = stack.cli(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _error(stack: RunningStack, *args: str) -> str:
    done = stack.cli(*args)
    assert done.returncode == 2, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_a_template_is_saved_previewed_compared_and_sent(
    stack: RunningStack, tmp_path: Path
) -> None:
    text = tmp_path / "welcome.txt"
    text.write_text("Hello {{ name }},\nwelcome to {{ shop | default('the shop') }}.\n")
    html = tmp_path / "welcome.html"
    html.write_text("<p>Hello <b>{{ name }}</b></p>")
    # WHEN a template is saved, with an example and an optional variable
    saved = _ok(stack, "template", "put", "welcome", "--subject", "Welcome, {{ name }}",
                "--text", str(text), "--html", str(html), "--optional", "shop",
                "--example", '{"name": "Mio"}')  # fmt: skip
    assert "saved welcome@1" in saved
    assert "required:  name" in saved
    # THEN it previews with its example, and with vars given
    preview = json.loads(_ok(stack, "template", "preview", "welcome", "--json"))
    assert (preview["subject"], preview["html"]) == ("Welcome, Mio", "<p>Hello <b>Mio</b></p>")
    given = json.loads(
        _ok(stack, "template", "preview", "welcome", "--vars", '{"name": "<Ren>"}', "--json")
    )
    assert given["html"] == "<p>Hello <b>&lt;Ren&gt;</b></p>"
    assert "'name' (required)" in _error(
        stack, "template", "preview", "welcome", "--vars", '{"shop": "x"}'
    )
    # AND a second version shows what changed
    _ok(stack, "template", "put", "welcome", "--subject", "Hi {{ name }}", "--text", str(text))
    assert "-Welcome, {{ name }}\n+Hi {{ name }}" in _ok(
        stack, "template", "diff", "welcome", "1", "2"
    )
    listed = json.loads(_ok(stack, "template", "ls", "--json"))
    assert [(t["name"], t["version"]) for t in listed["templates"]] == [("welcome", 2)]
    # AND `send --template` sends it rendered
    _ok(stack, "send", "--id", "tpl-1", "--to", "mio@example.com", "--template", "welcome",
        "--vars", '{"name": "Mio", "shop": "Example"}')  # fmt: skip
    wait_for(lambda: stack.history("tpl-1"), what="the template row sent")
    [mail] = stack.mails("Hi Mio")
    assert mail["payload"]["text_part"] == "Hello Mio,\nwelcome to Example.\n"
    assert stack.history("tpl-1")[0]["template"] == {"S": "welcome@2"}


def test_a_template_that_does_not_compile_is_refused_with_its_line(
    stack: RunningStack, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.txt"
    broken.write_text("line one\n{% for x in %}\n")
    line = _error(stack, "template", "put", "broken", "--subject", "s", "--text", str(broken))
    assert "broken not saved: text line 2:" in line
    assert _error(stack, "template", "show", "broken").endswith("no template 'broken'")


def test_rows_failing_on_a_template_are_sent_once_it_is_fixed(
    stack: RunningStack, tmp_path: Path
) -> None:
    text = tmp_path / "t.txt"
    text.write_text("Your code is {{ code }}")
    _ok(stack, "template", "put", "code", "--subject", "Your code", "--text", str(text))
    # GIVEN a row whose vars lack the variable (inserted as an application would)
    stack.put({"id": "tpl-bad", "to": "kai@example.com", "template": "code",
               "vars": {"kode": "1234"}})  # fmt: skip
    wait_for(lambda: (stack.row("tpl-bad") or {}).get("error_kind"), what="the row to fail")
    row = stack.row("tpl-bad")
    assert row["error_kind"] == {"S": "template"}
    assert row["last_error"]["S"] == "template code@1: vars: missing 'code' (required)"
    assert json.loads(_ok(stack, "template", "ls", "--json"))["failing_rows"]["code"] == ["tpl-bad"]
    # WHEN the template is fixed to take the row's variable, and the rows re-fired
    text.write_text("Your code is {{ kode }}")
    _ok(stack, "template", "put", "code", "--subject", "Your code", "--text", str(text))
    _ok(stack, "retry", "--all-failed", "--kind", "template")
    # THEN it is sent with the new version
    wait_for(lambda: stack.history("tpl-bad"), what="the re-fired row sent")
    assert stack.history("tpl-bad")[0]["template"] == {"S": "code@2"}
    assert stack.mails("Your code")[-1]["payload"]["text_part"] == "Your code is 1234"
