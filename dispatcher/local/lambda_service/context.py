"""A Lambda context for running the handler outside Lambda.

Its remaining time counts real time down from the function's timeout on an injectable clock,
so the dispatcher's deadline logic behaves locally as it does deployed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from dispatcher.support.clock import SYSTEM_CLOCK, Clock

__all__ = ["LocalContext"]


@dataclass
class LocalContext:
    """Duck-types ``aws_lambda_powertools.utilities.typing.LambdaContext``."""

    function_name: str = "DispatcherFunction"
    timeout_seconds: float = 120.0
    function_memory_size: int = 256
    clock: Clock = SYSTEM_CLOCK
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/DispatcherFunction"
    log_stream_name: str = "local"
    _started: float = field(init=False)

    def __post_init__(self) -> None:
        self._started = self.clock.monotonic()

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:000000000000:function:{self.function_name}"

    @property
    def memory_limit_in_mb(self) -> int:
        return self.function_memory_size

    def get_remaining_time_in_millis(self) -> int:
        elapsed = self.clock.monotonic() - self._started
        return max(0, int((self.timeout_seconds - elapsed) * 1000))
