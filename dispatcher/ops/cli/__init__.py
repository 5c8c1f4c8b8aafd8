"""The ``dispatcher`` command line. Commands are thin: they compose the package's parts.

Every command but ``dev``, ``demo`` and ``invoke`` talks to a stack: the local one that
``dispatcher dev`` is running (the default) or a deployed one (``--stack NAME``). Data goes to
stdout (a table, or JSON with ``--json``); messages go to stderr. A domain error (a bad
argument, an unknown id, an unreachable endpoint) is one line on stderr and exit status 2,
never a traceback.
"""

from importlib import import_module

from dispatcher.ops.cli.common import app

# Each module registers its commands on `app`; `dispatcher --help` lists them in this order.
for _group in ("dev", "local", "rows", "mail", "suppressions", "templates"):
    import_module(f"dispatcher.ops.cli.{_group}")

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()
