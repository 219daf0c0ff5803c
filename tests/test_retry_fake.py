"""The retry promise against the fake Klarna's faults, with its ledger as the witness."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator

import attrs
import pytest

from klarna_async import (
    BadValueError,
    Charge,
    ChargeStatus,
    ConflictError,
    Intent,
    KlarnaClient,
    OutcomeUnknownError,
    RetryBudget,
    RetryPolicy,
    ServiceUnavailableError,
    TokenNotFoundError,
    TokenSuspendedError,
    UnauthorizedError,
    derive_idempotency_key,
)
from klarna_async.testing import FakeKlarna, Fault
from tests import samples

QUICK = RetryPolicy(
    max_attempts=4, initial_delay=0.0, max_delay=0.0, deadline=5, attempt_timeout=1.0
)
CT_ORDER = "customer_tokens.create_order"


@pytest.fixture
async def fake() -> AsyncIterator[FakeKlarna]:
    async with FakeKlarna(seed=1, latency_seconds=0.5) as f:
        yield f


def client_for(fake: FakeKlarna, **options: object) -> KlarnaClient:
    settings: dict[str, object] = {"retry": QUICK, "rate_limit": None}
    settings.update(options)
    return KlarnaClient(
        username=fake.username, password=fake.password, base_url=fake.url, **settings
    )  # type: ignore[arg-type]


async def one_time_token(fake: FakeKlarna, client: KlarnaClient) -> str:
    session = await client.payments.create_session(samples.session_request(Intent.BUY))
    return fake.authorize(session.session_id)


class TestSameKeySameBytes:
    async def test_every_attempt_carries_the_same_key_and_body(self, fake: FakeKlarna):
        """503, reset, HTML 502, then success: four attempts, one key, one body, one order."""
        token = fake.add_customer_token()
        fake.faults.script(
            CT_ORDER, [Fault.SERVICE_UNAVAILABLE, Fault.RESET_BEFORE, Fault.HTML_502]
        )
        async with client_for(fake) as client:
            order = await client.customer_tokens.create_order(
                token, samples.token_order(), idempotency_key="charge-1"
            )
        attempts = fake.ledger.requests_for(CT_ORDER)
        assert 4 == len(attempts)
        assert {"charge-1"} == {r.idempotency_key for r in attempts}
        assert 1 == len({r.body for r in attempts})
        assert [order.order_id] == [o.order_id for o in fake.ledger.orders_for_key("charge-1")]

    async def test_lost_answer_then_the_first_order_back(self, fake: FakeKlarna):
        """The order is committed but its answer lost; the retry gets that order, not a new one."""
        token = fake.add_customer_token()
        fake.faults.script(CT_ORDER, [Fault.DROP_AFTER_COMMIT])
        async with client_for(fake) as client:
            order = await client.customer_tokens.create_order(
                token, samples.token_order(), idempotency_key="charge-2"
            )
        (only,) = fake.ledger.orders
        assert only.order_id == order.order_id
        first, second = fake.ledger.requests_for(CT_ORDER)
        assert (True, None) == (first.committed, first.status)
        assert (True, 200) == (second.replayed, second.status)

    async def test_slow_answer_then_retry_does_not_charge_twice(self, fake: FakeKlarna):
        """The first attempt times out while Klarna still works on it; one order in the end."""
        token = fake.add_customer_token()
        fake.faults.script(CT_ORDER, [(Fault.LATENCY, 0.4)])
        async with client_for(
            fake,
            retry=RetryPolicy(
                max_attempts=4, initial_delay=0.5, max_delay=0.5, attempt_timeout=0.2, deadline=5
            ),
        ) as client:
            order = await client.customer_tokens.create_order(
                token, samples.token_order(), idempotency_key="charge-3"
            )
        async with asyncio.timeout(5):
            await fake.wait_idle()
        assert [order.order_id] == [o.order_id for o in fake.ledger.orders]


class TestNotRetried:
    async def test_401(self, fake: FakeKlarna):
        """Wrong credentials: one attempt, UnauthorizedError."""
        token = fake.add_customer_token()
        async with KlarnaClient(
            username="nobody", password="wrong", base_url=fake.url, retry=QUICK
        ) as client:
            with pytest.raises(UnauthorizedError):
                await client.customer_tokens.create_order(token, samples.token_order())
        assert 1 == fake.ledger.request_counts[CT_ORDER]

    async def test_400_bad_value(self, fake: FakeKlarna):
        """A body Klarna rejects (amounts that do not add up, our checks off): one attempt."""
        token = fake.add_customer_token()
        body = {**_as_dict(samples.token_order()), "order_amount": 5}
        async with client_for(fake, check_amounts=False) as client:
            with pytest.raises(BadValueError) as caught:
                await client.customer_tokens.create_order(token, body)
        assert 400 == caught.value.status
        assert 1 == fake.ledger.request_counts[CT_ORDER]

    async def test_403_and_404(self, fake: FakeKlarna):
        """A suspended token (403) and an unknown one (404): one attempt each."""
        token = fake.add_customer_token()
        fake.suspend_token(token)
        async with client_for(fake) as client:
            with pytest.raises(TokenSuspendedError):
                await client.customer_tokens.create_order(token, samples.token_order())
            with pytest.raises(TokenNotFoundError):
                await client.customer_tokens.create_order("no-such-token", samples.token_order())
        assert 2 == fake.ledger.request_counts[CT_ORDER]
        assert not fake.ledger.orders

    async def test_409_not_matching(self, fake: FakeKlarna):
        """A one-time order that differs from what was authorized: 409, never retried."""
        async with client_for(fake) as client:
            token = await one_time_token(fake, client)
            changed = samples.one_time_order(
                billing_address=attrs.evolve(samples.US_ADDRESS, postal_code="10001")
            )
            with pytest.raises((ConflictError, BadValueError)) as caught:
                await client.payments.create_order(token, changed)
        assert 409 == caught.value.status
        assert 1 == fake.ledger.request_counts["payments.create_order"]

    async def test_html_500_on_a_write_is_unknown_and_not_retried(self, fake: FakeKlarna):
        """A proxy's HTML 500 may hide a processed order: one attempt, OutcomeUnknownError."""
        token = fake.add_customer_token()
        fake.faults.script(CT_ORDER, [Fault.HTML_500])
        async with client_for(fake) as client:
            with pytest.raises(OutcomeUnknownError) as caught:
                await client.customer_tokens.create_order(
                    token, samples.token_order(), idempotency_key="k500"
                )
        assert "k500" == caught.value.idempotency_key
        assert 1 == fake.ledger.request_counts[CT_ORDER]


class TestOneTimeOrders:
    async def test_lost_answer_is_outcome_unknown_not_not_found(self, fake: FakeKlarna):
        """The order was placed, its answer lost; the retry meets a used token."""
        async with client_for(fake) as client:
            token = await one_time_token(fake, client)
            fake.faults.script("payments.create_order", [Fault.DROP_AFTER_COMMIT])
            with pytest.raises(OutcomeUnknownError) as caught:
                await client.payments.create_order(token, samples.one_time_order())
        error = caught.value
        assert error.idempotency_key is None
        assert 2 == error.attempts
        assert "NOT_FOUND" in error.attempt_log[-1].outcome
        assert 1 == len(fake.ledger.orders)

    async def test_503_then_success(self, fake: FakeKlarna):
        """A 503 before processing is retried with the same single-use token."""
        async with client_for(fake) as client:
            token = await one_time_token(fake, client)
            fake.faults.script("payments.create_order", [Fault.SERVICE_UNAVAILABLE])
            order = await client.payments.create_order(token, samples.one_time_order())
        assert [order.order_id] == [o.order_id for o in fake.ledger.orders]


class TestDeadlineAndBudget:
    async def test_deadline_is_honoured(self, fake: FakeKlarna):
        """Every attempt slow: the call ends at its 1 s deadline, as an unknown outcome."""
        token = fake.add_customer_token()
        fake.faults.set_rates(CT_ORDER, latency=1.0, latency_seconds=0.6)
        policy = RetryPolicy(
            max_attempts=10, initial_delay=0.0, max_delay=0.0, attempt_timeout=0.3, deadline=1.0
        )
        async with client_for(fake, retry=policy) as client:
            started = time.monotonic()
            with pytest.raises(OutcomeUnknownError):
                await client.customer_tokens.create_order(token, samples.token_order())
            took = time.monotonic() - started
        assert took < 1.5
        assert fake.ledger.request_counts[CT_ORDER] <= 4

    async def test_cancelled_first_attempt_is_logged_with_the_key(
        self, fake: FakeKlarna, caplog: pytest.LogCaptureFixture
    ):
        """A charge cancelled during its first attempt says Klarna may have acted, with its
        key and the token masked."""
        token = fake.add_customer_token()
        fake.faults.set_rates(CT_ORDER, latency=1.0, latency_seconds=5.0)
        async with client_for(fake, retry=RetryPolicy(attempt_timeout=10)) as client:
            task = asyncio.create_task(
                client.customer_tokens.create_order(
                    token, samples.token_order(), idempotency_key="cancel-key-1"
                )
            )
            for _ in range(500):  # the request has reached the fake, which holds it 5 s
                if fake.ledger.request_counts[CT_ORDER]:
                    break
                await asyncio.sleep(0.01)
            assert fake.ledger.request_counts[CT_ORDER] == 1
            with caplog.at_level(logging.WARNING, logger="klarna_async"):
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
        (line,) = [r.getMessage() for r in caplog.records if "cancelled" in r.getMessage()]
        assert "attempt 1; Klarna may have acted" in line
        assert "cancel-key-1" in line
        assert token not in line
        assert "****" + token[-4:] in line

    async def test_budget_caps_attempts_under_total_outage(self, fake: FakeKlarna):
        """Every request answers 503: 300 charges cost at most 300 + 10 % + the floor."""
        tokens = [fake.add_customer_token() for _ in range(10)]
        fake.faults.set_rates(CT_ORDER, service_unavailable=1.0)
        budget = RetryBudget(ratio=0.1, min_per_second=1.0, window=10)
        charges = [
            Charge(
                customer_token=tokens[i % 10],
                request=samples.token_order(),
                idempotency_key=f"outage-{i}",
            )
            for i in range(300)
        ]
        async with client_for(
            fake,
            retry_budget=budget,
            retry=RetryPolicy(max_attempts=4, initial_delay=0.0, max_delay=0.0),
        ) as client:
            results = [r async for r in client.customer_tokens.charge_many(charges, concurrency=20)]
        # Only 503s: nothing processed, so not charged and safe to send again.
        assert {ChargeStatus.RETRYABLE} == {r.status for r in results}
        assert all(isinstance(r.error, ServiceUnavailableError) for r in results)
        sent = fake.ledger.request_counts[CT_ORDER]
        assert sent <= 300 * 1.1 + 10 + 1
        assert budget.denied > 0
        assert not fake.ledger.orders


class TestSecrets:
    async def test_no_secret_in_any_log_line(self, fake: FakeKlarna, caplog):
        """Through faults, retries and an unknown outcome at DEBUG: no credential, no token,
        no personal data in any log line or error text."""
        token = fake.add_customer_token()
        fake.faults.set_rates(
            CT_ORDER, service_unavailable=0.3, drop_after_commit=0.3, reset_before=0.3
        )
        texts = []
        with caplog.at_level(logging.DEBUG):
            async with client_for(fake) as client:
                for _ in range(20):
                    try:
                        await client.customer_tokens.create_order(token, samples.token_order())
                    except Exception as exc:
                        texts.append(f"{exc!s} {exc!r}")
                session = await client.payments.create_session(samples.session_request())
                auth = fake.authorize(session.session_id)
                await client.payments.create_order(auth, samples.one_time_order())
        everything = caplog.text + " ".join(texts)
        basic = base64.b64encode(f"{fake.username}:{fake.password}".encode()).decode()
        for secret in (fake.password, basic, token, auth, "john@doe.com", "Lombard"):
            assert secret not in everything
        assert "retrying" in caplog.text


class TestSoak:
    async def test_500_charges_at_concurrency_50_with_30_percent_faults(self, fake: FakeKlarna):
        """The ledger agrees with every reported outcome; repeating unknowns settles them."""
        tokens = [fake.add_customer_token() for _ in range(50)]
        fake.faults.set_rates(
            CT_ORDER,
            service_unavailable=0.10,
            reset_before=0.05,
            drop_after_commit=0.05,
            latency=0.04,
            html_502=0.03,
            html_504=0.03,
            latency_seconds=0.3,
        )
        policy = RetryPolicy(
            max_attempts=4, initial_delay=0.01, max_delay=0.05, attempt_timeout=0.15, deadline=3
        )
        charges = [
            Charge(
                customer_token=tokens[i % 50],
                request=samples.token_order(900 + i % 9),
                idempotency_key=derive_idempotency_key("soak", i, "2026-11"),
                charge_id=str(i),
            )
            for i in range(500)
        ]
        async with client_for(fake, retry=policy, connection_limit=50) as client:
            results = {
                r.charge.idempotency_key: r
                async for r in client.customer_tokens.charge_many(charges, concurrency=50)
            }
            async with asyncio.timeout(5):
                await fake.wait_idle()
            assert 500 == len(results)
            by_status = Counter(r.status for r in results.values())
            for key, result in results.items():
                in_ledger = fake.ledger.orders_for_key(key)
                if result.status is ChargeStatus.PLACED:
                    assert [result.order.order_id] == [o.order_id for o in in_ledger]  # type: ignore[union-attr]
                elif result.status in (ChargeStatus.DECLINED, ChargeStatus.RETRYABLE):
                    assert [] == in_ledger, result.error
                else:
                    assert len(in_ledger) <= 1
            existing = {k: fake.ledger.orders_for_key(k) for k in results}

            fake.faults.clear()
            unknown = [r.charge for r in results.values() if r.status is ChargeStatus.UNKNOWN]
            settled = [r async for r in client.customer_tokens.charge_many(unknown, concurrency=50)]
        assert all(r.status is ChargeStatus.PLACED for r in settled)
        for result in settled:
            before = existing[result.charge.idempotency_key]
            after = fake.ledger.orders_for_key(result.charge.idempotency_key)
            assert 1 == len(after)
            if before:  # the unknown charge had in fact been placed: the same order comes back
                assert before[0].order_id == result.order.order_id  # type: ignore[union-attr]
        per_key = Counter(o.idempotency_key for o in fake.ledger.orders)
        assert 0 == sum(n - 1 for n in per_key.values())
        # Both kinds of outcome occurred, so every branch above was exercised. How many of each
        # depends on the machine's speed (a slow one, or coverage, times out more attempts), so
        # the figure is a floor against a vacuous run, not a measure.
        assert by_status[ChargeStatus.PLACED] > 100
        assert by_status[ChargeStatus.UNKNOWN] > 0


def _as_dict(model: object) -> dict[str, object]:
    from klarna_async._converter import to_dict

    return to_dict(model)  # type: ignore[arg-type]
