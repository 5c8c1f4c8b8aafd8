"""The sandbox templates render in: Jinja2's, narrowed to data and formatting.

A template is written by a person and rendered with ``vars`` a producer wrote, inside the
function that sends mail, so it is held to what a mail needs and no more:

- **Data only.** Names resolve to ``vars`` and nothing else (no loader, so no include,
  import or extends; no globals but ``range`` and ``dict``). Attributes are data: a map's
  keys (and its ``items``/``keys``/``values``), never a method of a string or any name with
  an underscore, and ``str.format`` is not reachable.
- **Strict.** A missing variable is an error naming it (``StrictUndefined``), never an empty
  string.
- **Bounded.** ``*``, ``**``, ``+``, ``%`` and ``~`` check the size of what they would make
  before making it; a call's arguments and result are held to :data:`MAX_VALUE_CHARS`; the
  filters are an allowlist, those with a size argument capped; ``range`` to
  :data:`MAX_RANGE`. What a render writes is counted as it streams (its part's limit), and
  the render is stopped past :data:`RENDER_SECONDS` (:mod:`~dispatcher.templates.watchdog`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jinja2 import Environment, StrictUndefined, Undefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

__all__ = [
    "MAX_RANGE",
    "MAX_VALUE_CHARS",
    "RENDER_SECONDS",
    "TemplateLimitError",
    "engine",
]

#: Characters any value made while rendering may hold (a part's own limit is checked too).
MAX_VALUE_CHARS = 200_000
#: Items ``range`` may make (Jinja's sandbox allows 100,000).
MAX_RANGE = 10_000
#: Seconds a render may take before it is stopped.
RENDER_SECONDS = 0.5
#: The largest exponent ``**`` takes, and the largest number a size argument may be.
MAX_EXPONENT = 64
MAX_SIZE_ARGUMENT = 10_000

#: Filters a template may use: formatting and selection. Left out: ``random`` (a mail must
#: render the same twice: the look-up compares its digest), ``format`` (printf widths),
#: ``pprint`` and ``xmlattr``.
ALLOWED_FILTERS = frozenset(
    {
        "abs", "attr", "batch", "capitalize", "center", "count", "d", "default", "dictsort",
        "e", "escape", "filesizeformat", "first", "float", "forceescape", "groupby", "indent",
        "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min",
        "reject", "rejectattr", "replace", "reverse", "round", "safe", "select",
        "selectattr", "slice", "sort", "string", "striptags", "sum", "title", "tojson", "trim",
        "truncate", "unique", "upper", "urlencode", "urlize", "wordcount", "wordwrap",
    }
)  # fmt: skip
#: Map methods a template may call (a string's, a list's: none; filters do that work).
_MAP_METHODS = frozenset({"items", "keys", "values", "get"})
#: A printf width or precision of five digits or more (``"%99999s" % x``).
_WIDE_FORMAT = re.compile(r"%[-+ #0]*(\d{5,}|\*|\.\d{5,})")


class TemplateLimitError(SecurityError):
    """A render went past one of the sandbox's limits."""


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, list, tuple, dict)) else 0


def _check(value: Any, what: str) -> Any:
    if _size(value) > MAX_VALUE_CHARS:
        raise TemplateLimitError(f"{what} would make a value of more than {MAX_VALUE_CHARS:,}")
    return value


def _sized_args(args: Iterable[Any], kwargs: Mapping[str, Any], what: str) -> None:
    for value in (*args, *kwargs.values()):
        _check(value, what)
        if isinstance(value, int) and not isinstance(value, bool) and value > MAX_SIZE_ARGUMENT:
            raise TemplateLimitError(f"{what} takes numbers up to {MAX_SIZE_ARGUMENT:,}")


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` with its arguments and its result held to the limits, and the two that
    could make a huge value from small ones checked before they run."""

    def run(*args: Any, **kwargs: Any) -> Any:
        # Jinja passes the context or environment first to some filters; sizes are of data
        data = [a for a in args if isinstance(a, Undefined) or not _is_jinjas(a)]
        _sized_args(data, kwargs, f"the filter {name!r}")
        if name == "replace" and len(data) >= 3:
            value, old, new = (str(v) for v in data[:3])
            grown = len(value) + value.count(old) * max(0, len(new) - len(old)) if old else 0
            _check(" " * min(grown, MAX_VALUE_CHARS + 1), f"the filter {name!r}")
        if name == "join" and data:
            items = list(data[0])
            separator = str(data[1]) if len(data) > 1 else str(kwargs.get("d", ""))
            grown = len(separator) * len(items) + sum(_size(str(i)) for i in items[:MAX_RANGE])
            _check(" " * min(grown, MAX_VALUE_CHARS + 1), f"the filter {name!r}")
        return _check(function(*args, **kwargs), f"the filter {name!r}")

    for marker in ("jinja_pass_arg",):  # keep how Jinja passes the context/environment
        if hasattr(function, marker):
            setattr(run, marker, getattr(function, marker))
    return run


def _is_jinjas(value: Any) -> bool:
    """The context, environment or evaluation context Jinja passes some filters first."""
    return isinstance(value, (Context, Environment, EvalContext))


def _bounded_range(*args: Any) -> range:
    made = range(*args)
    if len(made) > MAX_RANGE:
        raise TemplateLimitError(f"range makes at most {MAX_RANGE:,} items")
    return made


def _concat(parts: list[Any], *, markup: bool) -> str:
    """``~``, checked: the parts are joined only if the result fits; as Jinja joins them (in
    an HTML part, with a part already markup, the others escaped)."""
    strings = [str(p) for p in parts]
    if sum(map(len, strings)) > MAX_VALUE_CHARS:
        raise TemplateLimitError(f"'~' would make a value of more than {MAX_VALUE_CHARS:,}")
    if markup and any(hasattr(p, "__html__") for p in parts):
        joined: str = Markup("").join(parts)  # Markup.join escapes the plain parts
        return str(_check(joined, "'~'"))
    return "".join(strings)


class _BoundedCodeGenerator(CodeGenerator):
    """Compiles ``~`` to the environment's checked join (Jinja's own is a plain join)."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _Sandbox(ImmutableSandboxedEnvironment):
    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *, autoescape: bool) -> None:
        super().__init__(
            undefined=StrictUndefined, autoescape=autoescape, keep_trailing_newline=True
        )
        self.globals.clear()
        self.globals.update(range=_bounded_range, dict=dict)
        self.filters = {name: _bounded_filter(name, FILTERS[name]) for name in ALLOWED_FILTERS}
        self.tests = dict(self.tests)

    def bounded_concat(self, parts: Iterable[Any]) -> str:
        return _concat(list(parts), markup=bool(self.autoescape))

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        if callable(value):
            return isinstance(obj, dict) and attr in _MAP_METHODS
        return True

    def wrap_str_format(self, value: Any) -> None:
        return None  # str.format is a method of a string: not reachable

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _sized_args(args, kwargs, "a call")
        return _check(super().call(__context, __obj, *args, **kwargs), "a call")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > MAX_EXPONENT:
            raise TemplateLimitError(f"'**' takes exponents up to {MAX_EXPONENT}")
        if operator == "*":
            count = right if isinstance(left, (str, list, tuple)) else left
            sized = left if isinstance(left, (str, list, tuple)) else right
            if isinstance(count, int) and _size(sized) * count > MAX_VALUE_CHARS:
                raise TemplateLimitError(f"'*' would make more than {MAX_VALUE_CHARS:,}")
        if operator == "+" and _size(left) + _size(right) > MAX_VALUE_CHARS:
            raise TemplateLimitError(f"'+' would make more than {MAX_VALUE_CHARS:,}")
        if operator == "%" and isinstance(left, str) and _WIDE_FORMAT.search(left):
            raise TemplateLimitError("'%' takes widths and precisions of at most 4 digits")
        return _check(super().call_binop(context, operator, left, right), f"'{operator}'")


def engine(*, html: bool) -> _Sandbox:
    """The sandbox for one part: HTML escapes every value it writes; text and subject none."""
    return _Sandbox(autoescape=html)
