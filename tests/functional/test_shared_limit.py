"""RATE_LIMIT_RPS is the account's: concurrent invocations (shards) share it, not multiply it."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.conftest import row
from tests.fakes import FakeProvider, ThreadTimeClock
from tests.functional.conftest import failed_ids

RATE = 10.0
LATENCY = 0.2
ROWS_PER_SHARD = 30


def _run_shards(make_dispatcher, table, stream_record, invoke, shards: int, **settings: Any):
    clock = ThreadTimeClock(real_block=0.002)
    provider = FakeProvider(clock, latency=LATENCY)
    batches = [
        [
            stream_record("INSERT", raw_new=table.put(row(f"s{shard}-{i:03}")))
            for i in range(ROWS_PER_SHARD)
        ]
        for shard in range(shards)
    ]
    dispatchers = [
        make_dispatcher(
            provider=provider, clock=clock, rate_limit_rps=RATE, send_concurrency=4, **settings
        )
        for _ in range(shards)
    ]
    responses: list[dict[str, Any]] = []

    def shard(n: int) -> None:
        responses.append(invoke(dispatchers[n], *batches[n]))

    threads = [threading.Thread(target=shard, args=(n,)) for n in range(shards)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return clock, provider, responses


@pytest.mark.parametrize("shards", [1, 3])
def test_concurrent_invocations_share_the_accounts_limit(
    make_dispatcher, table, stream_record, invoke, shards: int
) -> None:
    # GIVEN `shards` invocations running at once, each with a batch of 30, against R = 10/s
    clock, provider, responses = _run_shards(
        make_dispatcher, table, stream_record, invoke, shards, rate_limit_table_name="limit"
    )

    # THEN every row went out once
    assert all(failed_ids(r) == [] for r in responses)
    assert len(provider.sent) == shards * ROWS_PER_SHARD
    assert table.rows() == []
    # and the (virtual) time it took is the whole deployment's at R, not each shard's
    paced = (shards * ROWS_PER_SHARD - 1) / RATE
    assert clock.horizon >= paced * 0.98, f"{clock.horizon:.1f}s: faster than the account's R"
    assert clock.horizon <= paced + 3 * LATENCY + 1.0, f"{clock.horizon:.1f}s: capacity unused"


def test_without_a_limit_table_each_invocation_has_its_own_budget(
    make_dispatcher, table, stream_record, invoke
) -> None:
    # The local-only mode (no RATE_LIMIT_TABLE_NAME): what the shared limit fixes.
    clock, provider, _ = _run_shards(make_dispatcher, table, stream_record, invoke, 3)

    assert len(provider.sent) == 3 * ROWS_PER_SHARD
    assert clock.horizon < (3 * ROWS_PER_SHARD - 1) / RATE / 2
