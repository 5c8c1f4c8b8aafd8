"""Failover through the local stack: blastengine's sandbox down, SES (moto's, on the stack's
endpoint) takes every mail, each once; `dispatcher show` names the provider."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import RunningStack, running_stack, start_stack, wait_for


@pytest.fixture(scope="module")
def failover_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with running_stack(
        tmp_path_factory.mktemp("failover"), "--failover-provider", "ses", "--fresh"
    ) as running:
        yield running


def test_with_blastengine_down_ses_takes_each_mail_once(failover_stack: RunningStack) -> None:
    stack = failover_stack
    # GIVEN the sandbox (blastengine) answering every request 500
    stack.faults(server_error=1.0)

    # WHEN rows are inserted
    for n in range(5):
        stack.put({"id": f"fo-{n}", "to": f"user{n}@example.com", "subject": "s", "text": "t"})

    # THEN every one is sent through SES, once, and leaves the send table
    for n in range(5):
        wait_for(lambda n=n: stack.history(f"fo-{n}"), what=f"fo-{n} in the history")
    for n in range(5):
        (item,) = stack.history(f"fo-{n}")
        assert item["provider"] == {"S": "ses"}
        assert stack.row(f"fo-{n}") is None
    assert stack.mails() == []  # blastengine took none

    shown = stack.cli("show", "fo-0")
    assert shown.returncode == 0, shown.stderr
    assert "through ses as delivery" in shown.stdout


def test_the_stack_refuses_a_failover_to_the_primary(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="FAILOVER_PROVIDER must differ"):
        start_stack(tmp_path, "--mail-provider", "ses", "--failover-provider", "ses")
