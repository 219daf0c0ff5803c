"""Distributed batches, in this process: the journal's rules, the enqueue, a shard run by a worker
against the fake Klarna (whose ledger is the witness), redelivery, the send/journal window, the
key window, status and export, the broker's hand-over of abandoned shards, the command line.

Real Redis (see ``redis_support``); the workers as processes are in ``test_distributed_runs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import logging
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from klarna_async import KlarnaClient, RetryPolicy
from klarna_async._charge_file import Action, load_results, parse_charge_line, plan
from klarna_async._cli import main
from tests.integrations import redis_support

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX only")

PLAN = {"name": "Premium", "interval": "MONTH", "interval_count": 1}
NAMESPACE = "klarna-async-charge"


@pytest.fixture
def dist() -> Any:
    """The module, once taskiq and taskiq-redis are importable (else skip, or fail in CI)."""
    from klarna_async import _distributed

    try:
        _distributed.import_taskiq()
    except ImportError as error:
        redis_support.unavailable(str(error))
    return _distributed


@pytest.fixture
def prefix() -> str:
    return f"klarna_async:test:{uuid.uuid4().hex[:8]}"


def line(i: int, **extra: Any) -> bytes:
    return orjson.dumps(
        {
            "charge_id": f"sub-{i}:2026-11",
            "customer_token": f"tok-{i % 25:04d}-abcdef",
            "amount": 999,
            "currency": "EUR",
            "subscription": PLAN,
            **extra,
        }
    )


def key_of(i: int) -> str:
    parsed = parse_charge_line(line(i), 1, NAMESPACE)
    return parsed.charge.idempotency_key  # type: ignore[union-attr]


def write_input(path: Path, count: int, *, extra: list[bytes] = ()) -> Path:  # type: ignore[assignment]
    path.write_bytes(
        b"".join(line(i) + b"\n" for i in range(count)) + b"".join(raw + b"\n" for raw in extra)
    )
    return path


def stamp(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


@contextlib.asynccontextmanager
async def redis_client(url: str) -> AsyncIterator[Any]:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url)
    try:
        yield client
    finally:
        await client.aclose()


async def enqueue(dist: Any, url: str, prefix: str, source: Path, **options: Any) -> Any:
    """``klarna-async charge SOURCE --queue URL`` in this process: its report (``.stderr``: what
    it said there)."""
    settings = {
        "queue": url,
        "input": source,
        "run": "r",
        "namespace": NAMESPACE,
        "namespace_given": False,
        "prefix": prefix,
        **options,
    }
    err = io.StringIO()
    report = await dist.enqueue(dist.EnqueueOptions(**settings), out=io.StringIO(), err=err)
    return _Said(report, err.getvalue())


class _Said:
    def __init__(self, report: Any, stderr: str) -> None:
        self.report, self.stderr = report, stderr

    def __getattr__(self, name: str) -> Any:
        return getattr(self.report, name)


@contextlib.asynccontextmanager
async def worker_against(
    dist: Any, url: str, prefix: str, fake: Any, *, password: str | None = None, name: str = "t0"
) -> AsyncIterator[Any]:
    """A worker of this process (no taskiq receiver: its shards are run directly)."""
    settings = {
        "username": fake.username,
        "password": password or fake.password,
        "base_url": fake.url,
    }
    options = dist.WorkerOptions(
        queue=url, settings=settings, name=name, concurrency=8, prefix=prefix, journal_patience=5
    )
    async with redis_client(url) as client:
        worker = dist.Worker(options, client)
        async with KlarnaClient(
            **settings,
            rate_limit=None,
            connection_limit=8,
            retry=RetryPolicy(
                max_attempts=3, initial_delay=0.01, max_delay=0.05, deadline=10, attempt_timeout=2
            ),
        ) as klarna:
            worker.client = klarna
            yield worker


def orders_per_key(fake: Any) -> Counter[str]:
    return Counter(order.idempotency_key for order in fake.ledger.orders)


async def records(dist: Any, client: Any, prefix: str, run: str = "r") -> dict[str, Any]:
    journal = dist.Journal(client, dist.Keys(prefix, run))
    return {record["charge_id"] or record["line"]: record async for record in journal.records()}


@pytest.fixture
async def fake() -> AsyncIterator[Any]:
    from klarna_async.testing import FakeKlarna

    async with FakeKlarna(accept_unknown_tokens=True) as running:
        yield running


# --- the journal --------------------------------------------------------------------------------


async def test_journal_rules(dist: Any, redis_url: str, prefix: str) -> None:
    """Claims are compare-and-set; a result replaces the writer's own claim; over another's
    newer claim only what says more: placed over anything, unknown over not-charged; nothing over
    placed; invalid lines never over 'maybe placed'; an unclaim puts the record back."""
    async with redis_client(redis_url) as client:
        journal = dist.Journal(client, dist.Keys(prefix, "j"))

        async def write(field: str, mode: str, expected: bytes | None, record: bytes, label: str):
            return await journal.write(field, mode, expected, record, label)

        # A claim is compare-and-set.
        assert (True, None) == await write("a", "claim", None, b"claim-a1", "in_flight")
        assert (False, b"claim-a1") == await write("a", "claim", None, b"claim-a2", "in_flight")
        assert (True, None) == await write("a", "settle", b"claim-a1", b"placed-a", "placed")
        # Placed is final: no claim, no result, no invalid line replaces it.
        assert (False, b"placed-a") == await write("a", "claim", b"placed-a", b"c", "in_flight")
        assert (False, b"placed-a") == await write("a", "settle", b"x", b"u", "unknown")
        assert (False, b"placed-a") == await write("a", "put", None, b"bad", "invalid")

        # Two workers on one charge (a shard delivered twice): B claimed over A's claim.
        assert (await write("b", "claim", None, b"claim-A", "in_flight"))[0]
        assert (await write("b", "claim", b"claim-A", b"claim-B", "in_flight"))[0]
        # A's "not charged" cannot clear B's "maybe"; nor A's unknown replace it (same rank).
        assert not (await write("b", "settle", b"claim-A", b"retry-A", "retryable"))[0]
        assert not (await write("b", "settle", b"claim-A", b"unknown-A", "unknown"))[0]
        assert (await write("b", "settle", b"claim-A", b"placed-A", "placed"))[0]
        assert not (await write("b", "settle", b"claim-B", b"unknown-B", "unknown"))[0]

        # Not charged first, then a late "maybe" from an older claim: the maybe wins.
        assert (await write("c", "claim", None, b"claim-C1", "in_flight"))[0]
        assert (await write("c", "claim", b"claim-C1", b"claim-C2", "in_flight"))[0]
        assert (await write("c", "settle", b"claim-C2", b"retry-C2", "retryable"))[0]
        assert (await write("c", "settle", b"claim-C1", b"unknown-C1", "unknown"))[0]

        # Invalid lines: over nothing or not-charged, never over a maybe.
        assert (await write("d", "put", None, b"bad-d", "invalid"))[0]
        assert (await write("d", "put", None, b"bad-d2", "invalid"))[0]
        assert not (await write("c", "put", None, b"bad-c", "invalid"))[0]

        # Unclaim: the record as it was (or none).
        assert (await write("e", "claim", b"", b"claim-e", "in_flight"))[0]
        assert (await write("e", "unclaim", b"claim-e", b"", ""))[0]
        assert (await write("d", "claim", b"bad-d2", b"claim-d", "in_flight"))[0]
        assert (await write("d", "unclaim", b"claim-d", b"bad-d2", "invalid"))[0]
        assert [None, b"bad-d2"] == await journal.read(["e", "d"])

        # The counts always equal the labels.
        labels = Counter(v.decode() for v in (await client.hgetall(journal.keys.labels)).values())
        counts = {label: n for label, n in (await journal.counts()).items() if n}
        assert dict(labels) == counts == {"placed": 2, "unknown": 1, "invalid": 1}


async def test_concurrent_writes_share_a_round_trip(dist: Any, redis_url: str, prefix: str):
    """Writes made together go in one pipeline, each with its own answer."""
    async with redis_client(redis_url) as client:
        journal = dist.Journal(client, dist.Keys(prefix, "j"))
        await client.script_flush()  # as after a restart: the script is loaded again
        answers = await asyncio.gather(
            *(journal.write(f"k{i}", "claim", None, b"c", "in_flight") for i in range(50)),
            journal.write("k0", "claim", None, b"c", "in_flight"),
        )
        assert [(True, None)] * 50 == answers[:50]
        assert (False, b"c") == answers[50]


# --- enqueue ------------------------------------------------------------------------------------


async def test_enqueue_journals_bad_lines_and_shards_the_rest(
    dist: Any, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    source = write_input(
        tmp_path / "in.jsonl",
        25,
        extra=[
            b"{oops",
            line(3),  # a charge id seen before
            orjson.dumps({"charge_id": "no-amount", "customer_token": "t"}),
        ],
    )
    report = await enqueue(dist, redis_url, prefix, source, shard_size=10)
    assert (report.total, report.enqueued, report.shards, report.invalid) == (28, 25, 3, 3)
    assert 1 == report.exit_code()  # invalid lines: not everything will be placed
    for number in (26, 27, 28):
        assert 1 == report.stderr.count(f"line {number}: invalid, not sent"), report.stderr
    async with redis_client(redis_url) as client:
        keys = dist.Keys(prefix, "r")
        assert 3 == await client.xlen(keys.stream)
        found = await records(dist, client, prefix)
        assert {26, 27, "no-amount"} == set(found)  # lines without a charge id: by number
        counts = await dist.Journal(client, keys).counts()
        assert {"invalid": 3} == {label: n for label, n in counts.items() if n}
        shard = orjson.loads(await client.get(keys.lines(1, 2)))
        assert [21, 22, 23, 24, 25] == [number for number, _ in shard]

        with pytest.raises(dist.QueueError, match="exists"):
            await enqueue(dist, redis_url, prefix, source)
        # A resume while shards are pending and no live worker runs one: their tasks may be
        # lost (an enqueue killed half-way): enqueued again, same generation.
        requeued = await enqueue(dist, redis_url, prefix, source, resume=True)
        assert (requeued.generation, requeued.shards) == (1, 3)
        assert 6 == await client.xlen(keys.stream)
        # ...but not while a live worker runs one.
        await client.hset(keys.running, "1:0", orjson.dumps({"worker": "busy", "since": "x"}))
        await client.zadd(keys.workers, {"busy": time.time()})
        with pytest.raises(dist.QueueError, match="running on live workers"):
            await enqueue(dist, redis_url, prefix, source, resume=True)
        await client.sadd(keys.done(1), 0, 1, 2)  # as if the workers were done
        with pytest.raises(dist.QueueError, match="namespace"):
            await enqueue(
                dist,
                redis_url,
                prefix,
                source,
                resume=True,
                namespace="other",
                namespace_given=True,
            )
        again = await enqueue(dist, redis_url, prefix, source, resume=True, shard_size=100)
        assert (again.generation, again.shards, again.enqueued) == (2, 1, 25)
        # The same bad lines, journaled again under the same fields: counted once.
        assert 3 == (await dist.Journal(client, keys).counts())["invalid"]


async def test_bad_run_names_are_refused(dist: Any, redis_url: str, prefix: str, tmp_path: Path):
    source = write_input(tmp_path / "in.jsonl", 1)
    with pytest.raises(dist.QueueError, match="--run"):
        await enqueue(dist, redis_url, prefix, source, run="a{b}")


# --- a shard, run by a worker -------------------------------------------------------------------


async def test_a_shard_is_placed_once_and_a_second_delivery_sends_nothing(
    dist: Any, redis_url: str, prefix: str, tmp_path: Path, fake: Any
) -> None:
    source = write_input(tmp_path / "in.jsonl", 30)
    await enqueue(dist, redis_url, prefix, source, shard_size=30)
    async with worker_against(dist, redis_url, prefix, fake) as worker:
        assert await worker._run_shard("r", 1, 0, None)
        sent = fake.ledger.request_counts["customer_tokens.create_order"]
        found = await records(dist, worker.redis, prefix)
        # Delivered again before its ack reached Redis: the shard is done, dropped.
        assert await worker._run_shard("r", 1, 0, None)
        # Delivered again before even "done" was written: every charge is settled, skipped.
        await worker.redis.srem(dist.Keys(prefix, "r").done(1), 0)
        run = dist._ShardRun(
            worker,
            dist.Keys(prefix, "r"),
            {"namespace": NAMESPACE},
            orjson.loads(await worker.redis.get(dist.Keys(prefix, "r").lines(1, 0))),
        )
        assert await run.execute()
        assert 30 == run.tally.placed_before
        assert sent == fake.ledger.request_counts["customer_tokens.create_order"]
        assert found == await records(dist, worker.redis, prefix)
    assert {key_of(i): 1 for i in range(30)} == orders_per_key(fake)
    assert {"placed"} == {record["status"] for record in found.values()}
    assert {order.order_id for order in fake.ledger.orders} == {
        record["order_id"] for record in found.values()
    }
    for record in found.values():
        assert "in_flight" not in record
        assert record["worker"] == "t0"
        assert record["first_attempt_at"] <= record["at"]


def claim_record(i: int, *, since: dt.datetime, worker: str = "gone") -> bytes:
    """The record a worker writes before it sends charge ``i`` (as one killed would leave it)."""
    return orjson.dumps(
        {
            "charge_id": f"sub-{i}:2026-11",
            "status": "unknown",
            "in_flight": True,
            "idempotency_key": key_of(i),
            "at": stamp(since),
            "first_attempt_at": stamp(since),
            "line": i + 1,
            "worker": worker,
            "claim": uuid.uuid4().hex,
        }
    )


async def test_a_worker_killed_between_sending_and_journaling(
    dist: Any, redis_url: str, prefix: str, tmp_path: Path, fake: Any
) -> None:
    """Charge 0 was sent (Klarna placed it) and charge 1 was not, when their worker died: both
    records say 'in flight'. The worker that takes the shard over re-drives both with their keys:
    one order each, charge 0's the one placed first, and the key window still counts from the
    first attempt."""
    source = write_input(tmp_path / "in.jsonl", 3)
    await enqueue(dist, redis_url, prefix, source, shard_size=10)
    since = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=2)
    async with worker_against(dist, redis_url, prefix, fake) as worker:
        first = await worker.client.customer_tokens.create_order(
            "tok-0000-abcdef",
            parse_charge_line(line(0), 1, NAMESPACE).charge.request,  # type: ignore[union-attr]
            idempotency_key=key_of(0),
        )
        journal = dist.Journal(worker.redis, dist.Keys(prefix, "r"))
        for i in (0, 1):
            assert (
                await journal.write(
                    f"sub-{i}:2026-11", "claim", None, claim_record(i, since=since), "in_flight"
                )
            )[0]
        assert {"in_flight": 2} == {k: v for k, v in (await journal.counts()).items() if v}
        run = dist._ShardRun(
            worker,
            dist.Keys(prefix, "r"),
            {"namespace": NAMESPACE},
            orjson.loads(await worker.redis.get(dist.Keys(prefix, "r").lines(1, 0))),
        )
        assert await run.execute()
        assert (run.tally.placed, run.tally.redriven) == (3, 2)
        found = await records(dist, worker.redis, prefix)
    assert {key_of(i): 1 for i in range(3)} == orders_per_key(fake)
    assert first.order_id == found["sub-0:2026-11"]["order_id"]
    for i in (0, 1):
        assert stamp(since) == found[f"sub-{i}:2026-11"]["first_attempt_at"]
    assert {"placed"} == {record["status"] for record in found.values()}


async def test_a_redrive_settles_only_on_success(
    dist: Any, redis_url: str, prefix: str, tmp_path: Path, fake: Any
) -> None:
    """A charge left in flight, re-driven while Klarna answers only 503 ('not processed'), stays
    unknown (never 'retryable'); one whose line is now refused before sending, too."""
    from klarna_async.testing import Fault

    bad_order = {"purchase_currency": "EUR", "order_amount": 5, "order_lines": []}
    source = tmp_path / "in.jsonl"
    source.write_bytes(
        line(0)
        + b"\n"
        + orjson.dumps({"charge_id": "sub-1:2026-11", "customer_token": "t", "order": bad_order})
        + b"\n"
    )
    await enqueue(dist, redis_url, prefix, source)
    since = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)
    async with worker_against(dist, redis_url, prefix, fake) as worker:
        journal = dist.Journal(worker.redis, dist.Keys(prefix, "r"))
        for i in (0, 1):
            await journal.write(
                f"sub-{i}:2026-11", "claim", None, claim_record(i, since=since), "in_flight"
            )
        fake.faults.script("customer_tokens.create_order", [Fault.SERVICE_UNAVAILABLE] * 10)
        assert await worker._run_shard("r", 1, 0, None)
        found = await records(dist, worker.redis, prefix)
        report = await dist.read_status(worker.redis, dist.Keys(prefix, "r"))
    assert 0 == len(fake.ledger.orders)
    for i in (0, 1):
        record = found[f"sub-{i}:2026-11"]
        assert "unknown" == record["status"], record
        assert "in_flight" not in record
        assert stamp(since) == record["first_attempt_at"]
        assert Action.REDRIVE == plan(record)
    # The re-drive told the client so (after_unknown): the client's own verdict is unknown.
    assert "OutcomeUnknownError" == found["sub-0:2026-11"]["error_type"]
    # A re-drive refused before sending cannot settle it either.
    assert "may have been placed by an earlier attempt" in found["sub-1:2026-11"]["error"]
    assert 3 == report.exit_code()


async def test_past_the_key_window_nothing_is_sent_unless_forced(
    dist: Any, redis_url: str, prefix: str, tmp_path: Path, fake: Any
) -> None:
    source = write_input(tmp_path / "in.jsonl", 1)
    await enqueue(dist, redis_url, prefix, source)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=30)
    async with worker_against(dist, redis_url, prefix, fake) as worker:
        journal = dist.Journal(worker.redis, dist.Keys(prefix, "r"))
        await journal.write("sub-0:2026-11", "claim", None, claim_record(0, since=old), "in_flight")
        assert await worker._run_shard("r", 1, 0, None)
        assert 0 == fake.ledger.request_counts["customer_tokens.create_order"]
        # A resume refuses it too, saying why; with --force-after-window it is sent.
        refused = await enqueue(dist, redis_url, prefix, source, resume=True)
        assert (refused.refused_window, refused.shards, refused.exit_code()) == (1, 0, 3)
        assert "24 hours" in refused.stderr
        forced = await enqueue(
            dist, redis_url, prefix, source, resume=True, force_after_window=True
        )
        assert (forced.generation, forced.shards) == (3, 1)
        assert await worker._run_shard("r", 3, 0, None)
        found = await records(dist, worker.redis, prefix)
    assert "placed" == found["sub-0:2026-11"]["status"]
    assert {key_of(0): 1} == orders_per_key(fake)


async def test_credentials_refused_stop_the_worker_and_keep_the_shard(
    dist: Any, redis_url: str, prefix: str, tmp_path: Path, fake: Any
) -> None:
    source = write_input(tmp_path / "in.jsonl", 40)
    await enqueue(dist, redis_url, prefix, source, shard_size=40)
    async with worker_against(dist, redis_url, prefix, fake, password="wrong") as worker:
        assert not await worker._run_shard("r", 1, 0, None)
        assert worker.auth_refused
        assert worker.stop.is_set()
        found = await records(dist, worker.redis, prefix)
    # Stopped early: the first answers, what was in flight; nothing reads as "maybe placed".
    assert fake.ledger.request_counts["customer_tokens.create_order"] <= 8 + 16
    assert {"retryable"} >= {record["status"] for record in found.values()}
    async with worker_against(dist, redis_url, prefix, fake, name="t1") as worker:
        assert await worker._run_shard("r", 1, 0, None)
    assert {key_of(i): 1 for i in range(40)} == orders_per_key(fake)


async def test_a_stopping_worker_puts_unsent_claims_back(
    dist: Any, redis_url: str, prefix: str, tmp_path: Path, fake: Any
) -> None:
    """A worker told to stop mid-shard sends nothing more; what it claimed but did not send
    reads as before (not 'in flight'), and the shard is not done."""
    source = write_input(tmp_path / "in.jsonl", 60)
    await enqueue(dist, redis_url, prefix, source, shard_size=60)
    async with worker_against(dist, redis_url, prefix, fake) as worker:
        keys = dist.Keys(prefix, "r")
        run = dist._ShardRun(
            worker,
            keys,
            {"namespace": NAMESPACE},
            orjson.loads(await worker.redis.get(keys.lines(1, 0))),
        )
        real_settle = run._settle

        async def settle_then_stop(result: Any) -> None:
            await real_settle(result)
            worker.stopping = True

        run._settle = settle_then_stop  # type: ignore[method-assign]
        assert not await run.execute()
        found = await records(dist, worker.redis, prefix)
    assert 0 < len(found) < 60
    assert {"placed"} == {record["status"] for record in found.values()}
    assert len(found) == len(fake.ledger.orders)


async def serve(dist: Any, url: str, prefix: str, fake: Any, **options: Any) -> Any:
    """``klarna-async worker`` in this process: (its task, its Worker once it serves)."""
    settings = {"username": fake.username, "password": fake.password, "base_url": fake.url}
    settings.update(options.pop("settings", {}))
    worker_options = dist.WorkerOptions(
        queue=url,
        settings=settings,
        name="inproc",
        concurrency=8,
        prefix=prefix,
        rate_limit=500.0,
        idle_timeout=5.0,
        **options,
    )
    serving: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        dist.run_worker(worker_options, handle_signals=False, on_start=serving.set_result)
    )
    done, _ = await asyncio.wait({task, serving}, timeout=15, return_when="FIRST_COMPLETED")
    assert serving in done, task
    return task, serving.result()


async def test_a_worker_serves_shards_until_stopped(
    dist: Any, redis_url: str, prefix: str, tmp_path: Path, fake: Any
) -> None:
    """The whole worker (taskiq receiver, shared limiter, heartbeat, acks) in this process."""
    source = write_input(tmp_path / "in.jsonl", 30)
    await enqueue(dist, redis_url, prefix, source, shard_size=10)
    task, worker = await serve(dist, redis_url, prefix, fake)
    keys = dist.Keys(prefix, "r")
    async with redis_client(redis_url) as client:
        deadline = time.monotonic() + 20
        while await client.scard(keys.done(1)) < 3:
            assert time.monotonic() < deadline, "the worker did not finish the run"
            await asyncio.sleep(0.05)
        report = await dist.read_status(client, keys)
        assert ["inproc"] == report.live_workers
        # Acknowledged tasks leave the stream.
        deadline = time.monotonic() + 5
        while await client.xlen(keys.stream):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        worker.begin_stopping()
        assert 0 == await asyncio.wait_for(task, 20)
        assert [] == await client.zrange(keys.workers, 0, -1)  # gone from the live list
    assert {key_of(i): 1 for i in range(30)} == orders_per_key(fake)
    assert 3 == worker.shards_done


async def test_a_worker_refused_by_klarna_stops_and_gives_its_shard_back(
    dist: Any, redis_url: str, prefix: str, tmp_path: Path, fake: Any
) -> None:
    source = write_input(tmp_path / "in.jsonl", 20)
    await enqueue(dist, redis_url, prefix, source, shard_size=20)
    task, _ = await serve(dist, redis_url, prefix, fake, settings={"password": "wrong"})
    assert 4 == await asyncio.wait_for(task, 20)
    keys = dist.Keys(prefix, "r")
    async with redis_client(redis_url) as client:
        assert 0 == await client.scard(keys.done(1))
        # Given back: idle already past the timeout, for the next worker to take at once.
        pending = await client.xpending_range(keys.stream, dist.GROUP, "-", "+", 10)
        assert 1 == len(pending)
        assert pending[0]["time_since_delivered"] >= 5000
    assert 0 == len(fake.ledger.orders)


# --- status and export --------------------------------------------------------------------------


async def test_status_and_export(
    dist: Any, redis_url: str, prefix: str, tmp_path: Path, fake: Any
) -> None:
    source = write_input(tmp_path / "in.jsonl", 12, extra=[b"{oops"])
    await enqueue(dist, redis_url, prefix, source, shard_size=5)
    out, err = io.StringIO(), io.StringIO()
    options = dist.StatusOptions(queue=redis_url, prefix=prefix)
    assert 5 == await dist.status(options, out=out, err=err)  # shards pending
    assert "0/3 done" in out.getvalue()
    assert "no worker is live" in out.getvalue()
    with pytest.raises(dist.QueueError, match="pending: not forgotten"):
        await dist.status(
            dist.StatusOptions(queue=redis_url, prefix=prefix, forget=True), out=out, err=err
        )
    async with worker_against(dist, redis_url, prefix, fake) as worker:
        for shard in range(3):
            assert await worker._run_shard("r", 1, shard, None)
    exported = tmp_path / "results.jsonl"
    out = io.StringIO()
    options = dist.StatusOptions(queue=redis_url, prefix=prefix, export=exported)
    assert 1 == await dist.status(options, out=out, err=err)  # an invalid line: not all placed
    text = out.getvalue()
    assert re.search(r"placed\s+12\n", text), text
    assert "3/3 done (all done)" in text
    assert "13 records exported" in text
    results = load_results(exported)
    assert 12 == len(results)  # the bad line has no charge id
    assert {Action.SKIP_PLACED} == {plan(record) for record in results.values()}
    rows = [orjson.loads(raw) for raw in exported.read_bytes().splitlines()]
    assert list(range(1, 14)) == [row["line"] for row in rows]
    assert not any("claim" in row for row in rows)
    as_json = io.StringIO()
    options = dist.StatusOptions(queue=redis_url, prefix=prefix, run="r", as_json=True)
    await dist.status(options, out=as_json, err=err)
    figures = orjson.loads(as_json.getvalue())
    assert (figures["counts"]["placed"], figures["shards_pending"]) == (12, 0)
    # The single-process command resumes from the export and sends nothing (exit 1: the bad
    # line is still bad).
    resume = ["charge", str(source), "--out", str(exported), "--resume", "--sandbox"]
    assert 1 == await asyncio.to_thread(main, [*resume, "--no-progress"])
    assert 12 == sum(1 for r in load_results(exported).values() if r["status"] == "placed")
    # Forgotten: every key of the run gone (the input lines, with their tokens, included).
    options = dist.StatusOptions(queue=redis_url, prefix=prefix, run="r", forget=True)
    out = io.StringIO()
    await dist.status(options, out=out, err=err)
    assert "forgotten" in out.getvalue()
    async with redis_client(redis_url) as client:
        keys = dist.Keys(prefix, "r")
        assert [] == [key async for key in client.scan_iter(match=keys.everything)]
        assert await client.exists(keys.stream)  # the queue is the workers', not the run's
        assert [] == await client.zrange(keys.runs, 0, -1)


async def test_status_wait_follows_until_done(
    dist: Any, redis_url: str, prefix: str, tmp_path: Path, fake: Any
) -> None:
    source = write_input(tmp_path / "in.jsonl", 20)
    await enqueue(dist, redis_url, prefix, source, shard_size=10)
    out, err = io.StringIO(), io.StringIO()
    options = dist.StatusOptions(queue=redis_url, prefix=prefix, wait=True, timeout=20, poll=0.05)
    follow = asyncio.create_task(dist.status(options, out=out, err=err))
    async with worker_against(dist, redis_url, prefix, fake) as worker:
        for shard in range(2):
            await asyncio.sleep(0.1)
            assert await worker._run_shard("r", 1, shard, None)
    assert 0 == await asyncio.wait_for(follow, 30)
    assert "shards 0/2 done" in err.getvalue()
    assert "2/2 done" in out.getvalue()
    timeout = dist.StatusOptions(queue=redis_url, prefix=prefix, wait=True, timeout=0.2, poll=0.05)
    await enqueue(dist, redis_url, prefix, source, run="other")
    assert 5 == await dist.status(timeout, out=io.StringIO(), err=err)
    assert "still pending after 0.2 s" in err.getvalue()


# --- the broker ---------------------------------------------------------------------------------


async def test_the_broker_hands_an_abandoned_shard_on_even_when_the_queue_is_empty(
    dist: Any, redis_url: str, prefix: str
) -> None:
    """A task taken by a worker that died (never acked, its idle time not kept) goes to another
    worker after the idle timeout, though no new task arrives; a live worker keeps its task;
    an ack removes it from the stream."""
    from taskiq.kicker import AsyncKicker

    def broker(name: str) -> Any:
        return dist.make_broker(redis_url, prefix, consumer_name=name, idle_timeout=0.3, block=0.1)

    sender, first, second = broker("sender"), broker("first"), broker("second")
    for each in (sender, first, second):
        await each.startup()
    try:
        await AsyncKicker(dist.TASK_NAME, sender, {}).kiq("r", 1, 0)
        taken = await asyncio.wait_for(anext(first.listen()), 5)
        delivery = first.deliveries[first.formatter.loads(taken.data).task_id]
        assert not delivery.redelivered

        # Kept alive: nobody else gets it.
        async def keep() -> None:
            while True:
                await first.keep(delivery)
                await asyncio.sleep(0.05)

        keeper = asyncio.create_task(keep())
        listener = second.listen()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(listener), 1.0)
        await dist.stop_task(keeper)
        # Its worker is gone: after the idle timeout the other one takes it.
        listener = second.listen()
        again = await asyncio.wait_for(anext(listener), 5)
        assert again.data == taken.data
        redelivered = second.deliveries[second.formatter.loads(again.data).task_id]
        assert redelivered.redelivered
        await again.ack()
        async with redis_client(redis_url) as client:
            assert 0 == await client.xlen(dist.Keys(prefix).stream)
    finally:
        for each in (sender, first, second):
            await each.shutdown()


async def test_a_live_worker_keeps_its_shard_past_the_idle_timeout(
    dist: Any, redis_url: str, prefix: str, tmp_path: Path, fake: Any
) -> None:
    """A shard that takes longer than the idle timeout is not handed to another worker while
    its worker is alive; once done it is acknowledged and gone from the stream."""
    from klarna_async.testing import Fault

    source = write_input(tmp_path / "in.jsonl", 8)
    await enqueue(dist, redis_url, prefix, source, shard_size=8)

    def broker(name: str) -> Any:
        return dist.make_broker(redis_url, prefix, consumer_name=name, idle_timeout=0.3, block=0.1)

    mine, other = broker("mine"), broker("other")
    for each in (mine, other):
        await each.startup()
    try:
        message = await asyncio.wait_for(anext(mine.listen()), 5)
        task_id = mine.formatter.loads(message.data).task_id

        class Context:
            class message:  # what taskiq's Context looks like
                pass

            async def ack(self) -> None:
                await message.ack()

        context = Context()
        context.message.task_id = task_id  # type: ignore[attr-defined]
        fake.faults.script("customer_tokens.create_order", [Fault.LATENCY] * 8, latency_seconds=0.2)
        async with worker_against(dist, redis_url, prefix, fake) as worker:
            worker.broker = mine
            worker.lanes = 1  # eight charges one after the other: 1.6 s, past the idle 0.3 s
            running = asyncio.create_task(worker.run_shard("r", 1, 0, context))
            stolen = asyncio.create_task(anext(other.listen()))
            done, _ = await asyncio.wait(
                {running, stolen}, timeout=15, return_when="FIRST_COMPLETED"
            )
            assert {running} == done, "another worker took the shard of a live one"
            assert "done" == running.result()
            await dist.stop_task(stolen)
        async with redis_client(redis_url) as client:
            assert 0 == await client.xlen(dist.Keys(prefix).stream)
        assert 8 == len(fake.ledger.orders)
    finally:
        for each in (mine, other):
            await each.shutdown()


async def test_a_keeper_stops_even_when_a_cancellation_is_swallowed(
    dist: Any, redis_url: str, prefix: str
) -> None:
    """A task that keeps a shard (a Redis call every few ms) ends when stopped, every time.

    On Python 3.11 a single cancel() can be swallowed by asyncio.wait_for inside redis-py, and
    the loop goes on: a worker then waited forever for its keeper and never acked its shard."""
    from taskiq.kicker import AsyncKicker

    broker = dist.make_broker(redis_url, prefix, consumer_name="k", idle_timeout=0.3, block=0.1)
    await broker.startup()
    try:
        await AsyncKicker(dist.TASK_NAME, broker, {}).kiq("r", 1, 0)
        message = await asyncio.wait_for(anext(broker.listen()), 5)
        delivery = broker.deliveries[broker.formatter.loads(message.data).task_id]

        async def keep() -> None:
            while True:
                await asyncio.sleep(0.001)
                with contextlib.suppress(Exception):
                    await broker.keep(delivery)

        for turn in range(60):
            keeper = asyncio.create_task(keep())
            await asyncio.sleep((turn % 10) / 1000)
            await asyncio.wait_for(dist.stop_task(keeper), 5)
            assert keeper.cancelled()
    finally:
        await broker.shutdown()


async def test_status_never_shows_a_shard_done_beside_its_charges_in_flight(
    dist: Any, redis_url: str, prefix: str
) -> None:
    """A shard that finishes while the status is read: either not done yet, or done with its
    results counted; never "all done" with its charges still "in flight" (`--wait` would exit
    3 on a clean run). The shard finishes right after the status's first read of the two."""
    keys = dist.Keys(prefix, "r")
    async with redis_client(redis_url) as client:
        await client.hset(keys.meta, mapping={"generation": 1, "total": 2, "shards": 1})
        await client.hset(keys.counts, mapping={"in_flight": 2})

        async def finish_shard() -> None:
            # What a worker does at the end of a shard: results journaled, then the shard done.
            await client.hset(keys.counts, mapping={"in_flight": 0, "placed": 2})
            await client.sadd(keys.done(1), 0)

        class Racing:
            """The client, with the shard finishing right after the first read of the two."""

            finished = False

            def __getattr__(self, name: str) -> Any:
                return getattr(client, name)

            async def _after_first(self, result: Any) -> Any:
                if not self.finished:
                    self.finished = True
                    await finish_shard()
                return result

            async def scard(self, key: str) -> Any:
                return await self._after_first(await client.scard(key))

            async def hgetall(self, key: str) -> Any:
                result = await client.hgetall(key)
                return await self._after_first(result) if key == keys.counts else result

        racing = Racing()
        status = await dist.read_status(racing, keys)
        assert racing.finished
        in_flight = status.counts.get("in_flight", 0)
        assert not (status.shards_done == status.shards and in_flight), (
            status.shards_done,
            status.counts,
        )


# --- the command line ---------------------------------------------------------------------------


async def test_charge_queue_wait_out_status_json(
    dist: Any, redis_url: str, prefix: str, tmp_path: Path, fake: Any, capsys: Any
) -> None:
    """From the command line: enqueue, follow until done, export to --out; status --json."""
    source = write_input(tmp_path / "in.jsonl", 25)
    out = tmp_path / "results.jsonl"
    task, worker = await serve(dist, redis_url, prefix, fake)
    try:
        command = ["charge", str(source), "--queue", redis_url, "--prefix", prefix]
        options = ["--shard-size", "10", "--wait", "--timeout", "30", "--out", str(out)]
        assert 0 == await asyncio.to_thread(main, [*command, *options])
        printed = capsys.readouterr().out
        assert "25 charges enqueued in 3 shards" in printed
        assert f"klarna-async worker --queue {redis_url}" in printed
        assert "25 records exported" in printed
        status = ["status", "--queue", redis_url, "--prefix", prefix, "--run", "in", "--json"]
        assert 0 == await asyncio.to_thread(main, status)
        figures = orjson.loads(capsys.readouterr().out)
        assert (25, 3, ["inproc"]) == (
            figures["counts"]["placed"],
            figures["shards_done"],
            figures["live_workers"],
        )
    finally:
        worker.begin_stopping()
        assert 0 == await asyncio.wait_for(task, 20)
    assert {"placed"} == {record["status"] for record in load_results(out).values()}
    assert 25 == len(load_results(out))


def test_worker_logs_what_an_operator_needs(dist: Any) -> None:
    """A worker's stderr: its own lines and the rate limiter's (Redis away and back) always;
    the client's retries only with -v; everything with -vv."""
    from klarna_async._cli import _WorkerLog

    def record(name: str, module: str, level: int) -> logging.LogRecord:
        made = logging.LogRecord(name, level, f"{module}.py", 1, "m", None, None)
        made.module = module
        return made

    shard = record("klarna_async.distributed", "_distributed", logging.INFO)
    limiter = record("klarna_async", "_redis_pacer", logging.WARNING)
    retry = record("klarna_async", "_retry", logging.WARNING)
    attempt = record("klarna_async", "_retry", logging.DEBUG)
    assert [True, True, False, False] == [
        _WorkerLog(0).filter(r) for r in (shard, limiter, retry, attempt)
    ]
    assert [True, True, True, False] == [
        _WorkerLog(1).filter(r) for r in (shard, limiter, retry, attempt)
    ]
    assert all(_WorkerLog(2).filter(r) for r in (shard, limiter, retry, attempt))


def test_enqueue_usage_errors(redis_url: str, tmp_path: Path, capsys: Any, dist: Any) -> None:
    source = write_input(tmp_path / "in.jsonl", 1)
    queue = ["charge", str(source), "--queue", redis_url]
    for extra, message in (
        (["--sandbox"], "--sandbox does not go with --queue"),
        (["--concurrency", "4"], "belong to the workers"),
        (["--out", str(tmp_path / "o")], "--out needs --wait"),
        (["--retry-failed"], "only make sense with --resume"),
        (["--shard-size", "0"], "--shard-size"),
        (["--run", "a b"], "--run"),
    ):
        assert 2 == main([*queue, *extra]), extra
        err = capsys.readouterr().err
        assert message in err, (extra, err)
        assert 1 == len(err.strip().splitlines())
    assert 2 == main(["charge", str(source)])
    assert "--out is required (or --queue" in capsys.readouterr().err
    assert 2 == main(["charge", str(source), "--queue", "redis://:hunter2@127.0.0.1:1/0"])
    err = capsys.readouterr().err
    assert "cannot reach Redis at redis://:***@127.0.0.1:1/0" in err
    assert "hunter2" not in err


def test_status_and_worker_usage_errors(
    redis_url: str, prefix: str, capsys: Any, monkeypatch: pytest.MonkeyPatch, dist: Any
) -> None:
    assert 2 == main(["status", "--queue", redis_url, "--prefix", prefix])
    assert "no run on this queue" in capsys.readouterr().err
    assert 2 == main(["status", "--queue", redis_url, "--prefix", prefix, "--run", "nope"])
    assert "no run 'nope'" in capsys.readouterr().err
    assert 2 == main(["status", "--queue", redis_url, "--timeout", "3"])
    monkeypatch.delenv("KLARNA_USERNAME", raising=False)
    assert 2 == main(["worker", "--queue", redis_url])
    assert "KLARNA_USERNAME" in capsys.readouterr().err
    monkeypatch.setenv("KLARNA_USERNAME", "u")
    monkeypatch.setenv("KLARNA_PASSWORD", "p")
    assert 2 == main(["worker", "--queue", redis_url, "--shards-at-once", "0"])


@pytest.mark.parametrize("command", ["worker", "status"])
def test_help_is_plain_words_with_defaults(command: str, capsys: Any) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    for markup in ("``", ":class:", ":mod:"):
        assert markup not in text
    assert len(text.split("\n\n")) >= 3
    assert "Exit codes" in text
    if command == "worker":
        for default in ("(default: 32)", "(default: 60)", "KLARNA_USERNAME", "45/s"):
            assert default in text


def test_without_taskiq_the_error_names_the_extra(
    tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m.split(".")[0] in ("taskiq", "taskiq_redis")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "taskiq", None)
    source = write_input(tmp_path / "in.jsonl", 1)
    assert 2 == main(["charge", str(source), "--queue", "redis://127.0.0.1:1/0"])
    assert "pip install 'klarna-async[taskiq]'" in capsys.readouterr().err


def test_the_command_line_imports_neither_taskiq_nor_redis() -> None:
    code = (
        "import sys, klarna_async._cli; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('taskiq', 'taskiq_redis', "
        "'redis')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "[]" == done.stdout.strip()
