"""Client CPU per recurring charge: the full stack against a hand-tuned raw aiohttp loop.

Both sides send the same bytes to the same peer (:mod:`benchmarks.peer`, another process) over a
pool of the same size, from the same number of worker tasks, each charge with a fresh
``Klarna-Idempotency-Key`` and for its own customer token, as in a batch where every
subscription has one (so no side's URL comes out of yarl's cache of parsed strings). Four arms:

* ``raw``: what a hand-written loop does for each charge: build the body as a dict (its own
  ``merchant_reference1``), ``orjson.dumps`` it, add the key to headers built once,
  ``session.post(url, data=..., headers=...)`` with the URL made as the client makes it
  (the token's path swapped into a parsed base URL), read the answer and ``orjson.loads`` it;
* ``full``: the same charge through the library: build the ``TokenOrderRequest``, then
  ``client.customer_tokens.create_order(token, request, idempotency_key=k)`` (validation, the
  converter, the retry layer, aiohttp, decoding the answer into an ``Order``);
* ``full_mapping``: the same, with the body built as the raw loop builds it (a dict of
  Klarna's JSON shape) and passed as a mapping, as the README's FastAPI handler does;
* ``raw_fixed_body`` and ``full_prebuilt``: the same two with one body (dict, or request
  object) made beforehand and sent for every charge, which separates what building a charge's
  body costs from what sending it costs.

The issue's target is ``full`` against ``raw``: each builds every charge, as a batch does.
``full`` against ``raw_fixed_body`` (the definition used before 2026-11-30, when the raw loop
sent one prebuilt dict) is reported too.

Only this process's CPU time is counted (``time.process_time()`` deltas around each measured
round). The arms alternate, in a rotating order, for many short rounds: a burst of noise from
other tenants of the machine then spoils a few rounds, not an arm. A ratio is the median of the
per-round ratios (each round of an arm against the round of its baseline run next to it), so
the machine's drift cancels; the ratio of the two arms' medians is reported beside it.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from yarl import URL

from benchmarks._common import bench_client, median, peer, raw_session
from klarna_async._converter import to_dict, to_json
from tests.samples import token_order

ARMS = ("raw", "full", "full_mapping", "raw_fixed_body", "full_prebuilt")
_KEY_PREFIX = "7c1f0e2a-4b3d-4e59-9a61-"  # + 12 digits: a key as long as a UUID
_TOKEN_PREFIX = "0b1d9815-165e-42e2-8867-"  # + 12 digits: each charge its own customer token

# What tests.samples.token_order() holds, as the dict a hand-written loop would build.
_SUBSCRIPTION = {"name": "Premium Monthly", "interval": "MONTH", "interval_count": 1}


def raw_body(amount: int, reference: str) -> dict[str, Any]:
    """One charge's body as a raw loop builds it: the JSON of ``token_order(amount, reference)``."""
    return {
        "purchase_currency": "EUR",
        "order_amount": amount,
        "order_tax_amount": 0,
        "order_lines": [
            {
                "name": "Streaming Service Monthly",
                "quantity": 1,
                "unit_price": amount,
                "total_amount": amount,
                "type": "digital",
                "reference": "19-402",
                "tax_rate": 0,
                "total_discount_amount": 0,
                "total_tax_amount": 0,
                "subscription": _SUBSCRIPTION,
            }
        ],
        "auto_capture": True,
        "merchant_reference1": reference,
        "merchant_data": "optional string",
    }


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
    prebuilt = token_order()
    # The two ways of building a charge's body must give the same bytes.
    if orjson.dumps(raw_body(999, "ref-1")) != to_json(token_order(999, "ref-1")):
        raise RuntimeError("raw_body() no longer matches tests.samples.token_order()")
    async with bench_client(url, concurrency) as client:
        # The raw loop sends exactly what the client sends: its body bytes and its headers.
        fixed_body = to_dict(prebuilt)
        base_headers = dict(client._requester.headers)
        # Hand-tuned as the client is: the path swapped into a parsed base URL, which yarl
        # takes as it is. A str URL would be parsed and quoted for every new token: about
        # 2.8 µs a charge on this machine, against 0.6 µs.
        base = URL(url)
        async with raw_session(concurrency) as session:
            # Written out twice, not shared through a helper: a helper would add a coroutine
            # frame to each raw charge that a hand-tuned loop does not have.
            async def raw(i: int) -> None:
                headers = {**base_headers, "Klarna-Idempotency-Key": f"{_KEY_PREFIX}{i:012d}"}
                body = orjson.dumps(raw_body(999, f"sub-{i:08d}"))
                path = f"/customer-token/v1/tokens/{_TOKEN_PREFIX}{i:012d}/order"
                order_url = base.with_path(path, encoded=True)
                async with session.post(order_url, data=body, headers=headers) as response:
                    order = orjson.loads(await response.read())
                if response.status != 200 or "order_id" not in order:
                    raise RuntimeError(f"raw charge failed: HTTP {response.status}")

            async def raw_fixed_body(i: int) -> None:
                headers = {**base_headers, "Klarna-Idempotency-Key": f"{_KEY_PREFIX}{i:012d}"}
                body = orjson.dumps(fixed_body)
                path = f"/customer-token/v1/tokens/{_TOKEN_PREFIX}{i:012d}/order"
                order_url = base.with_path(path, encoded=True)
                async with session.post(order_url, data=body, headers=headers) as response:
                    order = orjson.loads(await response.read())
                if response.status != 200 or "order_id" not in order:
                    raise RuntimeError(f"raw charge failed: HTTP {response.status}")

            create_order = client.customer_tokens.create_order

            async def full(i: int) -> None:
                request = token_order(999, f"sub-{i:08d}")
                token = f"{_TOKEN_PREFIX}{i:012d}"
                await create_order(token, request, idempotency_key=f"{_KEY_PREFIX}{i:012d}")

            async def full_mapping(i: int) -> None:
                # The README's FastAPI path: the body as a mapping of Klarna's JSON shape,
                # built per charge exactly as the raw loop builds its dict.
                body = raw_body(999, f"sub-{i:08d}")
                token = f"{_TOKEN_PREFIX}{i:012d}"
                await create_order(token, body, idempotency_key=f"{_KEY_PREFIX}{i:012d}")

            async def full_prebuilt(i: int) -> None:
                token = f"{_TOKEN_PREFIX}{i:012d}"
                await create_order(token, prebuilt, idempotency_key=f"{_KEY_PREFIX}{i:012d}")

            fns: dict[str, Charge] = {
                "raw": raw,
                "full": full,
                "full_mapping": full_mapping,
                "raw_fixed_body": raw_fixed_body,
                "full_prebuilt": full_prebuilt,
            }
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

    def paired(name: str, base: str) -> float:
        # Each round of an arm against the same round of its baseline, measured moments apart.
        return median(
            [
                row["cpu_us"] / other["cpu_us"]
                for row, other in zip(per_round[name], per_round[base], strict=True)
            ]
        )

    def ratio(name: str, base: str) -> float:
        return medians[name]["cpu_us"] / medians[base]["cpu_us"]

    return {
        "charges": charges,
        "rounds": rounds,
        "concurrency": concurrency,
        "connection_limit": concurrency,
        "warmup": warmup,
        "per_round": per_round,
        "median": medians,
        # The headline is the paired figure: each round of an arm sits next to a round of its
        # baseline, so the machine's drift cancels; the medians' ratio is kept beside it.
        "ratio": paired("full", "raw"),
        "ratio_of_medians": ratio("full", "raw"),
        "ratio_mapping": paired("full_mapping", "raw"),
        "ratio_mapping_of_medians": ratio("full_mapping", "raw"),
        # The mapping path against the model path (target: within 3 %).
        "mapping_vs_model": paired("full_mapping", "full"),
        "ratio_prebuilt": paired("full_prebuilt", "raw_fixed_body"),
        "ratio_prebuilt_of_medians": ratio("full_prebuilt", "raw_fixed_body"),
        "ratio_vs_fixed_body": paired("full", "raw_fixed_body"),
        "ratio_vs_fixed_body_of_medians": ratio("full", "raw_fixed_body"),
        "peer_answered": answered,
        "target_ratio": 1.15,
    }


def run(
    *, charges: int = 2_500, rounds: int = 40, concurrency: int = 64, warmup: int | None = None
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
        f"cpu: raw {m['raw']['cpu_us']:.1f} µs, full {m['full']['cpu_us']:.1f} µs per charge: "
        f"ratio {result['ratio']:.3f} (of medians {result['ratio_of_medians']:.3f}); "
        f"mapping {m['full_mapping']['cpu_us']:.1f} µs: {result['ratio_mapping']:.3f}, "
        f"{result['mapping_vs_model']:.3f} of the model path; "
        f"one body for all: raw {m['raw_fixed_body']['cpu_us']:.1f} µs, prebuilt request "
        f"{m['full_prebuilt']['cpu_us']:.1f} µs: {result['ratio_prebuilt']:.3f}; "
        f"full vs one raw body {result['ratio_vs_fixed_body']:.3f}"
    )
