"""The stack's side of the blastengine sandbox, which runs in a process of its own so that it
takes no CPU from the function it measures (issue 21)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import Any

from dispatcher.local.child import ChildProcess, ServiceProcess
from dispatcher.local.sandbox.model import API_KEY_VARIABLE, Faults, SentMail

__all__ = ["SandboxProcess"]


class SandboxProcess(ServiceProcess):
    """``python -m dispatcher.local.sandbox.server``, with what the stack asks of it besides its
    life: its address, its faults, where it reports bounces, the mail it kept."""

    address_key = "base_url"

    def __init__(self, *, login_id: str, api_key: str, faults: Faults | None = None) -> None:
        super().__init__(
            ChildProcess(
                "sandbox",
                "dispatcher.local.sandbox.server",
                ["--login-id", login_id, "--faults", json.dumps(asdict(faults or Faults()))],
                env={**os.environ, API_KEY_VARIABLE: api_key},
            )
        )

    def root(self, address: str) -> str:
        return address.rsplit("/api/", 1)[0]

    @property
    def base_url(self) -> str:
        return self.address

    def set_faults(self, faults: Faults) -> None:
        self._post("/sandbox/faults", asdict(faults))

    @property
    def webhook_url(self) -> str | None:
        return None  # write-only: the sandbox keeps it

    @webhook_url.setter
    def webhook_url(self, url: str | None) -> None:
        """Where it reports bounces, as blastengine's console is set to."""
        self._post("/sandbox/webhook", {"url": url or ""})

    @property
    def mails(self) -> list[SentMail]:
        answer = self.http().get("/sandbox/mails")
        answer.raise_for_status()
        return [
            SentMail(**{**m, "attachments": tuple(m.get("attachments", ()))})
            for m in answer.json()["mails"]
        ]

    def _post(self, path: str, body: dict[str, Any]) -> None:
        self.http().post(path, json=body).raise_for_status()
