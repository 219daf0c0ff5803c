"""client.orders against the fake Klarna: every Order Management operation and each documented
refusal, with the fake's state (``fake.om_order``) and ledger as the witness.

The fake shares no code with the client: what it holds after each call is Klarna's side of the
story, read independently of what the client reported.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from klarna_async import (
    Address,
    ApiError,
    CancelNotAllowedError,
    CaptureNotAllowedError,
    CaptureRequest,
    CustomerDetailsUpdate,
    Intent,
    InvalidAddressError,
    KlarnaClient,
    MerchantReferencesUpdate,
    NoSuchCaptureError,
    NoSuchOrderError,
    NotAllowedError,
    NotFoundError,
    OrderLine,
    OrderLineType,
    OrderStatus,
    RefundNotAllowedError,
    RefundRequest,
    RequestValidationError,
    RetryPolicy,
    ShippingInfo,
    ShippingInfoUpdate,
    ShippingMethod,
    UpdateAuthorizationRequest,
)
from klarna_async.testing import FakeKlarna
from tests import samples

DAY = 86_400
QUICK = RetryPolicy(max_attempts=4, initial_delay=0.01, max_delay=0.05, deadline=10)


@pytest.fixture
async def fake() -> AsyncIterator[FakeKlarna]:
    async with FakeKlarna(seed=1) as fake:
        yield fake


@pytest.fixture
async def klarna(fake: FakeKlarna) -> AsyncIterator[KlarnaClient]:
    async with KlarnaClient(
        username=fake.username, password=fake.password, base_url=fake.url, retry=QUICK
    ) as client:
        yield client


def line(amount: int, kind: OrderLineType = OrderLineType.PHYSICAL) -> OrderLine:
    return OrderLine(
        type=kind, name="Item", quantity=1, unit_price=amount, total_amount=amount, tax_rate=0
    )


def requests_with_keys(fake: FakeKlarna, endpoint: str) -> list[str | None]:
    return [record.idempotency_key for record in fake.ledger.requests_for(endpoint)]


# --- orders reach Order Management ---------------------------------------------------------------


async def test_one_time_and_token_orders_appear_with_their_amounts(
    fake: FakeKlarna, klarna: KlarnaClient
):
    session = await klarna.payments.create_session(samples.session_request(Intent.BUY))
    token = fake.authorize(session.session_id)
    one_time = await klarna.payments.create_order(token, samples.one_time_order())
    customer_token = fake.add_customer_token()
    recurring = await klarna.customer_tokens.create_order(
        customer_token, samples.token_order(), idempotency_key="r-1"
    )

    first = await klarna.orders.get(one_time.order_id)
    assert (OrderStatus.AUTHORIZED, 10, 0, 10) == (
        first.status,
        first.order_amount,
        first.captured_amount,
        first.remaining_authorized_amount,
    )
    assert ("USD", "US", "45aa52f387871e3a210645d4") == (
        first.purchase_currency,
        first.purchase_country,
        first.merchant_reference1,
    )
    assert first.billing_address is not None
    assert first.billing_address.country == "US"
    assert first.expires_at is not None
    assert first.created_at is not None
    assert 28 * DAY == (first.expires_at - first.created_at).total_seconds()
    assert "battery" in first.order_lines[0].name.lower()

    # The recurring sample is auto_capture: captured in full when placed.
    second = await klarna.orders.get(recurring.order_id)
    amount = samples.token_order().order_amount
    assert (OrderStatus.CAPTURED, amount, amount, 0) == (
        second.status,
        second.order_amount,
        second.captured_amount,
        second.remaining_authorized_amount,
    )
    assert [amount] == [capture.captured_amount for capture in second.captures]
    assert fake.om_order(recurring.order_id).captured == amount


# --- captures and refunds ------------------------------------------------------------------------


async def test_partial_capture_and_refund_move_the_amounts(fake: FakeKlarna, klarna: KlarnaClient):
    order_id = fake.add_order(amount=10_000, currency="EUR")
    shipped = ShippingInfo(shipping_company="DHL", shipping_method=ShippingMethod.HOME)
    capture_id = await klarna.orders.capture(
        order_id,
        CaptureRequest(
            captured_amount=6_000,
            description="First parcel",
            reference="ship-1",
            order_lines=(line(6_000),),
            shipping_info=(shipped,),
        ),
        idempotency_key="cap-1",
    )
    refund_id = await klarna.orders.refund(
        order_id,
        RefundRequest(
            refunded_amount=1_500,
            description="Returned, less the fee",
            order_lines=(line(2_000, OrderLineType.PHYSICAL), line(-500, OrderLineType.RETURN_FEE)),
        ),
        idempotency_key="ref-1",
    )

    witness = fake.om_order(order_id)
    assert (6_000, 1_500) == (witness.captured, witness.refunded)
    assert "PART_CAPTURED" == witness.status(fake.clock.time())
    assert [capture_id] == [c.capture_id for c in witness.captures]
    assert {"EUR": 6_000} == fake.ledger.total_captured
    assert {"EUR": 1_500} == fake.ledger.total_refunded

    order = await klarna.orders.get(order_id)
    assert (OrderStatus.PART_CAPTURED, 6_000, 1_500, 4_000) == (
        order.status,
        order.captured_amount,
        order.refunded_amount,
        order.remaining_authorized_amount,
    )
    (capture,) = order.captures
    assert (capture_id, 6_000, 1_500, "ship-1") == (
        capture.capture_id,
        capture.captured_amount,
        capture.refunded_amount,
        capture.reference,
    )
    assert capture.shipping_info == (shipped,)
    (refund,) = order.refunds
    assert (refund_id, 1_500) == (refund.refund_id, refund.refunded_amount)
    assert (await klarna.orders.get_refund(order_id, refund_id)) == refund
    assert (await klarna.orders.get_capture(order_id, capture_id)) == capture
    assert (await klarna.orders.list_captures(order_id)) == (capture,)

    # The rest, in a second capture: fully captured.
    await klarna.orders.capture(order_id, {"captured_amount": 4_000})
    order = await klarna.orders.get(order_id)
    assert (OrderStatus.CAPTURED, 10_000, 0) == (
        order.status,
        order.captured_amount,
        order.remaining_authorized_amount,
    )
    assert 2 == fake.ledger.captures_total


async def test_a_replayed_capture_key_captures_once(fake: FakeKlarna, klarna: KlarnaClient):
    """Klarna: two captures with the same key register once and get the same answer (even with
    another body: only the key matters)."""
    order_id = fake.add_order(amount=5_000)
    first = await klarna.orders.capture(order_id, {"captured_amount": 2_000}, idempotency_key="k")
    again = await klarna.orders.capture(order_id, {"captured_amount": 2_000}, idempotency_key="k")
    other_body = await klarna.orders.capture(
        order_id, {"captured_amount": 999}, idempotency_key="k"
    )
    assert first == again == other_body
    assert 1 == fake.ledger.capture_count_for_key("k")
    assert 0 == fake.ledger.duplicate_captures
    assert 2_000 == fake.om_order(order_id).captured
    assert [False, True, True] == [r.replayed for r in fake.ledger.requests_for("orders.capture")]

    refunded = await klarna.orders.refund(order_id, {"refunded_amount": 500}, idempotency_key="r")
    assert refunded == await klarna.orders.refund(
        order_id, {"refunded_amount": 500}, idempotency_key="r"
    )
    assert (1, 500) == (fake.ledger.refund_count_for_key("r"), fake.om_order(order_id).refunded)


async def test_every_write_sends_a_key_and_reads_send_none(fake: FakeKlarna, klarna: KlarnaClient):
    order_id = fake.add_order(amount=5_000)
    await klarna.orders.capture(order_id, {"captured_amount": 1_000})
    await klarna.orders.get(order_id)
    await klarna.orders.cancel(fake.add_order())
    (capture_key,) = requests_with_keys(fake, "orders.capture")
    (cancel_key,) = requests_with_keys(fake, "orders.cancel")
    assert capture_key
    assert cancel_key
    assert capture_key != cancel_key
    assert [None] == requests_with_keys(fake, "orders.get")
    with pytest.raises(ValueError, match="printable ASCII"):
        await klarna.orders.cancel(order_id, idempotency_key="bad\nkey")
    with pytest.raises(TypeError):
        await klarna.orders.cancel(order_id, idempotency_key=7)  # type: ignore[arg-type]
    assert 1 == len(fake.ledger.requests_for("orders.cancel"))


# --- every other operation ------------------------------------------------------------------------


async def test_the_other_operations(fake: FakeKlarna, klarna: KlarnaClient):
    order_id = fake.add_order(amount=8_000)
    await klarna.orders.acknowledge(order_id)
    assert fake.om_order(order_id).acknowledged

    await klarna.orders.update_merchant_references(
        order_id, MerchantReferencesUpdate(merchant_reference1="INV-9", merchant_reference2="B")
    )
    new_address = Address(street_address="Sveavägen 46", postal_code="11134", country="se")
    await klarna.orders.update_customer_details(
        order_id, CustomerDetailsUpdate(shipping_address=new_address)
    )
    await klarna.orders.update_authorization(
        order_id, UpdateAuthorizationRequest(order_amount=9_000, order_lines=(line(9_000),))
    )
    info = ShippingInfoUpdate(shipping_info=(ShippingInfo(shipping_company="UPS"),))
    await klarna.orders.add_shipping_info(order_id, info)
    order = await klarna.orders.get(order_id)
    assert ("INV-9", "B", 9_000, 8_000) == (
        order.merchant_reference1,
        order.merchant_reference2,
        order.order_amount,
        order.original_order_amount,
    )
    assert order.shipping_address == new_address  # the country sent upper-cased
    assert 9_000 == order.order_lines[0].total_amount
    assert ("UPS",) == tuple(s.shipping_company for s in order.shipping_info)

    capture_id = await klarna.orders.capture(order_id, {"captured_amount": 3_000})
    await klarna.orders.add_capture_shipping_info(
        order_id, capture_id, {"shipping_info": [{"tracking_number": "1Z999"}]}
    )
    await klarna.orders.trigger_send_out(order_id, capture_id)
    options = await klarna.orders.extend_due_date_options(order_id, capture_id)
    assert [14, 30] == [option.number_of_days for option in options.options]
    await klarna.orders.extend_due_date(order_id, capture_id, 30)
    assert fake.om_order(order_id).captures[0].due_extended
    capture = await klarna.orders.get_capture(order_id, capture_id)
    assert ("1Z999",) == tuple(s.tracking_number for s in capture.shipping_info or ())
    assert len(fake.ledger.requests_for("orders.trigger_send_out")) == 1

    await klarna.orders.release_remaining_authorization(order_id)
    order = await klarna.orders.get(order_id)
    assert (OrderStatus.CLOSED, 3_000, 0) == (
        order.status,
        order.captured_amount,
        order.remaining_authorized_amount,
    )

    cancelled = fake.add_order()
    await klarna.orders.cancel(cancelled)
    assert OrderStatus.CANCELLED == (await klarna.orders.get(cancelled)).status


async def test_authorization_expires_after_28_days_and_extends_up_to_180(
    fake: FakeKlarna, klarna: KlarnaClient
):
    order_id = fake.add_order(amount=1_000)
    created = fake.om_order(order_id).created_at
    fake.clock.advance(20 * DAY)
    await klarna.orders.extend_authorization_time(order_id)
    await klarna.orders.extend_authorization_time(order_id)  # the same day: the same date
    expires = fake.om_order(order_id).expires_at
    today = fake.clock.time() // DAY * DAY
    assert today + 28 * DAY == expires
    order = await klarna.orders.get(order_id)
    assert order.expires_at is not None
    assert order.expires_at.timestamp() == pytest.approx(expires)

    for _ in range(7):  # every 25 days, until the 180 days after creation
        fake.clock.advance(25 * DAY)
        try:
            await klarna.orders.extend_authorization_time(order_id)
        except NotAllowedError:
            break
    assert created + 180 * DAY == fake.om_order(order_id).expires_at
    with pytest.raises(NotAllowedError, match="180 days"):
        await klarna.orders.extend_authorization_time(order_id)

    lapsed = fake.add_order(amount=1_000)
    fake.clock.advance(28 * DAY)
    assert OrderStatus.EXPIRED == (await klarna.orders.get(lapsed)).status
    with pytest.raises(CaptureNotAllowedError, match="EXPIRED"):
        await klarna.orders.capture(lapsed, {"captured_amount": 1})
    with pytest.raises(NotAllowedError):
        await klarna.orders.extend_authorization_time(lapsed)


# --- refusals ---------------------------------------------------------------------------------


async def test_each_documented_refusal_changes_nothing(fake: FakeKlarna, klarna: KlarnaClient):
    order_id = fake.add_order(amount=5_000)
    orders = klarna.orders

    async def refused(error: type[ApiError], code: str, call: Any, status: int = 403) -> None:
        before = (fake.om_order(order_id).captured, fake.om_order(order_id).refunded)
        with pytest.raises(error) as caught:
            await call
        assert (status, code) == (caught.value.status, caught.value.error_code)
        assert 1 == caught.value.attempts  # a definite refusal is not retried
        assert before == (fake.om_order(order_id).captured, fake.om_order(order_id).refunded)

    await refused(NotAllowedError, "NOT_ALLOWED", orders.release_remaining_authorization(order_id))
    await refused(
        RefundNotAllowedError, "REFUND_NOT_ALLOWED", orders.refund(order_id, {"refunded_amount": 1})
    )
    await refused(
        CaptureNotAllowedError,
        "CAPTURE_NOT_ALLOWED",
        orders.capture(order_id, {"captured_amount": 5_001}),
    )
    await orders.capture(order_id, {"captured_amount": 2_000})
    await refused(CancelNotAllowedError, "CANCEL_NOT_ALLOWED", orders.cancel(order_id))
    await refused(
        RefundNotAllowedError,
        "REFUND_NOT_ALLOWED",
        orders.refund(order_id, {"refunded_amount": 2_001}),
    )
    await refused(
        NotAllowedError,
        "NOT_ALLOWED",
        orders.update_authorization(order_id, {"order_amount": 1_999}),
    )
    await refused(NoSuchCaptureError, "NO_SUCH_CAPTURE", orders.get_capture(order_id, "nope"), 404)
    await refused(NotFoundError, "NOT_FOUND", orders.get_refund(order_id, "nope"), 404)
    await refused(
        InvalidAddressError,
        "INVALID_ADDRESS",
        orders.update_customer_details(order_id, {"shipping_address": {"city": "Lund"}}),
        422,
    )
    capture_id = fake.om_order(order_id).captures[0].capture_id
    await refused(NotAllowedError, "NOT_ALLOWED", orders.extend_due_date(order_id, capture_id, 21))

    with pytest.raises(NoSuchOrderError) as unknown:
        await orders.get("no-such-order")
    assert (404, "NO_SUCH_ORDER") == (unknown.value.status, unknown.value.error_code)
    with pytest.raises(NotFoundError) as no_refund:  # the refund endpoints say NOT_FOUND
        await orders.refund("no-such-order", {"refunded_amount": 1})
    assert "NOT_FOUND" == no_refund.value.error_code
    assert not isinstance(no_refund.value, NoSuchOrderError)

    pending = fake.add_order(fraud_status="PENDING")
    with pytest.raises(CaptureNotAllowedError, match="PENDING"):
        await orders.capture(pending, {"captured_amount": 1})

    cancelled = fake.add_order()
    await orders.cancel(cancelled)
    with pytest.raises(NotAllowedError, match="cancelled"):
        await orders.update_merchant_references(cancelled, {"merchant_reference1": "x"})
    with pytest.raises(CaptureNotAllowedError, match="CANCELLED"):
        await orders.capture(cancelled, {"captured_amount": 1})
    with pytest.raises(CancelNotAllowedError):
        await orders.cancel(cancelled)

    full = fake.add_order(amount=100)
    await orders.capture(full, {"captured_amount": 100})
    with pytest.raises(NotAllowedError):
        await orders.release_remaining_authorization(full)
    assert 2 == fake.ledger.captures_total


# --- validation before sending ------------------------------------------------------------------


async def test_bad_input_is_one_error_listing_every_problem_and_nothing_is_sent(
    fake: FakeKlarna, klarna: KlarnaClient
):
    order_id = fake.add_order()
    bad_line = {"name": "x", "quantity": 2, "unit_price": 100, "total_amount": 100}
    with pytest.raises(RequestValidationError) as caught:
        await klarna.orders.capture(
            order_id,
            {
                "captured_amount": 0,
                "reference": "r" * 256,
                "order_lines": [bad_line] * 1001,
                "shipping_info": [{"shipping_method": "Teleport"}],
                "colour": "red",
            },
        )
    paths = {violation.path for violation in caught.value.violations}
    assert {
        "$.captured_amount",
        "$.reference",
        "$.order_lines",
        "$.order_lines[0].total_amount",
        "$.shipping_info[0].shipping_method",
        "$.colour",
    } <= paths
    with pytest.raises(RequestValidationError) as refund:
        await klarna.orders.refund(order_id, RefundRequest(refunded_amount=-1))
    assert ["$.refunded_amount"] == [v.path for v in refund.value.violations]
    with pytest.raises(RequestValidationError):
        await klarna.orders.add_shipping_info(order_id, ShippingInfoUpdate(shipping_info=()))
    with pytest.raises(RequestValidationError):
        await klarna.orders.extend_due_date(order_id, "c", "14")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="capture_id"):
        await klarna.orders.get_capture(order_id, "")
    assert 0 == sum(
        count for name, count in fake.ledger.request_counts.items() if name != "orders.get"
    )


async def test_path_parameters_are_encoded(fake: FakeKlarna, klarna: KlarnaClient):
    order_id = fake.add_order()
    with pytest.raises(NoSuchCaptureError):
        await klarna.orders.get_capture(order_id, "a/b?c")
    # One segment on the wire (the server decoded it back): the get_capture route matched.
    (record,) = fake.ledger.requests_for("orders.get_capture")
    assert record.path.endswith("/captures/a/b?c")
    with pytest.raises(ValueError, match="leave its place"):
        await klarna.orders.get_capture(order_id, "..")


def test_the_capture_body_is_the_spec_shape() -> None:
    from klarna_async._validation import encode_request

    body = encode_request(
        CaptureRequest(captured_amount=100, shipping_info=(ShippingInfo(shipping_method="home"),)),
        CaptureRequest,
        check_amounts=True,
    )
    assert {"captured_amount": 100, "shipping_info": [{"shipping_method": "Home"}]} == orjson.loads(
        body
    )


async def test_the_demo_captures_part_refunds_part_and_shows_the_amounts() -> None:
    import io

    from klarna_async._demo import run_demo

    out = io.StringIO()
    assert 0 == await run_demo(charges=10, seed=5, out=out)
    text = out.getvalue()
    assert "4. Order Management" in text
    assert "captured 600" in text
    assert "refunded 200" in text
    assert "still authorized 400; status PART_CAPTURED" in text
    assert "status CLOSED; the fake's books: captured 600, refunded 200" in text


async def test_the_order_management_controls_over_http(fake: FakeKlarna) -> None:
    """POST /_fake/orders and /_fake/orders/{id}/fraud-decision, listed by GET /_fake/."""
    import aiohttp

    async with aiohttp.ClientSession(fake.url) as http:
        async with http.get("/_fake/") as answer:
            index = await answer.json()
        paths = {control["path"] for control in index["controls"]}
        assert {"/_fake/orders", "/_fake/orders/{order_id}/fraud-decision"} <= paths
        assert 18 == sum(1 for api in index["api"] if api["endpoint"].startswith("orders."))

        async with http.post("/_fake/orders", json={"count": 3, "order_id_prefix": "b-"}) as answer:
            assert {"order_ids": ["b-0", "b-1", "b-2"], "count": 3} == await answer.json()
        async with http.post("/_fake/orders", json={"fraud_status": "PENDING"}) as answer:
            (pending,) = (await answer.json())["order_ids"]
        async with http.post("/_fake/orders", json={"count": 2}) as answer:
            assert 400 == answer.status
        decide = f"/_fake/orders/{pending}/fraud-decision"
        async with http.post(decide, json={"decision": "maybe"}) as answer:
            assert 400 == answer.status
        async with http.post(decide, json={"decision": "rejected"}) as answer:
            body = await answer.json()
        assert ("FRAUD_RISK_REJECTED", None) == (
            body["notification"]["event_type"],
            body["merchant_status"],
        )
        async with http.post(decide, json={"decision": "accepted"}) as answer:
            assert 409 == answer.status  # no longer pending
        async with http.post("/_fake/orders/nope/fraud-decision", json={}) as answer:
            assert 404 == answer.status
    witness = fake.om_order(pending)
    assert ("REJECTED", "CANCELLED") == (witness.fraud_status, witness.status(fake.clock.time()))
    assert 500 == fake.om_order("b-2").order_amount // 20
