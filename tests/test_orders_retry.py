"""Order Management writes under the outcome model: a capture or refund whose answer is lost is
repeated with its key and happens once; a write that may have acted never ends "not done".

The fake plays the adversary (answers dropped after the commit, a gateway's 503 after
forwarding, 409 while the key is in flight, state checked before the replay); its ledger and its
Order Management state are the witness.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from klarna_async import (
    CaptureNotAllowedError,
    KlarnaClient,
    OutcomeUnknownError,
    ResponseDecodeError,
    RetryPolicy,
)
from klarna_async._resources.orders import read_new_id
from klarna_async.testing import FakeKlarna, Fault

QUICK = RetryPolicy(max_attempts=4, initial_delay=0.01, max_delay=0.05, deadline=10)


@pytest.fixture
async def fake() -> AsyncIterator[FakeKlarna]:
    async with FakeKlarna(seed=3) as fake:
        yield fake


@pytest.fixture
async def klarna(fake: FakeKlarna) -> AsyncIterator[KlarnaClient]:
    async with KlarnaClient(
        username=fake.username, password=fake.password, base_url=fake.url, retry=QUICK
    ) as client:
        yield client


@pytest.mark.parametrize(
    "lost",
    [Fault.DROP_AFTER_COMMIT, Fault.ENVOY_503_COMMITTED, Fault.HTML_502_COMMITTED],
    ids=lambda fault: fault.value,
)
async def test_a_capture_whose_answer_is_lost_is_repeated_with_its_key_and_captured_once(
    fake: FakeKlarna, klarna: KlarnaClient, lost: Fault
):
    order_id = fake.add_order(amount=10_000)
    fake.faults.script("orders.capture", [lost])
    capture_id = await klarna.orders.capture(
        order_id, {"captured_amount": 4_000}, idempotency_key="cap-lost"
    )
    attempts = fake.ledger.requests_for_key("cap-lost")
    assert [True, True] == [record.committed for record in attempts]
    assert [False, True] == [record.replayed for record in attempts]
    assert 1 == len({record.body for record in attempts})  # the same bytes on every attempt
    assert 1 == fake.ledger.capture_count_for_key("cap-lost")
    witness = fake.om_order(order_id)
    assert (4_000, [capture_id]) == (witness.captured, [c.capture_id for c in witness.captures])


@pytest.mark.parametrize(
    "lost", [Fault.DROP_AFTER_COMMIT, Fault.EMPTY_503_COMMITTED], ids=lambda f: f.value
)
async def test_a_refund_whose_answer_is_lost_is_repeated_and_refunded_once(
    fake: FakeKlarna, klarna: KlarnaClient, lost: Fault
):
    order_id = fake.add_order(amount=10_000)
    await klarna.orders.capture(order_id, {"captured_amount": 10_000})
    fake.faults.script("orders.refund", [lost, Fault.SERVICE_UNAVAILABLE])
    refund_id = await klarna.orders.refund(
        order_id, {"refunded_amount": 2_500}, idempotency_key="ref-lost"
    )
    assert 3 == len(fake.ledger.requests_for_key("ref-lost"))
    assert 1 == fake.ledger.refund_count_for_key("ref-lost")
    witness = fake.om_order(order_id)
    assert (2_500, [refund_id]) == (witness.refunded, [r.refund_id for r in witness.refunds])


async def test_a_capture_still_in_flight_is_waited_for_not_doubled(
    fake: FakeKlarna,
):
    """Attempt 1 is slower than the attempt timeout and commits after the client gave up;
    attempt 2 meets 409 (key in flight), then the replay: one capture."""
    order_id = fake.add_order(amount=10_000)
    fake.faults.set_options(in_flight="conflict")
    fake.faults.script("orders.capture", [(Fault.LATENCY, 0.6)])
    policy = RetryPolicy(max_attempts=8, initial_delay=0.1, max_delay=0.3, attempt_timeout=0.3)
    async with KlarnaClient(
        username=fake.username, password=fake.password, base_url=fake.url, retry=policy
    ) as klarna:
        capture_id = await klarna.orders.capture(
            order_id, {"captured_amount": 1_000}, idempotency_key="slow"
        )
    statuses = [record.status for record in fake.ledger.requests_for_key("slow")]
    assert 409 in statuses
    assert 1 == fake.ledger.capture_count_for_key("slow")
    assert [capture_id] == [c.capture_id for c in fake.om_order(order_id).captures]


async def test_a_refusal_after_an_attempt_that_may_have_captured_is_unknown_never_not_done(
    fake: FakeKlarna, klarna: KlarnaClient
):
    """Attempt 1 captures everything, its answer is lost; attempt 2 is checked against the
    order's state before the replay (fully captured: 403 CAPTURE_NOT_ALLOWED). Reporting that
    refusal would say "not captured" of a captured order: the call ends unknown, and a re-drive
    with the key settles it with the capture's id."""
    order_id = fake.add_order(amount=3_000)
    fake.faults.script("orders.capture", [Fault.DROP_AFTER_COMMIT, Fault.STATE_FIRST])
    with pytest.raises(OutcomeUnknownError) as caught:
        await klarna.orders.capture(order_id, {"captured_amount": 3_000}, idempotency_key="all")
    error = caught.value
    assert "all" == error.idempotency_key
    assert isinstance(error.last_error, CaptureNotAllowedError)
    assert 3_000 == fake.om_order(order_id).captured  # Klarna did capture

    # A re-drive that is refused again stays unknown (the client remembers the key) ...
    fake.faults.script("orders.capture", [Fault.STATE_FIRST])
    with pytest.raises(OutcomeUnknownError):
        await klarna.orders.capture(order_id, {"captured_amount": 3_000}, idempotency_key="all")
    # ... and one that reaches the replay settles it.
    capture_id = await klarna.orders.capture(
        order_id, {"captured_amount": 3_000}, idempotency_key="all"
    )
    assert [capture_id] == [c.capture_id for c in fake.om_order(order_id).captures]
    assert 1 == fake.ledger.capture_count_for_key("all")


async def test_out_of_attempts_after_a_lost_answer_is_unknown_and_the_key_settles_it(
    fake: FakeKlarna,
):
    order_id = fake.add_order(amount=3_000)
    fake.faults.script("orders.capture", [Fault.DROP_AFTER_COMMIT])
    async with KlarnaClient(
        username=fake.username, password=fake.password, base_url=fake.url
    ) as klarna:
        with pytest.raises(OutcomeUnknownError) as caught:
            await klarna.orders.capture(
                order_id, {"captured_amount": 1_000}, retry=RetryPolicy.no_retries()
            )
        key = caught.value.idempotency_key
        assert key  # a UUID4 made for the call, reported so the caller can re-drive
    # Another process (a restart) re-drives it with after_unknown=True.
    async with KlarnaClient(
        username=fake.username, password=fake.password, base_url=fake.url
    ) as klarna:
        capture_id = await klarna.orders.capture(
            order_id, {"captured_amount": 1_000}, idempotency_key=key, after_unknown=True
        )
    assert [capture_id] == [c.capture_id for c in fake.om_order(order_id).captures]
    assert 1_000 == fake.om_order(order_id).captured


async def test_a_plain_refusal_on_the_first_attempt_is_not_done(
    fake: FakeKlarna, klarna: KlarnaClient
):
    """The other side of the rule: with no attempt that may have acted, Klarna's 403 is proof."""
    order_id = fake.add_order(amount=100)
    with pytest.raises(CaptureNotAllowedError) as caught:
        await klarna.orders.capture(order_id, {"captured_amount": 101})
    assert 1 == caught.value.attempts
    assert 0 == fake.om_order(order_id).captured


# --- reading the new id ---------------------------------------------------------------------------


def test_the_new_id_comes_from_its_header_or_from_location() -> None:
    read = read_new_id("Capture-Id")
    location = "https://api.klarna.com/ordermanagement/v1/orders/o-1/captures/c-9"
    assert "c-1" == read(201, {"Capture-Id": "c-1", "Location": location}, b"")
    assert "c-9" == read(201, {"Location": location}, b"")
    assert "c-9" == read(201, {"Capture-Id": " ", "Location": location + "/?x=1"}, b"")


@pytest.mark.parametrize(
    "headers", [{}, {"Location": ""}, {"Capture-Id": "bad\nid"}], ids=["none", "empty", "control"]
)
def test_a_201_without_an_id_is_a_decode_error_never_a_success(headers: dict[str, str]) -> None:
    with pytest.raises(ResponseDecodeError) as caught:
        read_new_id("Capture-Id")(201, headers, b"")
    assert 201 == caught.value.status
