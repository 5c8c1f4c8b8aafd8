"""The stack's side of its DynamoDB endpoint, which runs in a process of its own."""

from __future__ import annotations

from dispatcher.local.child import ChildProcess, ServiceProcess
from dispatcher.local.dynamodb.server import WRITES_PATH

__all__ = ["DynamoDBProcess"]


class DynamoDBProcess(ServiceProcess):
    """``python -m dispatcher.local.dynamodb.server``, with what the stack asks of it besides
    its life: its address, and how many writes it has applied (when a save is due)."""

    address_key = "endpoint_url"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(
            ChildProcess(
                "DynamoDB endpoint",
                "dispatcher.local.dynamodb.server",
                ["--host", host, "--port", str(port)],
            )
        )

    @property
    def endpoint_url(self) -> str:
        return self.address

    @property
    def writes(self) -> int:
        """Write requests the endpoint has applied (or refused by condition) so far."""
        return int(self.http().get(WRITES_PATH).json()["writes"])
