"""``klarna-async demo``: Klarna's "Step 3: Create an order", end to end, on the embedded fake,
then Order Management: part of an order captured, part refunded, the amounts shown.

No credentials, no network: the fake Klarna from ``klarna_async.testing`` listens on loopback,
plays the customer approving in Klarna's widget, and injects faults into the recurring batch.
Its ledger, which shares no code with the client, is the witness of the verdict.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import IO

import attrs

from klarna_async import (
    Address,
    CaptureRequest,
    Charge,
    ChargeResult,
    ChargeStatus,
    CustomerTokenRequest,
    IntendedUse,
    Intent,
    Interval,
    KlarnaClient,
    MerchantUrls,
    NotFoundError,
    OrderLine,
    OrderLineType,
    OrderRequest,
    RefundRequest,
    RetryPolicy,
    SessionRequest,
    Subscription,
    TokenOrderRequest,
    derive_idempotency_key,
)
from klarna_async.testing import FakeKlarna

__all__ = ["run_demo"]

_ADDRESS = Address(
    given_name="John",
    family_name="Doe",
    email="john@doe.com",
    street_address="Lombard St 10",
    postal_code="90210",
    city="Beverly Hills",
    region="CA",
    phone="333444555",
    country="US",
)
_URLS = MerchantUrls(
    confirmation="https://example.com/confirmation", notification="https://example.com/pending"
)
_TOKEN_REQUEST = CustomerTokenRequest(
    purchase_country="US",
    purchase_currency="USD",
    locale="en-US",
    billing_address=_ADDRESS,
    description="Streaming subscription",
    intended_use=IntendedUse.SUBSCRIPTION,
)
_PLAN = Subscription(name="Streaming Monthly", interval=Interval.MONTH, interval_count=1)


def _line(amount: int, subscription: Subscription | None = None) -> OrderLine:
    return OrderLine(
        type=OrderLineType.DIGITAL if subscription else OrderLineType.PHYSICAL,
        reference="19-402-USA",
        name="Streaming Monthly" if subscription else "Battery Power Pack",
        quantity=1,
        unit_price=amount,
        tax_rate=0,
        total_amount=amount,
        total_discount_amount=0,
        total_tax_amount=0,
        subscription=subscription,
    )


def _session(intent: Intent, subscription: Subscription | None = None) -> SessionRequest:
    return SessionRequest(
        intent=intent,
        purchase_country="US",
        purchase_currency="USD",
        locale="en-US",
        order_amount=1000,
        order_tax_amount=0,
        order_lines=(_line(1000, subscription),),
        billing_address=_ADDRESS,
        merchant_urls=_URLS,
    )


def _order(reference: str, subscription: Subscription | None = None) -> OrderRequest:
    return OrderRequest(
        purchase_country="US",
        purchase_currency="USD",
        billing_address=_ADDRESS,
        shipping_address=_ADDRESS,
        order_amount=1000,
        order_tax_amount=0,
        order_lines=(_line(1000, subscription),),
        merchant_urls=_URLS,
        merchant_reference1=reference,
    )


def _token_order(amount: int, reference: str) -> TokenOrderRequest:
    return TokenOrderRequest(
        purchase_currency="USD",
        order_amount=amount,
        order_tax_amount=0,
        auto_capture=True,
        order_lines=(_line(amount, _PLAN),),
        merchant_reference1=reference,
    )


async def run_demo(*, charges: int = 300, seed: int = 7, out: IO[str] = sys.stdout) -> int:
    """Run the walk-through; 0 when the ledger agrees with every reported outcome."""

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    began = time.monotonic()
    say("klarna-async demo: Klarna's 'Step 3: Create an order' against an embedded fake Klarna")
    say("(loopback only, no credentials; the fake's ledger is the witness)\n")
    async with (
        FakeKlarna(seed=seed) as fake,
        KlarnaClient(
            username=fake.username,
            password=fake.password,
            base_url=fake.url,
            # Snappy for a demo: short waits, and a one-second attempt timeout that the fake's
            # injected latency will trip on purpose.
            retry=RetryPolicy(
                max_attempts=5, initial_delay=0.05, max_delay=0.4, deadline=10, attempt_timeout=1.0
            ),
            connection_limit=32,
        ) as klarna,
    ):
        say("1. One-time order with an authorization token")
        session = await klarna.payments.create_session(_session(Intent.BUY))
        token = fake.authorize(session.session_id)  # the customer approves in the widget
        order = await klarna.payments.create_order(token, _order("order-1001"))
        first_order = order.order_id
        say(
            f"   placed order {order.order_id}: fraud_status {order.fraud_status}; "
            "the customer is charged, the session closed"
        )
        session = await klarna.payments.create_session(_session(Intent.BUY))
        token = fake.authorize(session.session_id, outcome="pending")
        order = await klarna.payments.create_order(token, _order("order-1002"))
        say(
            f"   placed order {order.order_id}: fraud_status {order.fraud_status}; Klarna "
            "reviews it, so wait for the notification before shipping"
        )
        session = await klarna.payments.create_session(_session(Intent.BUY))
        token = fake.authorize(session.session_id)
        fake.clock.advance(61 * 60)
        try:
            await klarna.payments.create_order(token, _order("order-1003"))
        except NotFoundError as error:
            say(
                f"   61 minutes after authorizing: {error.error_code} "
                f"'{'; '.join(error.error_messages)}' (tokens live 60 minutes)"
            )

        say("\n2. Customer token for a subscription (intent tokenize)")
        session = await klarna.payments.create_session(_session(Intent.TOKENIZE, _PLAN))
        token = fake.authorize(session.session_id)
        created = await klarna.payments.create_customer_token(
            token,
            _TOKEN_REQUEST,
        )
        details = await klarna.customer_tokens.get(created.token_id)
        say(
            f"   customer token ****{created.token_id[-4:]}: {details.status}, "
            f"paid by {details.payment_method_type}; nothing charged yet"
        )
        key = derive_idempotency_key("demo", "sub-1", "2026-11")
        first = await klarna.customer_tokens.create_order(
            created.token_id, _token_order(999, "sub-1:2026-11"), idempotency_key=key
        )
        again = await klarna.customer_tokens.create_order(
            created.token_id, _token_order(999, "sub-1:2026-11"), idempotency_key=key
        )
        say(
            f"   first recurring charge: order {first.order_id}; sent again with the same "
            f"Klarna-Idempotency-Key: order {again.order_id} "
            f"({'the same order, charged once' if again.order_id == first.order_id else 'NEW'})"
        )

        say("\n3. Charge now and keep a token (intent buy_and_tokenize): two calls, one token")
        session = await klarna.payments.create_session(_session(Intent.BUY_AND_TOKENIZE, _PLAN))
        token = fake.authorize(session.session_id)
        order = await klarna.payments.create_order(token, _order("order-1004", _PLAN))
        created = await klarna.payments.create_customer_token(
            token,
            _TOKEN_REQUEST,
        )
        say(
            f"   order {order.order_id} charged today; token ****{created.token_id[-4:]} "
            "for the next months"
        )

        say("\n4. Order Management: ship part of order-1001, take one item back")
        capture_id = await klarna.orders.capture(
            first_order,
            CaptureRequest(captured_amount=600, reference="parcel-1"),
            idempotency_key=derive_idempotency_key("demo", first_order, "parcel-1"),
        )
        refund_id = await klarna.orders.refund(
            first_order,
            RefundRequest(refunded_amount=200, description="one item returned"),
            idempotency_key=derive_idempotency_key("demo", first_order, "return-1"),
        )
        managed = await klarna.orders.get(first_order)
        say(
            f"   captured 600 (capture {capture_id[:8]}...), refunded 200 (refund "
            f"{refund_id[:8]}...): order amount {managed.order_amount}, captured "
            f"{managed.captured_amount}, refunded {managed.refunded_amount}, still authorized "
            f"{managed.remaining_authorized_amount}; status {managed.status}"
        )
        await klarna.orders.release_remaining_authorization(first_order)
        managed = await klarna.orders.get(first_order)
        witness = fake.om_order(first_order)
        say(
            f"   the rest released: status {managed.status}; the fake's books: captured "
            f"{witness.captured}, refunded {witness.refunded}"
        )

        say(
            f"\n5. A nightly batch: {charges} recurring charges, 32 at a time, while the fake "
            "fails on purpose"
        )
        say(
            "   (10 % 503 SERVICE_UNAVAILABLE, 3 % answers lost after the order was placed, "
            "2 % HTML 502 from a proxy, 2 % answers slower than the 1 s timeout)"
        )
        before = len(fake.ledger.orders)
        tokens = [
            fake.add_customer_token(purchase_currency="USD", purchase_country="US")
            for _ in range(min(charges, 100))
        ]
        fake.faults.set_rates(
            "customer_tokens.create_order",
            service_unavailable=0.10,
            drop_after_commit=0.03,
            html_502=0.02,
            latency=0.02,
            latency_seconds=1.5,
        )
        batch = [
            Charge(
                customer_token=tokens[i % len(tokens)],
                request=_token_order(999 + i % 7, f"sub-{i}:2026-11"),
                idempotency_key=derive_idempotency_key("demo-batch", f"sub-{i}", "2026-11"),
                charge_id=f"sub-{i}:2026-11",
            )
            for i in range(charges)
        ]
        results: dict[str, ChargeResult] = {}
        async for result in klarna.customer_tokens.charge_many(batch, concurrency=32):
            results[result.charge.idempotency_key] = result
        tally = Counter(r.status for r in results.values())
        retried = sum(1 for r in results.values() if r.attempts > 1)
        attempts = sum(r.attempts for r in results.values())
        say(
            f"   first pass: {tally[ChargeStatus.PLACED]} placed, "
            f"{tally[ChargeStatus.DECLINED]} declined, {tally[ChargeStatus.RETRYABLE]} retryable, "
            f"{tally[ChargeStatus.UNKNOWN]} unknown; "
            f"{retried} charges needed retries ({attempts} attempts in all)"
        )

        unknown = [
            attrs.evolve(r.charge, after_unknown=True)
            for r in results.values()
            if r.status is ChargeStatus.UNKNOWN
        ]
        retryable = [r.charge for r in results.values() if r.status is ChargeStatus.RETRYABLE]
        fake.faults.clear()
        await fake.wait_idle()  # let the fake finish answers it was still delaying
        if unknown or retryable:
            async for result in klarna.customer_tokens.charge_many(
                unknown + retryable, concurrency=32
            ):
                results[result.charge.idempotency_key] = result
            say(
                f"   second pass with the same keys (faults off): {len(unknown)} unknown and "
                f"{len(retryable)} retryable charges repeated"
            )

        orders = fake.ledger.orders[before:]
        per_key = Counter(o.idempotency_key for o in orders)
        duplicates = sum(n - 1 for n in per_key.values() if n > 1)
        placed = {k for k, r in results.items() if r.status is ChargeStatus.PLACED}
        unaccounted = len(set(per_key) ^ placed)
        wrong_ids = 0
        for k in placed:
            reported = results[k].order
            in_ledger = fake.ledger.orders_for_key(k)
            if reported is None or not in_ledger or in_ledger[0].order_id != reported.order_id:
                wrong_ids += 1
        say("\nThe ledger's verdict")
        say(f"   charges reported placed: {len(placed)} of {charges}")
        say(f"   orders in the fake's ledger: {len(orders)}")
        say(f"   duplicates: {duplicates}")
        say(f"   unaccounted charges: {unaccounted + wrong_ids}")
        say(
            f"   requests the fake received for recurring orders: "
            f"{fake.ledger.request_counts['customer_tokens.create_order']}"
        )
    ok = duplicates == 0 and unaccounted == 0 and wrong_ids == 0 and len(placed) == charges
    if ok:
        say(f"\nOK: every charge placed exactly once ({time.monotonic() - began:.1f} s)")
    else:
        say("\nNOT OK: see the figures above")
    return 0 if ok else 1
