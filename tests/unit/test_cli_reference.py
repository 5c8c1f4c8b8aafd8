"""docs/reference/cli.md is the command's own help, as Typer renders it: regenerate, compare."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "reference" / "cli.md"


def test_the_cli_reference_page_is_the_commands_own_help(tmp_path: Path) -> None:
    out = tmp_path / "cli.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    subprocess.run(
        [sys.executable, "-m", "typer", "dispatcher.ops.cli", "utils", "docs",
         "--name", "dispatcher", "--title", "The dispatcher command", "--output", str(out)],
        cwd=ROOT, env=env, check=True, capture_output=True,
    )  # fmt: skip
    assert out.read_text() == PAGE.read_text(), (
        "docs/reference/cli.md is out of date with the commands: run make cli-reference"
    )
