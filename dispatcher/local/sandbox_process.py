"""The stack's side of the blastengine sandbox, which runs in a process of its own so that it
takes no CPU from the function it measures (issue 21)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import Any

import httpx

from dispatcher.local.child import ChildProcess
from dispatcher.local.sandbox import API_KEY_VARIABLE, Faults, SentMail

__all__ = ["SandboxProcess"]


class SandboxProcess:
    """``python -m dispatcher.local.sandbox``, with what the stack asks of it: its address,
    its faults, where it reports bounces, the mail it kept."""

    def __init__(self, *, login_id: str, api_key: str, faults: Faults | None = None) -> None:
        self._child = ChildProcess(
            "sandbox",
            "dispatcher.local.sandbox",
            ["--login-id", login_id, "--faults", json.dumps(asdict(faults or Faults()))],
            env={**os.environ, API_KEY_VARIABLE: api_key},
        )
        self.base_url = ""
        self._http: httpx.Client | None = None

    def start(self) -> SandboxProcess:
        self.base_url = str(self._child.start()["base_url"])
        self._http = httpx.Client(base_url=self.base_url.rsplit("/api/", 1)[0], timeout=10)
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        self._child.stop()

    def alive(self) -> bool:
        return self._child.alive()

    def describe_exit(self) -> str:
        return self._child.describe_exit()

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
        answer = self._client().get("/sandbox/mails")
        answer.raise_for_status()
        return [
            SentMail(**{**m, "attachments": tuple(m.get("attachments", ()))})
            for m in answer.json()["mails"]
        ]

    def _post(self, path: str, body: dict[str, Any]) -> None:
        self._client().post(path, json=body).raise_for_status()

    def _client(self) -> httpx.Client:
        assert self._http is not None, "the sandbox is not started"
        return self._http
