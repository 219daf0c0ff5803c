"""The fake Klarna's clock: real time plus an offset that tests move forward.

Every expiry in the fake (authorization tokens after 60 minutes, sessions after 48 hours,
idempotency keys after 24 hours) and the rate-limit window are measured on this clock, so a test
expires things instantly with :meth:`FakeClock.advance` instead of sleeping::

    fake.clock.advance(61 * 60)   # the authorization token is now expired

The clock keeps running at real speed between advances; it never goes backwards.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

__all__ = ["FakeClock"]


class FakeClock:
    """Wall-clock and monotonic time, both shifted by the same, only-growing offset."""

    __slots__ = ("_base", "_offset")

    def __init__(self, start: datetime | None = None) -> None:
        """Start at ``start`` (an aware datetime), or at the current real time."""
        self._base = 0.0
        if start is not None:
            if start.tzinfo is None:
                raise ValueError("start must be timezone-aware")
            self._base = start.timestamp() - time.time()
        self._offset = self._base

    @property
    def offset(self) -> float:
        """Seconds the clock is ahead of real time."""
        return self._offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (must be >= 0)."""
        if not seconds >= 0:  # also rejects NaN
            raise ValueError(f"can only advance by a non-negative number of seconds: {seconds!r}")
        self._offset += float(seconds)

    def time(self) -> float:
        """The fake wall-clock time as POSIX seconds."""
        return time.time() + self._offset

    def now(self) -> datetime:
        """The fake wall-clock time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.time(), UTC)

    def monotonic(self) -> float:
        """A monotonic reading that includes the advances (used for the rate limit)."""
        return time.monotonic() + self._offset

    def reset(self) -> None:
        """Forget every advance (back to real time, or to the ``start`` given)."""
        self._offset = self._base


def isoformat(timestamp: float) -> str:
    """``2038-01-19T03:14:07.000Z`` style, as Klarna writes ``expires_at``."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
