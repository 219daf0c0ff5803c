"""Retries that cannot charge twice: what is retried, when, how often, and what we say after.

The rules, in one place:

* **Transient** (retried): 503 ``SERVICE_UNAVAILABLE``; 502 and 504 from gateways; 429 (after
  ``X-Ratelimit-Reset`` / ``Retry-After`` when given); Klarna's 500 ``TIMEOUT``; connection
  refused, reset or dropped; timeouts. Nothing else: no other 4xx, no business error, no plain
  500 ``INTERNAL_SERVER_ERROR`` (a fault that does not pass in half a second, and retrying it
  would only add load), no undecodable success body.
* **Safe to repeat**, per operation (:class:`Safety`): reads; writes that carry a
  ``Klarna-Idempotency-Key`` (the same key and the same body bytes on every attempt); writes on a
  single-use authorization token (a repeat cannot act twice, but its ``NOT_FOUND`` hides the first
  attempt's result); and writes that are harmless to repeat (sessions, token cancellation).
* **Maybe acted**: an attempt that may have reached Klarna and been processed (timeout after
  sending, connection lost before the answer, 502/504, 500 ``TIMEOUT``). 429, 503 and refused
  connections are answers from before any processing.
* **The truth at the end**: a write whose attempts ended while one of them may have acted raises
  :class:`OutcomeUnknownError` (never a plain error that would read as "not charged"). So does a
  single-use-token write whose later attempt gets ``NOT_FOUND``/``SESSION_COMPLETED`` after an
  earlier attempt may have acted: the order may well exist.

Waits use backoff's exponential generator with full jitter (each wait uniform in
``[0, min(max_delay, initial_delay * 2**n)]``), never past the call's deadline. A client-wide
:class:`RetryBudget` caps retries to a share of recent traffic, so an outage cannot multiply a
batch's load.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import attrs
import backoff

from klarna_async._errors import (
    ApiError,
    AttemptRecord,
    KlarnaError,
    KlarnaTimeoutError,
    NotFoundError,
    OutcomeUnknownError,
    ProxyError,
    RateLimitedError,
    ResponseDecodeError,
    ServerError,
    ServiceUnavailableError,
    TransportError,
)

__all__ = [
    "AttemptEvent",
    "RetryBudget",
    "RetryPolicy",
    "Safety",
    "classify",
    "log_cancelled",
    "mask_token",
]

T = TypeVar("T")
logger = logging.getLogger("klarna_async")


class Safety(enum.Enum):
    """What repeating an operation can do; decides the words we use when retries end."""

    #: GET: repeating cannot change anything.
    READ = "read"
    #: Carries a ``Klarna-Idempotency-Key``: Klarna acts once per key within 24 hours.
    IDEMPOTENCY_KEY = "idempotency_key"
    #: Uses a single-use authorization token: a repeat cannot act twice, but answers NOT_FOUND
    #: once the token has been used, whether or not by us.
    SINGLE_USE_TOKEN = "single_use_token"  # noqa: S105 - a name, not a secret
    #: A repeat is harmless (a second session, a cancellation requested twice).
    HARMLESS = "harmless"


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def _not_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _at_least_one(_: object, attribute: attrs.Attribute[int], value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        # None or 0 would silently mean "never retry" or "retry forever": say so instead.
        raise ValueError(f"{attribute.name} must be an int >= 1, got {value!r}")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How one call is retried. Set on the client; override per call with ``retry=``.

    The defaults suit a web request handler, where a customer is waiting: up to 3 attempts,
    waits of at most 0.5 s then 1 s (full jitter), each attempt cut off after 15 s and the
    whole call after 30 s, well inside Klarna's 59 s server-side idle timeout. A batch job can
    afford more patience: ``RetryPolicy(max_attempts=6, max_delay=30, deadline=120)``.
    """

    #: Attempts in all, the first included. 1 disables retries.
    max_attempts: int = attrs.field(default=3, validator=_at_least_one)
    #: The cap of the first wait, doubled for each further wait, in seconds.
    initial_delay: float = attrs.field(default=0.5, validator=_not_negative)
    #: No wait is longer than this, in seconds (a server's rate-limit reset excepted).
    max_delay: float = attrs.field(default=4.0, validator=_not_negative)
    #: The whole call, attempts and waits together, on a monotonic clock, in seconds.
    deadline: float = attrs.field(default=30.0, validator=_positive)
    #: One attempt, from sending to the last byte of the answer, in seconds; cut to what is left
    #: of the deadline.
    attempt_timeout: float = attrs.field(default=15.0, validator=_positive)

    def delays(self) -> Callable[[], float]:
        """A fresh source of jittered waits for one call (backoff's expo + full jitter)."""
        waits = backoff.expo(base=2, factor=self.initial_delay, max_value=self.max_delay)
        next(waits)  # prime the generator: the first value comes from the first send()
        return lambda: backoff.full_jitter(waits.send(None))

    @classmethod
    def no_retries(cls, *, deadline: float = 30.0, attempt_timeout: float = 15.0) -> RetryPolicy:
        """One attempt only, e.g. for tests or when the caller retries by itself."""
        return cls(max_attempts=1, deadline=deadline, attempt_timeout=attempt_timeout)


class RetryBudget:
    """Rations retries across every call of a client, over a sliding window.

    A retry is allowed while the retries of the last ``window`` seconds stay below
    ``ratio`` times the calls of that window plus ``min_per_second * window``. With the defaults
    (20 %, 10/s, 10 s), a total outage turns 10,000 charges into at most about 12,100 requests
    instead of 30,000; when the budget is spent, calls fail fast with their last real error.
    """

    def __init__(
        self,
        *,
        ratio: float = 0.2,
        min_per_second: float = 10.0,
        window: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ratio < 0 or min_per_second < 0 or window < 1:
            raise ValueError("ratio and min_per_second must be >= 0 and window >= 1 s")
        self.ratio = ratio
        self.min_per_second = min_per_second
        self.window = window
        self.clock = clock
        self._slots = int(window)
        # One bucket a second: [second, calls, retries]; counting is O(1) on the hot path.
        self._buckets = [[-1, 0, 0] for _ in range(self._slots)]
        # The bucket of the second the last call fell in, and when that second ends.
        self._current = self._buckets[0]
        self._current_end = -math.inf
        self.denied = 0

    def _bucket(self) -> list[int]:
        now = self.clock()
        if now >= self._current_end:
            second = int(now)
            bucket = self._buckets[second % self._slots]
            if bucket[0] != second:
                bucket[0], bucket[1], bucket[2] = second, 0, 0
            self._current, self._current_end = bucket, second + 1
        return self._current

    def record_call(self) -> None:
        # Every call of the client passes here: within the same second, one comparison.
        if self.clock() < self._current_end:
            self._current[1] += 1
        else:
            self._bucket()[1] += 1

    def try_spend(self) -> bool:
        """Take one retry from the budget; False (and nothing taken) when it is spent."""
        bucket = self._bucket()
        oldest = bucket[0] - self._slots
        calls = retries = 0
        for second, c, r in self._buckets:
            if second > oldest:
                calls += c
                retries += r
        if retries + 1 > self.ratio * calls + self.min_per_second * self.window:
            self.denied += 1
            return False
        bucket[2] += 1
        return True


@attrs.frozen
class AttemptEvent:
    """What the optional ``on_attempt`` callback receives after every attempt (for metrics)."""

    operation: str
    attempt: int
    max_attempts: int
    #: ``"ok"``, or a short cause such as ``"HTTP 503 SERVICE_UNAVAILABLE"``.
    outcome: str
    status: int | None
    elapsed: float
    #: The wait before the next attempt, or None when there is none.
    retry_in: float | None
    idempotency_key: str | None
    correlation_id: str | None


def log_cancelled(target: str, number: int, safety: Safety, idempotency_key: str | None) -> None:
    """A call cancelled during an attempt: for anything but a read, Klarna may have acted."""
    if safety is not Safety.READ and logger.isEnabledFor(logging.WARNING):
        logger.warning(
            "%s cancelled during attempt %d; Klarna may have acted (idempotency_key=%s)",
            target,
            number,
            idempotency_key,
        )


def mask_token(token: str) -> str:
    """A token as logs may show it: enough to tell two apart, never enough to use one."""
    return "****" + token[-4:] if len(token) > 8 else "****"


def classify(error: KlarnaError) -> tuple[bool, bool]:
    """``(transient, maybe_acted)`` for the error of one attempt."""
    if isinstance(error, TransportError):
        return True, error.maybe_sent
    if isinstance(error, (RateLimitedError, ServiceUnavailableError)):
        return True, False
    if isinstance(error, ProxyError):
        return error.status in (502, 503, 504), error.status != 503
    if isinstance(error, KlarnaTimeoutError):
        return True, True
    if isinstance(error, ServerError):
        return error.status in (502, 504), True
    return False, False


def _describe(error: KlarnaError) -> str:
    if isinstance(error, ApiError):
        return (
            f"HTTP {error.status} {error.error_code}"
            if error.error_code
            else f"HTTP {error.status}"
        )
    if isinstance(error, ResponseDecodeError):
        return f"HTTP {error.status} undecodable"
    return error.message


class Retrier:
    """Runs one call's attempts under a policy, the client's budget and its deadline."""

    def __init__(
        self,
        budget: RetryBudget | None,
        on_attempt: Callable[[AttemptEvent], None] | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budget = budget
        self.on_attempt = on_attempt
        self._sleep = sleep
        self.clock = clock

    async def run(
        self,
        *,
        operation: str,
        target: str,
        safety: Safety,
        policy: RetryPolicy,
        idempotency_key: str | None,
        attempt: Callable[[float], Awaitable[T]],
        first: tuple[float, float, KlarnaError] | None = None,
    ) -> tuple[T, int]:
        """Call ``attempt(timeout)`` until it returns, then give its result and attempt count.

        ``attempt`` returns the decoded result or raises a :class:`KlarnaError` for that one
        attempt; ``target`` names the call in logs (tokens already masked). ``first`` is an
        attempt the caller already made (see :meth:`begin`): when the call started, when that
        attempt began, and its error.
        """
        clock = self.clock
        if first is None:
            start = self.begin()
            pending: tuple[float, KlarnaError] | None = None
        else:
            start, began_first, error_first = first
            pending = (began_first, error_first)
        deadline_at = start + policy.deadline
        records: list[AttemptRecord] = []
        next_delay: Callable[[], float] | None = None
        maybe_acted_before = False
        last: KlarnaError | None = None
        number = 0
        while True:
            number += 1
            try:
                if pending is not None:
                    (began, last), pending = pending, None
                    raise last
                remaining = deadline_at - clock()
                timeout = min(policy.attempt_timeout, remaining)
                began = clock()
                result = await attempt(timeout)
            except KlarnaError as error:
                last = error
            except asyncio.CancelledError:
                log_cancelled(target, number, safety, idempotency_key)
                raise
            else:
                if self.on_attempt is not None:
                    self.emit(
                        operation,
                        number,
                        policy,
                        "ok",
                        None,
                        clock() - began,
                        None,
                        idempotency_key,
                        None,
                    )
                if number > 1 and logger.isEnabledFor(logging.INFO):
                    logger.info("%s succeeded on attempt %d", target, number)
                return result, number

            elapsed = clock() - began
            correlation_id = getattr(last, "correlation_id", None)
            if isinstance(last, ResponseDecodeError) and 200 <= last.status < 300:
                # Klarna acted; only the answer is unreadable. For a write, that is an unknown
                # outcome (the key finds it again); a read just reports the bad answer.
                transient, maybe_acted = False, safety is not Safety.READ
            else:
                transient, maybe_acted = classify(last)
            records.append(
                AttemptRecord(number, _describe(last), maybe_acted, correlation_id, elapsed)
            )

            if not transient:
                single_use_hidden = (
                    safety is Safety.SINGLE_USE_TOKEN
                    and maybe_acted_before
                    and isinstance(last, NotFoundError)
                )
                if single_use_hidden or (maybe_acted and safety is not Safety.READ):
                    raise self._unknown(operation, idempotency_key, records, last)
                self._emit_final(operation, number, policy, last, elapsed, idempotency_key)
                raise self._stamp(last, operation, idempotency_key, number)
            maybe_acted_before = maybe_acted_before or maybe_acted

            # A transient fault: wait and try again, if the policy, deadline and budget allow.
            reason = None
            if number >= policy.max_attempts:
                reason = f"no attempts left ({policy.max_attempts})"
            else:
                if next_delay is None:
                    next_delay = policy.delays()
                delay = next_delay()
                if isinstance(last, RateLimitedError) and last.reset is not None:
                    # The server said when; jitter on top so waiting callers do not wake as one.
                    delay = last.reset + random.uniform(0, max(policy.initial_delay, 0.05))
                if clock() + delay >= deadline_at - 0.001:
                    reason = f"the {policy.deadline:g} s deadline leaves no room for a retry"
                elif self.budget is not None and not self.budget.try_spend():
                    reason = "the client's retry budget is spent"
            if reason is not None:
                self._emit_final(operation, number, policy, last, elapsed, idempotency_key)
                if logger.isEnabledFor(logging.WARNING):
                    logger.warning(
                        "%s giving up after attempt %d/%d (%s): %s, idempotency_key=%s, "
                        "correlation_id=%s",
                        target,
                        number,
                        policy.max_attempts,
                        records[-1].outcome,
                        reason,
                        idempotency_key,
                        correlation_id,
                    )
                if maybe_acted_before and safety is not Safety.READ:
                    raise self._unknown(operation, idempotency_key, records, last)
                raise self._stamp(last, operation, idempotency_key, number)

            if self.on_attempt is not None:
                self.emit(
                    operation,
                    number,
                    policy,
                    records[-1].outcome,
                    getattr(last, "status", None),
                    elapsed,
                    delay,
                    idempotency_key,
                    correlation_id,
                )
            if logger.isEnabledFor(logging.WARNING):
                logger.warning(
                    "%s attempt %d/%d failed (%s); retrying in %.2f s, idempotency_key=%s, "
                    "correlation_id=%s",
                    target,
                    number,
                    policy.max_attempts,
                    records[-1].outcome,
                    delay,
                    idempotency_key,
                    correlation_id,
                )
            await self._sleep(delay)

    def begin(self) -> float:
        """Count a new call against the budget; its start on the retry clock."""
        if self.budget is not None:
            self.budget.record_call()
        return self.clock()

    def emit(
        self,
        operation: str,
        number: int,
        policy: RetryPolicy,
        outcome: str,
        status: int | None,
        elapsed: float,
        retry_in: float | None,
        key: str | None,
        correlation_id: str | None,
    ) -> None:
        assert self.on_attempt is not None
        self.on_attempt(
            AttemptEvent(
                operation,
                number,
                policy.max_attempts,
                outcome,
                status,
                elapsed,
                retry_in,
                key,
                correlation_id,
            )
        )

    def _emit_final(
        self,
        operation: str,
        number: int,
        policy: RetryPolicy,
        error: KlarnaError,
        elapsed: float,
        key: str | None,
    ) -> None:
        if self.on_attempt is not None:
            self.emit(
                operation,
                number,
                policy,
                _describe(error),
                getattr(error, "status", None),
                elapsed,
                None,
                key,
                getattr(error, "correlation_id", None),
            )

    @staticmethod
    def _stamp(error: KlarnaError, operation: str, key: str | None, attempts: int) -> KlarnaError:
        error.operation = operation
        error.idempotency_key = key
        error.attempts = attempts
        return error

    def _unknown(
        self,
        operation: str,
        key: str | None,
        records: list[AttemptRecord],
        last: KlarnaError,
    ) -> OutcomeUnknownError:
        if key is not None:
            advice = "repeat the call with the same idempotency_key within 24 hours to learn it"
        else:
            advice = (
                "do not authorize again blindly; wait for Klarna's notification or look the "
                "order up by merchant_reference1"
            )
        error = OutcomeUnknownError(
            f"Klarna may or may not have acted on {operation}: {advice}",
            attempt_log=records,
            last_error=last,
        )
        error.__cause__ = last
        self._stamp(last, operation, key, len(records))
        return self._stamp(error, operation, key, len(records))  # type: ignore[return-value]
