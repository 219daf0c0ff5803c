"""charge_many: results as they finish, failures kept apart, lazy input, cancellation, pacing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest

from klarna_async import (
    Charge,
    ChargeResult,
    ChargeStatus,
    KlarnaClient,
    OutcomeUnknownError,
    RetryPolicy,
    TokenSuspendedError,
)
from klarna_async.testing import FakeKlarna, Fault
from tests import samples

CT_ORDER = "customer_tokens.create_order"
QUICK = RetryPolicy(
    max_attempts=3, initial_delay=0.0, max_delay=0.0, deadline=5, attempt_timeout=2.0
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeKlarna]:
    async with FakeKlarna(seed=3) as f:
        yield f


def client_for(fake: FakeKlarna, **options: object) -> KlarnaClient:
    settings: dict[str, object] = {"retry": QUICK, "rate_limit": None, "connection_limit": 16}
    settings.update(options)
    return KlarnaClient(
        username=fake.username, password=fake.password, base_url=fake.url, **settings
    )  # type: ignore[arg-type]


def charges(tokens: list[str], n: int, prefix: str = "c") -> list[Charge]:
    return [
        Charge(
            customer_token=tokens[i % len(tokens)],
            request=samples.token_order(),
            idempotency_key=f"{prefix}-{i}",
            charge_id=f"{prefix}-{i}",
        )
        for i in range(n)
    ]


class TestResults:
    async def test_every_charge_gets_one_result(self, fake: FakeKlarna):
        """100 charges, 100 results, each with its order and attempt count; 100 orders."""
        tokens = [fake.add_customer_token() for _ in range(5)]
        async with client_for(fake) as client:
            results = [r async for r in client.customer_tokens.charge_many(charges(tokens, 100))]
        assert 100 == len(results)
        assert {f"c-{i}" for i in range(100)} == {r.charge.charge_id for r in results}
        assert all(r.ok and r.attempts == 1 and r.elapsed > 0 for r in results)
        assert 100 == len(fake.ledger.orders)

    async def test_results_come_as_they_finish(self, fake: FakeKlarna):
        """A slow first charge does not hold back the others."""
        tokens = [fake.add_customer_token()]
        fake.faults.script(CT_ORDER, [(Fault.LATENCY, 0.3)])
        async with client_for(fake) as client:
            order = [
                r.charge.charge_id
                async for r in client.customer_tokens.charge_many(charges(tokens, 5), concurrency=5)
            ]
        assert "c-0" == order[-1]

    async def test_one_failure_does_not_stop_the_others(self, fake: FakeKlarna):
        """A suspended token fails its charges; the rest are placed."""
        good, bad = fake.add_customer_token(), fake.add_customer_token()
        fake.suspend_token(bad)
        async with client_for(fake) as client:
            results = [
                r async for r in client.customer_tokens.charge_many(charges([good, bad], 10))
            ]
        declined = [r for r in results if r.status is ChargeStatus.DECLINED]
        assert 5 == len(declined)
        assert all(isinstance(r.error, TokenSuspendedError) for r in declined)
        assert {"TOKEN_SUSPENDED"} == {r.error_code for r in declined}
        assert 5 == sum(r.ok for r in results)

    async def test_bad_charges_are_results_too(self, fake: FakeKlarna):
        """An empty token or an invalid body is that charge's error, never sent."""
        token = fake.add_customer_token()
        batch = [
            Charge(customer_token="", request=samples.token_order(), idempotency_key="e1"),
            Charge(customer_token=token, request={"order_amount": 1}, idempotency_key="e2"),
            Charge(customer_token=token, request=samples.token_order(), idempotency_key="e3"),
        ]
        async with client_for(fake) as client:
            results = {
                r.charge.idempotency_key: r async for r in client.customer_tokens.charge_many(batch)
            }
        # Never sent: safe to send again once mended.
        assert isinstance(results["e1"].error, ValueError)
        assert ChargeStatus.RETRYABLE == results["e1"].status
        assert ChargeStatus.RETRYABLE == results["e2"].status
        assert results["e3"].ok
        assert 1 == fake.ledger.request_counts[CT_ORDER]

    async def test_a_redrive_not_sent_stays_unknown(self, fake: FakeKlarna):
        """A charge an earlier run left unknown, not sent now (bad body, closed client): still
        unknown, never 'retryable' (the earlier attempt may have placed it)."""
        token = fake.add_customer_token()
        batch = [
            Charge(
                customer_token=token,
                request={"order_amount": 1},
                idempotency_key="r1",
                after_unknown=True,
            )
        ]
        async with client_for(fake) as client:
            (result,) = [r async for r in client.customer_tokens.charge_many(batch)]
        assert ChargeStatus.UNKNOWN == result.status
        assert 0 == fake.ledger.request_counts[CT_ORDER]

    async def test_unknown_outcomes_are_reported_as_such(self, fake: FakeKlarna):
        """Answers lost on every attempt: the charge is UNKNOWN with its key, not FAILED."""
        token = fake.add_customer_token()
        fake.faults.script(CT_ORDER, [Fault.DROP_AFTER_COMMIT] * 3)
        async with client_for(fake) as client:
            (result,) = [r async for r in client.customer_tokens.charge_many(charges([token], 1))]
        assert ChargeStatus.UNKNOWN == result.status
        assert isinstance(result.error, OutcomeUnknownError)
        assert ("c-0", 3) == (result.error.idempotency_key, result.attempts)

    def test_charge_repr_masks_the_token(self):
        """A Charge's repr shows the charge id and key, never the token or the body."""
        charge = Charge(
            customer_token="0b1d9815-165e-42e2-8867-35bc03789e00",
            request=samples.token_order(),
            idempotency_key="k",
            charge_id="c",
        )
        text = repr(charge)
        assert "35bc03789e00" not in text
        assert "****9e00" in text
        assert "Streaming" not in text


class TestInput:
    async def test_input_is_consumed_lazily(self, fake: FakeKlarna):
        """Only about `concurrency` charges are pulled ahead of the results."""
        token = fake.add_customer_token()
        pulled = 0

        def source() -> Iterator[Charge]:
            nonlocal pulled
            for charge in charges([token], 1000):
                pulled += 1
                yield charge

        async with client_for(fake) as client:
            stream = client.customer_tokens.charge_many(source(), concurrency=4)
            first = await anext(stream)
            assert first.ok
            assert pulled <= 4 + 4 + 1  # workers in flight + one result queue's worth
            await stream.aclose()  # type: ignore[attr-defined]

    async def test_async_iterable_input(self, fake: FakeKlarna):
        """An async generator works as input, pulled by several workers safely."""
        token = fake.add_customer_token()

        async def source() -> AsyncIterator[Charge]:
            for charge in charges([token], 30):
                await asyncio.sleep(0)
                yield charge

        async with client_for(fake) as client:
            results = [r async for r in client.customer_tokens.charge_many(source(), concurrency=8)]
        assert 30 == len({r.charge.idempotency_key for r in results if r.ok})

    async def test_a_broken_source_is_raised_after_the_charges_in_flight(self, fake: FakeKlarna):
        """The caller's iterable failing ends the batch with its error, results kept."""
        token = fake.add_customer_token()

        def source() -> Iterator[Charge]:
            yield from charges([token], 3)
            raise RuntimeError("database went away")

        seen: list[ChargeResult] = []

        async def consume(client: KlarnaClient) -> None:
            async for result in client.customer_tokens.charge_many(source(), concurrency=2):
                seen.append(result)

        async with client_for(fake) as client:
            with pytest.raises(RuntimeError, match="database"):
                await consume(client)
        assert 3 == len(seen)

    async def test_concurrency_is_bounded_by_the_pool(self, fake: FakeKlarna):
        """More concurrency than connections would queue charges unsent: refused."""
        async with client_for(fake, connection_limit=8) as client:
            with pytest.raises(ValueError, match="connection_limit"):
                client.customer_tokens.charge_many([], concurrency=9)


class TestCancellation:
    async def test_breaking_out_cancels_in_flight_work(self, fake: FakeKlarna):
        """Stopping early under aclosing() leaves no charge running once the block ends."""
        token = fake.add_customer_token()
        fake.faults.set_rates(CT_ORDER, latency=0.5, latency_seconds=0.2)
        async with client_for(fake) as client:
            stream = client.customer_tokens.charge_many(charges([token], 200), concurrency=8)
            async with contextlib.aclosing(stream) as results:  # type: ignore[type-var]
                async for _ in results:
                    assert 8 == len(_workers())
                    break
            assert [] == _workers()
        await fake.wait_idle()
        assert fake.ledger.request_counts[CT_ORDER] < 40

    async def test_plain_break_cleans_up_soon(self, fake: FakeKlarna):
        """Without aclosing(), Python closes the generator on its own a moment later."""
        token = fake.add_customer_token()
        fake.faults.set_rates(CT_ORDER, latency=0.5, latency_seconds=0.2)
        async with client_for(fake) as client:
            async for _ in client.customer_tokens.charge_many(charges([token], 200), concurrency=8):
                assert 8 == len(_workers())
                break
            for _ in range(50):
                if not _workers():
                    break
                await asyncio.sleep(0.01)
            assert [] == _workers()
        await fake.wait_idle()
        assert fake.ledger.request_counts[CT_ORDER] < 40

    async def test_cancelling_the_consumer(self, fake: FakeKlarna):
        """Cancelling the task that consumes the batch cancels its workers too."""
        token = fake.add_customer_token()
        fake.faults.set_rates(CT_ORDER, latency=1.0, latency_seconds=0.3)

        async def consume(client: KlarnaClient) -> None:
            async for _ in client.customer_tokens.charge_many(charges([token], 100), concurrency=4):
                pass

        async with client_for(fake) as client:
            task = asyncio.create_task(consume(client))
            await asyncio.sleep(0.1)
            assert 4 == len(_workers())
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert [] == _workers()
        await fake.wait_idle()


class TestPacing:
    async def test_batch_stays_under_the_servers_rate_limit(self):
        """At the configured 100/s against a fake limited to 100/s: few or no 429s."""
        async with FakeKlarna(rate_limit=100) as fake:
            tokens = [fake.add_customer_token() for _ in range(10)]
            async with client_for(fake, rate_limit=95.0) as client:
                loop = asyncio.get_running_loop()
                started = loop.time()
                results = [
                    r
                    async for r in client.customer_tokens.charge_many(
                        charges(tokens, 150), concurrency=16
                    )
                ]
                took = loop.time() - started
        limited = [r for r in fake.ledger.requests if r.status == 429]
        assert all(r.ok for r in results)
        assert len(limited) <= 3
        assert took >= 1.0  # 150 requests at <= 100/s cannot finish in less

    async def test_without_pacing_the_server_says_429(self):
        """The same batch unpaced hits the limit: the pacing is what keeps it clean."""
        async with FakeKlarna(rate_limit=100) as fake:
            tokens = [fake.add_customer_token() for _ in range(10)]
            async with client_for(fake, rate_limit=None) as client:
                [
                    r
                    async for r in client.customer_tokens.charge_many(
                        charges(tokens, 300), concurrency=16
                    )
                ]
        assert any(r.status == 429 for r in fake.ledger.requests)


def _workers() -> list[asyncio.Task[object]]:
    # By the name run_batch gives its tasks; the tests also check that this finds them while a
    # batch runs, so a renamed task cannot make them pass vacuously.
    return [t for t in asyncio.all_tasks() if t.get_name() == "klarna_async batch worker"]
