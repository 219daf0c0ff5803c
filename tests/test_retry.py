"""The retry layer on its own: which faults are retried, waits, deadline, budget, the truth."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import pytest

from klarna_async import (
    BadRequestError,
    ConflictError,
    ConnectError,
    ForbiddenError,
    KlarnaError,
    KlarnaTimeoutError,
    NotFoundError,
    OutcomeUnknownError,
    PaymentMethodFailedError,
    ProxyError,
    RateLimitedError,
    RequestTimeoutError,
    RetryBudget,
    RetryPolicy,
    ServerError,
    ServiceUnavailableError,
    SessionCompletedError,
    TransportError,
    UnauthorizedError,
)
from klarna_async._retry import AttemptEvent, Retrier, Safety, classify, mask_token


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
) -> Retrier:
    return Retrier(budget, on_attempt, sleep=time.sleep, clock=time.clock)


async def run(
    r: Retrier,
    attempt,
    safety: Safety = Safety.IDEMPOTENCY_KEY,
    policy: RetryPolicy | None = None,
    key: str | None = "key-1",
):
    return await r.run(
        operation="customer_tokens.create_order",
        target="op ****abcd",
        safety=safety,
        policy=policy or RetryPolicy(),
        idempotency_key=key,
        attempt=attempt,
    )


class TestClassify:
    @pytest.mark.parametrize(
        ("error", "expected"),
        [
            (ConnectError("refused"), (True, False)),
            (RequestTimeoutError("slow"), (True, True)),
            (RequestTimeoutError("connect", maybe_sent=False), (True, False)),
            (TransportError("reset"), (True, True)),
            (api(ServiceUnavailableError, 503, "SERVICE_UNAVAILABLE"), (True, False)),
            (api(RateLimitedError, 429), (True, False)),
            (api(KlarnaTimeoutError, 500, "TIMEOUT"), (True, True)),
            (api(ServerError, 502), (True, True)),
            (api(ServerError, 504), (True, True)),
            (api(ServerError, 500, "INTERNAL_SERVER_ERROR"), (False, True)),
            (ProxyError(status=502, body=b"<html>"), (True, True)),
            (ProxyError(status=503, body=b"<html>"), (True, False)),
            (ProxyError(status=500, body=b"<html>"), (False, True)),
            (api(BadRequestError, 400, "BAD_REQUEST"), (False, False)),
            (api(UnauthorizedError, 401), (False, False)),
            (api(ForbiddenError, 403), (False, False)),
            (api(NotFoundError, 404, "NOT_FOUND"), (False, False)),
            (api(ConflictError, 409), (False, False)),
            (api(PaymentMethodFailedError, 403, "PAYMENT_METHOD_FAILED"), (False, False)),
        ],
    )
    def test_transient_and_maybe_acted(self, error: KlarnaError, expected: tuple[bool, bool]):
        """Only passing faults are retried; only faults after sending may have acted."""
        assert expected == classify(error)


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
            api(ConflictError, 409),
        ],
    )
    async def test_no_retry_on_4xx(self, error: KlarnaError):
        """400, 401, 403, 404 and 409 end the call at once, stamped with key and attempts."""
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
        """Full jitter under caps of 0.5, 1, 2, 4, 4 s."""
        time = FakeTime()
        policy = RetryPolicy(max_attempts=6, deadline=1000)
        attempt = script([ConnectError("refused")] * 5 + ["ok"])
        await run(retrier(time), attempt, policy=policy)
        for wait, cap in zip(time.sleeps, [0.5, 1, 2, 4, 4], strict=True):
            assert 0 <= wait <= cap

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
