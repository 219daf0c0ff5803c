"""The retry layer on its own: which faults are retried, waits, deadline, budget, the truth."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import pytest

from klarna_async import (
    ApiError,
    BadRequestError,
    ClientClosedError,
    ConflictError,
    ConnectError,
    DeadlineExceededError,
    ForbiddenError,
    KlarnaError,
    KlarnaTimeoutError,
    NotFoundError,
    OutcomeUnknownError,
    PaymentMethodFailedError,
    ProxyError,
    RateLimitedError,
    RequestTimeoutError,
    ResponseDecodeError,
    RetryBudget,
    RetryPolicy,
    ServerError,
    ServiceUnavailableError,
    SessionCompletedError,
    TransportError,
    UnauthorizedError,
)
from klarna_async._errors import error_class_for
from klarna_async._retry import (
    AttemptEvent,
    Decision,
    InFlight,
    Retrier,
    Safety,
    UnknownOutcomes,
    classify,
    mask_token,
)


class FakeTime:
    """A monotonic clock and sleep that move only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def script(outcomes: Sequence[object], time: FakeTime | None = None, cost: float = 0.0):
    """An attempt function answering from a list: exceptions are raised, values returned."""
    calls: list[float] = []

    async def attempt(timeout: float) -> object:
        calls.append(timeout)
        if time is not None:
            time.now += min(cost, timeout)  # a timed-out attempt lasts its timeout
        outcome = outcomes[len(calls) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    attempt.calls = calls  # type: ignore[attr-defined]
    return attempt


def api(cls: type, status: int, code: str | None = None, **headers: str) -> KlarnaError:
    return cls(
        status=status,
        error_code=code,
        error_messages=["x"],
        correlation_id="corr",
        headers={k.replace("_", "-"): v for k, v in headers.items()},
    )


def retrier(
    time: FakeTime,
    budget: RetryBudget | None = None,
    on_attempt: Callable[[AttemptEvent], None] | None = None,
    **options: Any,
) -> Retrier:
    return Retrier(budget, on_attempt, sleep=time.sleep, clock=time.clock, **options)


def _as_is(answer: object) -> object:
    """The tests' attempts return their result as the answer."""
    return answer


@attrs.frozen
class Op:
    """An operation as the retry loop sees it (``_request.Endpoint`` in the client)."""

    safety: Safety
    operation: str = "customer_tokens.create_order"

    def describe(self, param: str | None) -> str:
        return f"op {mask_token(param or '')}"


async def run(
    r: Retrier,
    attempt,
    safety: Safety = Safety.IDEMPOTENCY_KEY,
    policy: RetryPolicy | None = None,
    key: str | None = "key-1",
    **options: Any,
):
    return await r.run(
        Op(safety),
        "0b1d9815-165e-42e2-8867-35bc0378abcd",
        policy=policy or RetryPolicy(),
        idempotency_key=key,
        send=attempt,
        read=_as_is,
        memory_key=options.pop("memory_key", key),
        **options,
    )


class TestClassify:
    @pytest.mark.parametrize(
        ("error", "expected"),
        [
            # Answered before any processing: safe to send again.
            (ConnectError("refused"), Decision.RETRY_NOT_ACTED),
            (RequestTimeoutError("connect", maybe_sent=False), Decision.RETRY_NOT_ACTED),
            (api(ServiceUnavailableError, 503, "SERVICE_UNAVAILABLE"), Decision.RETRY_NOT_ACTED),
            (
                api(ServiceUnavailableError, 503, "TEMPORARILY_UNAVAILABLE"),
                Decision.RETRY_NOT_ACTED,
            ),
            (api(RateLimitedError, 429), Decision.RETRY_NOT_ACTED),
            # After sending: may have acted, and a repeat (same key) is safe.
            (RequestTimeoutError("slow"), Decision.RETRY_MAYBE_ACTED),
            (TransportError("reset"), Decision.RETRY_MAYBE_ACTED),
            (api(KlarnaTimeoutError, 500, "TIMEOUT"), Decision.RETRY_MAYBE_ACTED),
            (api(ServerError, 502), Decision.RETRY_MAYBE_ACTED),
            (api(ServerError, 504), Decision.RETRY_MAYBE_ACTED),
            (ProxyError(status=502, body=b"<html>"), Decision.RETRY_MAYBE_ACTED),
            # A 503 that is not Klarna's own JSON: a gateway that may have forwarded it.
            (ProxyError(status=503, body=b"<html>"), Decision.RETRY_MAYBE_ACTED),
            (ProxyError(status=503, body=b""), Decision.RETRY_MAYBE_ACTED),
            (api(ServiceUnavailableError, 503, "NOT_FOUND"), Decision.RETRY_MAYBE_ACTED),
            # Status before code: a 5xx with a 4xx code is a fault, not a definite "no".
            (api(NotFoundError, 500, "NOT_FOUND"), Decision.FINAL_MAYBE_ACTED),
            (api(BadRequestError, 502, "BAD_REQUEST"), Decision.RETRY_MAYBE_ACTED),
            (api(ForbiddenError, 504, "REJECTED"), Decision.RETRY_MAYBE_ACTED),
            (api(ServerError, 500, "INTERNAL_SERVER_ERROR"), Decision.FINAL_MAYBE_ACTED),
            (ProxyError(status=500, body=b"<html>"), Decision.FINAL_MAYBE_ACTED),
            (api(ServerError, 501), Decision.FINAL_MAYBE_ACTED),
            # Statuses Klarna does not document for these calls.
            (api(ApiError, 302), Decision.FINAL_MAYBE_ACTED),
            (api(ApiError, 408), Decision.RETRY_MAYBE_ACTED),
            (api(ApiError, 425), Decision.RETRY_MAYBE_ACTED),
            # A 409 on a keyed write: the same key may be in flight.
            (api(ConflictError, 409), Decision.RETRY_MAYBE_ACTED),
            # Klarna's definite answers.
            (api(BadRequestError, 400, "BAD_REQUEST"), Decision.FINAL_NOT_ACTED),
            (api(UnauthorizedError, 401), Decision.FINAL_NOT_ACTED),
            (api(ForbiddenError, 403), Decision.FINAL_NOT_ACTED),
            (api(NotFoundError, 404, "NOT_FOUND"), Decision.FINAL_NOT_ACTED),
            (api(PaymentMethodFailedError, 403, "PAYMENT_METHOD_FAILED"), Decision.FINAL_NOT_ACTED),
            # Klarna acted, but its answer cannot be read.
            (ResponseDecodeError("bad", status=200), Decision.FINAL_MAYBE_ACTED),
            # Never sent.
            (ClientClosedError("closed"), Decision.FINAL_NOT_ACTED),
            (DeadlineExceededError("late"), Decision.FINAL_NOT_ACTED),
            # Anything unforeseen during an attempt.
            (RuntimeError("Session is closed"), Decision.FINAL_MAYBE_ACTED),
            (KeyError("x"), Decision.FINAL_MAYBE_ACTED),
        ],
    )
    def test_decisions(self, error: BaseException, expected: Decision):
        """Only passing faults are retried; only answers from before processing prove nothing
        was done; a status Klarna does not document or an unforeseen error may have acted."""
        assert expected == classify(error, Safety.IDEMPOTENCY_KEY)

    def test_409_without_a_key_is_klarnas_answer(self):
        """Without an idempotency key, 409 is the spec's 'does not match the session'."""
        assert Decision.FINAL_NOT_ACTED == classify(
            api(ConflictError, 409), Safety.SINGLE_USE_TOKEN
        )

    def test_error_classes_follow_the_status_for_5xx(self):
        """The class of a 5xx never says 'definite 4xx': 500 NOT_FOUND is a ServerError."""
        assert error_class_for(500, "NOT_FOUND") is ServerError
        assert error_class_for(502, "BAD_REQUEST") is ServerError
        assert error_class_for(503, "REJECTED") is ServiceUnavailableError
        assert error_class_for(500, "TIMEOUT") is KlarnaTimeoutError
        assert error_class_for(404, "NOT_FOUND") is NotFoundError
        assert error_class_for(400, "SERVICE_UNAVAILABLE") is BadRequestError


class TestRetries:
    async def test_503_then_success(self):
        """A 503 is retried after a jittered wait within the first cap; the result comes back."""
        time = FakeTime()
        attempt = script([api(ServiceUnavailableError, 503, "SERVICE_UNAVAILABLE"), "order"])
        result, attempts = await run(retrier(time), attempt)
        assert ("order", 2) == (result, attempts)
        assert len(time.sleeps) == 1
        assert 0 <= time.sleeps[0] <= 0.5

    @pytest.mark.parametrize(
        "error",
        [
            api(BadRequestError, 400, "BAD_REQUEST"),
            api(UnauthorizedError, 401),
            api(ForbiddenError, 403),
            api(NotFoundError, 404, "NOT_FOUND"),
        ],
    )
    async def test_no_retry_on_4xx(self, error: KlarnaError):
        """400, 401, 403 and 404 end the call at once, stamped with key and attempts."""
        time = FakeTime()
        attempt = script([error, "never"])
        with pytest.raises(type(error)) as caught:
            await run(retrier(time), attempt)
        assert caught.value is error
        assert (1, "key-1", 1) == (
            len(attempt.calls),
            caught.value.idempotency_key,
            caught.value.attempts,
        )
        assert [] == time.sleeps

    async def test_attempts_are_bounded_and_definite_failure_is_reported(self):
        """Three 503s (nothing processed) end as the last 503, not as an unknown outcome."""
        time = FakeTime()
        errors = [api(ServiceUnavailableError, 503, "SERVICE_UNAVAILABLE") for _ in range(3)]
        with pytest.raises(ServiceUnavailableError) as caught:
            await run(retrier(time), script(errors))
        assert 3 == caught.value.attempts
        assert len(time.sleeps) == 2
        assert time.sleeps[1] <= 1.0

    async def test_write_that_may_have_acted_is_outcome_unknown(self):
        """Timeouts after sending, then no attempts left: OutcomeUnknownError with the key."""
        time = FakeTime()
        attempt = script(
            [
                RequestTimeoutError("t1"),
                TransportError("reset"),
                api(ServiceUnavailableError, 503, "SERVICE_UNAVAILABLE"),
            ]
        )
        with pytest.raises(OutcomeUnknownError) as caught:
            await run(retrier(time), attempt)
        error = caught.value
        assert ("key-1", 3) == (error.idempotency_key, error.attempts)
        assert [True, True, False] == [a.maybe_acted for a in error.attempt_log]
        assert isinstance(error.last_error, ServiceUnavailableError)
        assert "same idempotency_key" in str(error)

    async def test_read_that_times_out_reports_the_timeout(self):
        """A read cannot have acted: its last error is raised as it is."""
        time = FakeTime()
        attempt = script([RequestTimeoutError("t")] * 3)
        with pytest.raises(RequestTimeoutError):
            await run(retrier(time), attempt, safety=Safety.READ, key=None)

    async def test_plain_500_on_a_write_is_outcome_unknown_without_retry(self):
        """500 INTERNAL_SERVER_ERROR is not retried, and a write may have acted."""
        time = FakeTime()
        attempt = script([api(ServerError, 500, "INTERNAL_SERVER_ERROR"), "never"])
        with pytest.raises(OutcomeUnknownError):
            await run(retrier(time), attempt)
        assert 1 == len(attempt.calls)

    async def test_single_use_token_not_found_after_lost_answer(self):
        """A one-time order whose answer was lost, then NOT_FOUND: the order may exist."""
        time = FakeTime()
        attempt = script([TransportError("lost"), api(NotFoundError, 404, "NOT_FOUND")])
        with pytest.raises(OutcomeUnknownError) as caught:
            await run(retrier(time), attempt, safety=Safety.SINGLE_USE_TOKEN, key=None)
        assert caught.value.idempotency_key is None
        assert "merchant_reference1" in str(caught.value)

    async def test_single_use_token_session_completed_after_gateway_timeout(self):
        """SESSION_COMPLETED after a 504 is just as ambiguous."""
        time = FakeTime()
        attempt = script(
            [api(ServerError, 504), api(SessionCompletedError, 404, "SESSION_COMPLETED")]
        )
        with pytest.raises(OutcomeUnknownError):
            await run(retrier(time), attempt, safety=Safety.SINGLE_USE_TOKEN, key=None)

    async def test_single_use_token_not_found_after_503_is_not_found(self):
        """After a 503 (nothing processed) NOT_FOUND means what it says."""
        time = FakeTime()
        attempt = script(
            [
                api(ServiceUnavailableError, 503, "SERVICE_UNAVAILABLE"),
                api(NotFoundError, 404, "NOT_FOUND"),
            ]
        )
        with pytest.raises(NotFoundError):
            await run(retrier(time), attempt, safety=Safety.SINGLE_USE_TOKEN, key=None)

    async def test_rate_limited_waits_for_reset(self):
        """429 with X-Ratelimit-Reset waits that long (plus a little jitter), then retries."""
        time = FakeTime()
        attempt = script([api(RateLimitedError, 429, X_Ratelimit_Reset="2"), "ok"])
        assert ("ok", 2) == await run(retrier(time), attempt)
        assert 2.0 <= time.sleeps[0] <= 2.5

    async def test_rate_limit_reset_beyond_deadline_gives_up(self):
        """A reset that the deadline cannot wait for ends the call with the 429."""
        time = FakeTime()
        attempt = script([api(RateLimitedError, 429, Retry_After="120"), "ok"])
        with pytest.raises(RateLimitedError):
            await run(retrier(time), attempt)
        assert [] == time.sleeps

    async def test_deadline_cuts_attempt_timeouts_and_stops(self):
        """Each attempt gets what is left of the deadline; no retry once it is spent."""
        time = FakeTime()
        policy = RetryPolicy(
            max_attempts=10, deadline=5.0, attempt_timeout=3.0, initial_delay=0.0, max_delay=0.0
        )
        attempt = script([RequestTimeoutError("t")] * 10, time=time, cost=3.0)
        with pytest.raises(OutcomeUnknownError):
            await run(retrier(time), attempt, policy=policy)
        assert [3.0, 2.0] == attempt.calls
        assert time.now - 1000.0 <= 5.0 + 1e-9

    async def test_waits_grow_and_are_capped(self):
        """Full jitter under caps of 0.5, 1, 2, 4, 4 s: every wait within its cap, and over many
        calls the waits are real (> 0) and their mean grows with the cap."""
        policy = RetryPolicy(max_attempts=6, deadline=1000)
        per_step: list[list[float]] = [[] for _ in range(5)]
        for _ in range(200):
            time = FakeTime()
            attempt = script([ConnectError("refused")] * 5 + ["ok"])
            await run(retrier(time), attempt, policy=policy)
            assert 5 == len(time.sleeps)
            for step, (wait, cap) in enumerate(zip(time.sleeps, [0.5, 1, 2, 4, 4], strict=True)):
                assert 0 <= wait <= cap
                per_step[step].append(wait)
        means = [sum(waits) / len(waits) for waits in per_step]
        # Uniform on [0, cap]: means near 0.25, 0.5, 1, 2, 2 (200 samples each).
        for mean, cap in zip(means, [0.5, 1, 2, 4, 4], strict=True):
            assert 0.35 * cap < mean < 0.65 * cap, means
        assert means[0] < means[1] < means[2] < means[3]

    async def test_cancellation_propagates_and_is_logged_for_writes(self, caplog):
        """A cancelled caller stops the call; no attempt goes on, and the log says so."""
        time = FakeTime()
        started = asyncio.Event()

        async def attempt(timeout: float) -> object:
            started.set()
            await asyncio.sleep(3600)
            raise AssertionError("unreachable")

        task = asyncio.create_task(run(retrier(time), attempt))
        await started.wait()
        with caplog.at_level(logging.WARNING, logger="klarna_async"):
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert "may have acted" in caplog.text
        assert "key-1" in caplog.text


class TestPolicy:
    @pytest.mark.parametrize(
        "kwargs",
        [
            {"max_attempts": 0},
            {"max_attempts": None},
            {"max_attempts": True},
            {"deadline": 0},
            {"attempt_timeout": -1},
            {"initial_delay": -0.1},
        ],
    )
    def test_rejects_nonsense(self, kwargs):
        """None, 0 or negative values are refused loudly instead of meaning 'never' or 'ever'."""
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            RetryPolicy(**kwargs)

    async def test_no_retries(self):
        """RetryPolicy.no_retries() makes exactly one attempt."""
        time = FakeTime()
        attempt = script([ConnectError("refused"), "ok"])
        with pytest.raises(ConnectError):
            await run(retrier(time), attempt, policy=RetryPolicy.no_retries())
        assert 1 == len(attempt.calls)


class TestBudget:
    async def test_budget_caps_retries_under_total_outage(self):
        """1,000 calls against a dead service cost at most 1,000 + 20 % + the floor requests."""
        time = FakeTime()
        budget = RetryBudget(ratio=0.2, min_per_second=1.0, window=10, clock=time.clock)
        r = retrier(time, budget)
        sent = 0

        async def attempt(timeout: float) -> object:
            nonlocal sent
            sent += 1
            raise ServiceUnavailableError(status=503, error_code="SERVICE_UNAVAILABLE")

        for _ in range(1000):
            with pytest.raises(ServiceUnavailableError):
                await run(r, attempt, policy=RetryPolicy(max_attempts=4, initial_delay=0))
        assert sent <= 1000 * 1.2 + 10 + 1
        assert budget.denied > 0

    def test_budget_window_slides(self):
        """Retries spent long ago no longer count."""
        time = FakeTime()
        budget = RetryBudget(ratio=0.0, min_per_second=0.2, window=10, clock=time.clock)
        assert [True, True, False] == [budget.try_spend() for _ in range(3)]
        time.now += 11
        assert budget.try_spend()

    def test_budget_counts_calls_per_second_across_the_window(self):
        """Calls and retries are counted in the second they happen; old seconds drop out."""
        time = FakeTime()
        budget = RetryBudget(ratio=0.5, min_per_second=0, window=10, clock=time.clock)
        time.now = 100.5
        for _ in range(10):
            budget.record_call()
        time.now = 101.2
        for _ in range(4):
            budget.record_call()
        # 14 calls in the window allow 7 retries.
        assert [True] * 7 + [False] == [budget.try_spend() for _ in range(8)]
        time.now = 110.7  # second 100 has left the window; 101 (4 calls, 7 retries) has not
        assert not budget.try_spend()
        time.now = 111.5  # second 111 reuses 101's slot, which must start empty
        budget.record_call()
        budget.record_call()
        assert [True, False] == [budget.try_spend() for _ in range(2)]

    def test_budget_rejects_bad_settings(self):
        """Negative ratios or sub-second windows are refused."""
        with pytest.raises(ValueError, match="ratio"):
            RetryBudget(ratio=-1)


class TestObservability:
    async def test_events_and_logs(self, caplog):
        """Every attempt reaches on_attempt; each retry logs reason, delay, n/m, key, id."""
        time = FakeTime()
        events: list[AttemptEvent] = []
        attempt = script([api(ServiceUnavailableError, 503, "SERVICE_UNAVAILABLE"), "ok"])
        with caplog.at_level(logging.DEBUG, logger="klarna_async"):
            await run(retrier(time, on_attempt=events.append), attempt)
        assert ["HTTP 503 SERVICE_UNAVAILABLE", "ok"] == [e.outcome for e in events]
        assert events[0].retry_in is not None
        assert events[1].retry_in is None
        retry_line = next(r for r in caplog.records if "retrying" in r.getMessage())
        assert retry_line.levelno == logging.WARNING
        text = retry_line.getMessage()
        for part in ("1/3", "HTTP 503 SERVICE_UNAVAILABLE", "key-1", "corr", "op ****abcd"):
            assert part in text

    def test_mask_token(self):
        """Logs keep only the last four characters of a token."""
        assert "****9e00" == mask_token("0b1d9815-165e-42e2-8867-35bc03789e00")
        assert "****" == mask_token("short")


class TestOutcomeModel:
    """Rules 4-6 of klarna_async._retry: once an attempt may have acted, only success or
    OutcomeUnknownError; per key across calls; hooks and odd headers change nothing."""

    @pytest.mark.parametrize(
        "later",
        [
            api(ConflictError, 409, "CONFLICT"),
            api(ForbiddenError, 403, "INVALID_OPERATION"),
            api(BadRequestError, 400, "BAD_REQUEST"),
            api(NotFoundError, 404, "NOT_FOUND"),
            api(UnauthorizedError, 401),
            api(ServiceUnavailableError, 503, "SERVICE_UNAVAILABLE"),
        ],
    )
    @pytest.mark.parametrize("safety", [Safety.IDEMPOTENCY_KEY, Safety.SINGLE_USE_TOKEN])
    async def test_any_later_answer_after_a_lost_one_is_unknown(self, later, safety):
        """Issue 10 item 1: attempt 1 timed out while Klarna worked on it; whatever attempt 2
        (and 3) answer, the call says unknown, never 'not charged'."""
        time = FakeTime()
        attempt = script([RequestTimeoutError("no answer"), later, later])
        with pytest.raises(OutcomeUnknownError) as caught:
            await run(retrier(time), attempt, safety=safety)
        assert caught.value.last_error is later
        assert caught.value.attempt_log[0].maybe_acted

    async def test_unforeseen_exception_after_sending_is_unknown_and_not_chained(self):
        """An exception we did not foresee, on a write: unknown; kept as last_error, never as
        __cause__ or __context__ (its text may hold anything)."""
        time = FakeTime()
        boom = RuntimeError(
            "Session is closed http://x/tokens/0b1d9815-165e-42e2-8867-35bc03789e00"
        )
        with pytest.raises(OutcomeUnknownError) as caught:
            await run(retrier(time), script([boom]))
        error = caught.value
        assert error.last_error is boom
        assert error.__cause__ is None
        assert error.__context__ is None
        assert "0b1d9815" not in str(error) + repr(error)
        assert "unexpected RuntimeError" in error.attempt_log[0].outcome

    async def test_unforeseen_exception_on_a_read_is_raised_as_is(self):
        """A read cannot charge: the unforeseen error goes up unchanged."""
        boom = KeyError("x")
        with pytest.raises(KeyError):
            await run(retrier(FakeTime()), script([boom]), safety=Safety.READ, key=None)

    @pytest.mark.parametrize("outcome", ["ok", RequestTimeoutError("lost")])
    async def test_a_raising_hook_changes_nothing(self, outcome, caplog):
        """Issue 10 item 3: on_attempt raising is logged and ignored, success stays success."""

        def hook(event: AttemptEvent) -> None:
            raise ValueError("metrics backend down")

        time = FakeTime()
        attempt = script([outcome, "ok"])
        with caplog.at_level(logging.WARNING, logger="klarna_async"):
            assert "ok" == (await run(retrier(time, on_attempt=hook), attempt))[0]
        assert "on_attempt hook raised ValueError" in caplog.text

    async def test_budget_spent_after_a_lost_answer_is_unknown(self):
        """No retry left in the budget does not turn 'may have acted' into 'not charged'."""
        time = FakeTime()
        budget = RetryBudget(ratio=0.0, min_per_second=0.0, window=10, clock=time.clock)
        with pytest.raises(OutcomeUnknownError):
            await run(retrier(time, budget), script([TransportError("lost"), "ok"]))

    async def test_redrive_that_sees_only_503_stays_unknown(self):
        """Issue 10 item 5: a key reported unknown is remembered; a re-drive that only sees
        'nothing processed' answers cannot prove the first call did nothing."""
        time = FakeTime()
        r = retrier(time)
        with pytest.raises(OutcomeUnknownError):
            await run(r, script([TransportError("lost")]), policy=RetryPolicy.no_retries())
        busy = [api(ServiceUnavailableError, 503, "SERVICE_UNAVAILABLE")] * 3
        with pytest.raises(OutcomeUnknownError) as caught:
            await run(r, script(busy))
        assert isinstance(caught.value.last_error, ServiceUnavailableError)
        # A refusal does not settle it either (Klarna's check order is not documented) ...
        with pytest.raises(OutcomeUnknownError):
            await run(r, script([api(ForbiddenError, 403, "TOKEN_CANCELED")]))
        # ... only a success does, and then the key is forgotten.
        assert ("order", 1) == await run(r, script(["order"]))
        assert "key-1" not in r.unknown
        with pytest.raises(ServiceUnavailableError):
            await run(r, script(busy))

    async def test_after_unknown_without_memory(self):
        """after_unknown=True (another process saw the first call) starts as 'may have acted'."""
        time = FakeTime()
        busy = [api(ServiceUnavailableError, 503, "SERVICE_UNAVAILABLE")] * 3
        with pytest.raises(OutcomeUnknownError):
            await run(retrier(time), script(busy), after_unknown=True)
        with pytest.raises(ServiceUnavailableError):
            await run(retrier(time), script(busy))

    def test_memory_is_bounded_and_expires_after_the_key_window(self):
        """The oldest keys go first; a key older than 24 hours is forgotten."""
        time = FakeTime()
        memory = UnknownOutcomes(limit=3, clock=time.clock)
        for key in "abcd":
            memory.remember(key)
        assert ["b", "c", "d"] == [k for k in "abcd" if k in memory]
        time.now += 24 * 3600 + 1
        assert "d" not in memory
        assert 2 == len(memory)  # expired keys leave as they are looked at

    @pytest.mark.parametrize("value", ["nan", "inf", "-5", "1e9", "NaN", "-inf"])
    @pytest.mark.parametrize("header", ["X_Ratelimit_Reset", "Retry_After"])
    async def test_odd_reset_headers_never_pass_the_deadline(self, header, value):
        """Issue 10 item 7: NaN, infinite, negative or huge waits are ignored or capped; no
        wait passes the deadline."""
        time = FakeTime()
        policy = RetryPolicy(max_attempts=3, deadline=3.0)
        attempt = script([api(RateLimitedError, 429, **{header: value})] * 3)
        with pytest.raises(RateLimitedError):
            await run(retrier(time), attempt, policy=policy)
        assert all(0 <= wait < 3.0 for wait in time.sleeps), time.sleeps
        assert time.now - 1000.0 <= 3.0

    async def test_pacer_turn_past_the_deadline_is_not_sent(self):
        """Issue 10 item 8: a pause longer than the call can wait is not waited for."""
        time = FakeTime()

        class Paused:
            asked: list[float] = []

            async def acquire(self, max_wait: float) -> float | None:
                self.asked.append(max_wait)
                return None if max_wait < 60 else 60.0

            def observe(self, status: int, headers: dict[str, str]) -> None:
                pass

        pacer = Paused()
        attempt = script(["never"])
        with pytest.raises(DeadlineExceededError) as caught:
            await run(retrier(time), attempt, policy=RetryPolicy(deadline=2.0), pacer=pacer)
        assert [] == attempt.calls
        assert [2.0] == pacer.asked
        assert 0 == caught.value.attempts
        assert 1000.0 == time.now  # nothing waited

    async def test_pacer_turn_past_the_deadline_after_a_lost_answer_is_unknown(self):
        """The same refusal after an attempt that may have acted ends unknown."""
        time = FakeTime()

        class Once:
            calls = 0

            async def acquire(self, max_wait: float) -> float | None:
                self.calls += 1
                return 0.0 if self.calls == 1 else None

            def observe(self, status: int, headers: dict[str, str]) -> None:
                pass

        with pytest.raises(OutcomeUnknownError):
            await run(retrier(time), script([TransportError("lost"), "ok"]), pacer=Once())

    async def test_a_closed_client_sends_no_further_attempt(self):
        """Closed after a 503: not sent again, and 'not charged' is proven (the 503);
        closed after a lost answer: unknown."""
        time = FakeTime()
        in_flight = InFlight()

        async def attempt(timeout: float) -> object:
            in_flight.close()
            raise api(ServiceUnavailableError, 503, "SERVICE_UNAVAILABLE")

        with pytest.raises(ServiceUnavailableError):
            await run(retrier(time, in_flight=in_flight), attempt)

        in_flight = InFlight()

        async def lost(timeout: float) -> object:
            in_flight.close()
            raise TransportError("lost")

        with pytest.raises(OutcomeUnknownError):
            await run(retrier(time, in_flight=in_flight), lost, key="key-2")

    async def test_a_call_is_in_flight_until_it_ends(self):
        """The loop keeps the client's record of running calls: close() relies on it."""
        time = FakeTime()
        in_flight = InFlight()
        seen: list[int] = []

        async def attempt(timeout: float) -> object:
            seen.append(len(in_flight.calls))
            return "ok"

        await run(retrier(time, in_flight=in_flight), attempt)
        assert [1] == seen
        assert {} == in_flight.calls
        assert await in_flight.settle(0.0)

    async def test_first_attempt_success_reaches_on_attempt(self):
        """A call that succeeds at once still emits its one event (metrics count it)."""
        events: list[AttemptEvent] = []
        await run(retrier(FakeTime(), on_attempt=events.append), script(["ok"]))
        assert [("ok", 1, None)] == [(e.outcome, e.attempt, e.retry_in) for e in events]
