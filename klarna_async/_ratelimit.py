"""Client-side pacing under Klarna's per-merchant rate limit.

Klarna counts requests per merchant and answers 429 beyond its limit (NOTES 1: 200/s in
production, 50/s in playground for order operations). A batch that simply fires as fast as the
pool allows spends its time collecting 429s; pacing at the source avoids them. The limiter is a
GCRA token bucket shared by everything one client sends, and it listens to the server: when
``X-Ratelimit-Remaining`` reaches zero or a 429 arrives, everyone waits for the window to reset.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

__all__ = ["LOW_REMAINING", "RateLimiter"]

#: At or below this many requests left in Klarna's window, everyone waits for the reset.
LOW_REMAINING = 2


class RateLimiter:
    """At most ``rate`` requests per second, with bursts of up to ``burst`` (default 1: evenly
    spaced, so that no one-second window of the server's ever sees more than ``rate + 1``)."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0 requests per second, got {rate!r}")
        self.rate = rate
        if burst is not None and burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        self.burst = burst if burst is not None else 1.0
        self._interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._tat = 0.0  # the theoretical arrival time of the next request (GCRA)
        self.waited = 0.0  # seconds spent waiting in all, for reports

    async def acquire(self) -> None:
        """Wait for this request's slot. The slot is reserved at once, so waiters keep order."""
        now = self._clock()
        tat = self._tat if self._tat > now else now
        wait = tat - (self.burst - 1) * self._interval - now
        self._tat = tat + self._interval
        if wait > 0:
            self.waited += wait
            await self._sleep(wait)

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Learn from an answer: when the server says its window is (nearly) spent, or answers
        429, nobody sends again until the window resets."""
        if status != 429:
            remaining = _seconds(headers.get("X-Ratelimit-Remaining"))
            # Low, not only zero: by the time we read it, requests already in flight spend more.
            if remaining is None or remaining > LOW_REMAINING:
                return
        reset = _seconds(headers.get("X-Ratelimit-Reset"))
        if reset is None:
            reset = _seconds(headers.get("Retry-After"))
        self.pause(reset if reset is not None else 1.0)

    def pause(self, seconds: float) -> None:
        resume = self._clock() + min(seconds, 60.0)
        if resume > self._tat:
            self._tat = resume


def _seconds(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw.split(",")[0].strip())
    except ValueError:
        return None
    return value if value >= 0 else None
