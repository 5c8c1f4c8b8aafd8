"""The stack's side of its DynamoDB endpoint, which runs in a process of its own."""

from __future__ import annotations

import httpx

from dispatcher.local.child import ChildProcess
from dispatcher.local.dynamodb_server import WRITES_PATH

__all__ = ["DynamoDBProcess"]


class DynamoDBProcess:
    """``python -m dispatcher.local.dynamodb_server``, started and stopped as one thing, with
    what the stack asks of it: its address, whether it lives, how many writes it applied."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._child = ChildProcess(
            "DynamoDB endpoint",
            "dispatcher.local.dynamodb_server",
            ["--host", host, "--port", str(port)],
        )
        self.endpoint_url = ""
        self._http: httpx.Client | None = None

    def start(self) -> DynamoDBProcess:
        self.endpoint_url = str(self._child.start()["endpoint_url"])
        self._http = httpx.Client(base_url=self.endpoint_url, timeout=10)
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        self._child.stop()

    @property
    def pid(self) -> int | None:
        return self._child.pid

    def alive(self) -> bool:
        return self._child.alive()

    def describe_exit(self) -> str:
        return self._child.describe_exit()

    @property
    def writes(self) -> int:
        """Write requests the endpoint has applied (or refused by condition) so far."""
        assert self._http is not None, "the endpoint is not started"
        return int(self._http.get(WRITES_PATH).json()["writes"])

    def __enter__(self) -> DynamoDBProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
