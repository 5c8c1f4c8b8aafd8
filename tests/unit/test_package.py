"""What the Lambda package holds: the functions' code, none of the operator's tools (that
the functions import none of them is tests/functional/test_cold_start.py's)."""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_ONLY = ("local", "ops", "producer")


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_sam_builds_a_package_without_the_console_the_cli_or_the_local_stack() -> None:
    plan = subprocess.run(
        [str(shutil.which("make")), "-n", "build-DispatcherFunction", "ARTIFACTS_DIR=/pkg"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    removal = plan[plan.index("rm -rf") :].split("\nfind ", 1)[0]
    for name in OPERATOR_ONLY:
        assert f'"/pkg/dispatcher/{name}"' in removal, f"{name} would ship to Lambda"


def test_the_top_level_holds_the_entry_modules_and_their_wiring() -> None:
    """Every other module lives in a package named for its concern (issue 30)."""
    top = sorted(path.name for path in (ROOT / "dispatcher").glob("*.py"))
    assert top == [
        "__init__.py",
        "functions.py",
        "handler.py",
        "ses_handler.py",
        "sweeper.py",
        "unsubscribe.py",
        "webhook.py",
    ]
    assert len(top) <= 12


def test_every_package_says_what_it_owns_and_imports_nothing() -> None:
    """A package's __init__ is its docstring: importing one module loads no sibling, so
    cold start does not grow with the packages (the root's re-exports aside)."""
    for init in (ROOT / "dispatcher").rglob("__init__.py"):
        if init.parent == ROOT / "dispatcher":
            continue
        tree = ast.parse(init.read_text(encoding="utf-8"))
        name = str(init.relative_to(ROOT))
        docstring = ast.get_docstring(tree)
        assert docstring, f"{name} says nothing of what it owns"
        assert len(docstring.split()) >= 8, f"{name} says too little of what it owns"
        if init.parent.parent.name in OPERATOR_ONLY or init.parent.name in OPERATOR_ONLY:
            continue  # the operator's tools may keep an entry point there
        imports = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        assert not imports, f"{name} imports at package import"


def function_bodies(folder: Path) -> dict[str, int]:
    """Lines of every function's body (its docstring included) under ``folder``."""
    lengths = {}
    for path in folder.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.body[0].lineno + 1
                lengths[f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"] = lines
    return lengths


def test_every_function_reads_in_one_screen() -> None:
    """No function body in dispatcher/ over 60 lines: concerns decide where modules split
    (the import contracts hold them), and a function is one step a reader can see whole.
    ruff holds complexity beside it (C901, PLR0915 in pyproject.toml)."""
    bodies = function_bodies(ROOT / "dispatcher")
    assert len(bodies) > 300  # the walk found the package
    long = {name: lines for name, lines in bodies.items() if lines > 60}
    assert not long, f"split these into named steps: {long}"
