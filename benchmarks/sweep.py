"""Throughput and latency of ``charge_many`` at several concurrencies, against the peer.

For each concurrency a fresh client is made with ``connection_limit`` equal to it (so every
worker has a connection and none waits in the pool), warmed up, then given ``charges`` charges
through ``client.customer_tokens.charge_many(..., concurrency=c)``. Latency is each charge's
``ChargeResult.elapsed``: from the worker taking the charge to its decoded order (validation,
conversion and the HTTP round trip). The client process's CPU time per charge is recorded too.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator
from typing import Any

from benchmarks._common import TOKEN, bench_client, peer, percentile
from klarna_async import Charge
from tests.samples import token_order

LEVELS = (1, 16, 64, 256)


def _charges(start: int, count: int, tag: str) -> Iterator[Charge]:
    for i in range(start, start + count):
        yield Charge(
            customer_token=TOKEN,
            request=token_order(),
            idempotency_key=f"sweep-{tag}-{i:012d}",
            charge_id=str(i),
        )


async def _level(url: str, concurrency: int, charges: int, warmup: int) -> dict[str, Any]:
    async with bench_client(url, concurrency) as client:
        charge_many = client.customer_tokens.charge_many
        async for result in charge_many(_charges(0, warmup, "w"), concurrency=concurrency):
            if not result.ok:
                raise RuntimeError(f"warm-up charge failed: {result.error!r}")
        latencies: list[float] = []
        failed = 0
        gc.collect()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        async for result in charge_many(
            _charges(warmup, charges, str(concurrency)), concurrency=concurrency
        ):
            if result.ok:
                latencies.append(result.elapsed)
            else:
                failed += 1
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
    return {
        "concurrency": concurrency,
        "connection_limit": concurrency,
        "charges": charges,
        "placed": len(latencies),
        "failed": failed,
        "wall_s": wall,
        "charges_per_s": charges / wall,
        "cpu_us": cpu / charges * 1e6,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p90_ms": percentile(latencies, 90) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "max_ms": max(latencies, default=float("nan")) * 1e3,
    }


def run(*, charges: int = 10_000, levels: tuple[int, ...] = LEVELS) -> dict[str, Any]:
    """One peer for all levels; one client per level."""
    rows = []
    with peer() as child:
        for concurrency in levels:
            warmup = min(charges, max(2 * concurrency, 200))
            rows.append(asyncio.run(_level(child.url, concurrency, charges, warmup)))
    return {"charges": charges, "levels": rows}


def summary(result: dict[str, Any]) -> str:
    return "sweep: " + "; ".join(
        f"c={row['concurrency']}: {row['charges_per_s']:.0f}/s p50 {row['p50_ms']:.2f} ms "
        f"p99 {row['p99_ms']:.2f} ms"
        for row in result["levels"]
    )
