"""Where the full stack spends CPU beyond raw aiohttp: ``python -m benchmarks.breakdown``.

Two views of the same path (``create_order`` at concurrency 64 against :mod:`benchmarks.peer`):

* **ablation** (default): the full stack with one layer at a time swapped for a free stand-in
  (monkeypatched in this process only; the library is not touched), interleaved with the plain
  full stack and the raw loop for several rounds. The CPU a layer saves when it is taken out is
  what it costs in place, inside a busy event loop, which micro-benchmarks understate.
* **cProfile** (``--cprofile``): the full stack under cProfile; the top functions by own time and
  the cumulative time of our modules go to ``benchmarks/out/profile.txt`` and the raw stats to
  ``benchmarks/out/full_stack.prof``. cProfile's overhead inflates small functions; use it to
  find, the ablation to measure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import pstats
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

import aiohttp
import orjson
from yarl import URL

import klarna_async._request as request_module
import klarna_async._resources.customer_tokens as tokens_module
from benchmarks._common import OUT_DIR, TOKEN, bench_client, median, peer, raw_session
from benchmarks.cpu import _KEY_PREFIX, _run_workers
from benchmarks.peer import ORDER
from klarna_async import KlarnaClient
from klarna_async._converter import decode, to_dict, to_json
from klarna_async._models import Order, TokenOrderRequest
from klarna_async._responses import decode_success
from klarna_async._transport import RawResponse, send
from klarna_async._validation import encode_request
from tests.samples import token_order

Charge = Callable[[int], Awaitable[None]]
Patch = Callable[[], contextlib.AbstractContextManager[None]]

#: What each arm is, in the order of the report. "full" minus an arm's CPU is what the layer
#: that arm takes out costs in place.
ARMS: dict[str, str] = {
    "raw": "hand-tuned raw aiohttp loop (the floor)",
    "full": "create_order(token, prebuilt request, idempotency_key=k)",
    "flat": "one coroutine calling the same library functions: encode_request(), send(), "
    "decode_success(); no create_order/request/retry layering",
    "no_prepare": "full, with encode_request() (validation and JSON) returning the prebuilt body",
    "no_decode": "full, with decode_success() = orjson.loads + a prebuilt Order",
    "lean_send": "full, with send() as the raw loop: session.post, no per-call ClientTimeout",
    "no_path_mask": "full, with path_param() (quote) and mask_token() trivial",
}


def _patch(target: object, name: str, value: object) -> Patch:
    @contextlib.contextmanager
    def patched() -> Iterator[None]:
        # vars(): a module's global or an instance's own attribute (absent for a method).
        own = vars(target)
        missing = name not in own
        saved = own.get(name)
        setattr(target, name, value)
        try:
            yield
        finally:
            if missing:
                delattr(target, name)
            else:
                setattr(target, name, saved)

    return patched


def _ablations(client: KlarnaClient, body: bytes) -> dict[str, Patch]:
    """Each stand-in does the least that keeps the charge correct (same bytes out, an Order in)."""
    order = decode(ORDER, Order)

    def no_prepare(request: Any, cls: Any, *, check_amounts: bool = True) -> bytes:
        return body

    def no_decode(status: int, headers: Mapping[str, str], raw: bytes, model: type[Any]) -> Any:
        orjson.loads(raw)  # the raw loop parses its answer too
        return order

    async def lean_send(
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        headers: Mapping[str, str],
        data: bytes | None,
        timeout: float,
    ) -> RawResponse:
        async with session.post(url, data=data, headers=headers) as response:
            return response.status, response.headers, await response.read()

    stand_ins = {"path_param": lambda value, what: value, "mask_token": lambda token: "****"}

    @contextlib.contextmanager
    def no_path_mask() -> Iterator[None]:
        # Wherever the request path is built (the module that calls them holds the names).
        with contextlib.ExitStack() as stack:
            for module in (request_module, tokens_module):
                for name, value in stand_ins.items():
                    if name in vars(module):
                        stack.enter_context(_patch(module, name, value)())
            yield

    return {
        "no_prepare": _patch(tokens_module, "encode_request", no_prepare),
        "no_decode": _patch(request_module, "decode_success", no_decode),
        "lean_send": _patch(request_module, "send_once", lean_send),
        "no_path_mask": no_path_mask,
    }


async def ablate(url: str, *, charges: int, rounds: int, concurrency: int) -> dict[str, Any]:
    prebuilt = token_order()
    path = f"/customer-token/v1/tokens/{TOKEN}/order"
    async with bench_client(url, concurrency) as client:
        body_dict = to_dict(prebuilt)
        base_headers = dict(client._requester.headers)
        raw_url = url + path
        async with raw_session(concurrency) as session:

            async def raw(i: int) -> None:
                headers = {**base_headers, "Klarna-Idempotency-Key": f"{_KEY_PREFIX}{i:012d}"}
                async with session.post(
                    raw_url, data=orjson.dumps(body_dict), headers=headers
                ) as response:
                    orjson.loads(await response.read())

            create_order = client.customer_tokens.create_order

            async def full(i: int) -> None:
                # The request is prebuilt: building it is the caller's cost, not a layer's.
                await create_order(TOKEN, prebuilt, idempotency_key=f"{_KEY_PREFIX}{i:012d}")

            client_session = client._requester._ready_session()
            client_headers = client._requester.headers
            full_url = URL(client.base_url + path, encoded=True)

            async def flat(i: int) -> None:
                body = encode_request(prebuilt, TokenOrderRequest)
                headers = {**client_headers, "Klarna-Idempotency-Key": f"{_KEY_PREFIX}{i:012d}"}
                answer = await send(client_session, "POST", full_url, headers, body, 15.0)
                decode_success(*answer, Order)

            ablations = _ablations(client, to_json(prebuilt))
            arms: list[tuple[str, Charge, Patch]] = [
                ("raw", raw, contextlib.nullcontext),
                ("full", full, contextlib.nullcontext),
                ("flat", flat, contextlib.nullcontext),
            ]
            arms += [(name, full, make) for name, make in ablations.items()]
            assert [name for name, _, _ in arms] == list(ARMS)
            number = 0
            for _, fn, make in arms:
                with make():
                    await _run_workers(fn, number, min(charges, 2000), concurrency)
                number += min(charges, 2000)
            cpu_us: dict[str, list[float]] = {name: [] for name, _, _ in arms}
            for r in range(rounds):
                shift = r % len(arms)
                for name, fn, make in arms[shift:] + arms[:shift]:
                    with make():
                        gc.collect()
                        started = time.process_time()
                        await _run_workers(fn, number, charges, concurrency)
                        cpu_us[name].append((time.process_time() - started) / charges * 1e6)
                    number += charges
    medians = {name: median(values) for name, values in cpu_us.items()}
    full_cpu = medians["full"]
    return {
        "charges": charges,
        "rounds": rounds,
        "concurrency": concurrency,
        "arms": ARMS,
        "cpu_us": cpu_us,
        "median_us": medians,
        # What each layer costs in place: full minus the arm without it.
        "cost_us": {name: full_cpu - value for name, value in medians.items()},
    }


def run(*, charges: int = 10_000, rounds: int = 5, concurrency: int = 64) -> dict[str, Any]:
    with peer() as child:
        return asyncio.run(
            ablate(child.url, charges=charges, rounds=rounds, concurrency=concurrency)
        )


def summary(result: dict[str, Any]) -> str:
    m, cost = result["median_us"], result["cost_us"]
    parts = [f"raw {m['raw']:.1f} µs, full {m['full']:.1f} µs; in place:"]
    parts += [f"{name} {cost[name]:+.1f}" for name in ARMS if name not in ("raw", "full")]
    return "breakdown: " + " ".join(parts[:1]) + " " + ", ".join(parts[1:]) + " µs"


async def profile(url: str, *, charges: int, concurrency: int) -> pstats.Stats:
    async with bench_client(url, concurrency) as client:
        create_order = client.customer_tokens.create_order

        async def full(i: int) -> None:
            await create_order(TOKEN, token_order(), idempotency_key=f"{_KEY_PREFIX}{i:012d}")

        await _run_workers(full, 0, 2000, concurrency)
        profiler = cProfile.Profile()
        profiler.enable()
        await _run_workers(full, 2000, charges, concurrency)
        profiler.disable()
    return pstats.Stats(profiler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.breakdown",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--charges", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--cprofile", action="store_true", help="cProfile instead of ablation")
    args = parser.parse_args(argv)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    if args.cprofile:
        with peer() as child:
            stats = asyncio.run(
                profile(child.url, charges=args.charges, concurrency=args.concurrency)
            )
        stats.dump_stats(OUT_DIR / "full_stack.prof")
        text = io.StringIO()
        stats.stream = text  # type: ignore[attr-defined]
        stats.sort_stats("tottime").print_stats(40)
        stats.sort_stats("cumulative").print_stats(r"klarna_async|samples", 40)
        (OUT_DIR / "profile.txt").write_text(text.getvalue(), encoding="utf-8")
        print(text.getvalue())
        return 0
    result = run(charges=args.charges, rounds=args.rounds, concurrency=args.concurrency)
    (OUT_DIR / "ablation.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(
        f"{args.rounds} rounds x {args.charges:,} charges, concurrency {args.concurrency}; "
        "CPU µs per charge (median); cost = full minus the arm:"
    )
    for name, value in result["median_us"].items():
        rounds = ", ".join(f"{v:.1f}" for v in result["cpu_us"][name])
        print(f"  {name:14s} {value:7.1f} µs  cost {result['cost_us'][name]:+6.1f} µs  [{rounds}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
