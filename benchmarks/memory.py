"""``charge_many``'s peak memory at two batch sizes, each in a fresh process, against the peer.

The batch is a generator (nothing is built ahead), the consumer keeps only counters, so memory
that grows with the batch size is memory ``charge_many`` or the client keeps per charge. Each
size runs in its own interpreter (``python -m benchmarks.memory --child ...``), which warms up,
then measures the batch: the ``tracemalloc`` peak of Python allocations during the batch (traced
from after the warm-up) and the process's RSS high-water mark (``ru_maxrss``, the whole life of
the process, tracemalloc's own bookkeeping included). The figure that matters is the growth
from the small batch to the large one.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import sys
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from benchmarks._common import TOKEN, bench_client, peer, run_python
from klarna_async import Charge
from tests.samples import token_order

SIZES = (10_000, 200_000)
MiB = 1024 * 1024


def _charges(count: int, tag: str) -> Iterator[Charge]:
    for i in range(count):
        yield Charge(
            customer_token=TOKEN,
            request=token_order(),
            idempotency_key=f"mem-{tag}-{i:012d}",
            charge_id=str(i),
        )


def _rss_high_water() -> int:
    # Linux reports kilobytes, macOS bytes.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


async def _batch(url: str, charges: int, concurrency: int, warmup: int) -> dict[str, Any]:
    async with bench_client(url, concurrency) as client:
        charge_many = client.customer_tokens.charge_many
        async for _ in charge_many(_charges(warmup, "warm"), concurrency=concurrency):
            pass
        gc.collect()
        rss_before = _rss_high_water()
        tracemalloc.start()
        baseline = tracemalloc.get_traced_memory()[0]
        placed = failed = 0
        started = time.perf_counter()
        async for result in charge_many(_charges(charges, "run"), concurrency=concurrency):
            if result.ok:
                placed += 1
            else:
                failed += 1
        wall = time.perf_counter() - started
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return {
        "charges": charges,
        "placed": placed,
        "failed": failed,
        "concurrency": concurrency,
        "wall_s": wall,
        "tracemalloc_peak_bytes": peak - baseline,
        "tracemalloc_end_bytes": current - baseline,
        "rss_before_bytes": rss_before,
        "rss_high_water_bytes": _rss_high_water(),
    }


def _child(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", required=True)
    parser.add_argument("--charges", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=500)
    args = parser.parse_args(argv)
    result = asyncio.run(_batch(args.url, args.charges, args.concurrency, args.warmup))
    print(orjson.dumps(result).decode(), flush=True)
    return 0


def measure_in_child(
    url: str, charges: int, *, concurrency: int = 64, warmup: int = 500, timeout: float = 900
) -> dict[str, Any]:
    """One batch in a fresh interpreter; killed after ``timeout`` seconds."""
    command = [
        "-m",
        "benchmarks.memory",
        "--child",
        "--url",
        url,
        "--charges",
        str(charges),
        "--concurrency",
        str(concurrency),
        "--warmup",
        str(warmup),
    ]
    stdout = run_python(command, timeout=timeout, what=f"memory child for {charges} charges")
    result: dict[str, Any] = orjson.loads(stdout.splitlines()[-1])
    return result


def run(
    *, sizes: tuple[int, int] = SIZES, concurrency: int = 64, warmup: int = 500
) -> dict[str, Any]:
    small, large = sizes
    with peer() as child:
        rows = [
            measure_in_child(child.url, n, concurrency=concurrency, warmup=warmup)
            for n in (small, large)
        ]
    growth_traced = rows[1]["tracemalloc_peak_bytes"] - rows[0]["tracemalloc_peak_bytes"]
    growth_rss = rows[1]["rss_high_water_bytes"] - rows[0]["rss_high_water_bytes"]
    return {
        "sizes": list(sizes),
        "concurrency": concurrency,
        "runs": rows,
        "growth_tracemalloc_bytes": growth_traced,
        "growth_rss_bytes": growth_rss,
        "target_growth_bytes": 10 * MiB,
    }


def summary(result: dict[str, Any]) -> str:
    small, large = result["runs"]
    return (
        f"memory: tracemalloc peak {small['tracemalloc_peak_bytes'] / MiB:.2f} MiB at "
        f"{small['charges']:,}, {large['tracemalloc_peak_bytes'] / MiB:.2f} MiB at "
        f"{large['charges']:,} (growth {result['growth_tracemalloc_bytes'] / MiB:+.2f} MiB); "
        f"RSS high-water {small['rss_high_water_bytes'] / MiB:.1f} -> "
        f"{large['rss_high_water_bytes'] / MiB:.1f} MiB "
        f"(growth {result['growth_rss_bytes'] / MiB:+.2f} MiB)"
    )


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
