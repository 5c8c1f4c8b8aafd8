"""The moto the adapters onto its internals were written against, and how each one replaces
a method of moto's: only on that version, marked, the original kept as ``__wrapped__``.

``pyproject.toml`` pins moto exactly; ``tests/functional/test_moto_adapter.py`` fails when an
upgrade changes what an adapter relies on.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MOTO_VERSION", "check_moto_version", "is_replaced", "replace_method"]

#: The moto release whose internals the adapters adapt.
MOTO_VERSION = "5.2.5"


def check_moto_version() -> None:
    """Refuse a moto other than :data:`MOTO_VERSION`.

    Raises
    ------
    RuntimeError
        If it is another: its internals may differ, and a silently wrong adapter is worse
        than a slow endpoint.
    """
    import moto

    if moto.__version__ != MOTO_VERSION:
        raise RuntimeError(
            f"the local DynamoDB endpoint was written against moto {MOTO_VERSION}, found "
            f"{moto.__version__}: reinstall with `pip install -e '.[local]'`"
        )


def is_replaced(owner: type, name: str, mark: str) -> bool:
    """Whether ``owner.name`` is already the adapter that carries ``mark``."""
    return bool(getattr(getattr(owner, name), mark, False))


def replace_method(owner: type, name: str, replacement: Any, mark: str) -> None:
    """Put ``replacement`` in place of ``owner.name`` (after :func:`check_moto_version`),
    marked with ``mark`` and keeping the original as its ``__wrapped__`` (a staticmethod's
    function carries them: that is what the class hands out)."""
    check_moto_version()
    function = replacement.__func__ if isinstance(replacement, staticmethod) else replacement
    setattr(function, mark, True)
    setattr(function, "__wrapped__", getattr(owner, name))  # noqa: B010 (a function's attribute)
    setattr(owner, name, replacement)
