"""Retries that cannot charge twice, and the truth about what happened when they end.

Every call of the client goes through :meth:`Retrier.run`: one loop, top to bottom, around a pure
function, :func:`classify`, that turns one attempt's error into a :class:`Decision`.

**The outcome model** (per idempotency key, not per call). Rules, each tested:

1. *Retried* (transient): 429; 503; 502 and 504; Klarna's 500 ``TIMEOUT``; 408 and 425;
   a 409 on a write with an idempotency key (another attempt with that key may still be in
   flight; repeating it returns its result); connections refused, reset or dropped; timeouts.
   Nothing else: no other 4xx, no other 5xx (a plain 500 is a fault that does not pass in half
   a second), no unreadable success. Every attempt sends the same key and the same body bytes.
2. *Answered before processing* (proves nothing was done): a connection that could not be
   opened; a 429; a 503 with Klarna's own JSON body and a code of the "try again later" family
   (``SERVICE_UNAVAILABLE``, ``TEMPORARILY_UNAVAILABLE``). A definite 4xx answer is Klarna's
   word that it did not act on *that* attempt.
3. *Maybe acted*: anything else after the request may have left: a timeout after sending, a
   dropped connection, 502/504, a 503 that is not Klarna's JSON (a gateway's ``text/plain``
   "upstream connect error", an empty or HTML page: the gateway may have forwarded it), any other
   5xx (status decides before code: ``500 NOT_FOUND`` is a 500), a 3xx or any status we do not
   know, an unreadable 2xx, a 409 on a keyed write, an attempt cut off by the client's close, and
   any unforeseen exception during an attempt.
4. *The end of a write*: once any attempt may have acted, the call ends in success or
   :class:`OutcomeUnknownError`, whatever later attempts answer (409, 4xx, 503, the budget
   spent, the deadline, the client closed). A write ends in a plain error ("not done") only when
   no attempt may have acted. Reads report their last error.
5. *Per key*: a write that ended unknown is remembered, by idempotency key (or a hash of the
   single-use authorization token), for Klarna's 24-hour key window (bounded, oldest first
   out). A later call with that key (a re-drive), or one that says so (``after_unknown=True``,
   e.g. after a restart), starts as "may have acted": **a re-drive settles only on a 2xx**,
   Klarna's answer with the order the first attempt placed (or places now). A 4xx on a re-drive
   does not prove the first attempt did nothing (Klarna documents neither the order of its
   checks nor whether it stores refusals), so it stays unknown, with Klarna's answer attached.
6. *Hooks and waits*: an ``on_attempt`` hook that raises is logged and ignored; it never
   changes an outcome (nor does telemetry, whose hooks catch their own errors). No wait
   (backoff, ``X-Ratelimit-Reset``/``Retry-After``, the rate limiter's pause) runs past the
   call's deadline; header values that are not finite numbers >= 0 are ignored; a server's wait
   is capped at 60 s.

Waits use backoff's exponential generator with full jitter (each wait uniform in
``[0, min(max_delay, initial_delay * 2**n)]``). A client-wide :class:`RetryBudget` caps retries to
a share of recent traffic, so an outage cannot multiply a batch's load.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import random
import time
from asyncio import current_task
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import attrs
import backoff

from klarna_async._errors import (
    ApiError,
    AttemptRecord,
    ClientClosedError,
    DeadlineExceededError,
    KlarnaError,
    OutcomeUnknownError,
    RateLimitedError,
    ResponseDecodeError,
    TransportError,
)
from klarna_async._ratelimit import MAX_PAUSE

if TYPE_CHECKING:
    from klarna_async._ratelimit import Pacer

__all__ = [
    "AttemptEvent",
    "Decision",
    "InFlight",
    "Operation",
    "Retrier",
    "RetryBudget",
    "RetryPolicy",
    "Safety",
    "UnknownOutcomes",
    "classify",
    "mask_token",
]

T = TypeVar("T")
A = TypeVar("A")  # an attempt's raw answer (the transport's)
logger = logging.getLogger("klarna_async")

#: How long Klarna keeps an idempotency key (D-RETRY): within it, a repeat returns the first
#: result; after it, a repeat may act again.
KEY_WINDOW = 24 * 3600.0
#: 503 codes by which Klarna itself says "not processed, try again later" (KP/CT, OM).
_NOT_PROCESSED_503 = frozenset({"SERVICE_UNAVAILABLE", "TEMPORARILY_UNAVAILABLE"})


class Safety(enum.Enum):
    """What repeating an operation can do; decides what may be retried and what we say after."""

    #: GET: repeating cannot change anything.
    READ = "read"
    #: Carries a ``Klarna-Idempotency-Key``: Klarna acts once per key within 24 hours.
    IDEMPOTENCY_KEY = "idempotency_key"
    #: Uses a single-use authorization token: a repeat cannot act twice, but answers NOT_FOUND
    #: once the token has been used, whether or not by us.
    SINGLE_USE_TOKEN = "single_use_token"  # noqa: S105 - a name, not a secret
    #: A repeat is harmless (a second session, a cancellation requested twice).
    HARMLESS = "harmless"


class Decision(enum.Enum):
    """What one failed attempt means: may we try again, and may Klarna have acted on it."""

    RETRY_NOT_ACTED = (True, False)
    RETRY_MAYBE_ACTED = (True, True)
    FINAL_NOT_ACTED = (False, False)
    FINAL_MAYBE_ACTED = (False, True)

    @property
    def retry(self) -> bool:
        return self.value[0]

    @property
    def maybe_acted(self) -> bool:
        return self.value[1]


def classify(error: BaseException, safety: Safety = Safety.IDEMPOTENCY_KEY) -> Decision:
    """The :class:`Decision` for the error of one attempt (rules 1-3 of the module docstring).

    Pure: it reads the error's class, status, code and body kind, and the operation's safety.
    """
    if isinstance(error, TransportError):
        return Decision.RETRY_MAYBE_ACTED if error.maybe_sent else Decision.RETRY_NOT_ACTED
    if isinstance(error, (ClientClosedError, DeadlineExceededError)):
        return Decision.FINAL_NOT_ACTED  # raised before this attempt was sent
    if isinstance(error, ApiError):
        status = error.status
        if status == 429:
            return Decision.RETRY_NOT_ACTED
        if status >= 500:
            # Only Klarna's own JSON carries a code (a gateway's page is a ProxyError, without).
            if status == 503 and error.error_code in _NOT_PROCESSED_503:
                return Decision.RETRY_NOT_ACTED
            if status in (502, 503, 504) or error.error_code == "TIMEOUT":
                return Decision.RETRY_MAYBE_ACTED
            return Decision.FINAL_MAYBE_ACTED
        if status in (408, 425) or (status == 409 and safety is Safety.IDEMPOTENCY_KEY):
            return Decision.RETRY_MAYBE_ACTED
        if 400 <= status < 500:
            return Decision.FINAL_NOT_ACTED
        return Decision.FINAL_MAYBE_ACTED  # 1xx, 3xx: nothing Klarna documents
    if isinstance(error, ResponseDecodeError):
        # A 2xx we cannot read: Klarna acted, only the answer is lost. (A read just reports it.)
        return Decision.FINAL_MAYBE_ACTED
    # Anything unforeseen during an attempt: the request may have gone out.
    return Decision.FINAL_MAYBE_ACTED


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
        if not (ratio >= 0 and min_per_second >= 0 and window >= 1):
            raise ValueError("ratio and min_per_second must be >= 0 and window >= 1 s")
        self.ratio = ratio
        self.min_per_second = min_per_second
        self.window = window
        self.clock = clock
        self._slots = int(window)
        # One bucket a second: [second, calls, retries]; counting is O(1) per call.
        self._buckets = [[-1, 0, 0] for _ in range(self._slots)]
        self.denied = 0

    def _bucket(self) -> list[int]:
        second = int(self.clock())
        bucket = self._buckets[second % self._slots]
        if bucket[0] != second:
            bucket[0], bucket[1], bucket[2] = second, 0, 0
        return bucket

    def record_call(self) -> None:
        """Count one call (every call of the client passes here once)."""
        second = int(self.clock())
        bucket = self._buckets[second % self._slots]
        if bucket[0] != second:
            bucket[0], bucket[1], bucket[2] = second, 1, 0
        else:
            bucket[1] += 1

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


class UnknownOutcomes:
    """The keys of writes this client reported unknown, each for Klarna's 24-hour key window.

    Bounded (``limit`` keys, the oldest dropped first): a re-drive of a key dropped early is
    judged like a first call, which is why ``after_unknown=True`` exists for callers that keep
    their own record (the batch command's results file does).
    """

    def __init__(
        self,
        *,
        limit: int = 100_000,
        window: float = KEY_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        #: Each remembered key and when it was first reported unknown (oldest first).
        self.since: collections.OrderedDict[str, float] = collections.OrderedDict()

    def __contains__(self, key: str) -> bool:
        since = self.since.get(key)
        if since is None:
            return False
        if self.clock() - since > self.window:
            del self.since[key]
            return False
        return True

    def __len__(self) -> int:
        return len(self.since)

    def remember(self, key: str) -> None:
        # The window counts from the first unknown outcome: a later one does not extend it.
        if key not in self.since:
            self.since[key] = self.clock()
            while len(self.since) > self.limit:
                self.since.popitem(last=False)

    def forget(self, key: str) -> None:
        self.since.pop(key, None)


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


def mask_token(token: str) -> str:
    """A token as logs may show it: enough to tell two apart, never enough to use one."""
    return "****" + token[-4:] if len(token) > 8 else "****"


def _describe(error: BaseException) -> str:
    if isinstance(error, ApiError):
        return (
            f"HTTP {error.status} {error.error_code}"
            if error.error_code
            else f"HTTP {error.status}"
        )
    if isinstance(error, ResponseDecodeError):
        return f"HTTP {error.status} undecodable"
    if isinstance(error, KlarnaError):
        return error.message
    # Unforeseen: its type only (its text may hold anything, a URL with a token included).
    return f"unexpected {type(error).__name__}"


class Operation(Protocol):
    """What the loop needs to know of an operation (``_request.Endpoint`` is one)."""

    @property
    def operation(self) -> str: ...

    @property
    def safety(self) -> Safety: ...

    def describe(self, param: str | tuple[str, ...] | None) -> str:
        """The call as logs may name it (tokens masked)."""
        ...


class InFlight:
    """The calls of one client now running, so that closing can wait for them, then cut off
    the rest (rule 4: a call cut off ends unknown if it may have acted, never "not done").

    ``calls`` maps each task inside a call to when that call's deadline ends (on the retrier's
    clock): two dict operations per call, which every call pays for; the close polls it rather
    than have every call signal an event. After :meth:`close` no call starts another attempt;
    ``cut`` holds the tasks a close cancelled.
    """

    def __init__(self) -> None:
        self.calls: dict[asyncio.Task[Any], float] = {}
        self.cut: set[asyncio.Task[Any]] = set()
        #: True once closed: no call starts another attempt.
        self.stopped = False

    async def settle(self, timeout: float, *, besides: asyncio.Task[Any] | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the calls in flight (other than ``besides``) to
        end; True when they all did."""
        loop = asyncio.get_running_loop()
        until = loop.time() + max(timeout, 0.0)
        while any(task is not besides for task in self.calls):
            if loop.time() >= until:
                return False
            await asyncio.sleep(0.005)
        return True

    def close(self) -> None:
        """No call starts another attempt from now on."""
        self.stopped = True

    def was_cut_off(self) -> bool:
        """Asked on a cancellation: True when close() cut this call off (the cancellation is
        then taken back), False when someone else cancelled (it goes on up)."""
        task = asyncio.current_task()
        if task is None or task not in self.cut:
            return False
        self.cut.discard(task)
        return task.uncancel() == 0


class Retrier:
    """Runs one call's attempts under a policy, the client's budget, pacer and deadline, and
    keeps the client's :class:`InFlight` record of running calls."""

    def __init__(
        self,
        budget: RetryBudget | None,
        on_attempt: Callable[[AttemptEvent], None] | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        unknown: UnknownOutcomes | None = None,
        in_flight: InFlight | None = None,
    ) -> None:
        self.budget = budget
        self.on_attempt = on_attempt
        self._sleep = sleep
        self.clock = clock
        self.unknown = unknown if unknown is not None else UnknownOutcomes(clock=clock)
        self.in_flight = in_flight if in_flight is not None else InFlight()

    async def run(
        self,
        endpoint: Operation,
        param: str | tuple[str, ...] | None,
        policy: RetryPolicy,
        idempotency_key: str | None,
        send: Callable[[float], Awaitable[A]],
        read: Callable[[A], T],
        memory_key: str | None = None,
        after_unknown: bool = False,
        pacer: Pacer | None = None,
        on_wait: Callable[[float, str, BaseException | None], None] | None = None,
    ) -> tuple[T, int]:
        """Make attempts until one succeeds; give its result and the number of attempts sent.

        An attempt is ``read(await send(timeout))``: ``send`` makes one request and returns the
        answer, ``read`` turns the answer into the result or raises that attempt's error (two
        callables rather than one coroutine: the transport's coroutine is awaited here directly,
        one frame fewer on every resume of a call). ``endpoint`` and ``param`` name the call (in
        logs: ``endpoint.describe(param)``, tokens masked). ``memory_key`` is what this write
        is remembered by when it ends unknown (the idempotency key, or a hash of a single-use
        token); ``after_unknown`` says an earlier call with it may have acted.

        ``on_wait(seconds, reason, error)`` (telemetry; it must not raise) hears of every wait:
        ``"client_rate_limit"`` after the pacer held an attempt back (``error`` None), and
        before each retry ``"backoff"`` (jittered) or ``"server_rate_limit"`` (a 429's reset),
        with the error being retried.
        """
        # Every call runs this; most end on their first attempt. So the success path reads few
        # attributes and calls few functions (each costs about twice as much in place, in a
        # busy event loop, as in a micro-benchmark: benchmarks/OPTIMIZATIONS.md).
        clock = self.clock
        began = clock()
        deadline_at = began + policy.deadline
        in_flight = self.in_flight
        calls = in_flight.calls
        task = current_task()
        if task is not None:
            calls[task] = deadline_at
        try:
            if self.budget is not None:
                self.budget.record_call()
            operation = endpoint.operation
            safety = endpoint.safety
            write = safety is not Safety.READ
            # Rule 5: a re-drive of a write that ended unknown starts as "may have acted".
            acted = write and (
                after_unknown
                or (memory_key is not None and self.unknown.since and memory_key in self.unknown)
            )
            records: list[AttemptRecord] = []
            next_delay: Callable[[], float] | None = None
            sent = 0
            error: BaseException
            while True:
                # Not one more attempt once the client is closed (nothing of it would be sent).
                if in_flight.stopped:
                    error = ClientClosedError("the client was closed; this attempt was not sent")
                    break
                if pacer is not None:
                    try:
                        waited = await pacer.acquire(deadline_at - clock())
                    except asyncio.CancelledError:
                        if not in_flight.was_cut_off():
                            raise
                        error = ClientClosedError(
                            "the client was closed; this attempt was not sent"
                        )
                        break
                    except Exception as exc:  # a broken pacer: nothing was sent
                        error = exc
                        break
                    if waited is None:
                        error = DeadlineExceededError(
                            "the rate limiter's next turn is past the call's "
                            f"{policy.deadline:g} s deadline; this attempt was not sent"
                        )
                        break
                    if waited > 0:
                        began = clock()  # the attempt's time starts after the wait
                        if on_wait is not None:
                            on_wait(waited, "client_rate_limit", None)
                if sent:  # the first attempt starts when the call does
                    began = clock()
                left = deadline_at - began
                timeout = policy.attempt_timeout if policy.attempt_timeout < left else left
                sent += 1
                try:
                    result = read(await send(timeout))
                except asyncio.CancelledError:
                    if not in_flight.was_cut_off():
                        if write:
                            logger.warning(
                                "%s cancelled during attempt %d; Klarna may have acted "
                                "(idempotency_key=%s)",
                                endpoint.describe(param),
                                sent,
                                idempotency_key,
                            )
                        raise
                    error = TransportError("the client was closed during this attempt")
                except Exception as exc:  # classified: rule 3, "unforeseen"
                    error = exc
                else:
                    if acted and memory_key is not None:
                        self.unknown.forget(memory_key)  # settled: rule 5
                    if self.on_attempt is not None:
                        elapsed = clock() - began
                        self._emit(
                            operation, sent, policy, "ok", None, elapsed, None, idempotency_key
                        )
                    if sent > 1 and logger.isEnabledFor(logging.INFO):
                        logger.info("%s succeeded on attempt %d", endpoint.describe(param), sent)
                    return result, sent

                elapsed = clock() - began
                decision = classify(error, safety)
                acted = acted or (write and decision.maybe_acted)
                outcome = _describe(error)
                correlation_id = getattr(error, "correlation_id", None)
                records.append(
                    AttemptRecord(sent, outcome, decision.maybe_acted, correlation_id, elapsed)
                )
                if not decision.retry:
                    self._emit_final(operation, sent, policy, error, elapsed, idempotency_key)
                    break

                # A transient fault: wait and try again, if the policy, deadline and budget allow.
                reason = None
                delay = 0.0
                reset: float | None = None
                if sent >= policy.max_attempts:
                    reason = f"no attempts left ({policy.max_attempts})"
                elif in_flight.stopped:  # closed while this attempt was out (mypy cannot tell)
                    reason = "the client is closed"  # type: ignore[unreachable]
                else:
                    if next_delay is None:
                        next_delay = policy.delays()
                    delay = next_delay()
                    reset = error.reset if isinstance(error, RateLimitedError) else None
                    if reset is not None:
                        # The server said when; jitter on top so waiting callers do not wake as one.
                        delay = min(reset, MAX_PAUSE) + random.uniform(
                            0, max(policy.initial_delay, 0.05)
                        )
                    if clock() + delay >= deadline_at - 0.001:
                        reason = f"the {policy.deadline:g} s deadline leaves no room for a retry"
                    elif self.budget is not None and not self.budget.try_spend():
                        reason = "the client's retry budget is spent"
                if reason is not None:
                    self._emit_final(operation, sent, policy, error, elapsed, idempotency_key)
                    if logger.isEnabledFor(logging.WARNING):
                        logger.warning(
                            "%s giving up after attempt %d/%d (%s): %s, idempotency_key=%s, "
                            "correlation_id=%s",
                            endpoint.describe(param),
                            sent,
                            policy.max_attempts,
                            outcome,
                            reason,
                            idempotency_key,
                            correlation_id,
                        )
                    break
                if self.on_attempt is not None:
                    status = getattr(error, "status", None)
                    self._emit(
                        operation,
                        sent,
                        policy,
                        outcome,
                        status,
                        elapsed,
                        delay,
                        idempotency_key,
                        correlation_id,
                    )
                if logger.isEnabledFor(logging.WARNING):
                    logger.warning(
                        "%s attempt %d/%d failed (%s); retrying in %.2f s, idempotency_key=%s, "
                        "correlation_id=%s",
                        endpoint.describe(param),
                        sent,
                        policy.max_attempts,
                        outcome,
                        delay,
                        idempotency_key,
                        correlation_id,
                    )
                if on_wait is not None:
                    on_wait(delay, "backoff" if reset is None else "server_rate_limit", error)
                try:
                    await self._sleep(delay)
                except asyncio.CancelledError:
                    if not in_flight.was_cut_off():
                        raise
                    error = ClientClosedError(
                        "the client was closed; the next attempt was not sent"
                    )
                    break

            # The end (rule 4). Raised here, outside any `except`, so that no exception below us
            # (aiohttp's, with every request header in it) becomes our error's __context__.
            if acted:
                if memory_key is not None:
                    self.unknown.remember(memory_key)
                raise self._unknown(operation, idempotency_key, records, error)
            if isinstance(error, KlarnaError):
                _stamp(error, operation, idempotency_key, sent)
            raise error
        finally:
            if task is not None:
                del calls[task]

    def _emit(
        self,
        operation: str,
        number: int,
        policy: RetryPolicy,
        outcome: str,
        status: int | None,
        elapsed: float,
        retry_in: float | None,
        key: str | None,
        correlation_id: str | None = None,
    ) -> None:
        assert self.on_attempt is not None
        event = AttemptEvent(
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
        try:
            self.on_attempt(event)
        except Exception as exc:  # rule 6: a hook never changes an outcome
            logger.warning(
                "on_attempt hook raised %s on %s attempt %d; ignored",
                type(exc).__name__,
                operation,
                number,
            )

    def _emit_final(
        self,
        operation: str,
        number: int,
        policy: RetryPolicy,
        error: BaseException,
        elapsed: float,
        key: str | None,
    ) -> None:
        if self.on_attempt is not None:
            self._emit(
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
    def _unknown(
        operation: str,
        key: str | None,
        records: list[AttemptRecord],
        last: BaseException,
    ) -> OutcomeUnknownError:
        if key is not None:
            advice = (
                "repeat the call with the same idempotency_key within 24 hours; only Klarna's "
                "success answer settles it"
            )
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
        if isinstance(last, KlarnaError):
            # Chained for tracebacks: our own errors are scrubbed. An unforeseen exception is
            # kept as last_error only, never chained: its text and attributes are unknown.
            error.__cause__ = last
            _stamp(last, operation, key, len(records))
        return _stamp(error, operation, key, len(records))


E = TypeVar("E", bound=KlarnaError)


def _stamp(error: E, operation: str, key: str | None, attempts: int) -> E:
    error.operation = operation
    error.idempotency_key = key
    error.attempts = attempts
    return error
