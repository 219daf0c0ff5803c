"""``capture_many`` over many orders against the fake Klarna: each captured once, memory flat.

The fake runs in its own process (the sandbox), so the measuring process holds only the client.
For each size the fake gets that many fresh orders (ids ``<prefix>0``, ``<prefix>1``, ... so the
job generator derives them and holds nothing), and 1 % of captures lose their answer after the
commit, 2 % get a 503 first: retries with the key must still capture each order once. A fresh
interpreter per size warms up, then runs the batch and measures the ``tracemalloc`` peak of the
batch (traced from after the warm-up), the RSS high-water mark, and the throughput; jobs not
settled on the first pass are repeated with their keys. Then the fake's ledger says how many
captures it made and whether any key captured twice.

    python -m benchmarks.capture_many [--sizes 1000,10000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import sys
import time
import tracemalloc
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any

import attrs
import orjson

from benchmarks._common import bench_client, run_python, sandbox
from klarna_async import (
    CaptureJob,
    CaptureRequest,
    CaptureStatus,
    RetryPolicy,
    derive_idempotency_key,
)

SIZES = (1_000, 10_000)
AMOUNT = 1_000
MiB = 1024 * 1024
FAULTS = {"endpoint": "orders.capture", "drop_after_commit": 0.01, "service_unavailable": 0.02}
POLICY = RetryPolicy(max_attempts=5, initial_delay=0.01, max_delay=0.1, deadline=30)


def _jobs(prefix: str, count: int) -> Iterator[CaptureJob]:
    request = CaptureRequest(captured_amount=AMOUNT, reference="nightly")
    for number in range(count):
        order_id = f"{prefix}{number}"
        yield CaptureJob(
            order_id=order_id,
            request=request,
            idempotency_key=derive_idempotency_key("bench-fulfilment", order_id),
        )


def _rss_high_water() -> int:
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


async def _batch(url: str, prefix: str, count: int, concurrency: int) -> dict[str, Any]:
    async with bench_client(url, concurrency, retry=POLICY) as client:
        capture_many = client.orders.capture_many
        async for _ in capture_many(_jobs(prefix + "warm-", 200), concurrency=concurrency):
            pass
        gc.collect()
        rss_before = _rss_high_water()
        tracemalloc.start()
        baseline = tracemalloc.get_traced_memory()[0]
        tally = {status.value: 0 for status in CaptureStatus}
        again: list[CaptureJob] = []
        attempts = 0
        started = time.perf_counter()
        async for result in capture_many(_jobs(prefix, count), concurrency=concurrency):
            tally[result.status.value] += 1
            attempts += result.attempts
            if not result.ok:  # a handful: kept to be repeated with their keys
                unknown = result.status is CaptureStatus.UNKNOWN
                again.append(attrs.evolve(result.job, after_unknown=unknown))
        wall = time.perf_counter() - started
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        captured = tally[CaptureStatus.CAPTURED.value]
        async for result in capture_many(again, concurrency=concurrency):
            captured += result.ok
    return {
        "captures": count,
        "first_pass": tally,
        "repeated": len(again),
        "captured": captured,
        "attempts": attempts,
        "concurrency": concurrency,
        "wall_s": wall,
        "captures_per_s": count / wall if wall else 0.0,
        "tracemalloc_peak_bytes": peak - baseline,
        "tracemalloc_end_bytes": current - baseline,
        "rss_before_bytes": rss_before,
        "rss_high_water_bytes": _rss_high_water(),
    }


def _child(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.capture_many --child")
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    result = asyncio.run(_batch(args.url, args.prefix, args.count, args.concurrency))
    print(orjson.dumps(result).decode(), flush=True)
    return 0


def _control(url: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = None if body is None else orjson.dumps(body)
    request = urllib.request.Request(  # noqa: S310 - the sandbox on loopback
        url + path, data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as answer:  # noqa: S310
        parsed: dict[str, Any] = orjson.loads(answer.read())
    return parsed


def _ledger(url: str) -> dict[str, Any]:
    return _control(url, "/_fake/ledger?orders=0")


def measure(url: str, count: int, concurrency: int, prefix: str) -> dict[str, Any]:
    """One batch of ``count`` captures in a fresh interpreter, with the fake's own count."""
    _control(url, "/_fake/orders", {"count": 200, "order_id_prefix": prefix + "warm-"})
    _control(url, "/_fake/orders", {"count": count, "order_id_prefix": prefix, "amount": AMOUNT})
    before = _ledger(url)
    command = [
        "-m",
        "benchmarks.capture_many",
        "--child",
        "--url",
        url,
        "--prefix",
        prefix,
        "--count",
        str(count),
        "--concurrency",
        str(concurrency),
    ]
    stdout = run_python(command, timeout=900, what=f"capture_many child for {count}")
    row: dict[str, Any] = orjson.loads(stdout.splitlines()[-1])
    after = _ledger(url)
    # The warm-up's 200 captures are the child's too.
    row["fake_captures_total"] = after["captures_total"] - before["captures_total"] - 200
    row["duplicate_captures"] = after["duplicate_captures"]
    return row


def run(*, sizes: tuple[int, int] = SIZES, concurrency: int = 32) -> dict[str, Any]:
    with sandbox("--seed", "5") as child:
        _control(child.url, "/_fake/faults", {"rates": FAULTS})
        rows = [
            measure(child.url, n, concurrency, prefix=f"run{index}-")
            for index, n in enumerate(sizes)
        ]
    small, large = rows
    return {
        "sizes": list(sizes),
        "concurrency": concurrency,
        "faults": FAULTS,
        "runs": rows,
        "growth_tracemalloc_bytes": large["tracemalloc_peak_bytes"]
        - small["tracemalloc_peak_bytes"],
        "growth_rss_bytes": large["rss_high_water_bytes"] - small["rss_high_water_bytes"],
    }


def summary(result: dict[str, Any]) -> str:
    small, large = result["runs"]
    lines = [
        f"capture_many, concurrency {result['concurrency']}, faults {result['faults']}:",
    ]
    for row in (small, large):
        lines.append(
            f"  {row['captures']:>7,} orders: {row['captured']:,} captured "
            f"(fake: {row['fake_captures_total']:,} captures, "
            f"{row['duplicate_captures']} duplicates), {row['repeated']} repeated with their "
            f"keys; {row['captures_per_s']:,.0f} captures/s; tracemalloc peak "
            f"{row['tracemalloc_peak_bytes'] / MiB:.2f} MiB; RSS high-water "
            f"{row['rss_high_water_bytes'] / MiB:.1f} MiB"
        )
    lines.append(
        f"  growth {small['captures']:,} -> {large['captures']:,}: tracemalloc peak "
        f"{result['growth_tracemalloc_bytes'] / MiB:+.2f} MiB, RSS "
        f"{result['growth_rss_bytes'] / MiB:+.2f} MiB"
    )
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    if "--child" in argv:
        return _child(argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.capture_many")
    parser.add_argument("--sizes", default=",".join(str(n) for n in SIZES))
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    small, large = (int(n) for n in args.sizes.split(","))
    result = run(sizes=(small, large), concurrency=args.concurrency)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    print(summary(result))
    ok = all(
        row["captured"] == row["captures"] == row["fake_captures_total"]
        and row["duplicate_captures"] == 0
        for row in result["runs"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
