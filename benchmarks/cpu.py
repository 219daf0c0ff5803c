"""Client CPU per recurring charge: the full stack against a hand-tuned raw aiohttp loop.

Both sides send the same bytes to the same peer (:mod:`benchmarks.peer`, another process) over a
pool of the same size, from the same number of worker tasks, each charge with a fresh
``Klarna-Idempotency-Key``:

* ``raw``: ``orjson.dumps`` of the body dict, the headers dict built once (plus the key),
  ``session.post(url, data=..., headers=...)``, read the answer and ``orjson.loads`` it;
* ``full``: ``client.customer_tokens.create_order(token, token_order(), idempotency_key=k)``,
  building the ``TokenOrderRequest`` for every charge as a batch would (request object,
  validation, converter, retry layer, aiohttp, response decoding into an ``Order``);
* ``full_prebuilt``: the same call with one request object made beforehand, which separates
  what building the attrs model costs from what the client's own layers cost.

Only this process's CPU time is counted (``time.process_time()`` deltas around each measured
round). The arms alternate, in a rotating order, for several rounds; medians are reported.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson

from benchmarks._common import PASSWORD, TOKEN, USERNAME, median, peer
from klarna_async import KlarnaClient, RetryPolicy
from klarna_async._converter import to_dict
from tests.samples import token_order

ARMS = ("raw", "full", "full_prebuilt")
_KEY_PREFIX = "7c1f0e2a-4b3d-4e59-9a61-"  # + 12 digits: a key as long as a UUID


Charge = Callable[[int], Awaitable[None]]


async def _run_workers(charge: Charge, start: int, count: int, concurrency: int) -> None:
    """``count`` charges numbered from ``start``, split over ``concurrency`` worker tasks."""
    per, extra = divmod(count, concurrency)

    async def worker(first: int, n: int) -> None:
        for i in range(first, first + n):
            await charge(i)

    tasks = []
    first = start
    for w in range(concurrency):
        n = per + (1 if w < extra else 0)
        if n:
            tasks.append(worker(first, n))
        first += n
    await asyncio.gather(*tasks)


async def _peer_requests(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url + "/_peer/stats") as response:
        return int(orjson.loads(await response.read())["requests"])


async def measure(
    url: str, *, charges: int, rounds: int, concurrency: int, warmup: int
) -> dict[str, Any]:
    """Alternate the arms for ``rounds`` rounds of ``charges`` charges each."""
    path = f"/customer-token/v1/tokens/{TOKEN}/order"
    prebuilt = token_order()
    async with KlarnaClient(
        username=USERNAME,
        password=PASSWORD,
        base_url=url,
        connection_limit=concurrency,
        rate_limit=None,
        retry=RetryPolicy(),
    ) as client:
        # The raw loop sends exactly what the client sends: its body bytes and its headers.
        body_dict = to_dict(prebuilt)
        base_headers = dict(client._headers)
        raw_url = url + path
        connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
        async with aiohttp.ClientSession(
            connector=connector, skip_auto_headers=("User-Agent", "Content-Type")
        ) as session:

            async def raw(i: int) -> None:
                headers = {**base_headers, "Klarna-Idempotency-Key": f"{_KEY_PREFIX}{i:012d}"}
                async with session.post(
                    raw_url, data=orjson.dumps(body_dict), headers=headers
                ) as response:
                    order = orjson.loads(await response.read())
                if response.status != 200 or "order_id" not in order:
                    raise RuntimeError(f"raw charge failed: HTTP {response.status}")

            create_order = client.customer_tokens.create_order

            async def full(i: int) -> None:
                await create_order(TOKEN, token_order(), idempotency_key=f"{_KEY_PREFIX}{i:012d}")

            async def full_prebuilt(i: int) -> None:
                await create_order(TOKEN, prebuilt, idempotency_key=f"{_KEY_PREFIX}{i:012d}")

            fns: dict[str, Charge] = {"raw": raw, "full": full, "full_prebuilt": full_prebuilt}
            # The first figures must not pay for connecting or for lazy setup.
            next_number = 0
            for name in ARMS:
                await _run_workers(fns[name], next_number, warmup, concurrency)
                next_number += warmup
            before = await _peer_requests(session, url)

            per_round: dict[str, list[dict[str, float]]] = {name: [] for name in ARMS}
            for r in range(rounds):
                order = ARMS[r % len(ARMS) :] + ARMS[: r % len(ARMS)]
                for name in order:
                    gc.collect()
                    cpu0, wall0 = time.process_time(), time.perf_counter()
                    await _run_workers(fns[name], next_number, charges, concurrency)
                    cpu = time.process_time() - cpu0
                    wall = time.perf_counter() - wall0
                    next_number += charges
                    per_round[name].append(
                        {
                            "cpu_us": cpu / charges * 1e6,
                            "charges_per_s": charges / wall,
                            "cpu_share": cpu / wall,
                        }
                    )
            answered = await _peer_requests(session, url) - before

    expected = rounds * charges * len(ARMS)
    if answered != expected:
        raise RuntimeError(f"the peer answered {answered} charges, expected {expected}")
    medians = {
        name: {key: median([row[key] for row in rows]) for key in ("cpu_us", "charges_per_s")}
        for name, rows in per_round.items()
    }
    raw_cpu = [row["cpu_us"] for row in per_round["raw"]]

    def paired(name: str) -> float:
        return median(
            [row["cpu_us"] / raw for row, raw in zip(per_round[name], raw_cpu, strict=True)]
        )

    return {
        "charges": charges,
        "rounds": rounds,
        "concurrency": concurrency,
        "connection_limit": concurrency,
        "warmup": warmup,
        "per_round": per_round,
        "median": medians,
        "ratio": medians["full"]["cpu_us"] / medians["raw"]["cpu_us"],
        "ratio_prebuilt": medians["full_prebuilt"]["cpu_us"] / medians["raw"]["cpu_us"],
        "ratio_paired": paired("full"),
        "ratio_prebuilt_paired": paired("full_prebuilt"),
        "peer_answered": answered,
        "target_ratio": 1.15,
    }


def run(
    *, charges: int = 20_000, rounds: int = 5, concurrency: int = 64, warmup: int | None = None
) -> dict[str, Any]:
    """Start a peer, measure, stop the peer."""
    if warmup is None:
        warmup = min(charges, max(4 * concurrency, 2000))
    with peer() as child:
        return asyncio.run(
            measure(
                child.url,
                charges=charges,
                rounds=rounds,
                concurrency=concurrency,
                warmup=warmup,
            )
        )


def summary(result: dict[str, Any]) -> str:
    m = result["median"]
    return (
        f"cpu: raw {m['raw']['cpu_us']:.1f} µs, full {m['full']['cpu_us']:.1f} µs "
        f"(prebuilt request {m['full_prebuilt']['cpu_us']:.1f} µs) per charge; "
        f"ratio {result['ratio']:.3f} (paired {result['ratio_paired']:.3f}), "
        f"prebuilt {result['ratio_prebuilt']:.3f}"
    )
