"""A fault soak: a batch through ``charge_many`` against the sandbox, judged by its ledger.

The sandbox (the fake Klarna, ``python -m klarna_async.testing._sandbox``) runs in another
process and plays the adversary, per request (see :data:`FAULTS`): Klarna's 503 (nothing
processed), the order committed but the answer lost, answers that come after the client gave up
(committed later), and the ambiguous answers a real network gives *after* the order was placed:
Envoy's ``text/plain`` 503, an empty 503, an HTML 502, ``500 NOT_FOUND`` and ``504 REJECTED``
with Klarna's JSON, a proxy's 408; plus ``NaN`` in ``X-Ratelimit-Reset``/``Retry-After`` and,
throughout, a 409 for a key whose first request is still in flight (``--in-flight conflict``).

The batch runs once; then every charge that ended ``UNKNOWN`` (re-driven as such) or
``RETRYABLE`` is repeated with the same idempotency key (faults still on) until none is left or
``max_passes`` passes have run. After each pass the client's word is checked against the
sandbox's ledger (``GET /_fake/ledger``), which shares no code with the client:

* wrongly failed: charges reported ``declined`` or ``retryable`` ("not charged") whose key has
  an order in the ledger (must be 0, in every pass);
* duplicates: orders beyond the first for one idempotency key (must be 0);
* unaccounted, at the end: keys the client reports placed without an order in the ledger, keys
  with an order the client does not report placed, and placed charges whose order id differs
  from the ledger's (must be 0).

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

#: Probability per request of each fault, by the sandbox's fault names (about 19 % in all).
FAULTS = {
    "service_unavailable": 0.10,
    "drop_after_commit": 0.02,
    "latency": 0.01,
    "envoy_503_committed": 0.01,
    "empty_503_committed": 0.005,
    "html_502_committed": 0.005,
    "http500_not_found_committed": 0.005,
    "http504_rejected_committed": 0.005,
    "http502_bad_request": 0.005,
    "timeout_408_committed": 0.005,
    "rate_limit_nan": 0.005,
    "pause_nan": 0.005,
}
#: Longer than the attempt timeout below: such an answer arrives after the client gave up.
LATENCY_SECONDS = 1.5
POLICY = RetryPolicy(
    max_attempts=5, initial_delay=0.05, max_delay=0.5, deadline=15.0, attempt_timeout=1.0
)
TOKENS = 500


def _charge(i: int, tag: str, *, after_unknown: bool = False) -> Charge:
    return Charge(
        customer_token=f"ctok-soak-{i % TOKENS:05d}",
        request=token_order(amount=999 + i % 7, reference=f"{tag}-{i}"),
        idempotency_key=f"soak-{tag}-{i:012d}",
        charge_id=str(i),
        after_unknown=after_unknown,
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
    client: KlarnaClient,
    charges: Iterable[Charge],
    concurrency: int,
    outcomes: dict[str, _Outcome],
    url: str,
    settle: float,
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
    # The judge: let answers the client gave up on land, then ask the ledger about every charge
    # this pass reported "not charged".
    if settle:
        await asyncio.sleep(settle)
    not_charged = [
        key
        for key, o in outcomes.items()
        if o.status in (ChargeStatus.DECLINED, ChargeStatus.RETRYABLE)
    ]
    counts = await _key_counts(url, not_charged)
    return {
        "charges": count,
        "wall_s": wall,
        "charges_per_s": count / wall if wall else float("nan"),
        "attempts": attempts,
        **{status.value: tally[status.value] for status in ChargeStatus},
        "wrongly_failed": sum(1 for key in not_charged if counts.get(key, 0)),
    }


async def _key_counts(url: str, keys: list[str]) -> dict[str, int]:
    """Orders per idempotency key, from the ledger's exact counts."""
    if not keys:
        return {}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http,
        http.post(f"{url}/_fake/ledger/keys", data=orjson.dumps({"keys": keys})) as answer,
    ):
        answer.raise_for_status()
        found: dict[str, int] = orjson.loads(await answer.read())["orders"]
    return found


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
        pause = settle if faulty else 0.0
        passes.append(
            await _pass(client, _charges(charges, tag), concurrency, outcomes, url, pause)
        )
        for _ in range(max_passes - 1):
            again = [
                _charge(
                    int(key.rsplit("-", 1)[1]),
                    tag,
                    after_unknown=outcome.status is ChargeStatus.UNKNOWN,
                )
                for key, outcome in outcomes.items()
                if outcome.status in (ChargeStatus.UNKNOWN, ChargeStatus.RETRYABLE)
            ]
            if not again:
                break
            passes.append(await _pass(client, again, concurrency, outcomes, url, pause))
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
        "wrongly_failed": sum(p["wrongly_failed"] for p in passes),
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
    max_passes: int = 10,
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
    options = [f"--fault={name}={rate}" for name, rate in faults.items()]
    with sandbox(
        "--seed",
        str(seed),
        *options,
        "--in-flight",
        "conflict",
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
        "targets": {"wrongly_failed": 0, "duplicates": 0, "unaccounted": 0},
    }


def summary(result: dict[str, Any]) -> str:
    f, c = result["faulty"], result["clean"]
    return (
        f"soak: {result['charges']:,} charges, {len(f['passes'])} pass(es); "
        f"wrongly failed {f['wrongly_failed']}, duplicates {f['duplicates']}, "
        f"unaccounted {f['unaccounted']}, "
        f"final {f['final']}; {f['first_pass_charges_per_s']:.0f}/s with faults vs "
        f"{c['first_pass_charges_per_s']:.0f}/s without ({result['throughput_ratio']:.2f}x)"
    )
