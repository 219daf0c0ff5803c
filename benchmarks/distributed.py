"""Charge batches over taskiq workers: throughput, a kill -9 mid-shard, Redis stopped mid-run,
and 429s with and without the shared rate limit.

``python -m benchmarks.distributed [--charges 20000] [--workers 1,2,3] [--modes MODES]
[--shard-size 500] [--concurrency 32] [--repeat 3] [--redis-url URL] [--out PATH]``

Every worker is a real ``klarna-async worker`` process, the charges are enqueued with ``klarna-async
charge INPUT --queue``, and the fake Klarna runs as ``klarna-async sandbox`` in its own process;
its ledger (orders with their idempotency keys) is the witness. Modes:

* ``throughput``: CHARGES charges, no faults, with 1, 2 and 3 workers (``--workers``), all sharing
  one RedisRateLimiter set high enough never to bind (its round trip to Redis is still paid per
  request): charges per second from the end of the enqueue to the last shard done, and the CPU
  each charge cost the workers and the sandbox; and, for comparison, the same charges by
  ``klarna-async charge`` in one process (no Redis).
* ``kill``: CHARGES charges over 3 workers against the sandbox with faults (503s, commits whose
  answer is dropped, latency, resets, proxy pages); one worker is killed with SIGKILL while it has
  charges in flight; the run is resumed (``--resume``) while some charges are unknown. Every
  charge must be placed exactly once (the ledger), the journal complete.
* ``outage``: 3 workers, a Redis for the queue and the journal and another for the rate limit,
  both of the benchmark's own: the limiter's Redis is stopped for a few seconds (the workers pace
  themselves locally and go on charging), then the queue's (they send nothing without a journal,
  and go on when it is back: it keeps its data across the restart). No worker may exit.
* ``limit``: 3 workers against a sandbox limited to RATE requests/s, once sharing one
  RedisRateLimiter at RATE, once each pacing itself at RATE (``--local-pacing``): the 429s the
  sandbox answered.

Prints the figures as JSON and writes them to ``benchmarks/out/distributed.json`` (or ``--out``).
Redis: ``--redis-url``, else ``KLARNA_TEST_REDIS_URL``, else a ``redis-server`` of its own on a free
loopback port; every run uses keys under a prefix of its own, deleted afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
import redis

from benchmarks._common import OUT_DIR, PASSWORD, ROOT, USERNAME, child_env, machine, sandbox
from klarna_async import _distributed as dist
from klarna_async._charge_file import parse_charge_line
from tests.integrations.redis_support import RedisServer

MODES = ("throughput", "kill", "outage", "limit")
PLAN = {"name": "Premium", "interval": "MONTH", "interval_count": 1}
NAMESPACE = "klarna-async-charge"
#: Faults of the kill run, per request (the sandbox's options).
FAULTS = (
    "--fault-503",
    "0.03",
    "--fault-drop",
    "0.005",
    "--fault-latency",
    "0.01",
    "--latency-seconds",
    "0.5",
    "--fault-reset",
    "0.005",
    "--fault-html",
    "0.003",
    "--seed",
    "11",
)
#: A rate the shared limiter never reaches here: its cost without its limit.
UNBOUND_RATE = 20_000.0


# --- input, ledger, journal ---------------------------------------------------------------------


def write_input(path: Path, charges: int) -> list[str]:
    """CHARGES short-form lines (25 customer tokens); their idempotency keys, in order."""
    keys = []
    with path.open("wb") as handle:
        for i in range(charges):
            raw = orjson.dumps(
                {
                    "charge_id": f"sub-{i}:2026-11",
                    "customer_token": f"tok-{i % 25:04d}-abcdef",
                    "amount": 999 + i % 7,
                    "currency": "EUR",
                    "subscription": PLAN,
                }
            )
            handle.write(raw + b"\n")
            line = parse_charge_line(raw, i + 1, NAMESPACE)
            keys.append(line.charge.idempotency_key)  # type: ignore[union-attr]
    return keys


def ledger(url: str, *, requests: bool = False) -> dict[str, Any]:
    query = "?requests=1" if requests else ""
    with urllib.request.urlopen(f"{url}/_fake/ledger{query}", timeout=30) as answer:  # noqa: S310
        found: dict[str, Any] = orjson.loads(answer.read())
    return found


def reset(url: str) -> None:
    request = urllib.request.Request(  # noqa: S310 - the sandbox on loopback
        f"{url}/_fake/reset", data=b"{}", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30):  # noqa: S310
        pass


def _text(value: Any) -> str:
    """A Redis reply as text (redis-py answers bytes unless asked to decode)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def journal(client: redis.Redis, keys: dist.Keys) -> list[dict[str, Any]]:
    return [orjson.loads(raw) for _, raw in client.hscan_iter(keys.journal, count=1000)]


def verify(
    keys_sent: Sequence[str], book: dict[str, Any], records: list[dict[str, Any]]
) -> dict[str, Any]:
    """The ledger and the journal against the input: what each says, and whether they agree."""
    orders = book["orders"]
    per_key = Counter(order["idempotency_key"] for order in orders)
    statuses = Counter("in_flight" if r.get("in_flight") else r["status"] for r in records)
    journal_orders = {r["order_id"] for r in records if r.get("order_id")}
    ledger_orders = {order["order_id"] for order in orders}
    return {
        "orders": len(orders),
        "keys_charged": len(per_key),
        "keys_charged_twice": sum(n > 1 for n in per_key.values()),
        "keys_not_in_input": len(set(per_key) - set(keys_sent)),
        "keys_not_charged": len(set(keys_sent) - set(per_key)),
        "journal_records": len(records),
        "journal_statuses": dict(sorted(statuses.items())),
        "journal_orders_match_ledger": journal_orders == ledger_orders,
        "exactly_once": (
            len(orders) == len(keys_sent) == len(per_key)
            and set(per_key) == set(keys_sent)
            and statuses == Counter({"placed": len(keys_sent)})
            and journal_orders == ledger_orders
        ),
    }


# --- a fleet: the sandbox, Redis, the workers ---------------------------------------------------


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    def text(self) -> str:
        return os.pread(self.log.fileno(), 1 << 22, 0).decode(errors="replace")


@dataclass
class Fleet:
    """The sandbox's URL, the queue's Redis, the workers started, a prefix of its own."""

    url: str
    queue: str
    prefix: str = field(default_factory=lambda: f"klarna_async:bench:{uuid.uuid4().hex[:10]}")
    workers: list[Worker] = field(default_factory=list)
    #: Workers sent a signal on purpose: their exit is no failure.
    signalled: set[str] = field(default_factory=set)
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.queue, socket_timeout=5, socket_connect_timeout=2)

    def start(self, name: str, *options: str) -> Worker:
        log = self.stack.enter_context(tempfile.TemporaryFile())  # noqa: SIM115 - the stack closes it
        env = {**child_env(), "KLARNA_USERNAME": USERNAME, "KLARNA_PASSWORD": PASSWORD}
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [
                sys.executable,
                "-m",
                "klarna_async",
                "worker",
                "--queue",
                self.queue,
                "--prefix",
                self.prefix,
                "--base-url",
                self.url,
                "--name",
                name,
                *options,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            cwd=ROOT,
        )
        worker = Worker(name, process, log)
        self.workers.append(worker)
        return worker

    def wait_live(self, names: Sequence[str], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        client = self.redis
        try:
            while True:
                live = {
                    _text(name)
                    for name in client.zrangebyscore(
                        dist.Keys(self.prefix).workers, time.time() - 10, "+inf"
                    )
                }
                if set(names) <= live:
                    return
                self.check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"workers not live within {timeout} s: {self.tails()}")
                time.sleep(0.05)
        finally:
            client.close()

    def signal(self, worker: Worker, number: int) -> None:
        self.signalled.add(worker.name)
        worker.process.send_signal(number)

    def check_alive(self) -> None:
        for worker in self.workers:
            code = worker.process.poll()
            if code is not None and worker.name not in self.signalled:
                raise RuntimeError(f"worker {worker.name} exited ({code}): {worker.text()[-3000:]}")

    def enqueue(self, source: Path, run: str, *options: str, timeout: float = 120.0) -> str:
        done = subprocess.run(  # noqa: S603 - our own interpreter and module
            [
                sys.executable,
                "-m",
                "klarna_async",
                "charge",
                str(source),
                "--queue",
                self.queue,
                "--prefix",
                self.prefix,
                "--run",
                run,
                *options,
            ],
            capture_output=True,
            timeout=timeout,
            env=child_env(),
            cwd=ROOT,
            check=False,
        )
        if done.returncode not in (0, 3):
            raise RuntimeError(f"enqueue failed ({done.returncode}): {done.stderr.decode()}")
        return done.stdout.decode()

    def progress(self, keys: dist.Keys) -> tuple[dict[str, int], int, int]:
        """(counts by label, shards done, shards) of the run's current generation."""
        client = self.redis
        try:
            meta = {_text(k): _text(v) for k, v in client.hgetall(keys.meta).items()}
            generation = int(meta.get("generation", "0"))
            counts = {_text(k): int(v) for k, v in client.hgetall(keys.counts).items()}
            done = int(client.scard(keys.done(generation)))
        finally:
            client.close()
        return counts, done, int(meta.get("shards", "0"))

    def wait_done(
        self,
        keys: dist.Keys,
        timeout: float,
        tick: Callable[[dict[str, int]], None] | None = None,
    ) -> float:
        """Seconds until every shard of the run's generation is done."""
        started = time.monotonic()
        while True:
            counts, done, shards = self.progress(keys)
            if done >= shards:
                return time.monotonic() - started
            if tick is not None:
                tick(counts)
            self.check_alive()
            if time.monotonic() - started > timeout:
                raise TimeoutError(
                    f"run {keys.run} not done in {timeout} s ({done}/{shards} shards, {counts}): "
                    f"{self.tails()}"
                )
            time.sleep(0.05)

    def stop_all(self, timeout: float = 30.0) -> dict[str, int | None]:
        """SIGTERM every worker still running; their exit codes."""
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for worker in self.workers:
            try:
                codes[worker.name] = worker.process.wait(timeout)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait(5)
                codes[worker.name] = None
        self.workers = []
        return codes

    def tails(self) -> str:
        return "\n".join(f"--- {w.name}:\n{w.text()[-1500:]}" for w in self.workers)

    def forget(self) -> None:
        client = self.redis
        try:
            for key in client.scan_iter(match=f"{self.prefix}:*", count=1000):
                client.unlink(key)
        finally:
            client.close()

    def close(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait(5)
        self.workers = []
        with contextlib.suppress(Exception):
            self.forget()
        self.stack.close()


@contextlib.contextmanager
def fleet(url: str, queue: str) -> Iterator[Fleet]:
    crew = Fleet(url, queue)
    try:
        yield crew
    finally:
        crew.close()


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


@contextlib.contextmanager
def _own_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


# --- the modes ----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User and system CPU a running process has used (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def baseline(*, charges: int, concurrency: int = 32) -> dict[str, Any]:
    """The same charges by ``klarna-async charge`` alone (one process, no Redis, no journal but
    its results file): what the distributed path costs on top."""
    with tempfile.TemporaryDirectory() as scratch, sandbox() as box:
        source, out = Path(scratch, "charges.jsonl"), Path(scratch, "results.jsonl")
        keys_sent = write_input(source, charges)
        env = {**child_env(), "KLARNA_USERNAME": USERNAME, "KLARNA_PASSWORD": PASSWORD}
        started = time.monotonic()
        done = subprocess.run(  # noqa: S603 - our own interpreter and module
            [
                sys.executable,
                "-m",
                "klarna_async",
                "charge",
                str(source),
                "--out",
                str(out),
                "--base-url",
                box.url,
                "--concurrency",
                str(concurrency),
                "--no-progress",
            ],
            capture_output=True,
            timeout=600,
            env=env,
            cwd=ROOT,
            check=False,
        )
        elapsed = time.monotonic() - started
        book = ledger(box.url)
    orders = Counter(order["idempotency_key"] for order in book["orders"])
    # The command's own figure, from its first charge to its last (no interpreter start).
    measured = re.search(r"\((\d+)/s\)", done.stdout.decode())
    return {
        "charges": charges,
        "exit_code": done.returncode,
        "charges_per_s": int(measured.group(1)) if measured else None,
        "elapsed_s_with_start": round(elapsed, 3),
        "charges_per_s_with_start": round(charges / elapsed, 1),
        "exactly_once": set(orders) == set(keys_sent) and set(orders.values()) == {1},
    }


def throughput(
    queue: str,
    *,
    charges: int,
    workers: int,
    shard_size: int = 500,
    concurrency: int = 32,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """CHARGES charges, no faults, over WORKERS workers: charges per second."""
    with tempfile.TemporaryDirectory() as scratch, sandbox() as box, fleet(box.url, queue) as crew:
        source = Path(scratch, "charges.jsonl")
        keys_sent = write_input(source, charges)
        names = [f"w{i}" for i in range(workers)]
        for name in names:
            crew.start(
                name,
                "--concurrency",
                str(concurrency),
                "--rate-limit",
                str(UNBOUND_RATE),
                "--expected-workers",
                str(workers),
            )
        crew.wait_live(names)
        run = f"throughput-{workers}"
        started = time.monotonic()
        crew.enqueue(source, run, "--shard-size", str(shard_size))
        enqueued = time.monotonic() - started
        elapsed = crew.wait_done(dist.Keys(crew.prefix, run), timeout)
        client = crew.redis
        try:
            records = journal(client, dist.Keys(crew.prefix, run))
        finally:
            client.close()
        check = verify(keys_sent, ledger(box.url), records)
        worker_cpu = sum(cpu_seconds(worker.process.pid) for worker in crew.workers)
        sandbox_cpu = cpu_seconds(box.process.pid)
        codes = crew.stop_all()
    return {
        "workers": workers,
        "charges": charges,
        "shard_size": shard_size,
        "concurrency_per_worker": concurrency,
        "enqueue_s": round(enqueued, 3),
        "elapsed_s": round(elapsed, 3),
        "charges_per_s": round(charges / elapsed, 1),
        # CPU per charge: the workers' (start-up included) and the sandbox's, all on one machine.
        "worker_cpu_us_per_charge": round(worker_cpu / charges * 1e6, 1),
        "sandbox_cpu_us_per_charge": round(sandbox_cpu / charges * 1e6, 1),
        "worker_exit_codes": codes,
        **check,
    }


def in_flight_of(client: redis.Redis, keys: dist.Keys, worker: str) -> tuple[list[str], int]:
    """(the charges the worker's journal records say it has in flight, the lines of its running
    shard that no record mentions yet)."""
    for field_name, raw in client.hgetall(keys.running).items():
        if orjson.loads(raw).get("worker") != worker:
            continue
        generation, _, shard = _text(field_name).partition(":")
        lines = orjson.loads(client.get(keys.lines(int(generation), int(shard))) or b"[]")
        ids = [orjson.loads(raw_line)["charge_id"] for _, raw_line in lines]
        found = client.hmget(keys.journal, ids) if ids else []
        flying, unclaimed = [], 0
        for charge_id, item in zip(ids, found, strict=True):
            if item is None:
                unclaimed += 1
                continue
            record = orjson.loads(item)
            if record.get("in_flight") and record.get("worker") == worker:
                flying.append(charge_id)
        return flying, unclaimed
    return [], 0


def kill(
    queue: str,
    *,
    charges: int,
    workers: int = 3,
    shard_size: int = 500,
    concurrency: int = 32,
    kill_after: float = 0.3,
    idle_timeout: float = 5.0,
    faults: Sequence[str] = FAULTS,
    rate_limit: float = UNBOUND_RATE,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """Faults, and one worker killed with SIGKILL while it has charges in flight; resumed while
    some charges are unknown. Every charge placed once?"""
    with (
        tempfile.TemporaryDirectory() as scratch,
        sandbox(*faults) as box,
        fleet(box.url, queue) as crew,
    ):
        source = Path(scratch, "charges.jsonl")
        keys_sent = write_input(source, charges)
        names = [f"w{i}" for i in range(workers)]
        for name in names:
            crew.start(
                name,
                "--concurrency",
                str(concurrency),
                "--rate-limit",
                str(rate_limit),
                "--expected-workers",
                str(workers),
                "--idle-timeout",
                str(idle_timeout),
            )
        crew.wait_live(names)
        run = "kill"
        keys = dist.Keys(crew.prefix, run)
        started = time.monotonic()
        crew.enqueue(source, run, "--shard-size", str(shard_size))
        victim = crew.workers[0]
        killed: dict[str, Any] = {}
        left_behind: list[str] = []  # in flight on the killed worker, as its records say
        client = crew.redis

        def tick(counts: dict[str, int]) -> None:
            if killed or sum(counts.values()) < kill_after * charges:
                return
            flying, unclaimed = in_flight_of(client, keys, victim.name)
            # Mid-shard: charges in flight, and more of the shard still to claim.
            if flying and unclaimed >= concurrency:
                crew.signal(victim, signal.SIGKILL)
                victim.process.wait(10)
                killed["at_s"] = round(time.monotonic() - started, 3)
                killed["recorded_before"] = sum(counts.values())
                left_behind.extend(in_flight_of(client, keys, victim.name)[0])
                killed["in_flight_left"] = len(left_behind)

        try:
            crew.wait_done(keys, timeout, tick)
            first_pass = time.monotonic() - started
            counts = crew.progress(keys)[0]
            passes = [dict(sorted(counts.items()))]
            # Unknown outcomes (dropped answers, proxy pages) are re-driven by a resume.
            while (counts.get("unknown") or counts.get("retryable")) and len(passes) < 4:
                crew.enqueue(source, run, "--resume")
                crew.wait_done(keys, timeout)
                counts = crew.progress(keys)[0]
                passes.append(dict(sorted(counts.items())))
            elapsed = time.monotonic() - started
            records = journal(client, keys)
            starts = client.hgetall(keys.starts(1))
        finally:
            client.close()
        book = ledger(box.url)
        check = verify(keys_sent, book, records)
        by_id = {record["charge_id"]: record for record in records}
        taken_over = Counter(
            "placed by another worker"
            if by_id[charge_id]["status"] == "placed" and by_id[charge_id]["worker"] != victim.name
            else by_id[charge_id]["status"]
            for charge_id in left_behind
        )
        codes = crew.stop_all()
    return {
        "workers": workers,
        "charges": charges,
        "shard_size": shard_size,
        "faults": " ".join(faults),
        "killed": killed,
        "shards_delivered_again": sum(int(v) > 1 for v in starts.values()),
        "first_pass_s": round(first_pass, 3),
        "elapsed_s": round(elapsed, 3),
        "passes": passes,
        "requests": book["request_counts"].get("customer_tokens.create_order", 0),
        "left_in_flight_by_the_killed_worker_then": dict(taken_over),
        "worker_exit_codes": codes,
        **check,
    }


def outage(
    queue_server: RedisServer,
    limiter_server: RedisServer,
    *,
    charges: int,
    workers: int = 3,
    shard_size: int = 100,
    concurrency: int = 16,
    rate_limit: float = 300.0,
    down_for: float = 3.0,
    timeout: float = 300.0,
) -> dict[str, Any]:
    """The limiter's Redis stopped for DOWN_FOR seconds at a quarter, the queue's at a half."""
    queue = queue_server.url()
    with tempfile.TemporaryDirectory() as scratch, sandbox() as box, fleet(box.url, queue) as crew:
        # The queue's Redis keeps its data across the restart (saved at shutdown).
        control = redis.Redis.from_url(queue, socket_timeout=5)
        control.config_set("save", "3600 1")
        control.close()
        source = Path(scratch, "charges.jsonl")
        keys_sent = write_input(source, charges)
        names = [f"w{i}" for i in range(workers)]
        for name in names:
            crew.start(
                name,
                "--concurrency",
                str(concurrency),
                "--rate-limit",
                str(rate_limit),
                "--rate-limit-redis",
                limiter_server.url(),
                "--expected-workers",
                str(workers),
                "--journal-patience",
                "60",
            )
        crew.wait_live(names)
        run = "outage"
        keys = dist.Keys(crew.prefix, run)
        crew.enqueue(source, run, "--shard-size", str(shard_size))
        events: dict[str, Any] = {}
        started = time.monotonic()

        def outage_of(server: RedisServer, name: str, counts: dict[str, int]) -> None:
            placed = counts.get("placed", 0)
            server.stop()
            stopped = time.monotonic()
            time.sleep(down_for)
            if name == "limiter":
                # Read while the queue's Redis answers: what the workers placed meanwhile.
                events["placed_while_limiter_down"] = crew.progress(keys)[0].get("placed", 0) - (
                    placed
                )
            server.start()
            events[f"{name}_down_s"] = round(time.monotonic() - stopped, 3)
            events[f"{name}_down_at_placed"] = placed

        def tick(counts: dict[str, int]) -> None:
            recorded = sum(counts.values())
            if "limiter_down_s" not in events and recorded >= charges / 4:
                outage_of(limiter_server, "limiter", counts)
            elif "queue_down_s" not in events and recorded >= charges / 2:
                outage_of(queue_server, "queue", counts)

        crew.wait_done(keys, timeout, tick)
        elapsed = time.monotonic() - started
        alive = {w.name: w.process.poll() is None for w in crew.workers}
        logs = {w.name: w.text() for w in crew.workers}
        client = crew.redis
        try:
            records = journal(client, keys)
        finally:
            client.close()
        check = verify(keys_sent, ledger(box.url), records)
        codes = crew.stop_all()
    return {
        "workers": workers,
        "charges": charges,
        "rate_limit": rate_limit,
        **events,
        "elapsed_s": round(elapsed, 3),
        "workers_alive_at_the_end": alive,
        "limiter_fell_back": {n: "pacing merchant" in text for n, text in logs.items()},
        "limiter_came_back": {n: "through Redis again" in text for n, text in logs.items()},
        "journal_waited": {n: "answers again" in text for n, text in logs.items()},
        "worker_exit_codes": codes,
        **check,
    }


def limit(
    queue: str,
    *,
    charges: int,
    workers: int = 3,
    rate: float = 150.0,
    shard_size: int = 100,
    concurrency: int = 16,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """429s from a sandbox limited to RATE: the workers sharing RATE, then each pacing at RATE."""
    results: dict[str, Any] = {"workers": workers, "charges": charges, "rate": rate}
    options = ("--keep-requests", str(charges * 20), "--rate-limit", str(rate))
    with tempfile.TemporaryDirectory() as scratch, sandbox(*options) as box:
        source = Path(scratch, "charges.jsonl")
        keys_sent = write_input(source, charges)
        for mode, pacing in (("shared", ()), ("local", ("--local-pacing",))):
            reset(box.url)
            with fleet(box.url, queue) as crew:
                names = [f"w{i}" for i in range(workers)]
                for name in names:
                    crew.start(
                        name,
                        "--concurrency",
                        str(concurrency),
                        "--rate-limit",
                        str(rate),
                        "--expected-workers",
                        str(workers),
                        *pacing,
                    )
                crew.wait_live(names)
                keys = dist.Keys(crew.prefix, mode)
                crew.enqueue(source, mode, "--shard-size", str(shard_size))
                elapsed = crew.wait_done(keys, timeout)
                client = crew.redis
                try:
                    records = journal(client, keys)
                finally:
                    client.close()
                book = ledger(box.url, requests=True)
                statuses = Counter(
                    r["status"]
                    for r in book["requests"]
                    if r["endpoint"] == "customer_tokens.create_order"
                )
                crew.stop_all()
            requests = sum(statuses.values())
            results[mode] = {
                "elapsed_s": round(elapsed, 3),
                "requests": requests,
                "429": statuses[429],
                "429_share": round(statuses[429] / requests, 4) if requests else 0.0,
                "orders_per_s": round(len(book["orders"]) / elapsed, 1),
                **verify(keys_sent, book, records),
            }
    return results


def run(
    *,
    modes: Sequence[str] = MODES,
    charges: int = 20_000,
    workers: Sequence[int] = (1, 2, 3),
    shard_size: int = 500,
    concurrency: int = 32,
    outage_charges: int = 3_000,
    limit_charges: int = 3_000,
    repeat: int = 1,
    redis_url: str | None = None,
) -> dict[str, Any]:
    results: dict[str, Any] = {"modes": list(modes), "machine": machine()}
    with _redis(redis_url) as queue:
        if "throughput" in modes:
            results["single_process_baseline"] = baseline(charges=charges, concurrency=concurrency)
            # Rounds interleave the worker counts, so that a busy spell of the machine does not
            # fall on one count only; the median of each count is the figure.
            rounds = [
                [
                    throughput(
                        queue,
                        charges=charges,
                        workers=n,
                        shard_size=shard_size,
                        concurrency=concurrency,
                    )
                    for n in workers
                ]
                for _ in range(repeat)
            ]
            results["throughput"] = [
                {
                    "workers": n,
                    "median_charges_per_s": statistics.median(
                        row[i]["charges_per_s"] for row in rounds
                    ),
                    "runs": [row[i] for row in rounds],
                }
                for i, n in enumerate(workers)
            ]
        if "kill" in modes:
            results["kill"] = kill(
                queue, charges=charges, shard_size=shard_size, concurrency=concurrency
            )
        if "limit" in modes:
            results["limit"] = limit(queue, charges=limit_charges)
    if "outage" in modes:
        with _own_redis() as queue_server, _own_redis() as limiter_server:
            results["outage"] = outage(queue_server, limiter_server, charges=outage_charges)
    return results


def summary(result: dict[str, Any]) -> str:
    parts = []
    for row in result.get("throughput", ()):
        parts.append(f"{row['workers']} worker(s) {row['median_charges_per_s']:,.0f}/s")
    kill = result.get("kill")
    if kill:
        parts.append(
            f"kill -9: {kill.get('orders', '?')} orders, charged twice "
            f"{kill.get('keys_charged_twice', '?')}, exactly once {kill.get('exactly_once')}"
        )
    return "distributed: " + "; ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.distributed")
    parser.add_argument("--charges", type=int, default=20_000)
    parser.add_argument("--workers", default="1,2,3", help="worker counts of the throughput mode")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--shard-size", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=32, help="per worker [32]")
    parser.add_argument("--outage-charges", type=int, default=3_000)
    parser.add_argument("--limit-charges", type=int, default=3_000)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the throughput mode [3]")
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--out", type=Path, default=OUT_DIR / "distributed.json")
    args = parser.parse_args(argv)
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    started = time.monotonic()
    results = run(
        modes=modes,
        charges=args.charges,
        workers=[int(n) for n in args.workers.split(",")],
        shard_size=args.shard_size,
        concurrency=args.concurrency,
        outage_charges=args.outage_charges,
        limit_charges=args.limit_charges,
        repeat=args.repeat,
        redis_url=args.redis_url,
    )
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    text = orjson.dumps(results, option=orjson.OPT_INDENT_2).decode()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
