"""Charge batches spread over taskiq workers, each charge placed once, with a journal in Redis.

Behind ``klarna-async charge INPUT --queue redis://...`` (enqueue), ``klarna-async worker`` and
``klarna-async status`` (see ``klarna_async._cli``). The ``[taskiq]`` extra (``taskiq`` and
``taskiq-redis``) is imported only when one of them runs.

**A run.** The enqueuer reads INPUT once: bad lines are journaled as ``invalid`` at once; the
others are cut into shards of ``--shard-size`` lines, stored in Redis, and one taskiq task per
shard goes to a Redis stream (taskiq-redis's ``RedisStreamBroker``: a consumer group with acks,
so at least once). A worker takes one shard at a time (``--shards-at-once``), runs its charges
through ``charge_many`` (keys derived from ``charge_id``, as ``klarna-async charge`` does), and
acks the task when every charge of the shard has a journal record. ``--resume`` enqueues a new
*generation* of the same run: what the journal says is settled is not enqueued again. (A resume
while shards are pending is refused if a live worker runs one; otherwise their tasks were lost,
say by an enqueue killed half-way, or wait for a worker, and they are enqueued again: a worker
drops a shard already done.)

**The journal** is one Redis hash per run, charge id -> the JSON record that ``klarna-async
charge`` writes to its results file (:func:`~klarna_async._charge_file.result_record`: status,
order id, key, ``at``, ``first_attempt_at``...). A charge is sent only after its record says
"in flight since T" (status ``unknown``, ``in_flight: true``), written in Redis *before* the
request goes out (a few charges at a time, in one round trip, just before they are sent). So a
worker killed between sending and journaling leaves a record that every reader takes for what
it is: maybe placed; and a charge claimed but not sent yet is only re-driven as maybe placed,
which is safe. The resume rules are
:func:`~klarna_async._charge_file.plan`'s, applied by the workers to each charge's record when a
shard is (re)delivered: placed and declined are skipped; unknown (in flight included) is
re-driven with the recorded key and ``after_unknown=True``, or refused when its key was first
sent more than 23 hours ago; the rest is sent.

Records change only through one Lua script (atomic in Redis), by these rules:

* a worker *claims* a charge (writes its in-flight record) only if the record is still the one it
  planned from, so two workers never both start from the same stale record;
* a worker settles its charge with its result when the record is still its own claim;
* when another worker has claimed the charge since (a shard delivered twice: its first worker
  was stuck past the idle timeout), a result replaces the record only if it says more: ``placed``
  replaces anything; ``unknown`` replaces "not charged"; nothing replaces ``placed``; and "not
  charged" never replaces a record that says "maybe placed";
* a re-drive (``after_unknown``) that does not end ``placed`` leaves the charge ``unknown``: only
  Klarna's success answer settles an earlier attempt that may have acted.

**Redelivery.** taskiq-redis delivers a task again when it stayed unacknowledged for longer than
the idle timeout (``--idle-timeout``, the same for every worker): its worker died, or hung. A
live worker keeps its shard's idle time at zero, so only dead or stuck workers lose shards; the
worker that takes one over skips what is settled and re-drives the rest with the same keys.
(taskiq-redis 1.2 looks for abandoned tasks only after reading a new one; the broker here also
looks when the queue is empty, so the last shards of a run are not stranded.)

**Exactly once rests on** Klarna's idempotency keys (the same key on every send of a charge, and
Klarna keeps a key 24 hours: re-drives older than 23 hours are refused unless forced), on the
outcome model (a charge is "not charged" only with proof), and on the journal's in-flight record
being in Redis before the request leaves: Redis must keep its data across restarts (AOF, or at
least a clean shutdown) for a kill of Redis itself to be covered.

**Keys** (``P`` is ``--prefix``, ``klarna_async:batch`` by default; one prefix per merchant on a
shared Redis): ``P:queue`` (the taskiq stream), ``P:runs`` (runs by time), ``P:workers``
(heartbeats); per run ``P:{RUN}:meta``, ``:journal`` (charge id -> record), ``:labels`` and
``:counts`` (for ``status``), ``:lines:G:N`` (the input lines of shard N of generation G,
customer tokens included: Redis holds what the input file holds, until ``status --forget``),
``:done:G``, ``:starts:G`` (deliveries per shard), ``:running``.

When Redis cannot be reached, a worker sends nothing new (no journal, no send), waits for it
(``--journal-patience``), and paces the charges already in flight locally (the
:class:`~klarna_async.RedisRateLimiter`'s fallback); a result it cannot journal in that time is
written to stderr and its charge stays "in flight" in the journal, to be re-driven with its key.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import hashlib
import logging
import os
import re
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import attrs
import orjson

from klarna_async import (
    Charge,
    ChargeResult,
    ChargeStatus,
    KlarnaClient,
    RedisRateLimiter,
    RetryPolicy,
    UnauthorizedError,
)
from klarna_async._charge_file import (
    INVALID,
    Action,
    BadLine,
    bad_line_record,
    now,
    one_line,
    parse_charge_line,
    parse_stamp,
    plan,
    result_record,
    rewrite,
    stamp,
    status_text,
)
from klarna_async._redis_pacer import redacted_url

if TYPE_CHECKING:
    import redis.asyncio

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_SHARD_SIZE",
    "EnqueueOptions",
    "Journal",
    "Keys",
    "QueueError",
    "StatusOptions",
    "WorkerOptions",
    "enqueue",
    "run_worker",
    "status",
]

T = TypeVar("T")
logger = logging.getLogger("klarna_async.distributed")

INSTALL_HINT = "pip install 'klarna-async[taskiq]'"
DEFAULT_PREFIX = "klarna_async:batch"
DEFAULT_SHARD_SIZE = 500
DEFAULT_IDLE_TIMEOUT = 60.0
DEFAULT_JOURNAL_PATIENCE = 120.0
TASK_NAME = "klarna_async.charge_shard"
GROUP = "klarna-async-workers"
#: A worker that wrote its heartbeat within this many seconds counts as live.
LIVE_WITHIN = 15.0
HEARTBEAT_EVERY = 3.0
#: Ids of runs: no braces (they make the Redis Cluster hash tag) and nothing a shell quotes.
RUN_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]{0,99}")
#: Journal reads of a shard go to Redis in batches of this many lines.
READ_BATCH = 1000
#: Charges claimed in one round trip, ahead of being sent (at most a worker's lanes).
CLAIM_AHEAD = 16

EXIT_OK, EXIT_NOT_PLACED, EXIT_USAGE, EXIT_UNKNOWN, EXIT_AUTH = 0, 1, 2, 3, 4
#: ``status``: shards of the run are still pending (workers at it, or none running).
EXIT_PENDING = 5
EXIT_INTERRUPTED = 130

#: The journal's labels of a record, for counting: a ChargeStatus, ``invalid``, or ``in_flight``
#: (a claim: status ``unknown`` in the record, since that is what it means to a reader).
IN_FLIGHT = "in_flight"
LABELS = ("placed", "declined", "retryable", "unknown", IN_FLIGHT, INVALID)

# One journal write, atomic. KEYS: journal (charge id -> record), labels (charge id -> label),
# counts (label -> records). ARGV: field, mode, expected record ('' for none), new record, its
# label. Modes:
#   claim   - write only if the record is still `expected` (compare and set), and never over
#             a placed one;
#   settle  - write if the record is still `expected` (the writer's own claim); otherwise only
#             if the new label outranks the current one (see rank);
#   unclaim - (a claim never sent) put the record back as it was, if the claim is still there
#             (an empty record: there was none);
#   put     - (invalid lines) write unless the record says placed or maybe placed.
# rank: nothing 0 < not charged (retryable, declined, invalid) 1 < maybe (unknown, in flight) 2
# < placed 3. Returns {written 0/1, the current record or false}.
JOURNAL_SCRIPT = """
local field, mode, expected, record, label = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local rank = {placed = 3, unknown = 2, in_flight = 2, retryable = 1, declined = 1, invalid = 1}
local current = redis.call('HGET', KEYS[1], field)
local old = redis.call('HGET', KEYS[2], field)
local mine = (current or '') == expected
local write = false
if mode == 'claim' then
  write = mine and old ~= 'placed'
elseif mode == 'unclaim' then
  write = mine
elseif mode == 'settle' then
  write = mine or (rank[label] or 0) > (rank[old] or 0)
elseif mode == 'put' then
  write = (rank[old] or 0) <= 1
end
if not write then
  return {0, current or false}
end
if old then redis.call('HINCRBY', KEYS[3], old, -1) end
if record == '' then
  redis.call('HDEL', KEYS[1], field)
  redis.call('HDEL', KEYS[2], field)
  return {1, false}
end
redis.call('HSET', KEYS[1], field, record)
redis.call('HSET', KEYS[2], field, label)
redis.call('HINCRBY', KEYS[3], label, 1)
return {1, false}
"""
JOURNAL_SHA = hashlib.sha1(JOURNAL_SCRIPT.encode(), usedforsecurity=False).hexdigest()


class _Aborted(Exception):
    """A journal write whose batch was cancelled (the worker stops at once)."""


class QueueError(Exception):
    """A problem the command reports in one line (exit 2): a bad option, no such run, Redis
    not answering."""


def import_taskiq() -> None:
    try:
        import taskiq  # noqa: F401
        import taskiq_redis  # noqa: F401
    except ImportError as error:
        raise ImportError(
            f"distributed batches need taskiq and taskiq-redis: {INSTALL_HINT}"
        ) from error


def _redis_errors() -> tuple[type[BaseException], ...]:
    """What "Redis is not answering" looks like (a restart's LOADING reply included)."""
    import redis.exceptions

    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError, TimeoutError)


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


# --- where things are in Redis ------------------------------------------------------------------


@attrs.frozen
class Keys:
    """The Redis keys of a queue (``prefix``) and of one run on it.

    Everything of a run shares one hash tag (``{run}``), so the journal script's keys sit in one
    slot of a Redis Cluster.
    """

    prefix: str
    run: str = ""

    @property
    def stream(self) -> str:
        """The taskiq stream every worker of this prefix reads."""
        return f"{self.prefix}:queue"

    @property
    def runs(self) -> str:
        """Sorted set: run -> when it was last enqueued (for ``status`` without ``--run``)."""
        return f"{self.prefix}:runs"

    @property
    def workers(self) -> str:
        """Sorted set: worker name -> its last heartbeat (Unix time)."""
        return f"{self.prefix}:workers"

    @property
    def _base(self) -> str:
        return f"{self.prefix}:{{{self.run}}}"

    @property
    def everything(self) -> str:
        """A SCAN pattern for every key of the run (run names hold no glob characters)."""
        return f"{self._base}:*"

    @property
    def meta(self) -> str:
        return f"{self._base}:meta"

    @property
    def journal(self) -> str:
        return f"{self._base}:journal"

    @property
    def labels(self) -> str:
        return f"{self._base}:labels"

    @property
    def counts(self) -> str:
        return f"{self._base}:counts"

    @property
    def running(self) -> str:
        """Hash: ``generation:shard`` -> the worker running it and since when."""
        return f"{self._base}:running"

    def lines(self, generation: int, shard: int) -> str:
        return f"{self._base}:lines:{generation}:{shard}"

    def done(self, generation: int) -> str:
        return f"{self._base}:done:{generation}"

    def starts(self, generation: int) -> str:
        """Hash: shard -> how many times a worker started it (2 or more: delivered again)."""
        return f"{self._base}:starts:{generation}"


def _redis_client(url: str, *, timeout: float = 5.0) -> redis.asyncio.Redis:
    import redis.asyncio

    return redis.asyncio.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=min(timeout, 2.0)
    )


def check_run_name(name: str) -> str:
    if not RUN_PATTERN.fullmatch(name):
        raise QueueError(
            f"--run {name!r}: use letters, digits and . _ : @ + - (at most 100, no braces)"
        )
    return name


# --- the journal --------------------------------------------------------------------------------


class Journal:
    """One run's journal: charge id -> its latest record, changed only by the journal script.

    Writes made in the same turn of the event loop (the claims of a chunk, the results of
    charges that finished together) go to Redis in one pipeline: one round trip, not one each.
    """

    def __init__(self, redis: redis.asyncio.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._waiting: list[tuple[tuple[str, str, bytes, bytes, str], asyncio.Future[Any]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def read(self, fields: list[str]) -> list[bytes | None]:
        """The raw records of ``fields`` (None: no record), in order."""
        if not fields:
            return []
        found = await self.redis.hmget(self.keys.journal, fields)
        return [value if isinstance(value, bytes) else None for value in found]

    async def write(
        self, field: str, mode: str, expected: bytes | None, record: bytes, label: str
    ) -> tuple[bool, bytes | None]:
        """Run the journal script: (written, the record that stays when not written)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append(((field, mode, expected or b"", record, label), future))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush(), name="klarna_async journal")
        reply = await future
        written, current = int(reply[0]) == 1, reply[1]
        return written, (current if isinstance(current, bytes) else None)

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # the other writers of this turn join the batch
        batch, self._waiting = self._waiting, []
        self._flushing = None
        try:
            replies = await self._run([args for args, _ in batch])
        except BaseException as error:
            for _, future in batch:
                if not future.done():
                    # Each writer decides (a connection error: it tries again, patiently).
                    future.set_exception(error if isinstance(error, Exception) else _Aborted())
            if not isinstance(error, Exception):
                raise
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _run(self, batch: list[tuple[str, str, bytes, bytes, str]]) -> list[Any]:
        """The script for each write, in one pipeline (by its hash; loaded when Redis lacks it,
        after a restart: a write that met NOSCRIPT did not run, so it runs again)."""
        import redis.exceptions

        keys = (self.keys.journal, self.keys.labels, self.keys.counts)
        replies: list[Any] = [None] * len(batch)
        todo = list(range(len(batch)))
        for _ in range(2):
            pipe = self.redis.pipeline(transaction=False)
            for index in todo:
                pipe.evalsha(JOURNAL_SHA, 3, *keys, *batch[index])
            answers = await pipe.execute(raise_on_error=False)
            again = []
            for index, answer in zip(todo, answers, strict=True):
                if isinstance(answer, redis.exceptions.NoScriptError):
                    again.append(index)
                replies[index] = answer
            if not again:
                break
            await self.redis.script_load(JOURNAL_SCRIPT)
            todo = again
        return replies

    async def counts(self) -> dict[str, int]:
        raw = await self.redis.hgetall(self.keys.counts)
        return {_text(label): int(value) for label, value in raw.items()}

    async def records(self) -> AsyncIterator[dict[str, Any]]:
        """Every record (in Redis's order; HSCAN, so a large journal streams)."""
        async for _, raw in self.redis.hscan_iter(self.keys.journal, count=1000):
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(record, dict):
                yield record


def _label(record: Mapping[str, Any] | None) -> str:
    if record is None:
        return ""
    if record.get("in_flight"):
        return IN_FLIGHT
    return str(record.get("status"))


def exported(record: dict[str, Any]) -> dict[str, Any]:
    """A journal record as ``klarna-async charge`` writes its results (the claim's token out)."""
    record = dict(record)
    record.pop("claim", None)
    return record


# --- enqueue ------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class EnqueueOptions:
    queue: str
    input: Path
    run: str
    namespace: str
    namespace_given: bool
    shard_size: int = DEFAULT_SHARD_SIZE
    resume: bool = False
    retry_failed: bool = False
    force_after_window: bool = False
    prefix: str = DEFAULT_PREFIX


@attrs.define
class EnqueueReport:
    run: str
    generation: int
    total: int = 0
    enqueued: int = 0
    shards: int = 0
    invalid: int = 0
    placed_before: int = 0
    declined_before: int = 0
    refused_window: int = 0

    def exit_code(self) -> int:
        if self.refused_window:
            return EXIT_UNKNOWN
        if self.invalid or self.declined_before:
            return EXIT_NOT_PLACED
        return EXIT_OK


async def enqueue(options: EnqueueOptions, *, out: IO[str], err: IO[str]) -> EnqueueReport:
    """Journal the bad lines, store the shards of what is to be sent, and enqueue one task per
    shard. With ``resume``, the journal's records decide (:func:`plan`) what is enqueued."""
    import_taskiq()
    keys = Keys(options.prefix, check_run_name(options.run))
    redis = _redis_client(options.queue)
    where = redacted_url(options.queue)
    try:
        try:
            meta = {_text(k): _text(v) for k, v in (await redis.hgetall(keys.meta)).items()}
        except _redis_errors() as error:
            raise QueueError(
                f"cannot reach Redis at {where} ({type(error).__name__}): check --queue"
            ) from None
        namespace = options.namespace
        if meta:
            if not options.resume:
                raise QueueError(
                    f"run {options.run!r} exists on {where}: --resume sends what is not "
                    "settled yet, or choose another --run"
                )
            if options.namespace_given and meta.get("namespace") != namespace:
                raise QueueError(
                    f"run {options.run!r} derives its keys with --namespace "
                    f"{meta.get('namespace')!r}; a resume must keep it"
                )
            namespace = meta.get("namespace", namespace)
            generation = int(meta.get("generation", "0"))
            pending = [
                shard
                for shard in range(int(meta.get("shards", "0")))
                if not await redis.sismember(keys.done(generation), str(shard))
            ]
            if pending:
                return await _requeue(options, redis, keys, generation, pending, out)
        generation = int(meta.get("generation", "0")) + 1
        report = EnqueueReport(options.run, generation)
        journal = Journal(redis, keys)
        shards = await _store_shards(options, namespace, keys, journal, report, err)
        started = time.time()
        mapping = {
            "run": options.run,
            "namespace": namespace,
            "input": str(options.input),
            "total": report.total,
            "generation": generation,
            "shards": shards,
            "shard_size": options.shard_size,
            "enqueued": report.enqueued,
            "retry_failed": int(options.retry_failed),
            "force_after_window": int(options.force_after_window),
            "enqueued_at": stamp(now()),
            "enqueued_unix": started,
        }
        if not meta:
            mapping["created_at"] = mapping["enqueued_at"]
        await redis.hset(keys.meta, mapping=mapping)  # type: ignore[arg-type]
        await redis.zadd(keys.runs, {options.run: started})
        await _kick(options.queue, keys, options.run, generation, range(shards))
        report.shards = shards
    finally:
        await redis.aclose()
    _print_enqueued(options, report, out)
    return report


async def _store_shards(
    options: EnqueueOptions,
    namespace: str,
    keys: Keys,
    journal: Journal,
    report: EnqueueReport,
    err: IO[str],
) -> int:
    """Read INPUT: journal bad lines, plan the rest, store shards; the number of shards."""
    seen: set[str] = set()
    batch: list[tuple[int, str, str]] = []  # (line, charge id, raw line)
    shard: list[tuple[int, str]] = []
    shards = 0

    async def flush_shard() -> None:
        nonlocal shards, shard
        if shard:
            await journal.redis.set(keys.lines(report.generation, shards), orjson.dumps(shard))
            shards += 1
            report.enqueued += len(shard)
            shard = []

    async def plan_batch() -> None:
        nonlocal batch
        records = await journal.read([charge_id for _, charge_id, _ in batch])
        for (number, charge_id, raw), found in zip(batch, records, strict=True):
            record = orjson.loads(found) if found is not None else None
            action = plan(
                record,
                retry_declined=options.retry_failed,
                force_after_window=options.force_after_window,
            )
            if action is Action.SKIP_PLACED:
                report.placed_before += 1
            elif action is Action.SKIP_DECLINED:
                report.declined_before += 1
            elif action is Action.REFUSE_WINDOW:
                report.refused_window += 1
                print(
                    f"line {number}: charge {charge_id!r} not sent again: its outcome is "
                    f"unknown since {record and record.get('first_attempt_at')}, more than 23 "
                    "hours ago, and Klarna keeps an idempotency key only 24 hours, so a repeat "
                    "could charge twice. Look the order up in the Merchant Portal "
                    "(merchant_reference1), then use --force-after-window to send it anyway.",
                    file=err,
                )
            else:
                shard.append((number, raw))
                if len(shard) >= options.shard_size:
                    await flush_shard()
        batch = []

    with options.input.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            report.total += 1
            parsed = parse_charge_line(raw, number, namespace)
            if isinstance(parsed, BadLine):
                await _journal_bad_line(journal, parsed, err)
                report.invalid += 1
                continue
            charge_id = parsed.charge.charge_id
            assert charge_id is not None
            if charge_id in seen:
                bad = BadLine(number, f"charge_id {charge_id!r} repeats an earlier line")
                await _journal_bad_line(journal, bad, err)
                report.invalid += 1
                continue
            seen.add(charge_id)
            batch.append((number, charge_id, raw.decode().rstrip("\r\n")))
            if len(batch) >= READ_BATCH:
                await plan_batch()
    await plan_batch()
    await flush_shard()
    return shards


async def _journal_bad_line(journal: Journal, bad: BadLine, err: IO[str]) -> None:
    """A line that cannot be sent: said once on stderr, and journaled (a line without a charge
    id under ``line:N``) unless the journal says its charge is placed or may be."""
    record = bad_line_record(bad)
    field = bad.charge_id if bad.charge_id is not None else f"line:{bad.number}"
    written, _ = await journal.write(field, "put", None, orjson.dumps(record), INVALID)
    note = "" if written else " (its charge is placed, or may be, already: its record stays)"
    print(f"line {bad.number}: invalid, not sent: {bad.problem}{note}", file=err)


async def _requeue(
    options: EnqueueOptions,
    redis: redis.asyncio.Redis,
    keys: Keys,
    generation: int,
    pending: list[int],
    out: IO[str],
) -> EnqueueReport:
    """A resume while shards are pending: refused while a live worker runs one; else their
    tasks were lost (an enqueue killed before it had sent them all, a Redis that lost them) or
    wait for a worker, and enqueuing them again is safe: a worker drops a shard that is done,
    and the journal skips what is settled."""
    report = await read_status(redis, keys)
    live = set(report.live_workers)
    running = [item for item in report.running if item.get("worker") in live]
    if running:
        raise QueueError(
            f"run {options.run!r} still has {len(pending)} shard(s) of generation {generation} "
            f"pending, {len(running)} running on live workers: let them finish "
            "(klarna-async status --wait) before resuming"
        )
    await _kick(options.queue, keys, options.run, generation, pending)
    print(
        f"run {options.run} (generation {generation}): {len(pending)} pending shard(s), none "
        "running on a live worker, enqueued again (a shard done meanwhile is dropped, and "
        "settled charges are skipped); resume again once they are done",
        file=out,
    )
    return EnqueueReport(options.run, generation, shards=len(pending))


async def _kick(url: str, keys: Keys, run: str, generation: int, shards: Iterable[int]) -> None:
    broker = make_broker(url, keys.prefix, consumer_name=f"enqueue-{uuid.uuid4().hex[:8]}")
    from taskiq.kicker import AsyncKicker

    kicker: AsyncKicker[Any, Any] = AsyncKicker(TASK_NAME, broker, {})
    # startup() creates the consumer group (reading from the stream's start), so no task
    # enqueued before the first worker starts is missed.
    await broker.startup()
    try:
        for shard in shards:
            await kicker.kiq(run, generation, shard)
    finally:
        await broker.shutdown()


def _print_enqueued(options: EnqueueOptions, report: EnqueueReport, out: IO[str]) -> None:
    where = redacted_url(options.queue)
    queue = f"--queue {where}" + ("" if options.prefix == DEFAULT_PREFIX else " --prefix ...")
    print(
        f"run {report.run} (generation {report.generation}): {report.enqueued} charges "
        f"enqueued in {report.shards} shards on {where}",
        file=out,
    )
    for name, value in (
        ("placed before, skipped", report.placed_before),
        ("declined before, skipped (--retry-failed sends them)", report.declined_before),
        ("unknown past the key window, not sent", report.refused_window),
        ("invalid lines, not sent", report.invalid),
    ):
        if value:
            print(f"  {name}: {value}", file=out)
    if not report.shards:
        print("  nothing to send", file=out)
    print(
        "workers (as many as you like, on any machine, KLARNA_USERNAME and KLARNA_PASSWORD "
        f"set):\n  klarna-async worker {queue}\n"
        f"follow it:\n  klarna-async status {queue} --run {report.run} --wait\n"
        f"results, as klarna-async charge --out writes them:\n"
        f"  klarna-async status {queue} --run {report.run} --export results.jsonl",
        file=out,
    )
    if "***" in where:
        print("(give the Redis password as in --queue; it is not printed)", file=out)
    out.flush()


# --- the broker ---------------------------------------------------------------------------------


@attrs.frozen
class _Delivery:
    """Where a task came from in the stream, so that its worker can keep it or let it go."""

    stream: str
    message_id: bytes
    redelivered: bool


def make_broker(
    url: str,
    prefix: str,
    *,
    consumer_name: str,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    block: float = 1.0,
) -> Any:
    """A taskiq-redis stream broker on ``prefix``'s stream, with the listen loop workers need.

    Compared with ``RedisStreamBroker.listen``: tasks abandoned by a dead worker (pending for
    longer than ``idle_timeout``) are looked for on every turn, also when no new task came
    (taskiq-redis 1.2 looks only after reading a new one, so the last shards of a run would wait
    for the next run); one task at a time is taken, so a worker never hoards tasks it does not
    run; a Redis outage is waited out instead of ending the worker; an ack also deletes the
    task from the stream, so the stream does not grow with every run.
    """
    from redis.asyncio import Redis
    from taskiq import AckableMessage
    from taskiq_redis import RedisStreamBroker

    errors = _redis_errors()
    where = redacted_url(url)

    class ShardBroker(RedisStreamBroker):
        def __init__(self) -> None:
            super().__init__(
                url,
                queue_name=Keys(prefix).stream,
                consumer_group_name=GROUP,
                consumer_name=consumer_name,
                # The group reads the stream from its start: tasks enqueued before it existed
                # are not skipped.
                consumer_id="0",
                xread_block=int(block * 1000),
                xread_count=1,
                idle_timeout=int(idle_timeout * 1000),
                unacknowledged_batch_size=1,
                socket_timeout=block + 5.0,
                socket_connect_timeout=2.0,
            )
            self.deliveries: dict[str, _Delivery] = {}
            #: Set when the worker stops: the listen loop ends (it does not rely on the
            #: receiver's cancellation alone, see stop_task).
            self.closing = False

        async def listen(self) -> AsyncGenerator[Any, None]:
            down_since: float | None = None
            while not self.closing:
                try:
                    async with Redis(connection_pool=self.connection_pool) as conn:
                        while not self.closing:
                            found = await self._abandoned(conn)
                            redelivered = found is not None
                            if found is None:
                                found = await self._next(conn)
                            if down_since is not None:
                                logger.warning(
                                    "the queue at %s answers again after %.1f s",
                                    where,
                                    time.monotonic() - down_since,
                                )
                                down_since = None
                            if found is None:
                                continue
                            if self.is_closing():  # taken as the worker stops: for another
                                await self._give_back(conn, found[0])
                                return
                            yield self._ackable(*found, redelivered=redelivered)
                except errors as error:
                    if down_since is None:
                        down_since = time.monotonic()
                        logger.warning(
                            "the queue at %s does not answer (%s): waiting for it",
                            where,
                            type(error).__name__,
                        )
                    await asyncio.sleep(1.0)

        def is_closing(self) -> bool:
            # (A method: the flag may change at any await.)
            return self.closing

        async def _give_back(self, conn: Any, message_id: bytes) -> None:
            """Make a task this worker took but will not run claimable by others at once."""
            with contextlib.suppress(*errors):
                await conn.xclaim(
                    self.queue_name,
                    self.consumer_group_name,
                    self.consumer_name,
                    min_idle_time=0,
                    message_ids=[message_id],
                    idle=self.idle_timeout,
                    justid=True,
                )

        async def _next(self, conn: Any) -> tuple[bytes, bytes] | None:
            fetched = await conn.xreadgroup(
                self.consumer_group_name,
                self.consumer_name,
                {self.queue_name: ">"},
                block=self.block,
                count=1,
            )
            for _, messages in fetched or ():
                for message_id, fields in messages:
                    return message_id, fields[b"data"]
            return None

        async def _abandoned(self, conn: Any) -> tuple[bytes, bytes] | None:
            """One task idle past the timeout (its worker died), claimed for this worker."""
            start: Any = "0-0"
            for _ in range(100):  # the cursor walks the pending list a few entries a call
                reply = await conn.xautoclaim(
                    self.queue_name,
                    self.consumer_group_name,
                    self.consumer_name,
                    min_idle_time=self.idle_timeout,
                    start_id=start,
                    count=1,
                )
                cursor, claimed = reply[0], reply[1]
                for message_id, fields in claimed:
                    if fields:
                        return message_id, fields[b"data"]
                    # Deleted from the stream (Redis 6.2 still lists it): drop it.
                    await conn.xack(self.queue_name, self.consumer_group_name, message_id)
                if _text(cursor) == "0-0":
                    return None
                start = cursor
            return None

        def _ackable(self, message_id: bytes, data: bytes, *, redelivered: bool) -> Any:
            try:
                task_id = self.formatter.loads(data).task_id
            except Exception:  # the receiver reports (and acks) what it cannot parse
                task_id = None
            if task_id is not None:
                self.deliveries[task_id] = _Delivery(self.queue_name, message_id, redelivered)

            async def ack() -> None:
                async with Redis(connection_pool=self.connection_pool) as conn:
                    pipe = conn.pipeline(transaction=True)
                    pipe.xack(self.queue_name, self.consumer_group_name, message_id)
                    pipe.xdel(self.queue_name, message_id)
                    await pipe.execute()

            return AckableMessage(data=data, ack=ack)

        async def keep(self, delivery: _Delivery) -> None:
            """Reset the task's idle time: its worker is alive and at it."""
            async with Redis(connection_pool=self.connection_pool) as conn:
                await conn.xclaim(
                    delivery.stream,
                    self.consumer_group_name,
                    self.consumer_name,
                    min_idle_time=0,
                    message_ids=[delivery.message_id],
                    justid=True,
                )

        async def release(self, delivery: _Delivery) -> None:
            """Let another worker take the task at once (this one stops before finishing)."""
            async with Redis(connection_pool=self.connection_pool) as conn:
                await self._give_back(conn, delivery.message_id)

    return ShardBroker()


# --- the worker ---------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class WorkerOptions:
    queue: str
    settings: Mapping[str, Any]
    name: str
    concurrency: int = 32
    shards_at_once: int = 1
    rate_limit: float | None = None
    rate_limit_redis: str | None = None
    local_pacing: bool = False
    expected_workers: int = 4
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    journal_patience: float = DEFAULT_JOURNAL_PATIENCE
    max_attempts: int = 5
    prefix: str = DEFAULT_PREFIX


def default_worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class _JournalUnavailable(Exception):
    """Redis did not answer within the journal patience."""


@attrs.define
class _Claim:
    """A charge this worker claimed: what it planned from, and what it wrote."""

    record: bytes
    line: int
    first_attempt_at: dt.datetime
    redrive: bool
    #: The record it replaced (None: none), put back if the charge is never sent.
    previous: bytes | None


@attrs.define
class _ShardTally:
    placed: int = 0
    declined: int = 0
    retryable: int = 0
    unknown: int = 0
    invalid: int = 0
    placed_before: int = 0
    declined_before: int = 0
    refused_window: int = 0
    #: Charges whose record said "maybe placed" (unknown, in flight), sent again with their key.
    redriven: int = 0
    #: Results journaled under another worker's newer claim, or not at all (a stronger record).
    superseded: int = 0

    def text(self) -> str:
        parts = [f"{name.replace('_', ' ')} {value}" for name, value in attrs.asdict(self).items()]
        return ", ".join(part for part in parts if not part.endswith(" 0")) or "nothing to do"


class Worker:
    """One ``klarna-async worker`` process: a client, a journal, a taskiq receiver."""

    def __init__(self, options: WorkerOptions, redis: redis.asyncio.Redis) -> None:
        self.options = options
        self.redis = redis
        self.where = redacted_url(options.queue)
        self.client: KlarnaClient | None = None
        self.broker: Any = None
        self.stopping = False
        self.auth_refused = False
        self.stop = asyncio.Event()
        self.shards_done = 0
        self._down_since: float | None = None
        #: Charges in flight per shard: the worker's --concurrency split between its shards
        #: (all of them share the client's pool of --concurrency connections).
        self.lanes = max(1, options.concurrency // options.shards_at_once)

    # -- Redis, patiently --

    async def patiently(self, what: str, make: Callable[[], Awaitable[T]]) -> T:
        """``await make()``, again while Redis does not answer, up to the journal patience."""
        errors = _redis_errors()
        deadline = time.monotonic() + self.options.journal_patience
        delay = 0.05
        while True:
            try:
                result = await make()
            except errors as error:
                logger.debug("Redis: %s while %s", error, what)
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    logger.warning(
                        "Redis (queue and journal) at %s does not answer (%s) while %s: no "
                        "charge is sent until it does (waiting up to %g s)",
                        self.where,
                        type(error).__name__,
                        what,
                        self.options.journal_patience,
                    )
                if time.monotonic() + delay > deadline:
                    raise _JournalUnavailable(what) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            if self._down_since is not None:
                logger.warning(
                    "Redis (queue and journal) at %s answers again after %.1f s",
                    self.where,
                    time.monotonic() - self._down_since,
                )
                self._down_since = None
            return result

    # -- one shard --

    async def run_shard(self, run: str, generation: int, shard: int, context: Any) -> str:
        """The task: run one shard, ack it when every charge has its record. Never raises
        (taskiq would only log it); returns what happened, for taskiq's logs."""
        delivery: _Delivery | None = self.broker.deliveries.pop(context.message.task_id, None)
        keeper = None
        if delivery is not None:
            keeper = asyncio.create_task(self._keep(delivery), name="klarna_async keep shard")
        complete = False
        try:
            complete = await self._run_shard(run, generation, shard, delivery)
        except _JournalUnavailable:
            pass
        except Exception:
            logger.exception("shard %d of run %s failed; it will be delivered again", shard, run)
        finally:
            if keeper is not None:
                await stop_task(keeper)
        if complete:
            # An ack that cannot reach Redis: the task comes again after the idle timeout, and
            # is dropped as done.
            with contextlib.suppress(_JournalUnavailable):
                await self.patiently("acknowledging a shard", context.ack)
            return "done"
        if delivery is not None:
            # Stopping, or Redis away too long: another worker (or this one) takes it again, and
            # skips what is settled. At once when possible, else after the idle timeout.
            with contextlib.suppress(Exception):
                await self.broker.release(delivery)
        return "not finished"

    async def _keep(self, delivery: _Delivery) -> None:
        # Four times per idle timeout (the broker's, in ms): a live worker's task never looks
        # abandoned to workers with the same --idle-timeout.
        every = max(self.broker.idle_timeout / 4000, 0.05)
        while True:
            await asyncio.sleep(every)
            with contextlib.suppress(Exception):  # an outage: the next turn tries again
                await self.broker.keep(delivery)

    async def _run_shard(
        self, run: str, generation: int, shard: int, delivery: _Delivery | None
    ) -> bool:
        keys = Keys(self.options.prefix, run)
        redis = self.redis
        raw_meta = await self.patiently("reading a run", lambda: redis.hgetall(keys.meta))
        meta = {_text(k): _text(v) for k, v in raw_meta.items()}
        if not meta:
            logger.warning("shard %d of run %s: no such run on this queue; dropped", shard, run)
            return True
        if int(meta.get("generation", "0")) != generation:
            # A resume enqueued the run again (it covers this shard's charges): drop this one.
            logger.warning(
                "shard %d of run %s is of generation %d, the run is at %s now: dropped",
                shard,
                run,
                generation,
                meta.get("generation"),
            )
            return True
        done = await self.patiently(
            "reading a run", lambda: redis.sismember(keys.done(generation), str(shard))
        )
        if done:
            return True
        where = f"{generation}:{shard}"
        starts = await self.patiently(
            "starting a shard", lambda: redis.hincrby(keys.starts(generation), str(shard), 1)
        )
        mark = orjson.dumps({"worker": self.options.name, "since": stamp(now())})
        await self.patiently("starting a shard", lambda: redis.hset(keys.running, where, mark))
        if starts > 1 or (delivery is not None and delivery.redelivered):
            logger.warning(
                "shard %d of run %s delivered again (start %d): settled charges are skipped, "
                "the others sent again with their keys",
                shard,
                run,
                starts,
            )
        raw_lines = await self.patiently(
            "reading a shard", lambda: redis.get(keys.lines(generation, shard))
        )
        if raw_lines is None:
            logger.warning("shard %d of run %s has no lines in Redis; dropped", shard, run)
            return True
        started = time.monotonic()
        lines = [(int(number), str(raw)) for number, raw in orjson.loads(raw_lines)]
        shard_run = _ShardRun(self, keys, meta, lines)
        complete = await shard_run.execute()
        if not complete:
            return False
        await self.patiently("finishing a shard", lambda: redis.sadd(keys.done(generation), shard))
        await self.patiently("finishing a shard", lambda: redis.hdel(keys.running, where))
        self.shards_done += 1
        logger.info(
            "shard %d of run %s: %d lines in %.1f s: %s",
            shard,
            run,
            len(lines),
            time.monotonic() - started,
            shard_run.tally.text(),
        )
        return True

    def stopped(self) -> bool:
        return self.stopping

    def begin_stopping(self) -> None:
        """No new charge, no new shard: running shards end after their charges in flight."""
        self.stopping = True
        if self.broker is not None:
            self.broker.closing = True
        self.stop.set()

    def refused_credentials(self) -> None:
        if not self.auth_refused:
            self.auth_refused = True
            logger.error(
                "Klarna refused the credentials (HTTP 401): check KLARNA_USERNAME, "
                "KLARNA_PASSWORD, KLARNA_REGION and KLARNA_ENVIRONMENT. This worker stops; its "
                "shard goes back to the queue for the others (nothing was charged with them)."
            )
        self.begin_stopping()


class _ShardRun:
    """The charges of one shard: plan each from its record, claim, send, settle."""

    def __init__(
        self, worker: Worker, keys: Keys, meta: Mapping[str, str], lines: list[tuple[int, str]]
    ) -> None:
        self.worker = worker
        self.journal = Journal(worker.redis, keys)
        self.namespace = meta.get("namespace", "")
        self.retry_declined = meta.get("retry_failed") == "1"
        self.force_after_window = meta.get("force_after_window") == "1"
        self.lines = lines
        self.tally = _ShardTally()
        self.claims: dict[int, _Claim] = {}
        self.unfinished = False

    async def execute(self) -> bool:
        """True when every line has its record (the shard can be acknowledged)."""
        client = self.worker.client
        assert client is not None
        results = client.customer_tokens.charge_many(self._charges(), concurrency=self.worker.lanes)
        # Results are journaled concurrently, so that those finishing together share a round
        # trip to Redis (see Journal) and a slow write does not hold the next result up.
        settling: set[asyncio.Task[None]] = set()
        try:
            async for result in results:
                task = asyncio.create_task(self._settle(result), name="klarna_async settle")
                settling.add(task)
                task.add_done_callback(settling.discard)
        finally:
            # On an error, stop the charges in flight now (their claims say "in flight").
            close = getattr(results, "aclose", None)
            if close is not None:
                await close()
            outcomes = await asyncio.gather(*settling, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return not self.unfinished and not self.claims

    async def _charges(self) -> AsyncIterator[Charge]:
        """The charges to send, each claimed in the journal before it is handed out: a chunk
        at a time, in one round trip (claimed a moment early is as safe as in flight)."""
        worker = self.worker
        ahead = min(CLAIM_AHEAD, worker.lanes)
        for start in range(0, len(self.lines), READ_BATCH):
            chunk = []
            for number, raw in self.lines[start : start + READ_BATCH]:
                parsed = parse_charge_line(raw.encode(), number, self.namespace)
                if isinstance(parsed, BadLine):  # the enqueuer journaled it; a changed line
                    await self._put_bad(parsed)
                    continue
                chunk.append((number, parsed.charge))
            fields = [charge.charge_id or "" for _, charge in chunk]
            records = await worker.patiently(
                "reading the journal", functools.partial(self.journal.read, fields)
            )
            planned = list(zip(chunk, records, strict=True))
            for at in range(0, len(planned), ahead):
                if worker.stopping:
                    self.unfinished = True
                    return
                group = planned[at : at + ahead]
                claimed = await asyncio.gather(
                    *(self._claim(number, charge, found) for (number, charge), found in group)
                )
                for position, charge in enumerate(claimed):
                    if charge is None:
                        continue
                    if worker.stopped():  # (a method: the flag may change at any await)
                        self.unfinished = True
                        await self._unclaim([c for c in claimed[position:] if c is not None])
                        return
                    yield charge

    async def _claim(self, number: int, charge: Charge, found: bytes | None) -> Charge | None:
        """Plan the charge from its record and write the in-flight record, compare-and-set; the
        charge to send, or None (nothing to send)."""
        charge_id = charge.charge_id
        assert charge_id is not None
        for _ in range(5):  # bounded: each turn means another worker wrote meanwhile
            record = orjson.loads(found) if found is not None else None
            action = plan(
                record,
                retry_declined=self.retry_declined,
                force_after_window=self.force_after_window,
            )
            if action is Action.SKIP_PLACED:
                self.tally.placed_before += 1
                return None
            if action is Action.SKIP_DECLINED:
                self.tally.declined_before += 1
                return None
            if action is Action.REFUSE_WINDOW:
                self.tally.refused_window += 1
                logger.warning(
                    "charge %r not sent again: unknown since %s, more than 23 hours ago "
                    "(Klarna keeps a key 24 hours); a resume with --force-after-window sends it",
                    charge_id,
                    record and record.get("first_attempt_at"),
                )
                return None
            moment = now()
            first = moment
            to_send = charge
            if action is Action.REDRIVE:
                assert record is not None
                first = (
                    parse_stamp(record.get("first_attempt_at"))
                    or parse_stamp(record.get("at"))
                    or moment
                )
                key = record.get("idempotency_key")
                if isinstance(key, str) and key != charge.idempotency_key:
                    logger.warning(
                        "charge %r is re-sent with the key it was first sent with, not the one "
                        "derived now (did its line change?)",
                        charge_id,
                    )
                    to_send = attrs.evolve(to_send, idempotency_key=key)
                to_send = attrs.evolve(to_send, after_unknown=True)
            name = self.worker.options.name
            claim = orjson.dumps(
                {
                    "charge_id": charge_id,
                    "status": ChargeStatus.UNKNOWN.value,
                    "in_flight": True,
                    "idempotency_key": to_send.idempotency_key,
                    "at": stamp(moment),
                    "first_attempt_at": stamp(first),
                    "line": number,
                    "worker": name,
                    "claim": uuid.uuid4().hex,
                    "error": f"in flight on worker {name} since {stamp(moment)}: if this "
                    "record stays, the worker stopped before it could journal Klarna's answer, "
                    "and it may have been charged (a resume sends it again with its key)",
                }
            )
            written, current = await self.worker.patiently(
                "claiming a charge",
                functools.partial(self.journal.write, charge_id, "claim", found, claim, IN_FLIGHT),
            )
            if written:
                redrive = action is Action.REDRIVE
                self.tally.redriven += redrive
                self.claims[id(to_send)] = _Claim(claim, number, first, redrive, found)
                return to_send
            found = current
        # Five other writes in a row: another worker is at this charge; it journals it.
        self.tally.superseded += 1
        return None

    async def _unclaim(self, charges: list[Charge]) -> None:
        """Charges claimed but never handed out (the worker stops): their records as before."""
        writes = []
        for charge in charges:
            claim = self.claims.pop(id(charge))
            previous = claim.previous
            label = _label(orjson.loads(previous)) if previous is not None else ""
            writes.append(
                self.journal.write(
                    charge.charge_id or "", "unclaim", claim.record, previous or b"", label
                )
            )
        with contextlib.suppress(Exception):  # not put back: "in flight", re-driven later
            await asyncio.gather(*writes)

    async def _settle(self, result: ChargeResult) -> None:
        claim = self.claims.pop(id(result.charge))
        charge_id = result.charge.charge_id
        assert charge_id is not None
        status = status_text(result)
        record = result_record(result, claim.line, first_attempt_at=claim.first_attempt_at)
        record["worker"] = self.worker.options.name
        if claim.redrive and status not in (ChargeStatus.PLACED, ChargeStatus.UNKNOWN):
            # An earlier attempt may have placed it, and this one did not reach Klarna (or was
            # refused, which proves nothing about the earlier one): still unknown.
            record["status"] = status = ChargeStatus.UNKNOWN.value
            record["first_attempt_at"] = stamp(claim.first_attempt_at)
            record["error"] = one_line(
                f"may have been placed by an earlier attempt; this re-drive did not settle it: "
                f"{result.error}"
            )
        raw = orjson.dumps(record)
        try:
            written, _ = await self.worker.patiently(
                "journaling a result",
                functools.partial(
                    self.journal.write, charge_id, "settle", claim.record, raw, status
                ),
            )
        except _JournalUnavailable:
            # Its claim stays in the journal (maybe placed): a later delivery re-drives it with
            # its key. The result is not lost from sight either.
            self.unfinished = True
            print(
                "klarna-async worker: could not journal (Redis away): "
                + orjson.dumps(exported(record)).decode(),
                file=sys.stderr,
                flush=True,
            )
            return
        if written:
            setattr(self.tally, status, getattr(self.tally, status) + 1)
        else:
            self.tally.superseded += 1
        if isinstance(result.error, UnauthorizedError):
            self.worker.refused_credentials()

    async def _put_bad(self, bad: BadLine) -> None:
        record = orjson.dumps(bad_line_record(bad))
        field = bad.charge_id if bad.charge_id is not None else f"line:{bad.number}"
        await self.worker.patiently(
            "journaling a bad line",
            functools.partial(self.journal.write, field, "put", None, record, INVALID),
        )
        self.tally.invalid += 1


def _register_task(broker: Any, worker: Worker) -> None:
    from taskiq import Context, TaskiqDepends

    # The context is asked for by value, not by annotation: taskiq resolves the task's hints at
    # run time, and Context is no global of this module (taskiq is imported only when used).
    async def charge_shard(
        run: str,
        generation: int,
        shard: int,
        context: Any = TaskiqDepends(Context),  # noqa: B008 - taskiq's way to ask for it
    ) -> str:
        return await worker.run_shard(run, generation, shard, context)

    broker.register_task(charge_shard, task_name=TASK_NAME)


async def run_worker(
    options: WorkerOptions,
    *,
    handle_signals: bool = True,
    on_start: Callable[[Worker], None] | None = None,
) -> int:
    """Serve shards until SIGTERM/SIGINT (the charges in flight finish and are journaled; the
    shard goes back to the queue), or until Klarna refuses the credentials (exit 4).

    ``on_start`` receives the :class:`Worker` once it serves (``worker.begin_stopping()`` stops
    it as SIGTERM does); ``handle_signals=False`` leaves the process's signals alone (a worker
    embedded in another program)."""
    import_taskiq()
    from taskiq.acks import AcknowledgeType
    from taskiq.receiver import Receiver

    redis = _redis_client(options.queue)
    worker = Worker(options, redis)
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            logger.warning(
                "stopping: no new charge is sent; those in flight finish and are journaled "
                "(again to cancel them: their records say 'in flight', re-driven later)"
            )
            worker.begin_stopping()
        elif main_task is not None:
            main_task.cancel()

    signals_handled = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
    for number in signals_handled:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(number, on_signal)
    try:
        try:
            await worker.patiently("starting", redis.ping)
        except _JournalUnavailable:
            logger.error("Redis at %s did not answer: the worker does not start", worker.where)
            return EXIT_NOT_PLACED
        async with contextlib.AsyncExitStack() as stack:
            limiter = _limiter(options)
            if limiter is not None:
                await stack.enter_async_context(limiter)
            client = KlarnaClient(
                **options.settings,
                **_client_pace(options, limiter),
                connection_limit=options.concurrency,
                retry=RetryPolicy(
                    max_attempts=options.max_attempts,
                    max_delay=8.0,
                    deadline=120.0,
                    attempt_timeout=30.0,
                ),
            )
            worker.client = await stack.enter_async_context(client)
            broker = make_broker(
                options.queue,
                options.prefix,
                consumer_name=options.name,
                idle_timeout=options.idle_timeout,
            )
            broker.is_worker_process = True
            worker.broker = broker
            _register_task(broker, worker)
            heartbeat = asyncio.create_task(_heartbeat(worker), name="klarna_async heartbeat")
            stack.push_async_callback(stop_task, heartbeat)
            stack.push_async_callback(broker.shutdown)
            logger.info(
                "worker %s serving %s (%d charges in flight at most, %s)",
                options.name,
                worker.where,
                options.concurrency,
                _pace_text(options, limiter),
            )
            if on_start is not None:
                on_start(worker)
            while True:
                receiver = Receiver(
                    broker,
                    max_async_tasks=options.shards_at_once,
                    max_prefetch=0,
                    ack_type=AcknowledgeType.MANUAL,
                    run_startup=True,
                )
                try:
                    await receiver.listen(worker.stop)
                except Exception as error:  # Redis gone while the receiver started, say
                    if worker.stop.is_set():
                        break
                    logger.warning(
                        "the receiver stopped (%s); starting it again in 1 s",
                        type(error).__name__,
                    )
                    await asyncio.sleep(1.0)
                    continue
                break
        return EXIT_AUTH if worker.auth_refused else EXIT_OK
    finally:
        for number in signals_handled:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(number)
        with contextlib.suppress(Exception):
            await redis.zrem(Keys(options.prefix).workers, options.name)
        await redis.aclose()


def _limiter(options: WorkerOptions) -> RedisRateLimiter | None:
    """The shared pace: ``--rate-limit`` for all workers together, by default 90 % of Klarna's
    documented limit; none with ``--local-pacing``, or against a ``--base-url`` without
    ``--rate-limit`` (as ``klarna-async charge`` does)."""
    if options.local_pacing:
        return None
    if options.rate_limit is None and options.settings.get("base_url"):
        return None
    return RedisRateLimiter(
        options.rate_limit_redis or options.queue,
        options.rate_limit,
        merchant=str(options.settings.get("username")),
        environment=options.settings.get("environment", "playground"),
        expected_processes=options.expected_workers,
    )


def _client_pace(options: WorkerOptions, limiter: RedisRateLimiter | None) -> dict[str, Any]:
    """The client's ``rate_limit`` argument (none: the client's own default)."""
    if limiter is not None:
        return {"rate_limit": limiter}
    if options.local_pacing and options.rate_limit is None:
        return {}
    return {"rate_limit": options.rate_limit}


def _pace_text(options: WorkerOptions, limiter: RedisRateLimiter | None) -> str:
    if limiter is not None:
        return f"{limiter.rate:g} requests/s shared through Redis by every worker"
    if options.rate_limit is not None:
        return f"{options.rate_limit:g} requests/s for this worker alone"
    if options.local_pacing:
        return "the client's default pace, for this worker alone"
    return "no rate limit (--base-url)"


async def _heartbeat(worker: Worker) -> None:
    """This worker is live (for ``status``); workers silent for a day are forgotten."""
    workers = Keys(worker.options.prefix).workers
    while True:
        with contextlib.suppress(Exception):  # an outage: the next beat tries again
            moment = time.time()
            await worker.redis.zadd(workers, {worker.options.name: moment})
            await worker.redis.zremrangebyscore(workers, "-inf", moment - 86400)
        await asyncio.sleep(HEARTBEAT_EVERY)


async def stop_task(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling again while it goes on.

    Once is not enough: on Python 3.11, ``asyncio.wait_for`` (which redis-py uses for its socket
    timeouts) swallows a cancellation that lands just as the call it waits for completes, and
    the task carries on as if nothing happened (a loop of Redis calls, cancelled once, was seen
    to go on in about one case in five, and a worker then waited forever for it).
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.05)
    if not task.cancelled():
        task.exception()  # retrieved: a task that failed is not reported as never retrieved


# --- status -------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class StatusOptions:
    queue: str
    run: str | None = None
    export: Path | None = None
    wait: bool = False
    timeout: float | None = None
    as_json: bool = False
    forget: bool = False
    prefix: str = DEFAULT_PREFIX
    poll: float = 1.0


@attrs.define
class RunStatus:
    """What ``klarna-async status`` reports about one run."""

    run: str
    generation: int
    total: int
    shards: int
    shards_done: int
    redelivered: int
    counts: dict[str, int]
    running: list[dict[str, Any]]
    live_workers: list[str]
    meta: dict[str, str]

    @property
    def pending(self) -> int:
        return max(self.shards - self.shards_done, 0)

    @property
    def recorded(self) -> int:
        return sum(self.counts.get(label, 0) for label in LABELS)

    @property
    def not_recorded(self) -> int:
        return max(self.total - self.recorded, 0)

    def exit_code(self) -> int:
        counts = self.counts
        if self.pending:
            return EXIT_PENDING
        if counts.get("unknown") or counts.get(IN_FLIGHT):
            return EXIT_UNKNOWN
        if counts.get("declined") or counts.get("retryable") or counts.get(INVALID):
            return EXIT_NOT_PLACED
        if self.not_recorded:
            return EXIT_NOT_PLACED
        return EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "generation": self.generation,
            "total": self.total,
            "counts": {label: self.counts.get(label, 0) for label in LABELS},
            "not_recorded": self.not_recorded,
            "shards": self.shards,
            "shards_done": self.shards_done,
            "shards_pending": self.pending,
            "shards_delivered_again": self.redelivered,
            "running": self.running,
            "live_workers": self.live_workers,
            "input": self.meta.get("input"),
            "namespace": self.meta.get("namespace"),
            "enqueued_at": self.meta.get("enqueued_at"),
            "exit_code": self.exit_code(),
        }

    def line(self) -> str:
        """One progress line."""
        c = self.counts
        return (
            f"run {self.run}: {self.recorded}/{self.total} recorded (placed {c.get('placed', 0)}"
            f", in flight {c.get(IN_FLIGHT, 0)}, unknown {c.get('unknown', 0)}, retryable "
            f"{c.get('retryable', 0)}, declined {c.get('declined', 0)}, invalid "
            f"{c.get(INVALID, 0)}) | shards {self.shards_done}/{self.shards} done, "
            f"{len(self.running)} running | {len(self.live_workers)} live workers"
        )

    def render(self, stream: IO[str]) -> None:
        c = self.counts
        rows = [
            ("placed", c.get("placed", 0)),
            ("declined by Klarna", c.get("declined", 0)),
            ("retryable (not charged)", c.get("retryable", 0)),
            ("unknown (resume: --resume)", c.get("unknown", 0)),
            ("in flight (maybe charged)", c.get(IN_FLIGHT, 0)),
            ("invalid lines (not sent)", c.get(INVALID, 0)),
            ("not recorded yet", self.not_recorded),
        ]
        width = max(len(name) for name, _ in rows)
        print(
            f"run {self.run} (generation {self.generation}, input {self.meta.get('input')}, "
            f"enqueued {self.meta.get('enqueued_at')}): {self.total} lines",
            file=stream,
        )
        for name, value in rows:
            if value or name in ("placed", "unknown (resume: --resume)"):
                print(f"  {name:<{width}}  {value:>8}", file=stream)
        state = "all done" if not self.pending else f"{self.pending} pending"
        again = f", {self.redelivered} delivered again" if self.redelivered else ""
        print(f"  shards: {self.shards_done}/{self.shards} done ({state}{again})", file=stream)
        live = set(self.live_workers)
        for item in self.running:
            alive = "" if item.get("worker") in live else " (worker not live: taken over later)"
            print(
                f"    shard {item['shard']} on {item.get('worker')} since "
                f"{item.get('since')}{alive}",
                file=stream,
            )
        print(
            f"  live workers: {len(self.live_workers)}"
            + (f" ({', '.join(sorted(self.live_workers))})" if self.live_workers else ""),
            file=stream,
        )
        if self.pending and not self.live_workers:
            print("  no worker is live: start one (klarna-async worker --queue ...)", file=stream)
        stream.flush()


async def read_status(redis: redis.asyncio.Redis, keys: Keys) -> RunStatus:
    meta = {_text(k): _text(v) for k, v in (await redis.hgetall(keys.meta)).items()}
    if not meta:
        raise QueueError(f"no run {keys.run!r} on this queue")
    generation = int(meta.get("generation", "0"))
    # The shards done before the counts: a worker journals every result of a shard before it
    # marks the shard done, so counts read after include every result of the shards counted
    # done. (Read the other way round, a shard finishing between the two reads showed "all
    # done" beside its charges still "in flight", and `--wait` exited 3 on a clean run.)
    done = int(await redis.scard(keys.done(generation)))
    counts = await Journal(redis, keys).counts()
    starts = await redis.hvals(keys.starts(generation))
    running = []
    prefix = f"{generation}:"
    for field, raw in (await redis.hgetall(keys.running)).items():
        name = _text(field)
        if not name.startswith(prefix):
            continue
        item = orjson.loads(raw)
        item["shard"] = int(name.partition(":")[2])
        running.append(item)
    running.sort(key=lambda item: int(item["shard"]))
    live = await redis.zrangebyscore(keys.workers, time.time() - LIVE_WITHIN, "+inf")
    return RunStatus(
        run=keys.run,
        generation=generation,
        total=int(meta.get("total", "0")),
        shards=int(meta.get("shards", "0")),
        shards_done=done,
        redelivered=sum(int(value) > 1 for value in starts),
        counts=counts,
        running=running,
        live_workers=[_text(name) for name in live if isinstance(name, bytes | str)],
        meta=meta,
    )


async def latest_run(redis: redis.asyncio.Redis, prefix: str) -> str:
    found = await redis.zrevrange(Keys(prefix).runs, 0, 0)
    if not found or not isinstance(found[0], bytes | str):
        raise QueueError("no run on this queue (klarna-async charge INPUT --queue ... makes one)")
    return _text(found[0])


async def export(redis: redis.asyncio.Redis, keys: Keys, path: Path) -> int:
    """Write the run's journal to ``path`` as JSON Lines in the results format of ``klarna-async
    charge --out`` (by line number; replaced atomically); how many records."""
    records = [exported(record) async for record in Journal(redis, keys).records()]
    records.sort(key=lambda r: (r.get("line") is None, r.get("line") or 0, r.get("charge_id")))
    rewrite(path, records)
    return len(records)


async def status(options: StatusOptions, *, out: IO[str], err: IO[str]) -> int:
    """``klarna-async status``: the counts, the shards, the workers; ``--wait`` follows the run
    until no shard is pending; ``--export`` writes the journal as a results file."""
    redis = _redis_client(options.queue)
    try:
        try:
            run = options.run or await latest_run(redis, options.prefix)
        except _redis_errors() as error:
            raise QueueError(
                f"cannot reach Redis at {redacted_url(options.queue)} ({type(error).__name__}): "
                "check --queue"
            ) from None
        keys = Keys(options.prefix, check_run_name(run))
        report = await read_status(redis, keys)
        if options.wait:
            report = await _follow(redis, keys, report, options, err)
        if options.as_json:
            print(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode(), file=out)
        else:
            report.render(out)
        if options.export is not None:
            count = await export(redis, keys, options.export)
            print(f"  {count} records exported to {options.export}", file=out)
        if options.forget:
            if report.pending:
                raise QueueError(
                    f"run {run!r} has {report.pending} shard(s) pending: not forgotten"
                )
            removed = await forget(redis, keys)
            print(f"  run {run} forgotten: {removed} keys deleted from Redis", file=out)
        return report.exit_code()
    finally:
        await redis.aclose()


async def forget(redis: redis.asyncio.Redis, keys: Keys) -> int:
    """Delete every key of the run (its journal and the input lines of its shards included);
    how many. The run's tasks are all acknowledged by then, so the stream holds none of it."""
    removed = 0
    async for key in redis.scan_iter(match=keys.everything, count=1000):
        removed += int(await redis.unlink(key))
    await redis.zrem(keys.runs, keys.run)
    return removed


async def _follow(
    redis: redis.asyncio.Redis,
    keys: Keys,
    report: RunStatus,
    options: StatusOptions,
    err: IO[str],
) -> RunStatus:
    """Poll until no shard is pending (or the timeout); a progress line every few seconds."""
    started = time.monotonic()
    last_line = -float("inf")
    last_recorded, last_at = report.recorded, started
    errors = _redis_errors()
    while report.pending:
        moment = time.monotonic()
        if options.timeout is not None and moment - started > options.timeout:
            print(f"still pending after {options.timeout:g} s", file=err, flush=True)
            break
        if moment - last_line >= 2.0:
            rate = (report.recorded - last_recorded) / max(moment - last_at, 1e-9)
            last_recorded, last_at, last_line = report.recorded, moment, moment
            print(f"{report.line()} | {rate:.0f}/s", file=err, flush=True)
        await asyncio.sleep(options.poll)
        try:
            report = await read_status(redis, keys)
        except errors as error:
            print(f"Redis does not answer ({type(error).__name__}); waiting", file=err, flush=True)
    return report
