"""Valid requests shaped like the seed document's examples (corrected to match the spec)."""

from __future__ import annotations

from klarna_async import (
    Address,
    CustomerTokenRequest,
    IntendedUse,
    Intent,
    Interval,
    MerchantUrls,
    OrderLine,
    OrderLineType,
    OrderRequest,
    SessionRequest,
    Subscription,
    TokenOrderRequest,
)

US_ADDRESS = Address(
    given_name="John",
    family_name="Doe",
    email="john@doe.com",
    title="Mr",
    street_address="Lombard St 10",
    street_address2="Apt 214",
    postal_code="90210",
    city="Beverly Hills",
    region="CA",
    phone="333444555",
    country="US",
)

SUBSCRIPTION = Subscription(name="Premium Monthly", interval=Interval.MONTH, interval_count=1)


def battery_line(subscription: Subscription | None = None) -> OrderLine:
    return OrderLine(
        type=OrderLineType.PHYSICAL,
        reference="19-402-USA",
        name="Battery Power Pack",
        quantity=1,
        unit_price=10,
        tax_rate=0,
        total_amount=10,
        total_discount_amount=0,
        total_tax_amount=0,
        product_url="https://www.estore.com/products/f2a8d7e34",
        image_url="https://www.exampleobjects.com/logo.png",
        subscription=subscription,
    )


def session_request(intent: Intent = Intent.BUY, subscription: bool = False) -> SessionRequest:
    return SessionRequest(
        intent=intent,
        purchase_country="US",
        purchase_currency="USD",
        locale="en-US",
        order_amount=10,
        order_tax_amount=0,
        order_lines=(battery_line(SUBSCRIPTION if subscription else None),),
        billing_address=US_ADDRESS,
        merchant_urls=MerchantUrls(confirmation="https://example.com/confirmation"),
    )


def one_time_order(subscription: bool = False, **changes: object) -> OrderRequest:
    fields: dict[str, object] = {
        "purchase_country": "US",
        "purchase_currency": "USD",
        "billing_address": US_ADDRESS,
        "shipping_address": US_ADDRESS,
        "order_amount": 10,
        "order_tax_amount": 0,
        "order_lines": (battery_line(SUBSCRIPTION if subscription else None),),
        "merchant_urls": MerchantUrls(
            confirmation="https://example.com/confirmation",
            notification="https://example.com/pending",
        ),
        "merchant_reference1": "45aa52f387871e3a210645d4",
    }
    fields.update(changes)
    return OrderRequest(**fields)  # type: ignore[arg-type]


def customer_token_request(country: str = "US") -> CustomerTokenRequest:
    return CustomerTokenRequest(
        purchase_country=country,
        purchase_currency="USD",
        locale="en-US",
        billing_address=US_ADDRESS,
        description="MySaaS subscription",
        intended_use=IntendedUse.SUBSCRIPTION,
    )


def token_order(
    amount: int = 999, reference: str = "45aa52f387871e3a210645d4"
) -> TokenOrderRequest:
    return TokenOrderRequest(
        merchant_reference1=reference,
        merchant_data="optional string",
        auto_capture=True,
        purchase_currency="EUR",
        order_amount=amount,
        order_tax_amount=0,
        order_lines=(
            OrderLine(
                type=OrderLineType.DIGITAL,
                reference="19-402",
                name="Streaming Service Monthly",
                quantity=1,
                unit_price=amount,
                tax_rate=0,
                total_amount=amount,
                total_discount_amount=0,
                total_tax_amount=0,
                subscription=SUBSCRIPTION,
            ),
        ),
    )
