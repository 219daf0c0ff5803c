"""Client-side pacing under Klarna's per-merchant rate limit.

Klarna counts requests per merchant and answers 429 beyond its limit (NOTES 1: 200/s in
production, 50/s in playground for order operations). A batch that simply fires as fast as the
pool allows spends its time collecting 429s; pacing at the source avoids them.

The client needs two things of whatever paces it, the :class:`Pacer` protocol: a turn to send
(never further away than the call can wait: a wait past the call's deadline is no wait at all),
and to hear Klarna's "slow down" (429, or ``X-Ratelimit-Remaining`` running low). The default,
:class:`RateLimiter`, is a GCRA token bucket shared by everything one client sends; a pacer
shared by several processes (Redis) implements the same protocol.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, runtime_checkable

__all__ = ["LOW_REMAINING", "MAX_PAUSE", "Pacer", "RateLimiter", "server_pause"]

#: At or below this many requests left in Klarna's window, everyone waits for the reset.
LOW_REMAINING = 2
#: The longest pause a server's headers can impose, in seconds (a bad header is no reason to
#: stop a merchant's traffic for an hour).
MAX_PAUSE = 60.0


@runtime_checkable
class Pacer(Protocol):
    """What paces a client's requests: the local :class:`RateLimiter`, or one shared by processes.

    Both methods are called on the client's event loop, ``observe`` on every answer (keep it
    cheap and never let it raise).
    """

    async def acquire(self, max_wait: float) -> float | None:
        """Wait for this request's turn and return the seconds waited.

        When the turn is more than ``max_wait`` seconds away, take nothing and return ``None``
        at once: the caller's deadline cannot wait that long, and an unused turn must not be
        lost to everyone else.
        """
        ...

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Learn from an answer: after a 429, or when ``X-Ratelimit-Remaining`` is low, nobody
        sends until Klarna's window resets (see :func:`server_pause`)."""
        ...


def server_pause(status: int, headers: Mapping[str, str]) -> float | None:
    """How long Klarna asks everyone to wait after this answer, in seconds, or None.

    A 429, or an answer with ``X-Ratelimit-Remaining`` at or below :data:`LOW_REMAINING` (low,
    not only zero: by the time we read it, requests already in flight spend more), asks for a
    pause until ``X-Ratelimit-Reset`` (else ``Retry-After``, else 1 s). Values that are not
    finite non-negative numbers are ignored; the pause is at most :data:`MAX_PAUSE`.
    """
    if status != 429:
        remaining = seconds_header(headers.get("X-Ratelimit-Remaining"))
        if remaining is None or remaining > LOW_REMAINING:
            return None
    reset = seconds_header(headers.get("X-Ratelimit-Reset"))
    if reset is None:
        reset = seconds_header(headers.get("Retry-After"))
    return min(reset, MAX_PAUSE) if reset is not None else 1.0


def seconds_header(raw: str | None) -> float | None:
    """A header's number (the first of a list such as ``"40, 40;w=1"``), or None when it is
    missing, not a number, negative, NaN or infinite."""
    if raw is None:
        return None
    try:
        value = float(raw.split(",")[0].split(";")[0].strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


class RateLimiter:
    """At most ``rate`` requests per second, with bursts of up to ``burst`` (default 1: evenly
    spaced, so that no one-second window of the server's ever sees more than ``rate + 1``).

    A :class:`Pacer` for one client (one process).
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be > 0 requests per second, got {rate!r}")
        self.rate = rate
        if burst is not None and not burst >= 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        self.burst = burst if burst is not None else 1.0
        self._interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._tat = 0.0  # the theoretical arrival time of the next request (GCRA)
        self.waited = 0.0  # seconds spent waiting in all, for reports

    async def acquire(self, max_wait: float = math.inf) -> float | None:
        """Wait for this request's slot. The slot is reserved at once, so waiters keep order."""
        now = self._clock()
        tat = self._tat if self._tat > now else now
        wait = tat - (self.burst - 1) * self._interval - now
        if wait > max_wait:
            return None
        self._tat = tat + self._interval
        if wait > 0:
            self.waited += wait
            await self._sleep(wait)
            return wait
        return 0.0

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Learn from an answer: when the server says its window is (nearly) spent, or answers
        429, nobody sends again until the window resets."""
        seconds = server_pause(status, headers)
        if seconds is not None:
            self.pause(seconds)

    def pause(self, seconds: float) -> None:
        """Nobody sends for ``seconds`` (at most :data:`MAX_PAUSE`) from now."""
        if not seconds > 0:
            return
        resume = self._clock() + min(seconds, MAX_PAUSE)
        if resume > self._tat:
            self._tat = resume
