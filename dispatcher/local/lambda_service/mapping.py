"""The event source mapping's settings (from ``template.yaml``), its filter, its on-failure
destination: what :mod:`dispatcher.local.lambda_service.poller` runs with."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["FileFailureDestination", "MappingConfig", "OnFailure", "matches_filter"]

#: Where records that could not be processed go: an on-failure record shaped like Lambda's.
OnFailure = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class MappingConfig:
    """The event source mapping's settings; the defaults are AWS's."""

    batch_size: int = 100
    batching_window: float = 0.0
    maximum_retry_attempts: int = -1  # -1: forever
    maximum_record_age: float = -1  # seconds; -1: forever
    bisect_on_error: bool = False
    report_batch_item_failures: bool = False
    filters: tuple[Mapping[str, Any], ...] = ()
    parallelization_factor: int = 1

    @classmethod
    def from_template(
        cls,
        template: Mapping[str, Any] | None = None,
        *,
        function: str = "DispatcherFunction",
        event: str = "SendTableStream",
    ) -> MappingConfig:
        """The mapping ``template.yaml`` configures, parameters at their defaults."""
        from dispatcher.local.dynamodb.tables import load_template

        document = template if template is not None else load_template()
        props = document["Resources"][function]["Properties"]["Events"][event]["Properties"]
        params = document.get("Parameters", {})

        def value(name: str, default: Any) -> Any:
            raw = props.get(name, default)
            if isinstance(raw, dict) and "Ref" in raw:
                raw = params[raw["Ref"]].get("Default", default)
            return raw

        filters = tuple(
            json.loads(f["Pattern"]) for f in (props.get("FilterCriteria") or {}).get("Filters", [])
        )
        return cls(
            batch_size=int(value("BatchSize", 100)),
            batching_window=float(value("MaximumBatchingWindowInSeconds", 0)),
            maximum_retry_attempts=int(value("MaximumRetryAttempts", -1)),
            maximum_record_age=float(value("MaximumRecordAgeInSeconds", -1)),
            bisect_on_error=str(value("BisectBatchOnFunctionError", "false")).lower() == "true",
            report_batch_item_failures="ReportBatchItemFailures"
            in (props.get("FunctionResponseTypes") or []),
            filters=filters,
            parallelization_factor=int(value("ParallelizationFactor", 1)),
        )


def matches_filter(pattern: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    """Lambda's event filtering for the forms a template uses here: exact values, nested keys.

    A list of values matches when the record's value equals any of them; a nested object
    matches the record's nested object. Content-filter operators (``prefix``,
    ``anything-but``, ...) are not supported and raise, rather than silently pass.
    """
    for key, expected in pattern.items():
        actual = record.get(key) if isinstance(record, Mapping) else None
        if isinstance(expected, Mapping):
            if not isinstance(actual, Mapping) or not matches_filter(expected, actual):
                return False
        elif isinstance(expected, list):
            if any(isinstance(option, Mapping) for option in expected):
                raise ValueError(f"unsupported filter operator in {expected!r}")
            if actual not in expected:
                return False
        else:
            raise ValueError(f"filter values must be lists or objects, got {expected!r}")
    return True


class FileFailureDestination:
    """The on-failure destination: one JSON line per failed batch, like Lambda's SQS message."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def __call__(self, message: dict[str, Any]) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(message) + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]
