"""Distributed batches as they run: real ``klarna-async worker`` processes against a
``klarna-async sandbox`` process, over a real Redis; the sandbox's ledger is the witness.

* 2,000 charges over 3 workers with faults; one worker killed with SIGKILL while it has charges
  in flight: every charge placed exactly once, the journal complete (``benchmarks/distributed.py``
  runs the same with 20,000 and reports the figures);
* Redis stopped mid-run, the rate limiter's and then the queue's: the workers pace themselves
  locally, wait for the journal, never exit, and nothing is charged twice;
* a worker stopped with SIGTERM mid-shard gives its shard back at once (not after the idle
  timeout), and exits 0.

Each run is bounded (timeouts on every wait; the workers are killed on the way out).
"""

from __future__ import annotations

import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks import distributed
from klarna_async import _distributed as dist
from tests.integrations import redis_support
from tests.integrations.redis_support import RedisServer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture(autouse=True)
def _taskiq() -> None:
    try:
        dist.import_taskiq()
    except ImportError as error:
        redis_support.unavailable(str(error))


def test_kill_9_mid_shard_every_charge_placed_once(redis_url: str) -> None:
    started = time.monotonic()
    result = distributed.kill(
        redis_url,
        charges=2_000,
        workers=3,
        shard_size=100,
        concurrency=16,
        kill_after=0.25,
        idle_timeout=3.0,
        timeout=120.0,
    )
    assert result["killed"], result  # the kill happened...
    assert result["killed"]["in_flight_left"] >= 1, result  # ...with charges in flight
    assert result["killed"]["recorded_before"] < 2_000
    assert result["shards_delivered_again"] >= 1, result
    # What the killed worker had in flight was re-driven, with its keys, by the others.
    left = result["killed"]["in_flight_left"]
    assert {"placed by another worker": left} == result["left_in_flight_by_the_killed_worker_then"]
    # The ledger: one order per charge of the input, none twice, none missing. The journal:
    # every charge placed, with the order the ledger has.
    assert result["exactly_once"], result
    assert 0 == result["keys_charged_twice"]
    assert 2_000 == result["journal_records"] == result["orders"]
    assert result["requests"] > 2_000  # the faults happened
    codes = result["worker_exit_codes"]
    assert -signal.SIGKILL == codes["w0"]
    assert {0} == {codes["w1"], codes["w2"]}, codes  # the others stop cleanly on SIGTERM
    assert time.monotonic() - started < 150


def test_redis_stopped_mid_run(redis_server: Callable[..., RedisServer]) -> None:
    """The limiter's Redis stopped for 3 s: the workers go on charging, paced locally; then the
    queue's and journal's: they wait (no journal, no send) and go on. No worker exits; every
    charge is placed once."""
    queue, limiter = redis_server(), redis_server()
    started = time.monotonic()
    result = distributed.outage(
        queue, limiter, charges=1_500, workers=3, rate_limit=300, down_for=3.0, timeout=120.0
    )
    assert result["exactly_once"], result
    assert 0 == result["keys_charged_twice"]
    assert result["limiter_down_s"] >= 3.0
    assert result["queue_down_s"] >= 3.0
    assert result["placed_while_limiter_down"] > 0, result
    assert all(result["workers_alive_at_the_end"].values()), result
    assert all(result["limiter_fell_back"].values()), result
    assert all(result["limiter_came_back"].values()), result
    assert all(result["journal_waited"].values()), result
    assert {0} == set(result["worker_exit_codes"].values()), result
    assert time.monotonic() - started < 120


def test_sigterm_mid_shard_gives_the_shard_back_at_once(redis_url: str) -> None:
    """A worker stopped with SIGTERM while it runs a shard finishes the charges in flight,
    journals them, and hands the shard back: another worker completes it well before the idle
    timeout (60 s) would have let it. The stopped worker exits 0."""
    with (
        tempfile.TemporaryDirectory() as scratch,
        distributed.sandbox() as box,
        distributed.fleet(box.url, redis_url) as crew,
    ):
        source = Path(scratch, "charges.jsonl")
        keys_sent = distributed.write_input(source, 600)
        for name in ("w0", "w1"):
            crew.start(name, "--concurrency", "8", "--rate-limit", "150")
        crew.wait_live(["w0", "w1"])
        crew.enqueue(source, "term", "--shard-size", "300")
        keys = dist.Keys(crew.prefix, "term")
        client = crew.redis
        try:
            deadline = time.monotonic() + 60
            while not distributed.in_flight_of(client, keys, "w0")[0]:
                assert time.monotonic() < deadline, crew.tails()
                time.sleep(0.02)
            stopped = time.monotonic()
            crew.signal(crew.workers[0], signal.SIGTERM)
            assert 0 == crew.workers[0].process.wait(30), crew.tails()
            crew.wait_done(keys, 40)
            taken_over_in = time.monotonic() - stopped
            records = distributed.journal(client, keys)
        finally:
            client.close()
        check = distributed.verify(keys_sent, distributed.ledger(box.url), records)
        log = crew.workers[0].text()
        codes = crew.stop_all()
    assert check["exactly_once"], check
    assert taken_over_in < 20, taken_over_in  # not after the 60 s idle timeout
    assert "stopping" in log
    assert codes["w1"] == 0
