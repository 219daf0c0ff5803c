"""The in-process fake Klarna at scale: memory and rate over a million recurring charges.

``python -m benchmarks.fake_scale --charges 1000000 [--out result.json]``

One :class:`~klarna_async.testing.FakeKlarna`, with its default options, and a raw
:mod:`aiohttp` load generator run in this process, on one event loop: ``--concurrency`` workers
charge ``--tokens`` customer tokens, every charge with its own ``Klarna-Idempotency-Key``, until
``--charges`` charges have been answered. At every tenth of the run (100k, 200k, ... 1M for a
million) it takes the process's resident memory (``VmRSS``, and the high-water mark ``VmHWM``
from ``/proc/self/status``; ``ru_maxrss`` elsewhere), the charge rate and the CPU time per charge
(both over the last ``--window`` fraction of the charges before the checkpoint; other processes
on the machine lower the rate, not the CPU time) and the size of the fake's per-key arrays. The
figure that matters is the growth between the first checkpoint and the last: the fake keeps a
bounded amount of detail per order (see :mod:`klarna_async.testing`), so memory and cost per
charge stay flat once its caps are full, but for its compact per-key state.

At the end the fake's ledger is checked against what the load generator saw: every charge
answered 200 once, one order per key (counted for every key, not only for the detail records
still kept), and the per-token counts add up. A mismatch makes the run fail (exit status 1).

The load generator is the same process, so the rate is that of fake and generator together; it
is the trend (flat or falling) that matters, not the absolute figure.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from klarna_async.testing import FakeKlarna

MiB = 1024 * 1024
AUTH = "Basic dGVzdF91c2VyOnRlc3RfcGFzc3dvcmQ="  # test_user:test_password, the fake's default

#: A recurring charge as the Customer Token spec shapes it; the amounts pass Klarna's arithmetic.
BODY = orjson.dumps(
    {
        "purchase_currency": "EUR",
        "order_amount": 999,
        "order_tax_amount": 200,
        "auto_capture": True,
        "merchant_reference1": "scale",
        "order_lines": [
            {
                "type": "digital",
                "reference": "plan-m",
                "name": "Monthly plan",
                "quantity": 1,
                "unit_price": 999,
                "tax_rate": 2500,
                "total_amount": 999,
                "total_discount_amount": 0,
                "total_tax_amount": 200,
                "subscription": {"name": "Monthly plan", "interval": "MONTH", "interval_count": 1},
            }
        ],
    }
)


def memory() -> dict[str, int]:
    """Current and peak resident memory of this process, in bytes."""
    found: dict[str, int] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    found[name] = int(value.split()[0]) * 1024
    except OSError:
        pass
    if "VmHWM" not in found:  # not Linux: the high-water mark only (macOS reports bytes)
        scale = 1 if sys.platform == "darwin" else 1024
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
        found = {"VmRSS": peak, "VmHWM": peak}
    return {"rss_bytes": found["VmRSS"], "peak_rss_bytes": found["VmHWM"]}


def key_of(i: int) -> str:
    # As long as a UUID, so the per-key state measured is that of realistic keys.
    return f"scale-{i:012d}-0000-4000-8000-{i:012x}"


class Run:
    """The load: workers take the next charge number until all are sent."""

    def __init__(
        self,
        charges: int,
        checkpoints: Sequence[int],
        window: float,
        compact_bytes: Callable[[], int],
    ) -> None:
        self.charges = charges
        self.checkpoints = frozenset(checkpoints)
        self.compact_bytes = compact_bytes
        self.window = window
        self.next = 0
        self.done = 0
        self.statuses: dict[int, int] = {}
        # (charges answered, wall clock, CPU time of this process)
        self.marks: list[tuple[int, float, float]] = [(0, time.perf_counter(), time.process_time())]
        self.points: list[dict[str, Any]] = []
        self.started = self.marks[0][1]

    def _mark_every(self) -> int:
        return max(1, self.charges // 200)

    def answered(self, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.done += 1
        if self.done % self._mark_every() == 0 or self.done in self.checkpoints:
            self.marks.append((self.done, time.perf_counter(), time.process_time()))
        if self.done in self.checkpoints:
            self._checkpoint()

    def _checkpoint(self) -> None:
        done, now, cpu = self.marks[-1]
        since = done - max(1, int(done * self.window))
        # The latest mark at or before the start of the window.
        start_count, start_time, start_cpu = next(m for m in reversed(self.marks) if m[0] <= since)
        gc.collect()
        point: dict[str, Any] = {
            "charges": done,
            "elapsed_s": round(now - self.started, 3),
            "rate_per_s": round((done - start_count) / (now - start_time), 1),
            # CPU time per charge (fake and load generator): unlike the rate, not lowered by
            # other processes competing for the cores.
            "cpu_us_per_charge": round((cpu - start_cpu) / (done - start_count) * 1e6, 1),
            "rate_window": [start_count, done],
            "loadavg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            **memory(),
            # The fake's per-key arrays (key table, counts, stored answers): what is meant to grow.
            "fake_key_state_bytes": self.compact_bytes(),
        }
        self.points.append(point)
        print(
            f"{done:>9,} charges  {point['rate_per_s']:>8,.0f}/s  "
            f"{point['cpu_us_per_charge']:6.0f} us CPU/charge  "
            f"RSS {point['rss_bytes'] / MiB:7.1f} MiB  "
            f"peak {point['peak_rss_bytes'] / MiB:7.1f} MiB",
            file=sys.stderr,
            flush=True,
        )


async def _worker(
    run: Run, http: aiohttp.ClientSession, url: str, tokens: list[str], errors: list[str]
) -> None:
    headers = {"Authorization": AUTH, "Content-Type": "application/json"}
    while run.next < run.charges:
        i = run.next
        run.next += 1
        token = tokens[i % len(tokens)]
        async with http.post(
            f"{url}/customer-token/v1/tokens/{token}/order",
            data=BODY,
            headers={**headers, "Klarna-Idempotency-Key": key_of(i)},
        ) as answer:
            await answer.read()
            if answer.status != 200 and len(errors) < 10:
                errors.append(f"charge {i}: {answer.status}")
        run.answered(answer.status)


async def measure(
    charges: int, *, concurrency: int = 32, tokens: int = 1000, window: float = 0.5
) -> dict[str, Any]:
    """Drive ``charges`` charges through a fresh in-process fake; the figures and checks."""
    if charges < 10:
        raise ValueError("charges must be at least 10")
    checkpoints = [charges * tenth // 10 for tenth in range(1, 11)]
    before = memory()
    async with FakeKlarna() as fake:
        token_ids = [fake.add_customer_token() for _ in range(min(tokens, charges))]
        run = Run(
            charges,
            checkpoints,
            window,
            lambda: fake.ledger.key_state_nbytes() + fake.state.idempotency.nbytes(),
        )
        errors: list[str] = []
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as http:
            await asyncio.gather(
                *(_worker(run, http, fake.url, token_ids, errors) for _ in range(concurrency))
            )
        ledger = fake.ledger
        checks = {
            "answered_200": run.statuses.get(200, 0),
            "ledger_orders_total": ledger.orders_total,
            "duplicate_orders": ledger.duplicate_orders,
            "orders_for_first_key": ledger.order_count_for_key(key_of(0)),
            "orders_for_last_key": ledger.order_count_for_key(key_of(charges - 1)),
            "orders_for_unused_key": ledger.order_count_for_key(key_of(charges)),
            "orders_by_token_sum": sum(ledger.order_count_for_token(t) for t in token_ids),
            "order_details_kept": len(ledger.orders),
        }
        options = {"keep_orders": ledger.keep_orders, "keep_requests": ledger.keep_requests}
    small, large = run.points[0], run.points[-1]
    problems = list(errors)
    expected = {
        "answered_200": charges,
        "ledger_orders_total": charges,
        "duplicate_orders": 0,
        "orders_for_first_key": 1,
        "orders_for_last_key": 1,
        "orders_for_unused_key": 0,
        "orders_by_token_sum": charges,
    }
    problems.extend(
        f"{name}: {checks[name]} != {want}"
        for name, want in expected.items()
        if checks[name] != want
    )
    return {
        "charges": charges,
        "concurrency": concurrency,
        "tokens": len(token_ids),
        "fake_options": options,
        "rss_before_bytes": before["rss_bytes"],
        "checkpoints": run.points,
        "rss_growth_bytes": large["rss_bytes"] - small["rss_bytes"],
        "key_state_growth_bytes": large["fake_key_state_bytes"] - small["fake_key_state_bytes"],
        "peak_rss_growth_bytes": large["peak_rss_bytes"] - small["peak_rss_bytes"],
        "rate_ratio": round(large["rate_per_s"] / small["rate_per_s"], 3),
        "cpu_per_charge_ratio": round(large["cpu_us_per_charge"] / small["cpu_us_per_charge"], 3),
        "checks": checks,
        "problems": problems,
        "target": {"rss_growth_below_bytes": 50 * MiB},
    }


def summary(result: dict[str, Any]) -> str:
    small, large = result["checkpoints"][0], result["checkpoints"][-1]
    return (
        f"fake_scale: {small['charges']:,} -> {large['charges']:,} charges: RSS "
        f"{small['rss_bytes'] / MiB:.0f} -> {large['rss_bytes'] / MiB:.0f} MiB "
        f"(growth {result['rss_growth_bytes'] / MiB:+.1f} MiB, peak "
        f"{small['peak_rss_bytes'] / MiB:.0f} -> {large['peak_rss_bytes'] / MiB:.0f} MiB); "
        f"rate {small['rate_per_s']:,.0f}/s -> {large['rate_per_s']:,.0f}/s "
        f"({result['rate_ratio']:.2f}x), CPU per charge {small['cpu_us_per_charge']:.0f} -> "
        f"{large['cpu_us_per_charge']:.0f} us; problems: {len(result['problems'])}"
    )


def run(*, charges: int = 1_000_000, concurrency: int = 32, tokens: int = 1000) -> dict[str, Any]:
    """:func:`measure` from synchronous code (``python -m benchmarks --only fake_scale``)."""
    return asyncio.run(measure(charges, concurrency=concurrency, tokens=tokens))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.fake_scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--charges", type=int, default=1_000_000, help="charges to send [1000000]")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight [32]")
    parser.add_argument("--tokens", type=int, default=1000, help="customer tokens charged [1000]")
    parser.add_argument(
        "--window",
        type=float,
        default=0.5,
        help="the rate at a checkpoint is over this last fraction of its charges [0.5]",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.charges < 10 or args.concurrency < 1 or args.tokens < 1 or not 0 < args.window <= 1:
        parser.error("need --charges >= 10, --concurrency >= 1, --tokens >= 1, 0 < --window <= 1")
    result = asyncio.run(
        measure(args.charges, concurrency=args.concurrency, tokens=args.tokens, window=args.window)
    )
    text = orjson.dumps(result, option=orjson.OPT_INDENT_2).decode()
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(summary(result), file=sys.stderr)
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
