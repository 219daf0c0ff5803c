"""A fault soak: a batch through ``charge_many`` against the sandbox, judged by its ledger.

The sandbox (the fake Klarna, ``python -m klarna_async.testing._sandbox``) runs in another
process and injects, per request: ``503 SERVICE_UNAVAILABLE`` (10 %), the order committed but
the answer lost (drop-after-commit, 2 %) and answers slower than the client's attempt timeout
(1 %). The batch runs once; then every charge that ended ``UNKNOWN`` or ``RETRYABLE`` is
repeated with the same idempotency key (faults still on) until none is left
or ``max_passes`` passes have run. The client's word is then checked against the sandbox's ledger
(``GET /_fake/ledger``), which shares no code with the client:

* duplicates: orders beyond the first for one idempotency key (must be 0);
* unaccounted: keys the client reports placed without an order in the ledger, keys with an
  order the client does not report placed, and placed charges whose order id differs from the
  ledger's (must be 0).

The same batch against a fault-free sandbox gives the throughput to compare with.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from benchmarks._common import bench_client, sandbox
from klarna_async import Charge, ChargeStatus, KlarnaClient, KlarnaError, RetryPolicy
from klarna_async._retry import classify
from tests.samples import token_order

FAULTS = {"fault_503": 0.10, "fault_drop": 0.02, "fault_latency": 0.01}
#: Longer than the attempt timeout below: such an answer arrives after the client gave up.
LATENCY_SECONDS = 1.5
POLICY = RetryPolicy(
    max_attempts=5, initial_delay=0.05, max_delay=0.5, deadline=15.0, attempt_timeout=1.0
)
TOKENS = 500


def _charge(i: int, tag: str) -> Charge:
    return Charge(
        customer_token=f"ctok-soak-{i % TOKENS:05d}",
        request=token_order(amount=999 + i % 7, reference=f"{tag}-{i}"),
        idempotency_key=f"soak-{tag}-{i:012d}",
        charge_id=str(i),
    )


def _charges(count: int, tag: str) -> Iterator[Charge]:
    return (_charge(i, tag) for i in range(count))


@dataclass
class _Outcome:
    status: ChargeStatus
    transient: bool
    order_id: str | None
    attempts: int


async def _pass(
    client: KlarnaClient, charges: Iterable[Charge], concurrency: int, outcomes: dict[str, _Outcome]
) -> dict[str, Any]:
    started = time.perf_counter()
    tally: Counter[str] = Counter()
    attempts = count = 0
    async for result in client.customer_tokens.charge_many(charges, concurrency=concurrency):
        error = result.error
        transient = isinstance(error, KlarnaError) and classify(error).retry
        outcomes[result.charge.idempotency_key] = _Outcome(
            result.status,
            transient,
            result.order.order_id if result.order is not None else None,
            result.attempts,
        )
        tally[result.status.value] += 1
        attempts += result.attempts
        count += 1
    wall = time.perf_counter() - started
    return {
        "charges": count,
        "wall_s": wall,
        "charges_per_s": count / wall if wall else float("nan"),
        "attempts": attempts,
        **{status.value: tally[status.value] for status in ChargeStatus},
    }


async def _ledger(url: str, *, requests: bool) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http,
        http.get(f"{url}/_fake/ledger", params={"requests": "1" if requests else "0"}) as answer,
    ):
        answer.raise_for_status()
        ledger: dict[str, Any] = orjson.loads(await answer.read())
        return ledger


async def _batch(
    url: str,
    charges: int,
    concurrency: int,
    tag: str,
    *,
    faulty: bool,
    max_passes: int,
    policy: RetryPolicy,
    settle: float,
) -> dict[str, Any]:
    outcomes: dict[str, _Outcome] = {}
    passes: list[dict[str, Any]] = []
    async with bench_client(url, concurrency, policy) as client:
        started = time.perf_counter()
        passes.append(await _pass(client, _charges(charges, tag), concurrency, outcomes))
        for _ in range(max_passes - 1):
            again = [
                _charge(int(key.rsplit("-", 1)[1]), tag)
                for key, outcome in outcomes.items()
                if outcome.status in (ChargeStatus.UNKNOWN, ChargeStatus.RETRYABLE)
            ]
            if not again:
                break
            passes.append(await _pass(client, again, concurrency, outcomes))
        total_wall = time.perf_counter() - started
        budget_denied = client.retry_budget.denied if client.retry_budget is not None else 0
    if faulty:
        # Answers delayed past the client's timeout are still being processed: let them land.
        await asyncio.sleep(settle)
    ledger = await _ledger(url, requests=faulty)

    prefix = f"soak-{tag}-"
    per_key: Counter[str] = Counter()
    ledger_order_id: dict[str, str] = {}
    for order in ledger["orders"]:
        key = order.get("idempotency_key") or ""
        if key.startswith(prefix):
            per_key[key] += 1
            ledger_order_id.setdefault(key, order["order_id"])
    placed = {k: o.order_id for k, o in outcomes.items() if o.status is ChargeStatus.PLACED}
    missing_in_ledger = sum(1 for k in placed if k not in per_key)
    not_reported = sum(1 for k in per_key if k not in placed)
    wrong_ids = sum(1 for k, oid in placed.items() if k in per_key and ledger_order_id[k] != oid)
    final = Counter(o.status.value for o in outcomes.values())
    injected: Counter[str] = Counter()
    for request in ledger.get("requests", ()):
        if request["endpoint"] == "customer_tokens.create_order" and request["fault"]:
            injected[request["fault"]] += 1
    return {
        "charges": charges,
        "concurrency": concurrency,
        "faulty": faulty,
        "passes": passes,
        "first_pass_charges_per_s": passes[0]["charges_per_s"],
        "total_wall_s": total_wall,
        "overall_charges_per_s": charges / total_wall,
        "final": {status.value: final[status.value] for status in ChargeStatus},
        "ledger_orders": sum(per_key.values()),
        "duplicates": sum(n - 1 for n in per_key.values() if n > 1),
        "keys_with_duplicates": sum(1 for n in per_key.values() if n > 1),
        "unaccounted": missing_in_ledger + not_reported + wrong_ids,
        "unaccounted_detail": {
            "placed_without_ledger_order": missing_in_ledger,
            "ledger_order_not_reported_placed": not_reported,
            "order_id_mismatch": wrong_ids,
        },
        "requests": ledger["request_counts"].get("customer_tokens.create_order", 0),
        "faults_injected": dict(injected),
        "retry_budget_denied": budget_denied,
    }


def run(
    *,
    charges: int = 20_000,
    concurrency: int = 64,
    seed: int = 20261130,
    max_passes: int = 5,
    faults: dict[str, float] | None = None,
    latency_seconds: float = LATENCY_SECONDS,
    policy: RetryPolicy = POLICY,
) -> dict[str, Any]:
    """The fault-free batch, then the faulty one, each against its own sandbox.

    ``faults``, ``latency_seconds`` and ``policy`` default to the soak's (see the module); the
    smoke test turns them up to force unknown outcomes and repeat passes in a small batch.
    """
    faults = FAULTS if faults is None else faults
    if latency_seconds <= policy.attempt_timeout:
        raise ValueError("latency_seconds must exceed the policy's attempt_timeout")
    with sandbox("--keep-requests", "0") as child:
        clean = asyncio.run(
            _batch(
                child.url,
                charges,
                concurrency,
                "clean",
                faulty=False,
                max_passes=max_passes,
                policy=policy,
                settle=0.0,
            )
        )
    options = [f"--{name.replace('_', '-')}={rate}" for name, rate in faults.items()]
    with sandbox(
        "--seed",
        str(seed),
        *options,
        f"--latency-seconds={latency_seconds}",
        "--keep-requests",
        str(max(50_000, 3 * charges)),
    ) as child:
        faulty = asyncio.run(
            _batch(
                child.url,
                charges,
                concurrency,
                "faulty",
                faulty=True,
                max_passes=max_passes,
                policy=policy,
                settle=latency_seconds + 0.5,
            )
        )
    return {
        "charges": charges,
        "concurrency": concurrency,
        "seed": seed,
        "faults": faults,
        "latency_seconds": latency_seconds,
        "policy": {
            "max_attempts": policy.max_attempts,
            "initial_delay": policy.initial_delay,
            "max_delay": policy.max_delay,
            "deadline": policy.deadline,
            "attempt_timeout": policy.attempt_timeout,
        },
        "clean": clean,
        "faulty": faulty,
        "throughput_ratio": faulty["first_pass_charges_per_s"] / clean["first_pass_charges_per_s"],
        "targets": {"duplicates": 0, "unaccounted": 0},
    }


def summary(result: dict[str, Any]) -> str:
    f, c = result["faulty"], result["clean"]
    return (
        f"soak: {result['charges']:,} charges, {len(f['passes'])} pass(es); "
        f"duplicates {f['duplicates']}, unaccounted {f['unaccounted']}, "
        f"final {f['final']}; {f['first_pass_charges_per_s']:.0f}/s with faults vs "
        f"{c['first_pass_charges_per_s']:.0f}/s without ({result['throughput_ratio']:.2f}x)"
    )
