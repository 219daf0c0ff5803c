"""The client-side pacer: even spacing, bursts, and pausing when the server says so."""

from __future__ import annotations

import pytest

from klarna_async._ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def limiter(rate: float, clock: Clock, **kw: float) -> RateLimiter:
    return RateLimiter(rate, clock=clock, sleep=clock.sleep, **kw)


async def test_even_spacing():
    """At 10/s, ten requests at once are spread 0.1 s apart."""
    clock = Clock()
    pacer = limiter(10, clock)
    for _ in range(10):
        await pacer.acquire()
    assert [pytest.approx(0.1 * i) for i in range(1, 10)] == clock.slept
    assert pytest.approx(4.5) == pacer.waited


async def test_burst():
    """A burst of 3 lets three through at once, then paces."""
    clock = Clock()
    pacer = limiter(10, clock, burst=3)
    for _ in range(4):
        await pacer.acquire()
    assert [pytest.approx(0.1)] == clock.slept


async def test_idle_time_is_not_banked():
    """After a quiet spell the pace restarts; it does not allow a flood."""
    clock = Clock()
    pacer = limiter(10, clock)
    await pacer.acquire()
    clock.now += 60
    await pacer.acquire()
    await pacer.acquire()
    assert [pytest.approx(0.1)] == clock.slept


@pytest.mark.parametrize(
    ("status", "headers", "paused"),
    [
        (429, {"X-Ratelimit-Reset": "2"}, 2.0),
        (429, {"Retry-After": "3"}, 3.0),
        (429, {}, 1.0),
        (200, {"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": "0.5"}, 0.5),
        (200, {"X-Ratelimit-Remaining": "2", "X-Ratelimit-Reset": "0.5"}, 0.5),
        (200, {"X-Ratelimit-Remaining": "30", "X-Ratelimit-Reset": "0.5"}, None),
        (200, {"X-Ratelimit-Remaining": "junk"}, None),
        (200, {}, None),
        (429, {"X-Ratelimit-Reset": "600"}, 60.0),
    ],
)
async def test_server_signals(status: int, headers: dict[str, str], paused: float | None):
    """429 or a spent window pauses everyone until the reset (capped at a minute)."""
    clock = Clock()
    pacer = limiter(1000, clock)
    pacer.observe(status, headers)
    await pacer.acquire()
    if paused is None:
        assert [] == clock.slept
    else:
        assert [pytest.approx(paused)] == clock.slept


def test_bad_settings():
    """A rate or burst that makes no sense is refused."""
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(0)
    with pytest.raises(ValueError, match="burst"):
        RateLimiter(5, burst=0.5)
