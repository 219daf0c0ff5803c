"""Two versions of the client in one process: ``python -m benchmarks.versions --before REV``.

The package as it was at a git revision is imported under another name (see
:func:`benchmarks.otel.before_package`) beside the current one; both charge the same peer
(:mod:`benchmarks.peer`, another process) from the same number of workers, each charge built
from its own version's classes, the arms alternating over many short rounds. What one version
costs more than the other, in place, is the median of the per-round differences (with a
bootstrap 95 % interval): the machine's drift cancels, which separate runs of each version do
not manage on a shared machine.

``benchmarks/OPTIMIZATIONS.md`` records what it measured when hot-path tricks were removed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import sys
import time
from types import ModuleType
from typing import Any

import orjson

import klarna_async
from benchmarks._common import median, peer
from benchmarks.cpu import _KEY_PREFIX, _TOKEN_PREFIX, Charge, _run_workers
from benchmarks.otel import _client, _interval, before_package, token_order

#: The landing before the outcome-truth and house work (issues 10 and 13).
DEFAULT_BEFORE = "4f9570d"


async def measure(
    url: str, before: ModuleType, *, charges: int, rounds: int, concurrency: int, warmup: int
) -> dict[str, Any]:
    packages = {"before": before, "after": klarna_async}
    async with contextlib.AsyncExitStack() as stack:
        fns: dict[str, Charge] = {}
        for arm, package in packages.items():
            client = await stack.enter_async_context(_client(package, url, concurrency))

            def charge_with(package: ModuleType, client: Any) -> Charge:
                create_order = client.customer_tokens.create_order

                async def charge(i: int) -> None:
                    request = token_order(package, 999, f"sub-{i:08d}")
                    token = f"{_TOKEN_PREFIX}{i:012d}"
                    await create_order(token, request, idempotency_key=f"{_KEY_PREFIX}{i:012d}")

                return charge

            fns[arm] = charge_with(package, client)
        arms = list(fns)
        number = 0
        for arm in arms:
            await _run_workers(fns[arm], number, warmup, concurrency)
            number += warmup
        per_round: dict[str, list[float]] = {arm: [] for arm in arms}
        for r in range(rounds):
            for arm in arms[r % 2 :] + arms[: r % 2]:
                gc.collect()
                started = time.process_time()
                await _run_workers(fns[arm], number, charges, concurrency)
                per_round[arm].append((time.process_time() - started) / charges * 1e6)
                number += charges
    extra = [a - b for a, b in zip(per_round["after"], per_round["before"], strict=True)]
    return {
        "charges": charges,
        "rounds": rounds,
        "concurrency": concurrency,
        "median_us": {arm: median(values) for arm, values in per_round.items()},
        "after_minus_before_us": median(extra),
        "after_minus_before_us_95": _interval(extra),
        "per_round": per_round,
    }


def run(
    *, before: str = DEFAULT_BEFORE, charges: int = 2_500, rounds: int = 30, concurrency: int = 64
) -> dict[str, Any]:
    with before_package(before) as package, peer() as child:
        if package is None:
            raise RuntimeError(f"cannot load revision {before!r} (no git checkout?)")
        result = asyncio.run(
            measure(
                child.url,
                package,
                charges=charges,
                rounds=rounds,
                concurrency=concurrency,
                warmup=min(charges, 2000),
            )
        )
    return {"before": before, **result}


def summary(result: dict[str, Any]) -> str:
    m = result["median_us"]
    low, high = result["after_minus_before_us_95"]
    return (
        f"versions: before ({result['before']}) {m['before']:.1f} µs, after {m['after']:.1f} µs "
        f"per charge; after - before {result['after_minus_before_us']:+.2f} µs "
        f"(95 % {low:+.2f} to {high:+.2f}) over {result['rounds']} rounds"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.versions", description=__doc__)
    parser.add_argument("--before", default=DEFAULT_BEFORE, help="git revision to compare with")
    parser.add_argument("--charges", type=int, default=2_500)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    result = run(before=args.before, charges=args.charges, rounds=args.rounds)
    print(summary(result))
    print(orjson.dumps({k: v for k, v in result.items() if k != "per_round"}).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
