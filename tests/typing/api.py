"""The public API as a user writes it; checked by ``mypy --strict`` (nox -s typing), not run."""

from __future__ import annotations

from klarna_async import (
    Interval,
    KlarnaClient,
    Order,
    OrderLine,
    OutcomeUnknownError,
    RetryPolicy,
    ServiceUnavailableError,
    Subscription,
    Telemetry,
    TokenOrderRequest,
    derive_idempotency_key,
)


async def charge(token: str, subscription_id: str, period: str) -> str | None:
    request = TokenOrderRequest(
        purchase_currency="EUR",
        order_amount=999,
        order_tax_amount=0,
        order_lines=(
            OrderLine(
                name="Premium",
                quantity=1,
                unit_price=999,
                total_amount=999,
                subscription=Subscription(
                    name="Premium", interval=Interval.MONTH, interval_count=1
                ),
            ),
        ),
    )
    key: str = derive_idempotency_key("acme", subscription_id, period)
    async with KlarnaClient(username="u", password="p", region="eu") as client:
        try:
            order: Order = await client.customer_tokens.create_order(
                token, request, idempotency_key=key, retry=RetryPolicy(max_attempts=5)
            )
        except OutcomeUnknownError as exc:
            retry_key: str | None = exc.idempotency_key
            return retry_key
        except ServiceUnavailableError as exc:
            status: int = exc.status
            return str(status)
        order_id: str = order.order_id
        mapping_order = await client.customer_tokens.create_order(
            token, {"purchase_currency": "EUR"}, idempotency_key=key
        )
        return order_id + mapping_order.order_id


def traced_client() -> KlarnaClient:
    from opentelemetry.sdk.trace import TracerProvider

    telemetry = Telemetry(
        tracer_provider=TracerProvider(), record_idempotency_key=False, propagate_context=False
    )
    return KlarnaClient(username="u", password="p", telemetry=telemetry)


async def fulfil(order_ids: list[str]) -> int:
    """Order Management as a user's code types it: capture, refund, read, a batch, a decision."""
    from collections.abc import Iterator

    from klarna_async import (
        CaptureJob,
        CaptureNotAllowedError,
        CaptureRequest,
        CaptureResult,
        CaptureStatus,
        FraudDecision,
        OrderManagementOrder,
        OrderStatus,
        RefundRequest,
    )

    def jobs() -> Iterator[CaptureJob]:
        for order_id in order_ids:
            yield CaptureJob(
                order_id=order_id,
                request=CaptureRequest(captured_amount=1000),
                idempotency_key=derive_idempotency_key("acme-fulfilment", order_id),
            )

    async with KlarnaClient(username="u", password="p") as client:
        try:
            capture_id: str = await client.orders.capture(
                order_ids[0], CaptureRequest(captured_amount=500), idempotency_key="k"
            )
        except CaptureNotAllowedError as exc:
            return exc.status
        refund_id: str = await client.orders.refund(
            order_ids[0], RefundRequest(refunded_amount=100)
        )
        order: OrderManagementOrder = await client.orders.get(order_ids[0])
        open_: bool = order.status in (OrderStatus.AUTHORIZED, OrderStatus.PART_CAPTURED)
        left: int = order.remaining_authorized_amount
        captured = 0
        async for result in client.orders.capture_many(jobs(), concurrency=10):
            checked: CaptureResult = result
            if checked.status is CaptureStatus.CAPTURED and checked.capture_id is not None:
                captured += 1
        decision: FraudDecision = await client.orders.verify_notification(b"{}")
        ship: bool = decision.accepted
        return captured + left + len(capture_id + refund_id) + open_ + ship
