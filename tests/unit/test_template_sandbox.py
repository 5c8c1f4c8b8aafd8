"""The template sandbox against the known ways out: each is refused at save or stopped while
rendering with a reason, and a render that runs long is stopped by its time limit."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.ops.template_source import source_problems, variables_of
from dispatcher.templates.render import TemplateError, render
from dispatcher.templates.version import TemplateVersion

VARS = {"name": "Mio", "order": {"id": "A1", "total": Decimal("10.5")}, "big": "x" * 50_000}


def _text(source: str, **values: str) -> TemplateVersion:
    return TemplateVersion("t", 1, subject="s", text=source, **values)  # type: ignore[arg-type]


def test_a_template_renders_its_parts_escaping_only_the_html() -> None:
    version = TemplateVersion(
        "order", 3, subject="Order {{ order.id }} for {{ name }}",
        text="{{ name }} & co: {{ '%.2f' % order.total }}", html="<b>{{ name }} & co</b>",
    )  # fmt: skip
    done = render(version, {**VARS, "name": "<Mio>"})
    assert done.subject == "Order A1 for <Mio>"
    assert done.text == "<Mio> & co: 10.50"
    assert done.html == "<b>&lt;Mio&gt; & co</b>"


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{{ ''.__class__.__mro__ }}", "access to attribute '__class__'"),
        ("{{ name.__init__.__globals__ }}", "access to attribute '__init__'"),
        ("{{ order.__class__ }}", "access to attribute '__class__'"),
        ("{{ '{0.__class__}'.format(name) }}", "access to attribute 'format'"),
        ("{{ name.upper() }}", "access to attribute 'upper'"),
        ("{{ 'x' * 100000000 }}", "'*' would make more than"),
        ("{{ 2 ** 100000 }}", "'**' takes exponents up to"),
        ("{{ 'x' | center(1000000000) }}", "the filter 'center' takes numbers up to"),
        ("{{ '%999999999s' % 'x' }}", "'%' takes widths and precisions"),
        ("{{ range(100000000) | list }}", "takes numbers up to"),
        ("{{ big | replace('x', big) }}", "the filter 'replace' would make"),
        ("{{ range(10000) | join(big) }}", "the filter 'join' would make"),
        ("{% set a = big ~ big %}{% set a = a ~ a %}{% set a = a ~ a %}{{ a }}", "'~' would make"),
        (
            "{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n - 1) }}{% endif %}{% endmacro %}"
            "{{ d('x', 60) }}",
            "'~' would make",
        ),
        ("{% macro r() %}{{ r() }}{% endmacro %}{{ r() }}", "recursion"),
        ("{% for i in range(10000) %}{{ big }}{% endfor %}", "text renders to more than"),
        ("{{ lipsum(1000) }}", "'lipsum' is undefined"),
        ("{{ cycler }}", "'cycler' is undefined"),
        ("{{ missing }}", "'missing' is undefined"),
    ],
)
def test_each_way_out_is_stopped_with_its_reason(source: str, reason: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render(_text(source), VARS)
    assert reason in str(caught.value)
    assert str(caught.value).startswith("template t@1: text")


def test_a_guarded_variable_may_be_missing() -> None:
    guarded = "{{ shop | default('the shop') }}{% if extra is defined %}{{ extra }}{% endif %}"
    assert render(_text(guarded), VARS).text == "the shop"
    assert render(_text("{{ missing | d('x') | upper }}"), VARS).text == "X"


def test_a_render_that_runs_long_is_stopped_by_its_time_limit() -> None:
    loops = "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"
    with pytest.raises(TemplateError, match=r"the render took more than 0\.5 s"):
        render(_text(loops), VARS)
    # and the thread that rendered goes on rendering
    assert render(_text("{{ name }}"), VARS).text == "Mio"


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{% include 'other' %}", "text line 1: include is not allowed"),
        ("{% extends 'base' %}", "text line 1: extends is not allowed"),
        ("{% import 'm' as m %}", "text line 1: import is not allowed"),
        ("line one\n{% for x in %}", "text line 2:"),
        ("{% if x %}{{ x | random }}{% endif %}", "text line 1: no filter named 'random'"),
        ("x" * 70_000, "text: at most 60,000 characters"),
    ],
)
def test_a_template_that_reaches_out_or_does_not_compile_is_refused_at_save(
    source: str, reason: str
) -> None:
    problems = source_problems(_text(source))
    assert any(p.startswith(reason) for p in problems), problems


def test_the_variables_a_template_names_are_read_from_its_parts() -> None:
    version = TemplateVersion(
        "t", 0, subject="{{ a }}", text="{% for i in items %}{{ i.x }}{{ b }}{% endfor %}",
        html="{{ c | default('') }}{% set local = 1 %}{{ local }}", required=("a", "zzz"),
    )  # fmt: skip
    assert variables_of(version) == ("a", "b", "c", "items")
    assert source_problems(version) == ["required: zzz not named in the template"]


@given(st.text(max_size=200))
def test_any_value_renders_as_itself_in_text_and_escaped_in_html(value: str) -> None:
    version = TemplateVersion("t", 1, subject="s", text="[{{ v }}]", html="[{{ v }}]")
    done = render(version, {"v": value})
    assert done.text == f"[{value}]"
    assert (
        done.html
        == "["
        + value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("'", "&#39;")
        + "]"
    )


def test_the_demos_template_is_one_a_save_would_accept_as_it_is() -> None:
    from dispatcher.local.demo import SHIPPED

    version = TemplateVersion(version=0, **SHIPPED)  # type: ignore[arg-type]
    assert source_problems(version) == []
    assert variables_of(version) == SHIPPED["variables"]
    assert render(version, version.example).subject == "Order A-7 has shipped"
