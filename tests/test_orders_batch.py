"""client.orders.capture_many: the nightly fulfilment job on the one batch runner.

Every job is captured exactly once (the fake's ledger counts captures per key), whatever the
fake injects; results say what to do next; a re-run with the same derived keys captures nothing
twice. Also: the capture's telemetry outcome, and the benchmark's smoke run.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import attrs
import pytest
from opentelemetry.trace import SpanKind

import klarna_async._batch as batch_module
from klarna_async import (
    CaptureJob,
    CaptureRequest,
    CaptureResult,
    CaptureStatus,
    ChargeStatus,
    KlarnaClient,
    RetryPolicy,
    derive_idempotency_key,
)
from klarna_async.testing import FakeKlarna, Fault
from tests.test_telemetry import Otel

POLICY = RetryPolicy(max_attempts=5, initial_delay=0.01, max_delay=0.05, deadline=10)


@pytest.fixture
async def fake() -> AsyncIterator[FakeKlarna]:
    async with FakeKlarna(seed=11) as fake:
        yield fake


def client(fake: FakeKlarna, **options: Any) -> KlarnaClient:
    settings: dict[str, Any] = {"retry": POLICY, "connection_limit": 16, "retry_budget": None}
    settings.update(options)
    return KlarnaClient(
        username=fake.username, password=fake.password, base_url=fake.url, **settings
    )


def jobs(order_ids: list[str], amount: int, night: str = "2026-11-30") -> Iterator[CaptureJob]:
    for order_id in order_ids:
        yield CaptureJob(
            order_id=order_id,
            request=CaptureRequest(captured_amount=amount, reference=f"ship-{order_id[-6:]}"),
            idempotency_key=derive_idempotency_key("acme-fulfilment", order_id, night),
            job_id=order_id,
        )


async def collect(results: AsyncIterator[CaptureResult]) -> dict[str, CaptureResult]:
    return {result.job.idempotency_key: result async for result in results}


async def test_every_order_captured_once_through_faults_and_a_second_pass(fake: FakeKlarna):
    order_ids = [fake.add_order(amount=2_500) for _ in range(300)]
    fake.faults.set_rates(
        "orders.capture",
        service_unavailable=0.08,
        drop_after_commit=0.05,
        envoy_503_committed=0.03,
        conflict=0.03,
        html_502=0.02,
    )
    async with client(fake) as klarna:
        results = await collect(klarna.orders.capture_many(jobs(order_ids, 2_500), concurrency=16))
        assert 300 == len(results)
        tally = Counter(result.status for result in results.values())
        assert tally[CaptureStatus.CAPTURED] > 250
        assert sum(1 for r in results.values() if r.attempts > 1) > 20
        # Not settled the first time: repeated with the same keys, faults off.
        again = [
            attrs.evolve(r.job, after_unknown=r.status is CaptureStatus.UNKNOWN)
            for r in results.values()
            if not r.ok
        ]
        fake.faults.clear()
        results.update(await collect(klarna.orders.capture_many(again)))

    assert all(result.ok for result in results.values())
    assert 300 == fake.ledger.captures_total
    assert 0 == fake.ledger.duplicate_captures
    for result in results.values():
        witness = fake.om_order(result.job.order_id)
        assert [result.capture_id] == [capture.capture_id for capture in witness.captures]
        assert 2_500 == witness.captured
        assert 1 == fake.ledger.capture_count_for_key(result.job.idempotency_key)


async def test_a_rerun_with_the_same_keys_captures_nothing_twice(fake: FakeKlarna):
    order_ids = [fake.add_order(amount=1_000) for _ in range(40)]
    async with client(fake) as klarna:
        first = await collect(klarna.orders.capture_many(jobs(order_ids, 600)))
        rerun = await collect(klarna.orders.capture_many(jobs(order_ids, 600)))
    assert {k: r.capture_id for k, r in first.items()} == {
        k: r.capture_id for k, r in rerun.items()
    }
    assert 40 == fake.ledger.captures_total
    assert {600} == {fake.om_order(order_id).captured for order_id in order_ids}


async def test_results_say_what_to_do_next(fake: FakeKlarna):
    small = fake.add_order(amount=100)
    pending = fake.add_order(amount=100, fraud_status="PENDING")
    fine = fake.add_order(amount=100)
    lost = fake.add_order(amount=100)
    batch = [
        CaptureJob(order_id=small, request={"captured_amount": 101}, idempotency_key="a"),
        CaptureJob(order_id=pending, request={"captured_amount": 100}, idempotency_key="b"),
        CaptureJob(order_id="nope", request={"captured_amount": 100}, idempotency_key="c"),
        CaptureJob(order_id=fine, request={"captured_amount": 0}, idempotency_key="d"),
        CaptureJob(order_id=fine, request={"captured_amount": 100}, idempotency_key="bad key "),
        CaptureJob(order_id=fine, request={"captured_amount": 100}, idempotency_key="f"),
        CaptureJob(order_id=lost, request={"captured_amount": 100}, idempotency_key="g"),
    ]
    fake.faults.script("orders.capture", [None] * 4 + [Fault.DROP_AFTER_COMMIT])
    async with client(fake, retry=RetryPolicy.no_retries()) as klarna:
        results = await collect(klarna.orders.capture_many(batch, concurrency=1))
    status = {key: (r.status, r.error_code) for key, r in results.items()}
    assert {
        "a": (CaptureStatus.DECLINED, "CAPTURE_NOT_ALLOWED"),
        "b": (CaptureStatus.DECLINED, "CAPTURE_NOT_ALLOWED"),
        "c": (CaptureStatus.DECLINED, "NO_SUCH_ORDER"),
        "d": (CaptureStatus.RETRYABLE, None),  # invalid: never sent
        "bad key ": (CaptureStatus.RETRYABLE, None),  # never sent
        "f": (CaptureStatus.CAPTURED, None),
        "g": (CaptureStatus.UNKNOWN, None),  # the answer was lost after the capture
    } == status
    assert results["f"].capture_id
    assert results["g"].capture_id is None
    assert 0 == results["d"].attempts
    assert 100 == fake.om_order(lost).captured  # unknown, and indeed captured
    # The same decisions as a ChargeResult's, by name.
    assert {s.value for s in CaptureStatus} - {"captured"} == {s.value for s in ChargeStatus} - {
        "placed"
    }


async def test_a_redrive_not_sent_stays_unknown(fake: FakeKlarna):
    """A job an earlier run left unknown, refused before sending now (a bad body): still
    unknown, never 'retryable' (the earlier attempt may have captured it)."""
    order_id = fake.add_order(amount=2_500)
    job = CaptureJob(
        order_id=order_id,
        request={"captured_amount": -1},
        idempotency_key="r1",
        after_unknown=True,
    )
    async with client(fake) as klarna:
        (result,) = (await collect(klarna.orders.capture_many([job]))).values()
    assert CaptureStatus.UNKNOWN == result.status
    assert [] == fake.ledger.requests_for_key("r1")


async def test_capture_many_is_the_one_batch_runner(
    fake: FakeKlarna, monkeypatch: pytest.MonkeyPatch
):
    calls: list[int] = []
    real = batch_module.run_batch

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["concurrency"])
        return real(*args, **kwargs)

    monkeypatch.setattr(batch_module, "run_batch", spy)
    order_id = fake.add_order()
    async with client(fake) as klarna:
        await collect(klarna.orders.capture_many(jobs([order_id], 10), concurrency=3))
        with pytest.raises(ValueError, match="connection_limit"):
            klarna.orders.capture_many([], concurrency=17)
    assert [3] == calls


async def test_capture_many_pulls_jobs_lazily(fake: FakeKlarna):
    order_ids = [fake.add_order(amount=100) for _ in range(50)]
    pulled = 0

    def source() -> Iterator[CaptureJob]:
        nonlocal pulled
        for job in jobs(order_ids, 100):
            pulled += 1
            yield job

    async with client(fake) as klarna:
        results = klarna.orders.capture_many(source(), concurrency=4)
        async with contextlib.aclosing(results):
            async for _ in results:
                break
    assert pulled <= 4 + 4 + 1  # the workers' items, a full queue, one in hand
    assert fake.ledger.captures_total < 50


async def test_capture_telemetry_says_captured_or_what_to_do(fake: FakeKlarna):
    otel = Otel()
    order_id = fake.add_order(amount=100)
    async with client(fake, telemetry=otel.telemetry()) as klarna:
        await klarna.orders.capture(order_id, {"captured_amount": 60})
        with contextlib.suppress(Exception):
            await klarna.orders.capture(order_id, {"captured_amount": 60})
        await klarna.orders.refund(order_id, {"refunded_amount": 10})
        await klarna.orders.get(order_id)
    outcomes = {
        (span.name, (span.attributes or {})["klarna.outcome"])
        for span in otel.spans(SpanKind.INTERNAL)
    }
    assert {
        ("klarna.orders.capture", "captured"),
        ("klarna.orders.capture", "declined"),
        ("klarna.orders.refund", "refunded"),
        ("klarna.orders.get", "ok"),
    } == outcomes
    templates = {
        (span.attributes or {}).get("url.template") for span in otel.spans(SpanKind.CLIENT)
    }
    assert "/ordermanagement/v1/orders/{order_id}/captures" in templates
    otel.tracer_provider.shutdown()
    otel.meter_provider.shutdown()


def test_the_benchmark_runs_small() -> None:
    """benchmarks/capture_many.py at a tiny size: every order captured once, figures present."""
    from benchmarks import capture_many

    result = capture_many.run(sizes=(60, 120), concurrency=8)
    for row in result["runs"]:
        assert row["captured"] == row["captures"]
        assert 0 == row["duplicate_captures"]
        assert row["fake_captures_total"] == row["captures"]
    assert "tracemalloc" in capture_many.summary(result)
