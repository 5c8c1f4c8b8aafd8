"""Expressions parsed once per text: moto re-reads the same few on every request.

Why it exists: the dispatcher sends a handful of expressions thousands of times (the history
update's ``SET #h0 = :h0, ...``, the content condition on a row's delete, the idempotency
record's conditions), with only the placeholders' values changing. moto parses each one from
its text twice per request (once to check the names and values used, once to apply it): a
sixth of the local endpoint's CPU per mail, on the one core that bounds the local stack's
throughput. What is cached depends on the text alone:

- an update expression's tree (``UpdateExpressionParser.make``): moto reads it to find the
  placeholders and hands it to its validator, which works on its own deep copy;
- a condition expression's tokens (``ConditionExpressionParser._lex_condition_expression``):
  each call gets new token nodes, so the parse that fills in names and values still runs in
  full for every request.

Pinned to moto's version (:mod:`.moto_pin`) and held to moto's own parsing by
``tests/functional/test_moto_adapter.py``.
"""

from __future__ import annotations

import functools
from collections import deque
from typing import Any

from dispatcher.local.dynamodb.moto_pin import is_replaced, replace_method

__all__ = ["install", "installed"]

_MARK = "_parsed_once_per_text"
#: Distinct expression texts kept; the dispatcher and the stack use a few dozen.
_TEXTS = 512


def installed() -> bool:
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]

    return is_replaced(UpdateExpressionParser, "make", _MARK)


def install() -> None:
    """Cache moto's parsing of expression texts; idempotent, on the moto it was written
    for only (:func:`.moto_pin.check_moto_version` raises otherwise)."""
    from moto.dynamodb.comparisons import ConditionExpressionParser
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]

    if installed():
        return
    make = functools.lru_cache(maxsize=_TEXTS)(UpdateExpressionParser.make)

    def make_once(expression_str: str) -> Any:
        return make(expression_str)

    replace_method(UpdateExpressionParser, "make", staticmethod(make_once), _MARK)

    lex = ConditionExpressionParser._lex_condition_expression
    node = ConditionExpressionParser.Node

    @functools.lru_cache(maxsize=_TEXTS)
    def tokens(expression: str) -> tuple[tuple[str, str, str], ...]:
        parser = ConditionExpressionParser(expression, None, None)
        return tuple((n.nonterminal, n.kind, n.text) for n in lex(parser))

    def lex_once(self: Any) -> deque[Any]:
        return deque(
            node(nonterminal=nonterminal, kind=kind, text=text, value=text, children=[])
            for nonterminal, kind, text in tokens(self.condition_expression)
        )

    replace_method(ConditionExpressionParser, "_lex_condition_expression", lex_once, _MARK)
