"""What the Lambda package holds: the functions' code, none of the operator's tools (that
the functions import none of them is tests/functional/test_cold_start.py's)."""

from __future__ import annotations

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


def test_no_module_is_over_400_lines() -> None:
    """Small modules, one concern each (STYLE.md): a module past 400 lines holds two."""
    long = {
        str(path.relative_to(ROOT)): lines
        for folder in ("dispatcher", "bench")
        for path in (ROOT / folder).rglob("*.py")
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > 400
    }
    assert not long, f"split these: {long}"
