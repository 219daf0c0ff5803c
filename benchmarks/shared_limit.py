"""Several processes, one merchant's rate limit: 429s with and without a shared RedisRateLimiter.

``python -m benchmarks.shared_limit [--processes 3] [--rate 100] [--pace RPS] [--seconds 5]
[--concurrency 16] [--redis-url URL] [--no-warm-up] [--out PATH]``

Starts the sandbox (the fake Klarna in its own process) limited to RATE requests per second and
PROCESSES worker processes, which pace at PACE (default RATE: exactly the limit, the hardest case;
the client's own default is 90 % of Klarna's documented limit). Each worker charges customer
tokens through its own :class:`~klarna_async.KlarnaClient` for SECONDS, once per mode, all
workers together:

* ``shared``: every worker paces with a :class:`~klarna_async.RedisRateLimiter` on one key, at
  RATE in all;
* ``local``: every worker paces itself at RATE (what each process does alone today);
* ``outage``: as ``shared``, on a ``redis-server`` of the benchmark's own that it stops a quarter
  into the mode and starts again at half time: the workers pace themselves at RATE / PROCESSES
  meanwhile, and return to the shared limit.

Before each mode every worker makes one charge per lane (unless ``--no-warm-up``): the pool's
connections are open and one-time costs paid, so that the figures measure pacing rather than a
cold start. The sandbox is then reset, so the warm-up is not counted.

The client retries a 429 by itself, so its own results hide them: the sandbox's ledger (``GET
/_fake/ledger?requests=1``) counts the requests and the 429s. Prints the figures as JSON and
writes them to ``benchmarks/out/shared_limit.json`` (or ``--out``).

Redis: ``--redis-url``, else ``KLARNA_TEST_REDIS_URL``, else a ``redis-server`` of its own on a
free loopback port (the ``outage`` mode always uses one of its own). Each run uses keys of its
own, so a shared server is safe to use.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import aiohttp
import orjson

from benchmarks._common import OUT_DIR, PASSWORD, ROOT, USERNAME, child_env, sandbox
from klarna_async import KlarnaClient, KlarnaError, RedisRateLimiter
from tests.integrations.redis_support import RedisServer
from tests.samples import token_order

MODES = ("shared", "local", "outage")
#: How long a worker may take to start, or to warm up, in seconds.
READY_TIMEOUT = 30.0
#: After SECONDS, how long a worker lets the charges in flight finish before cancelling them.
DRAIN = 5.0


# --- a worker (one process) ---------------------------------------------------------------------


async def _phase(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    """One mode: warm up, say "ready", wait for "go", charge for the mode's seconds."""
    seconds, drain = args.seconds[mode], args.drain[mode]
    pacer: RedisRateLimiter | float
    if mode in ("shared", "outage"):
        pacer = RedisRateLimiter(
            args.redis_url if mode == "shared" else args.outage_redis_url,
            args.rate,
            merchant=USERNAME,
            environment="playground",
            expected_processes=args.processes,
            key_prefix=args.key_prefix,
        )
    else:
        pacer = args.rate  # the client's own RateLimiter
    counts: Counter[str] = Counter()
    async with contextlib.AsyncExitStack() as stack:
        if isinstance(pacer, RedisRateLimiter):
            await stack.enter_async_context(pacer)
        client = await stack.enter_async_context(
            KlarnaClient(
                username=USERNAME,
                password=PASSWORD,
                base_url=args.url,
                rate_limit=pacer,
                connection_limit=args.concurrency,
            )
        )

        async def charge(lane: int, number: int | str) -> None:
            key = f"{args.key_prefix}-{mode}-{os.getpid()}-{lane}-{number}"
            await client.customer_tokens.create_order(
                f"ctok-shared-{lane:03d}", token_order(reference=key), idempotency_key=key
            )

        if args.warm_up:
            await asyncio.gather(*(charge(lane, "warm-up") for lane in range(args.concurrency)))
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # "go": every worker starts together
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + seconds

        async def charger(lane: int) -> None:
            number = 0
            while loop.time() < deadline:
                try:
                    await charge(lane, number)
                    counts["placed"] += 1
                except KlarnaError as error:
                    counts[type(error).__name__] += 1
                number += 1

        tasks = [asyncio.create_task(charger(lane)) for lane in range(args.concurrency)]
        _, pending = await asyncio.wait(tasks, timeout=seconds + drain)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        elapsed = loop.time() - started
    return {
        "pid": os.getpid(),
        "elapsed_s": round(elapsed, 3),
        "outcomes": dict(counts),
        "cancelled_in_flight": len(pending),
        "waited_s": getattr(client.rate_limiter, "waited", None),
        "redis_outages": getattr(pacer, "outages", None),
    }


def _worker_main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)  # the limiter's warnings
    for number, mode in enumerate(args.modes):
        if number:
            sys.stdin.readline()  # "next": the sandbox has counted the previous mode
        result = asyncio.run(_phase(args, mode))
        print(orjson.dumps(result).decode(), flush=True)
    return 0


# --- the measurement ----------------------------------------------------------------------------


async def _ledger(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(f"{url}/_fake/ledger", params={"requests": "1"}) as answer:
        answer.raise_for_status()
        ledger: dict[str, Any] = orjson.loads(await answer.read())
        return ledger


async def _reset(http: aiohttp.ClientSession, url: str) -> None:
    async with http.post(f"{url}/_fake/reset", json={}) as answer:
        answer.raise_for_status()


def _steady_rate(times: Sequence[float]) -> float:
    """Requests per second between the first and the last one."""
    if len(times) < 2 or times[-1] <= times[0]:
        return float("nan")
    return (len(times) - 1) / (times[-1] - times[0])


def _peak(times: Sequence[float], window: float) -> int:
    """The most requests received within any ``window`` seconds (times sorted)."""
    peak = start = 0
    for end, at in enumerate(times):
        while at - times[start] >= window:
            start += 1
        peak = max(peak, end - start + 1)
    return peak


def _figures(
    mode: str, ledger: dict[str, Any], workers: list[dict[str, Any]], elapsed: float
) -> dict[str, Any]:
    records = [r for r in ledger["requests"] if r["endpoint"] == "customer_tokens.create_order"]
    statuses = Counter(record["status"] for record in records)
    requests = len(records)
    orders = len(ledger["orders"])
    accepted = sorted(r["received_at"] for r in records if r["status"] != 429)
    return {
        "mode": mode,
        "elapsed_s": round(elapsed, 3),
        "requests": requests,
        "status_counts": {str(status): n for status, n in sorted(statuses.items(), key=str)},
        "429": statuses[429],
        "429_share": round(statuses[429] / requests, 4) if requests else 0.0,
        "orders": orders,
        "keys_charged_twice": sum(
            n > 1 for n in Counter(o["idempotency_key"] for o in ledger["orders"]).values()
        ),
        "placed_by_clients": sum(w["outcomes"].get("placed", 0) for w in workers),
        "orders_per_s": round(orders / elapsed, 1),
        "accepted_per_s_while_sending": round(_steady_rate(accepted), 1),
        "peak_accepted_in_1s": _peak(accepted, 1.0),
        "workers": workers,
    }


async def _line(process: asyncio.subprocess.Process, timeout: float, log: IO[bytes]) -> bytes:
    assert process.stdout is not None
    async with asyncio.timeout(timeout):
        line = await process.stdout.readline()
    if not line:
        await process.wait()
        log.seek(0)
        tail = log.read().decode(errors="replace")[-3000:]
        raise RuntimeError(f"worker exited ({process.returncode}): {tail}")
    return line


async def _tell(children: Sequence[asyncio.subprocess.Process], line: bytes) -> None:
    for child in children:
        assert child.stdin is not None
        child.stdin.write(line)
        await child.stdin.drain()


async def _measure(
    url: str,
    redis_url: str | None,
    outage: RedisServer | None,
    *,
    modes: Sequence[str],
    processes: int,
    rate: float,
    seconds: Mapping[str, float],
    drain: Mapping[str, float],
    concurrency: int,
    warm_up: bool,
) -> dict[str, Any]:
    options = [
        "--url",
        url,
        "--modes",
        ",".join(modes),
        "--rate",
        str(rate),
        "--seconds",
        ",".join(str(seconds[mode]) for mode in modes),
        "--drain",
        ",".join(str(drain[mode]) for mode in modes),
        "--concurrency",
        str(concurrency),
        "--processes",
        str(processes),
        "--key-prefix",
        f"klarna_async:bench:{uuid.uuid4().hex[:12]}",
        *(["--warm-up"] if warm_up else []),
        *(["--redis-url", redis_url] if redis_url is not None else []),
        *(["--outage-redis-url", outage.url()] if outage is not None else []),
    ]
    results: dict[str, Any] = {}
    with contextlib.ExitStack() as files:
        # The workers' logs go to files: a pipe nobody reads while they run could fill up.
        logs = [files.enter_context(tempfile.TemporaryFile()) for _ in range(processes)]
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "benchmarks.shared_limit",
                "worker",
                *options,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=child_env(),
                cwd=ROOT,
            )
            for log in logs
        ]
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
                for number, mode in enumerate(modes):
                    if number:
                        await _tell(children, b"next\n")
                    for child, log in zip(children, logs, strict=True):
                        line = await _line(child, READY_TIMEOUT, log)
                        if line.strip() != b"ready":
                            raise RuntimeError(f"worker not ready: {line!r}")
                    await _reset(http, url)  # forget the warm-up: orders, requests, rate window
                    log_from = [os.fstat(log.fileno()).st_size for log in logs]
                    started = time.perf_counter()
                    await _tell(children, b"go\n")
                    stop_redis = None
                    if mode == "outage":
                        assert outage is not None
                        stop_redis = asyncio.create_task(_outage(outage, seconds[mode]))
                    budget = seconds[mode] + drain[mode] + READY_TIMEOUT
                    workers = [
                        orjson.loads(await _line(child, budget, log))
                        for child, log in zip(children, logs, strict=True)
                    ]
                    elapsed = time.perf_counter() - started
                    for worker, log, offset in zip(workers, logs, log_from, strict=True):
                        worker["redis_log"] = _redis_lines(log, offset)
                    results[mode] = _figures(mode, await _ledger(http, url), workers, elapsed)
                    if stop_redis is not None:
                        results[mode]["redis_down_s"] = await stop_redis
            async with asyncio.timeout(READY_TIMEOUT):
                for child in children:
                    await child.wait()
        finally:
            for child in children:
                if child.returncode is None:
                    child.kill()
                    await child.wait()
    return results


def _redis_lines(log: IO[bytes], offset: int) -> list[str]:
    """The limiter's warnings a worker logged since ``offset`` (not the client's retries).

    pread: the worker shares the file's offset, so the parent must never move it."""
    text = os.pread(log.fileno(), 1 << 22, offset).decode(errors="replace")
    return [line for line in text.splitlines() if "Redis" in line]


async def _outage(server: RedisServer, seconds: float) -> list[float]:
    """Stop Redis a quarter into the mode and start it again at half time; when, in seconds
    after the start."""
    started = time.perf_counter()
    await asyncio.sleep(seconds / 4)
    await asyncio.to_thread(server.stop)
    down = time.perf_counter() - started
    await asyncio.sleep(seconds / 4)
    await asyncio.to_thread(server.start)
    return [round(down, 3), round(time.perf_counter() - started, 3)]


@contextlib.contextmanager
def _redis(url: str | None) -> Iterator[str]:
    url = url or os.environ.get("KLARNA_TEST_REDIS_URL")
    if url:
        yield url
        return
    server = RedisServer()
    try:
        server.start()
        yield server.url()
    finally:
        server.close()


def run(
    *,
    processes: int = 3,
    rate: float = 100.0,
    pace: float | None = None,
    seconds: float = 5.0,
    local_seconds: float | None = None,
    concurrency: int = 16,
    drain: float = DRAIN,
    local_drain: float | None = None,
    warm_up: bool = True,
    redis_url: str | None = None,
    modes: Sequence[str] = MODES,
) -> dict[str, Any]:
    """Measure each mode against one sandbox limited to ``rate``, the workers pacing at
    ``pace`` (default ``rate``); the figures as a dict.

    After ``seconds`` a worker starts no new charge and gives those in flight ``drain`` seconds
    before it cancels them (``cancelled_in_flight``; such a charge may or may not be placed).
    ``local_seconds`` and ``local_drain`` (default: the same) are the local mode's.
    """
    durations = dict.fromkeys(MODES, seconds)
    drains = dict.fromkeys(MODES, drain)
    if local_seconds is not None:
        durations["local"] = local_seconds
    if local_drain is not None:
        drains["local"] = local_drain
    results: dict[str, Any] = {
        "processes": processes,
        "rate_limit": rate,
        "pace": rate if pace is None else pace,
        "seconds": {mode: durations[mode] for mode in modes},
        "concurrency_per_process": concurrency,
        "warm_up": warm_up,
    }
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(_redis(redis_url)) if "shared" in modes else None
        outage = None
        if "outage" in modes:
            # A Redis of its own, to stop and start.
            outage = stack.enter_context(contextlib.closing(RedisServer()))
            outage.start()
        box = stack.enter_context(sandbox("--rate-limit", str(rate)))
        results |= asyncio.run(
            _measure(
                box.url,
                redis,
                outage,
                modes=modes,
                processes=processes,
                rate=rate if pace is None else pace,
                seconds=durations,
                drain=drains,
                concurrency=concurrency,
                warm_up=warm_up,
            )
        )
    return results


def summary(result: dict[str, Any]) -> str:
    parts = []
    for mode in MODES:
        row = result.get(mode)
        if row:
            parts.append(
                f"{mode}: {row['429']} 429s of {row['requests']} ({100 * row['429_share']:.1f} %), "
                f"peak {row['peak_accepted_in_1s']}/s, charged twice {row['keys_charged_twice']}"
            )
    return f"shared_limit ({result['processes']} processes, {result['rate_limit']:g}/s): " + (
        "; ".join(parts)
    )


def _per_mode(text: str) -> list[float]:
    return [float(part) for part in text.split(",")]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.shared_limit")
    parser.add_argument("role", nargs="?", choices=("measure", "worker"), default="measure")
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--rate", type=float, default=100.0, help="the sandbox's limit [100]")
    parser.add_argument("--pace", type=float, default=None, help="the workers' pace [RATE]")
    parser.add_argument("--seconds", default="5", help="seconds of traffic per mode [5]")
    parser.add_argument("--concurrency", type=int, default=16, help="lanes per process [16]")
    parser.add_argument("--drain", default=str(DRAIN))
    parser.add_argument("--redis-url", default=None)
    parser.add_argument(
        "--no-warm-up",
        dest="warm_up",
        action="store_false",
        help="measure from a cold start (no charge per lane before each mode)",
    )
    parser.add_argument("--out", type=Path, default=OUT_DIR / "shared_limit.json")
    # The workers' own options.
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--modes", default=",".join(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--key-prefix", help=argparse.SUPPRESS)
    parser.add_argument("--outage-redis-url", help=argparse.SUPPRESS)
    parser.add_argument(
        "--warm-up", dest="worker_warm_up", action="store_true", help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.role == "worker":
        args.warm_up = args.worker_warm_up
        args.modes = args.modes.split(",")
        args.seconds = dict(zip(args.modes, _per_mode(args.seconds), strict=True))
        args.drain = dict(zip(args.modes, _per_mode(args.drain), strict=True))
        return _worker_main(args)
    results = run(
        processes=args.processes,
        rate=args.rate,
        pace=args.pace,
        seconds=float(args.seconds),
        concurrency=args.concurrency,
        drain=float(args.drain),
        warm_up=args.warm_up,
        redis_url=args.redis_url,
    )
    text = orjson.dumps(results, option=orjson.OPT_INDENT_2).decode()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
