"""Each execution environment runs AWS's runtime interface client (awslambdaric) on a handler
string, against the stack's Runtime API: a response, a raise, a timeout, an init error and a
function past its memory answered as Lambda answers them."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from dispatcher.local.lambda_service.execution_environment import (
    ExecutionEnvironment,
    FunctionError,
    FunctionSpec,
)


def _environment(handler: str, *, timeout: float = 10, memory_mb: int = 256, **env: str):
    spec = FunctionSpec("TestFunction", handler, timeout, memory_mb)
    base = {k: v for k, v in os.environ.items() if k != "SEND_TABLE_NAME"}
    return ExecutionEnvironment(spec, environ={**base, **env})


@pytest.fixture
def environments() -> Iterator[list[ExecutionEnvironment]]:
    made: list[ExecutionEnvironment] = []
    yield made
    for environment in made:
        environment.stop()


def test_the_context_is_built_from_the_runtime_apis_headers(environments) -> None:
    environment = _environment("tests.runtime_handlers.context", timeout=30, memory_mb=512)
    environments.append(environment)

    first = environment.invoke({"id": "row-1"})
    second = environment.invoke({"id": "row-2"})

    assert first["event"] == {"id": "row-1"}
    assert first["function_name"] == "TestFunction"
    assert first["memory_limit_in_mb"] == "512"  # as Lambda's environment gives it: a string
    assert first["invoked_function_arn"].endswith(":function:TestFunction")
    assert 25_000 < first["remaining_ms"] <= 30_000  # the deadline from the template's Timeout
    assert first["request_id"] != second["request_id"]
    assert environment.cold_starts == 1  # the second invocation was warm


def test_a_handler_that_raises_is_lambdas_error_shape_and_stays_warm(environments) -> None:
    environment = _environment("tests.runtime_handlers.raises")
    environments.append(environment)

    with pytest.raises(FunctionError) as raised:
        environment.invoke({"id": "row-9"})

    assert raised.value.payload["errorType"] == "ValueError"
    assert raised.value.payload["errorMessage"] == "cannot send row-9"
    assert any("raises" in line for line in raised.value.payload["stackTrace"])
    with pytest.raises(FunctionError):
        environment.invoke({"id": "row-10"})
    assert environment.cold_starts == 1


def test_a_function_past_its_timeout_is_ended_and_the_next_starts_cold(environments) -> None:
    environment = _environment("tests.runtime_handlers.sleeps", timeout=1)
    environments.append(environment)

    with pytest.raises(FunctionError) as raised:
        environment.invoke({"seconds": 30})

    assert raised.value.error_type == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in raised.value.payload["errorMessage"]
    assert environment.invoke({"seconds": 0}) == "woke"
    assert environment.cold_starts == 2


def test_a_bad_setting_fails_the_init_phase_as_lambda_shows_it(environments) -> None:
    # the real entry module, without SEND_TABLE_NAME: Settings.from_env refuses at import
    environment = _environment("dispatcher.handler.lambda_handler")
    environments.append(environment)

    with pytest.raises(FunctionError) as raised:
        environment.invoke({"Records": []})

    assert raised.value.error_type == "SettingsError"
    assert raised.value.payload["errorMessage"] == "SEND_TABLE_NAME is required but not set"
    assert any("dispatcher/handler.py" in line for line in raised.value.payload["stackTrace"])


def test_a_handler_string_naming_nothing_is_lambdas_handler_not_found(environments) -> None:
    environment = _environment("tests.runtime_handlers.nothing_here")
    environments.append(environment)

    with pytest.raises(FunctionError) as raised:
        environment.invoke({})

    assert raised.value.error_type == "Runtime.HandlerNotFound"


def test_a_function_past_its_memory_is_ended_with_lambdas_error(environments) -> None:
    environment = _environment("tests.runtime_handlers.grows", memory_mb=128)
    environments.append(environment)

    def grow_until_ended() -> None:
        for _ in range(4):  # 64 MB more each time: past 128 MB by the third at the latest
            environment.invoke({"mb": 64})

    with pytest.raises(FunctionError) as raised:
        grow_until_ended()

    assert raised.value.error_type == "Runtime.OutOfMemory"
    # and the next invocation starts a new environment, cold and small again
    assert environment.invoke({"mb": 1}) == "grew"
    assert environment.cold_starts == 2
