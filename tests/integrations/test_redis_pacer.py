"""RedisRateLimiter against a real Redis: the shared GCRA, pauses for everyone, outages."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import pytest

from klarna_async import KlarnaClient, RedisRateLimiter
from klarna_async._redis_pacer import SCRIPT_SHA
from klarna_async.testing import FakeKlarna
from tests.integrations.redis_support import RedisServer, free_port
from tests.samples import token_order

#: How far a wait computed on the local clock alone may be from the ideal.
SLACK = 0.015
#: Clock resolution: Redis's TIME is in microseconds, the waits travel with six decimals.
EPS = 0.002
PASSWORD = "s3cret-Pa55"


class Sleeps:
    """A sleep that records and returns at once: the waits handed out, exactly."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)


def approx(values: list[float]) -> list[Any]:
    return [pytest.approx(value, abs=SLACK) for value in values]


@dataclass
class Turn:
    started: float  # local clock, before asking Redis
    ended: float  # local clock, after the answer (the limiters here do not really sleep)
    waited: float  # what the limiter slept for this turn
    result: float | None


async def take(limiter: RedisRateLimiter, max_wait: float = math.inf) -> Turn:
    waited = limiter.waited
    started = time.monotonic()
    result = await limiter.acquire(max_wait)
    return Turn(started, time.monotonic(), limiter.waited - waited, result)


def assert_spacing(turns: list[Turn], ideal: list[float]) -> None:
    """Each turn waited what Redis's clock makes of its ideal offset from the first turn.

    Redis ran the script for turn i at some moment r_i within [started_i, ended_i], and hands
    out ideal_i - (r_i - r_0): so the wait lies within [ideal_i - (ended_i - started_0),
    ideal_i - (started_i - ended_0)], however slow the machine (negative waits are none).
    """
    assert len(turns) == len(ideal)
    first = turns[0]
    for turn, offset in zip(turns, ideal, strict=True):
        low = max(offset - (turn.ended - first.started) - EPS, 0.0)
        high = max(offset - (turn.started - first.ended) + EPS, 0.0)
        assert low <= turn.waited <= high, (offset, turn, low, high)


@contextlib.asynccontextmanager
async def limiters(
    url: Any, count: int = 1, **options: Any
) -> AsyncIterator[list[RedisRateLimiter]]:
    options.setdefault("merchant", "M1")
    options.setdefault("environment", "playground")
    options.setdefault("rate", 10)
    options.setdefault("sleep", Sleeps())
    made = [RedisRateLimiter(url, **options) for _ in range(count)]
    try:
        yield made
    finally:
        for limiter in made:
            await limiter.aclose()


async def pushed(limiter: RedisRateLimiter) -> None:
    """Wait for the limiter's background push of a pause to Redis."""
    task = limiter._push_task
    assert task is not None, "no push scheduled"
    await task


def is_shared(limiter: RedisRateLimiter) -> bool:
    return limiter.shared  # (a call: the type checker does not pin a property's value)


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


# --- the shared GCRA ------------------------------------------------------------------------------


async def test_turns_are_evenly_spaced(redis_url: str) -> None:
    """At 10/s, five requests at once get turns 0.1 s apart, from Redis's clock."""
    async with limiters(redis_url) as [limiter]:
        turns = [await take(limiter) for _ in range(5)]
    assert_spacing(turns, [0.0, 0.1, 0.2, 0.3, 0.4])
    assert all(turn.result is not None for turn in turns)
    assert pytest.approx(1.0, abs=4 * SLACK) == limiter.waited


async def test_burst(redis_url: str) -> None:
    """A burst of 3 lets three go at once, then paces."""
    async with limiters(redis_url, burst=3) as [limiter]:
        turns = [await take(limiter) for _ in range(5)]
    assert_spacing(turns, [0.0, 0.0, 0.0, 0.1, 0.2])


async def test_limiters_on_one_key_share_one_sequence_of_turns(redis_url: str) -> None:
    """Two limiters (two processes) on one merchant take turns from the same sequence."""
    async with limiters(redis_url, 2) as [a, b]:
        turns = [await take(a if i % 2 else b) for i in range(6)]
    assert_spacing(turns, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5])


async def test_idle_time_is_not_banked(redis_url: str) -> None:
    """After a quiet spell the pace restarts from now; it does not allow a flood."""
    async with limiters(redis_url, rate=20) as [limiter]:
        await take(limiter)
        await asyncio.sleep(0.15)
        turns = [await take(limiter) for _ in range(3)]
    assert_spacing(turns, [0.0, 0.05, 0.1])


async def test_merchants_and_environments_are_limited_apart(redis_url: str) -> None:
    """One key per merchant and environment: another merchant, or the same merchant's other
    environment, is not slowed down; the same merchant in another process is."""
    async with (
        limiters(redis_url) as [m1],
        limiters(redis_url, merchant="M2") as [m2],
        limiters(redis_url, environment="production") as [m1_production],
        limiters(redis_url, key_prefix="other-app") as [m1_other_prefix],
        limiters(redis_url) as [m1_again],
    ):
        turns = [await take(m1) for _ in range(3)]
        for limiter in (m2, m1_production, m1_other_prefix):
            assert 0 == (await take(limiter)).waited
        turns.append(await take(m1_again))
        assert_spacing(turns, [0.0, 0.1, 0.2, 0.3])
        keys = {m1.key, m2.key, m1_production.key, m1_other_prefix.key}
        assert len(keys) == 4
        assert m1.key == m1_again.key == "klarna_async:pace:{playground:M1}"
        assert m1_production.key == "klarna_async:pace:{production:M1}"


async def test_max_wait_refusal_takes_no_turn(redis_url: str) -> None:
    """A turn further away than max_wait: None at once, and the turn stays for the next one."""
    async with limiters(redis_url, 2) as [a, b]:
        first = await take(a)
        for _ in range(5):
            refused = await take(a, max_wait=0.05)
            assert refused.result is None
            assert 0 == refused.waited
            assert refused.ended - refused.started < 0.05
        # Had the refusals taken turns, this one would wait 0.6 s.
        assert_spacing([first, await take(b, max_wait=1.0)], [0.0, 0.1])


async def test_script_is_loaded_again_after_redis_forgets_it(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """EVALSHA first; after SCRIPT FLUSH (a restarted Redis), EVAL runs it and caches it again."""
    import redis.asyncio

    admin = redis.asyncio.Redis.from_url(redis_url)
    try:
        async with limiters(redis_url) as [limiter]:
            turns = [await take(limiter)]
            await admin.script_flush()
            assert [False] == await admin.script_exists(SCRIPT_SHA)
            turns.append(await take(limiter))
            assert [True] == await admin.script_exists(SCRIPT_SHA)
            turns.append(await take(limiter))
            assert limiter.shared
    finally:
        await admin.aclose()
    assert_spacing(turns, [0.0, 0.1, 0.2])
    assert not caplog.records


async def test_live_limiters_are_counted_for_the_outage_share(
    redis_server: Callable[..., RedisServer],
) -> None:
    """Redis counts the limiters that took turns lately; during an outage each paces at
    rate / that count when it is larger than expected_processes."""
    server = redis_server()
    sleeps = Sleeps()
    async with limiters(server.url(), 3, rate=90, expected_processes=2, sleep=sleeps) as made:
        for limiter in made:
            await limiter.acquire()
        last = made[-1]
        assert last.live == 3
        assert last.fallback_rate == pytest.approx(30)
        assert made[0].fallback_rate == pytest.approx(45)  # it saw one (itself) when it asked
        await asyncio.to_thread(server.stop)
        sleeps.slept.clear()
        for _ in range(4):
            await last.acquire()
        assert not last.shared
    # Four local turns 1/30 s apart (the first may be free: stopping Redis took a while).
    turns = [0.0, *sleeps.slept][-4:]
    assert approx([1 / 30] * 3) == [b - a for a, b in pairwise(turns)]


# --- pauses ---------------------------------------------------------------------------------------


def assert_not_faster(sent: list[float], interval: float) -> None:
    """Requests sent (real time) no faster than one per ``interval``: the i-th no earlier than
    i intervals after the first, give or take how late the first woke up."""
    for i, at in enumerate(sent):
        assert at - sent[0] >= i * interval - 0.01, (i, [b - a for a, b in pairwise(sent)])


def assert_paused(turn: Turn, seconds: float, since: float) -> None:
    """The turn waited out a pause of ``seconds`` that began at ``since`` (local clock)."""
    assert seconds - (turn.ended - since) - EPS <= turn.waited <= seconds + EPS, turn


async def test_a_pause_reaches_every_limiter_on_the_key(redis_url: str) -> None:
    """A 429 seen by one process pauses it at once and, through Redis, the others too."""
    async with limiters(redis_url, 2, rate=100) as [a, b]:
        since = time.monotonic()
        a.observe(429, {"Retry-After": "2"})
        refused = await take(a, max_wait=1.0)
        assert refused.result is None  # at once, before any push has landed
        assert refused.ended - refused.started < 0.01
        await pushed(a)
        assert (await take(b, max_wait=1.0)).result is None
        assert_paused(await take(b, max_wait=5.0), 2.0, since)
        assert 1 == a._pushes


async def test_bursts_of_pause_signals_are_pushed_once(redis_url: str) -> None:
    """A spent window answers every request alike: fifty signals in a row make one push."""
    async with limiters(redis_url, 2, rate=100) as [a, b]:
        since = time.monotonic()
        for _ in range(50):
            a.observe(200, {"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": "1"})
        await pushed(a)
        assert 1 == a._pushes
        assert_paused(await take(b, max_wait=5.0), 1.0, since)
        # A later, longer pause is pushed again.
        a.observe(429, {"X-Ratelimit-Reset": "3"})
        await pushed(a)
        assert 2 == a._pushes


async def test_observe_never_raises(redis_url: str) -> None:
    """Whatever the headers, observe returns quietly; nonsense pauses nobody for long."""

    class Hostile(dict[str, str]):
        def get(self, key: Any, default: Any = None) -> Any:
            raise RuntimeError("a headers object that breaks")

    async with limiters(redis_url, rate=100) as [limiter]:
        limiter.observe(429, Hostile())
        assert limiter._push_task is None
        since = time.monotonic()
        for value in ("nan", "inf", "-5", "junk", "1e400"):
            limiter.observe(429, {"X-Ratelimit-Reset": value, "Retry-After": value})
        limiter.observe(200, {"X-Ratelimit-Remaining": "junk"})
        limiter.observe(503, {})
        await pushed(limiter)
        # 1 s (the pause of a 429 without a usable reset), never longer.
        assert_paused(await take(limiter, max_wait=5.0), 1.0, since)


# --- outages ------------------------------------------------------------------------------------


async def test_redis_unreachable_from_the_start_paces_locally_at_a_share(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing listens: the first turn comes from the local pace at rate / expected_processes,
    with one warning that says where Redis is but not its password."""
    caplog.set_level(logging.WARNING, logger="klarna_async")
    sleeps = Sleeps()
    url = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    async with limiters(url, rate=100, expected_processes=4, sleep=sleeps) as [limiter]:
        started = time.monotonic()
        for _ in range(4):
            assert await limiter.acquire(max_wait=1.0) is not None
        assert time.monotonic() - started < 1.0
        assert not limiter.shared
        assert "local" in repr(limiter)
    assert approx([0.04, 0.08, 0.12]) == sleeps.slept  # 25/s
    warnings = messages(caplog, "unreachable")
    assert 1 == len(warnings), caplog.text
    assert "127.0.0.1" in warnings[0]
    assert "25 requests/s" in warnings[0]
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(limiter)
    assert 1 == limiter.outages


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A TCP server on loopback that accepts and never answers (a Redis that hangs)."""
    writers: list[asyncio.StreamWriter] = []

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.read()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


async def test_a_redis_that_hangs_costs_one_short_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No answer within `timeout`: the turn comes from the local pace; the next calls do not
    wait for Redis again before retry_after."""
    caplog.set_level(logging.WARNING, logger="klarna_async")
    async with (
        silent_server() as port,
        limiters(f"redis://127.0.0.1:{port}/0", rate=100, timeout=0.1, retry_after=30) as [lim],
    ):
        started = time.monotonic()
        assert await lim.acquire(max_wait=5.0) is not None
        first = time.monotonic() - started
        assert 0.1 <= first < 0.3
        started = time.monotonic()
        for _ in range(3):
            assert await lim.acquire(max_wait=5.0) is not None
        assert time.monotonic() - started < 0.3  # 3 turns at 25/s, no Redis timeouts
    assert 1 == len(messages(caplog, "no answer within 0.1 s")), caplog.text


async def test_a_caller_in_a_hurry_is_not_held_by_a_hanging_redis(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """max_wait below the Redis timeout: None within max_wait, and no verdict on Redis."""
    async with (
        silent_server() as port,
        limiters(f"redis://127.0.0.1:{port}/0", rate=100, timeout=0.5) as [limiter],
    ):
        started = time.monotonic()
        assert await limiter.acquire(max_wait=0.05) is None
        assert time.monotonic() - started < 0.1
        assert limiter.shared
    assert not caplog.records


async def test_no_time_to_ask_is_no_turn(redis_url: str) -> None:
    """max_wait=0 leaves no time even for the trip to Redis: None, and no turn taken."""
    async with limiters(redis_url, 2) as [a, b]:
        assert await a.acquire(max_wait=0) is None
        first = await take(b)
        assert_spacing([first, await take(b)], [0.0, 0.1])


async def test_a_turn_whose_answer_comes_too_late_is_not_used(redis_url: str) -> None:
    """When Redis's answer arrives so late that the turn would come after max_wait, the
    request does not go (early or late): None, and the turn is lost to nobody's harm."""

    class Clock:
        offset = 0.0

        def __call__(self) -> float:
            return time.monotonic() + self.offset

    clock = Clock()
    async with limiters(redis_url, 2, clock=clock) as [a, b]:
        await a.acquire()
        real_eval = b._eval

        async def slow_eval(**kwargs: Any) -> Any:
            reply = await real_eval(**kwargs)
            clock.offset += 0.95  # the answer took 0.95 s to arrive
            return reply

        b._eval = slow_eval  # type: ignore[method-assign]
        assert await b.acquire(max_wait=1.0) is None  # 0.95 s + the 0.1 s turn > 1 s
        assert 0 == b.waited


async def test_a_pause_push_that_hangs_is_dropped_and_closing_stops_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A push of a pause to a Redis that does not answer is given up after the timeout, with
    no verdict on Redis (the turns decide that); aclose cancels a push still running."""
    caplog.set_level(logging.DEBUG, logger="klarna_async")
    async with silent_server() as port:
        url = f"redis://127.0.0.1:{port}/0"
        async with limiters(url, rate=100, timeout=0.1) as [limiter]:
            limiter.observe(429, {"Retry-After": "5"})
            await pushed(limiter)
            assert limiter.shared
            assert 0 == limiter._pushes
            assert messages(caplog, "could not share a pause (no answer)")
        limiter = RedisRateLimiter(url, 100, merchant="M1", environment="playground", timeout=5)
        limiter.observe(429, {"Retry-After": "5"})
        started = time.monotonic()
        await limiter.aclose()
        assert time.monotonic() - started < 1
        assert limiter._push_task is None
    assert not messages(caplog, "unreachable")


async def test_outage_falls_back_to_local_pacing_and_recovers(
    redis_server: Callable[..., RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    """Redis stops mid-run: turns keep coming, paced locally at the share, with one warning;
    Redis comes back: shared pacing resumes, said once. No password anywhere."""
    caplog.set_level(logging.INFO, logger="klarna_async")
    server = redis_server(password=PASSWORD)
    async with limiters(
        server.url(3),
        rate=100,
        expected_processes=2,
        timeout=0.1,
        retry_after=0.2,
        sleep=asyncio.sleep,
    ) as [limiter]:
        for _ in range(3):
            assert await limiter.acquire(max_wait=1.0) is not None
        assert limiter.shared

        await asyncio.to_thread(server.stop)
        times = []
        for _ in range(8):
            assert await limiter.acquire(max_wait=1.0) is not None
            times.append(time.monotonic())
        assert not is_shared(limiter)
        assert_not_faster(times, 0.02)  # 50/s: half of 100/s for each of 2 processes

        await asyncio.to_thread(server.start)
        await asyncio.sleep(0.25)  # past retry_after: the next turn asks Redis again
        assert await limiter.acquire(max_wait=1.0) is not None
        assert limiter.shared
        for _ in range(3):
            assert await limiter.acquire(max_wait=1.0) is not None
        assert 1 == limiter.outages
    assert 1 == len(messages(caplog, "unreachable")), caplog.text
    assert 1 == len(messages(caplog, "answers again after")), caplog.text
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(limiter)


async def test_after_an_outage_the_local_share_holds_a_while_longer(
    redis_server: Callable[..., RedisServer],
) -> None:
    """Back from an outage, a process keeps to its local share for retry_after + timeout (the
    others may still pace locally until their next attempt), then paces through Redis alone."""
    server = redis_server()
    options: dict[str, Any] = {"expected_processes": 4, "timeout": 0.1, "retry_after": 0.2}
    async with limiters(server.url(), rate=100, sleep=asyncio.sleep, **options) as [limiter]:

        async def sent_at() -> float:
            assert await limiter.acquire(max_wait=1.0) is not None
            return time.monotonic()

        await sent_at()
        await asyncio.to_thread(server.stop)
        await sent_at()
        assert not is_shared(limiter)
        await asyncio.to_thread(server.start)
        await asyncio.sleep(0.25)  # past retry_after
        handover = [await sent_at() for _ in range(4)]  # the first asks Redis again
        assert is_shared(limiter)
        assert_not_faster(handover, 0.04)  # 25/s: the local share of 100/s among 4
        await asyncio.sleep(0.35)  # the hand-over is over
        shared = [await sent_at() for _ in range(5)]
        assert (shared[-1] - shared[0]) / 4 < 0.025, shared  # 100/s again (10 ms apart)


async def test_a_pause_during_the_hand_over_is_waited_for(
    redis_server: Callable[..., RedisServer],
) -> None:
    """In the hand-over a shared turn further away than one local interval (a pause another
    process pushed) is waited for, then taken: not taken early and used late."""
    server = redis_server()
    options: dict[str, Any] = {"expected_processes": 4, "timeout": 0.1, "retry_after": 0.5}
    async with (
        limiters(server.url(), rate=100, sleep=asyncio.sleep, **options) as [limiter],
        limiters(server.url(), rate=100) as [other],
    ):
        await limiter.acquire()
        await asyncio.to_thread(server.stop)
        await limiter.acquire()
        await asyncio.to_thread(server.start)
        await asyncio.sleep(0.55)  # past retry_after: the hand-over lasts 0.6 s from the probe
        assert await limiter.acquire(max_wait=1.0) is not None  # the probe
        assert limiter.shared
        other.pause(0.3)
        await pushed(other)
        started = time.monotonic()
        assert await limiter.acquire(max_wait=1.0) is not None
        assert 0.3 - 0.02 <= time.monotonic() - started < 0.5
        # Still in the hand-over: the next turn is one local interval (0.04 s) away.
        assert await limiter.acquire(max_wait=0.02) is None
        assert 0.03 <= (await limiter.acquire(max_wait=1.0) or 0) < 0.1


async def test_clients_keep_charging_through_an_outage(
    redis_server: Callable[..., RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    """Two clients charging through one Redis limiter: Redis stops and comes back mid-run.
    Nothing raises, every charge is placed exactly once, the pace during the outage stays at
    each client's share, and the limiters say so once each way."""
    caplog.set_level(logging.WARNING, logger="klarna_async")
    server = redis_server()
    rate, processes = 60, 2
    options: dict[str, Any] = {
        "rate": rate,
        "expected_processes": processes,
        "timeout": 0.1,
        "retry_after": 0.2,
        "sleep": asyncio.sleep,
    }
    async with (
        FakeKlarna(accept_unknown_tokens=True) as fake,
        limiters(server.url(0), processes, **options) as made,
    ):
        clients = [
            KlarnaClient(
                username="test_user", password="test_password", base_url=fake.url, rate_limit=lim
            )
            for lim in made
        ]
        placed: list[str] = []
        stop_at = time.monotonic() + 1.6

        async def charge(client: KlarnaClient, lane: int) -> None:
            n = 0
            while time.monotonic() < stop_at:
                key = f"outage-{lane}-{n}"
                order = await client.customer_tokens.create_order(
                    f"ctok-outage-{lane}", token_order(reference=key), idempotency_key=key
                )
                assert order.order_id
                placed.append(key)
                n += 1

        async def outage() -> tuple[float, float]:
            await asyncio.sleep(0.4)
            await asyncio.to_thread(server.stop)
            down = time.monotonic()
            await asyncio.sleep(0.6)
            up = time.monotonic()
            await asyncio.to_thread(server.start)
            return down, up

        async with clients[0], clients[1]:
            lanes = [
                charge(client, 4 * i + j) for i, client in enumerate(clients) for j in range(4)
            ]
            outage_task = asyncio.create_task(outage())
            try:
                await asyncio.gather(*lanes)
            finally:
                down, up = await outage_task
        for lim in made:
            assert lim.shared
            assert 1 == lim.outages

    orders = fake.ledger.orders
    assert len(placed) == len(orders) == len({o.idempotency_key for o in orders})
    assert set(placed) == {o.idempotency_key for o in orders}
    requests = fake.ledger.requests_for("customer_tokens.create_order")
    assert len(requests) == len(orders)  # nothing was retried, nothing refused
    # The fake's clock is POSIX time: compare the outage on the same clock.
    offset = time.time() - time.monotonic()
    during = [r for r in requests if down + offset + 0.15 <= r.received_at <= up + offset]
    seconds = up - down - 0.15
    assert len(during) <= rate * seconds + 2 * processes, (len(during), seconds)
    assert len(during) >= 0.5 * rate * seconds  # still paced, not stopped
    assert 2 == len(messages(caplog, "unreachable")), caplog.text
    assert 2 == len(messages(caplog, "answers again after")), caplog.text


# --- what it shows ------------------------------------------------------------------------------


async def test_a_borrowed_client_stays_open(redis_url: str) -> None:
    """aclose closes what the limiter made, not a client it was given; twice is fine."""
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        async with limiters(client, sleep=Sleeps()) as [limiter]:
            await limiter.acquire()
            assert limiter.shared
        await limiter.aclose()
        assert await client.ping()
    finally:
        await client.aclose()
