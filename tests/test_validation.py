"""Request validation: every documented rule, with its JSON path, checked against the specs too."""

from __future__ import annotations

import json
import re
from typing import Any

import attrs
import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from klarna_async._converter import to_dict, to_json
from klarna_async._errors import RequestValidationError
from klarna_async._models import (
    AcquiringChannel,
    Address,
    Attachment,
    Customer,
    CustomerTokenRequest,
    IntendedUse,
    Intent,
    Interval,
    MerchantUrls,
    OpenStrEnum,
    Options,
    Order,
    OrderLine,
    OrderLineType,
    OrderRequest,
    OrganizationEntityType,
    ProductIdentifiers,
    SessionRequest,
    Subscription,
    TokenMerchantUrls,
    TokenOrderRequest,
)
from klarna_async._validation import encode_request, prepare, validate
from tests._spec import SpecViolation, validate_request_body

OPERATIONS: dict[type[Any], tuple[str, str, str]] = {
    SessionRequest: ("payments", "POST", "/payments/v1/sessions"),
    OrderRequest: ("payments", "POST", "/payments/v1/authorizations/{authorizationToken}/order"),
    CustomerTokenRequest: (
        "payments",
        "POST",
        "/payments/v1/authorizations/{authorizationToken}/customer-token",
    ),
    TokenOrderRequest: (
        "customer_token",
        "POST",
        "/customer-token/v1/tokens/{customerToken}/order",
    ),
}
SESSION_UPDATE = ("payments", "POST", "/payments/v1/sessions/{session_id}")


def spec_check(request: Any) -> None:
    """Raise SpecViolation unless the request's JSON body is valid for its operation."""
    validate_request_body(*OPERATIONS[type(request)], orjson.loads(to_json(request)))


def violations(request: Any, *, check_amounts: bool = True) -> dict[str, str]:
    with pytest.raises(RequestValidationError) as caught:
        validate(request, check_amounts=check_amounts)
    assert caught.value.model == type(request).__name__
    found: dict[str, str] = {}
    for violation in caught.value.violations:
        assert violation.path not in found, f"two violations at {violation.path}"
        found[violation.path] = violation.message
    return found


# --- sample requests ----------------------------------------------------------------------------

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
SE_ADDRESS = Address(
    attention="Attn",
    organization_name="Example AB",
    given_name="Adam",
    family_name="Andersson",
    email="adam@example.com",
    title="Mr",
    street_address="Drottninggatan 1",
    postal_code="111 51",
    city="Stockholm",
    region="AB",
    phone="+46701234567",
    country="SE",
)
EMD = json.dumps({"customer_account_info": [{"unique_account_identifier": "adam@example.com"}]})


def eu_lines() -> tuple[OrderLine, ...]:
    """A physical line with every field, a shipping fee and a discount, 25 % VAT throughout."""
    return (
        OrderLine(
            type=OrderLineType.PHYSICAL,
            reference="AD6654412",
            name="Running shoe",
            quantity=2,
            quantity_unit="pcs",
            unit_price=12500,
            tax_rate=2500,
            total_discount_amount=2500,
            total_amount=22500,
            total_tax_amount=4500,
            merchant_data='{"size": 42}',
            product_url="https://shop.example/AD6654412.html",
            image_url="https://shop.example/AD6654412.png",
            product_identifiers=ProductIdentifiers(
                brand="shoe-brand",
                category_path="Shoes > Running",
                global_trade_item_number="4912345678904",
                manufacturer_part_number="AD6654412-334.22",
                color="white",
                size="42",
            ),
            subscription=Subscription(name="Shoe club", interval=Interval.YEAR, interval_count=1),
        ),
        OrderLine(
            type=OrderLineType.SHIPPING_FEE,
            name="Shipping",
            quantity=1,
            unit_price=500,
            tax_rate=2500,
            total_amount=500,
            total_tax_amount=100,
        ),
        OrderLine(
            type=OrderLineType.DISCOUNT,
            name="Welcome discount",
            quantity=1,
            unit_price=-1000,
            tax_rate=2500,
            total_amount=-1000,
            total_tax_amount=-200,
        ),
    )


def kp_order() -> OrderRequest:
    return OrderRequest(
        purchase_country="SE",
        purchase_currency="SEK",
        locale="sv-SE",
        order_amount=22000,
        order_tax_amount=4400,
        order_lines=eu_lines(),
        auto_capture=False,
        billing_address=SE_ADDRESS,
        shipping_address=SE_ADDRESS,
        customer=Customer(
            date_of_birth="1978-12-31",
            gender="male",
            last_four_ssn="1234",
            national_identification_number="197812311234",
            title="Mr",
            type="person",
        ),
        merchant_urls=MerchantUrls(
            confirmation="https://shop.example/confirm/{order.id}",
            notification="https://shop.example/notify",
            push="https://shop.example/push",
            authorization="https://shop.example/auth",
        ),
        merchant_reference1="ON4711",
        merchant_reference2="hdt53h",
        merchant_data='{"substore": "Running"}',
        custom_payment_method_ids=("promo-0-percent",),
    )


def kp_session() -> SessionRequest:
    return SessionRequest(
        purchase_country="SE",
        purchase_currency="SEK",
        locale="en-SE",
        order_amount=22000,
        order_tax_amount=4400,
        order_lines=eu_lines(),
        intent=Intent.BUY_AND_TOKENIZE,
        acquiring_channel=AcquiringChannel.ECOMMERCE,
        billing_address=SE_ADDRESS,
        shipping_address=SE_ADDRESS,
        customer=Customer(
            type="organization",
            organization_entity_type=OrganizationEntityType.LIMITED_COMPANY,
            organization_registration_id="556036-0793",
            vat_id="SE556036079301",
        ),
        merchant_urls=MerchantUrls(confirmation="https://shop.example/confirm"),
        merchant_reference1="ON4711",
        merchant_reference2="hdt53h",
        merchant_data="{}",
        attachment=Attachment(body=EMD, content_type="application/vnd.klarna.internal.emd-v2+json"),
        options=Options(
            color_border="#FF9900",
            color_border_selected="#ff9900",
            color_details="#000000",
            color_text="#FFFFFF",
            radius_border="5px",
        ),
        custom_payment_method_ids=("promo",),
        design="klarna-blue",
    )


def token_order() -> TokenOrderRequest:
    return TokenOrderRequest(
        purchase_currency="EUR",
        order_amount=22000,
        order_tax_amount=4400,
        order_lines=eu_lines(),
        auto_capture=True,
        merchant_reference1="ON4711",
        merchant_reference2="sub-42",
        merchant_data="{}",
        merchant_urls=TokenMerchantUrls(
            confirmation="https://shop.example/confirm", push="https://shop.example/push"
        ),
        shipping_address=SE_ADDRESS,
        attachment=Attachment(body=EMD, content_type="application/vnd.klarna.internal.emd-v2+json"),
    )


def token_request() -> CustomerTokenRequest:
    return CustomerTokenRequest(
        purchase_country="US",
        purchase_currency="USD",
        locale="en-US",
        description="MySaaS subscription",
        intended_use=IntendedUse.SUBSCRIPTION,
        billing_address=US_ADDRESS,
        customer=Customer(date_of_birth="1979-01-01", gender="male"),
    )


def us_sales_tax_order() -> OrderRequest:
    """US style (Klarna's tax guide): no tax on the lines, one sales_tax line carrying the tax."""
    return OrderRequest(
        purchase_country="US",
        purchase_currency="USD",
        locale="en-US",
        order_amount=10800,
        order_tax_amount=800,
        order_lines=(
            OrderLine(
                type=OrderLineType.PHYSICAL,
                name="Shoe",
                quantity=2,
                unit_price=5000,
                total_amount=10000,
            ),
            OrderLine(
                type=OrderLineType.SALES_TAX,
                name="Sales Tax",
                quantity=1,
                unit_price=800,
                total_amount=800,
            ),
        ),
        billing_address=US_ADDRESS,
    )


# The seed document's examples ("Step 3: Create an order"), made valid: JSON syntax fixed
# (trailing commas, a missing comma) and brought in line with the spec, as noted per example.

SEED_ONE_TIME_ORDER: dict[str, Any] = {
    "purchase_country": "US",
    "purchase_currency": "USD",
    "billing_address": to_dict(US_ADDRESS),
    "shipping_address": to_dict(US_ADDRESS),
    "order_amount": 10,
    "order_tax_amount": 0,
    "order_lines": [
        {
            "type": "physical",
            "reference": "19-402-USA",
            "name": "Battery Power Pack",
            "quantity": 1,
            "unit_price": 10,
            "tax_rate": 0,
            "total_amount": 10,
            "total_discount_amount": 0,
            "total_tax_amount": 0,
            "product_url": "https://www.estore.com/products/f2a8d7e34",
            "image_url": "https://www.exampleobjects.com/logo.png",
        }
    ],
    "merchant_urls": {
        "confirmation": "https://example.com/confirmation",
        "notification": "https://example.com/pending",
    },
    "merchant_reference1": "45aa52f387871e3a210645d4",
}
SEED_BUY_AND_TOKENIZE_ORDER: dict[str, Any] = {
    **SEED_ONE_TIME_ORDER,
    "order_lines": [
        {
            **SEED_ONE_TIME_ORDER["order_lines"][0],
            "subscription": {"name": "string", "interval": "MONTH", "interval_count": 1},
        }
    ],
}
# Changed: intended_use "subscription" -> "SUBSCRIPTION" (spec enum); purchase_currency added
# (required by the spec); locale "us-US" -> "en-US"; merchant_urls dropped (not in the schema);
# given and family name put back the right way round.
SEED_CUSTOMER_TOKEN: dict[str, Any] = {
    "purchase_country": "US",
    "purchase_currency": "USD",
    "locale": "en-US",
    "billing_address": {
        "given_name": "John",
        "family_name": "Doe",
        "email": "john@doe.com",
        "phone": "333444555",
        "street_address": "Lombard St 10",
        "postal_code": "90210",
        "city": "Beverly Hills",
        "region": "CA",
        "country": "US",
    },
    "description": "MySaaS subscription",
    "intended_use": "SUBSCRIPTION",
}
# Changed: "locale" dropped (the CT schema has no locale).
SEED_TOKEN_ORDER: dict[str, Any] = {
    "merchant_reference1": "45aa52f387871e3a210645d4",
    "merchant_data": "optional string",
    "auto_capture": True,
    "purchase_currency": "EUR",
    "order_amount": 999,
    "order_tax_amount": 0,
    "order_lines": [
        {
            "type": "digital",
            "subscription": {
                "name": " Premium Monthly {{1234834}}",
                "interval": "MONTH",
                "interval_count": 1,
            },
            "reference": "19-402",
            "name": "Streaming Service Monthly - Free Trial",
            "quantity": 1,
            "unit_price": 999,
            "tax_rate": 0,
            "total_amount": 999,
            "total_discount_amount": 0,
            "total_tax_amount": 0,
        }
    ],
}
SEEDS: list[tuple[dict[str, Any], type[Any]]] = [
    (SEED_ONE_TIME_ORDER, OrderRequest),
    (SEED_BUY_AND_TOKENIZE_ORDER, OrderRequest),
    (SEED_CUSTOMER_TOKEN, CustomerTokenRequest),
    (SEED_TOKEN_ORDER, TokenOrderRequest),
]
SAMPLES = [kp_order, kp_session, token_order, token_request, us_sales_tax_order]


class TestValidSamples:
    @pytest.mark.parametrize("make", SAMPLES, ids=lambda f: f.__name__)
    def test_samples_pass_and_match_the_spec(self, make: Any) -> None:
        """Each sample passes our validation, and its body validates against Klarna's schema."""
        request = make()
        validate(request)
        spec_check(request)
        if isinstance(request, SessionRequest):
            validate_request_body(*SESSION_UPDATE, orjson.loads(to_json(request)))

    @pytest.mark.parametrize(("data", "cls"), SEEDS, ids=lambda x: getattr(x, "__name__", ""))
    def test_seed_examples_corrected(self, data: dict[str, Any], cls: type[Any]) -> None:
        """The seed document's examples, corrected, pass both checks and go out unchanged."""
        validate_request_body(*OPERATIONS[cls], data)
        model, body = prepare(data, cls)
        assert isinstance(model, cls)
        assert orjson.loads(body) == data

    def test_seed_examples_as_written(self) -> None:
        """Where the seed document departs from the spec: a docs-only field is accepted and
        sent, an enum's casing is mended, and a field the spec requires is still required,
        with one violation that says so (tests/test_seed_examples.py sends them to the fake)."""
        body = encode_request({**SEED_TOKEN_ORDER, "locale": "de-DE"}, TokenOrderRequest)
        assert orjson.loads(body)["locale"] == "de-DE"
        as_written = {
            **SEED_CUSTOMER_TOKEN,
            "locale": "us-US",
            "intended_use": "subscription",
            "merchant_urls": {"confirmation": "https://example.com/confirmation"},
        }
        del as_written["purchase_currency"]
        with pytest.raises(RequestValidationError) as caught:
            encode_request(as_written, CustomerTokenRequest)
        (only,) = caught.value.violations
        assert only.path == "$.purchase_currency"
        assert only.message.startswith("required field missing: Klarna's spec requires it")
        sent = orjson.loads(
            encode_request({**as_written, "purchase_currency": "usd"}, CustomerTokenRequest)
        )
        assert sent["intended_use"] == "SUBSCRIPTION"
        assert sent["purchase_currency"] == "USD"
        assert sent["merchant_urls"] == {"confirmation": "https://example.com/confirmation"}


# --- one rule at a time -------------------------------------------------------------------------


def set_path(obj: Any, dotted: str, value: Any) -> Any:
    """A copy of ``obj`` with the field at ``order_lines.0.tax_rate`` (say) replaced."""
    head, _, rest = dotted.partition(".")
    if isinstance(obj, tuple):
        items = list(obj)
        index = int(head)
        items[index] = set_path(items[index], rest, value) if rest else value
        return tuple(items)
    new = set_path(getattr(obj, head), rest, value) if rest else value
    return attrs.evolve(obj, **{head: new})


def json_path(dotted: str) -> str:
    return "$." + re.sub(r"\.(\d+)", r"[\1]", dotted)


def body_with(request: Any, dotted: str, value: Any) -> dict[str, Any]:
    """The JSON body of ``request`` with ``value`` put at the path, the way a caller's raw dict
    would carry it (our writer cannot serialise every wrong value)."""
    body: dict[str, Any] = to_dict(request)
    *parents, last = dotted.split(".")
    target: Any = body
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    raw = _raw(value)
    if isinstance(target, list):
        target[int(last)] = raw
    elif raw is None:
        target.pop(last, None)
    else:
        target[last] = raw
    return body


def _raw(value: Any) -> Any:
    if attrs.has(type(value)):
        return to_dict(value)
    if isinstance(value, tuple):
        return [_raw(item) for item in value]
    if isinstance(value, OpenStrEnum):
        return value.value
    return value


# (sample, field, bad value, message start, whether Klarna's schema forbids it too)
RULES: list[tuple[Any, str, Any, str, bool]] = [
    # order level, KP
    (kp_order, "purchase_country", "SWE", "must match ^[A-Za-z]{2,2}$", True),
    (kp_order, "purchase_country", "S1", "must match", True),
    (kp_order, "purchase_country", None, "required field missing", True),
    (kp_order, "purchase_currency", "EURO", "must match ^[A-Za-z]{3,3}$", True),
    # Python's re (and so the schema checker) lets "$" match before a final newline; ECMA does not.
    (kp_order, "purchase_currency", "SEK\n", "must match", False),
    (kp_order, "locale", "english", "must match ^[A-Za-z]{2,2}(?:-[A-Za-z]{2,2})*$", True),
    (kp_order, "locale", "en_GB", "must match", True),
    (kp_order, "order_amount", -1, "must be at least 0, got -1", True),
    (kp_order, "order_amount", None, "required field missing", True),
    (kp_order, "order_amount", "22000", "must be an integer, got a string", True),
    (kp_order, "order_amount", 220.5, "must be an integer, got a number", True),
    (kp_order, "order_tax_amount", -1, "must be at least 0, got -1", True),
    (kp_order, "order_lines", (), "must hold at least 1 item(s), got 0", True),
    (kp_order, "order_lines", None, "required field missing", True),
    (kp_order, "merchant_reference1", "x" * 256, "must be at most 255 characters long", True),
    (kp_order, "merchant_reference2", "x" * 256, "must be at most 255 characters long", True),
    (kp_order, "merchant_data", "x" * 6001, "must be at most 6000 characters long", True),
    (kp_order, "auto_capture", "yes", "must be a boolean, got a string", True),
    (kp_order, "auto_capture", 1, "must be a boolean, got an integer", True),
    (kp_order, "custom_payment_method_ids.0", 1, "must be a string, got an integer", True),
    (kp_order, "custom_payment_method_ids", "abc", "must be a tuple, got a string", True),
    (kp_order, "merchant_urls.confirmation", "x" * 2001, "must be at most 2000", True),
    (kp_order, "merchant_urls.notification", "x" * 2001, "must be at most 2000", True),
    (kp_order, "merchant_urls.push", "x" * 2001, "must be at most 2000", True),
    (kp_order, "merchant_urls.authorization", "x" * 2001, "must be at most 2000", True),
    (kp_order, "merchant_urls", "https://x", "must be MerchantUrls, got a string", True),
    # addresses
    (kp_order, "billing_address.country", "SWE", "must match ^[A-Za-z]{2,2}$", True),
    (kp_order, "billing_address.postal_code", "1" * 11, "must be at most 10 characters", True),
    (kp_order, "billing_address.title", "x" * 21, "must be at most 20 characters", True),
    (kp_order, "billing_address.given_name", "x" * 100, "must be at most 99 characters", True),
    (kp_order, "billing_address.family_name", "x" * 100, "must be at most 99", True),
    (kp_order, "shipping_address.email", "x" * 100, "must be at most 99", True),
    (kp_order, "shipping_address.street_address", "x" * 100, "must be at most 99", True),
    (kp_order, "shipping_address.street_address2", "x" * 100, "must be at most 99", True),
    (kp_order, "shipping_address.city", "x" * 100, "must be at most 99", True),
    (kp_order, "shipping_address.region", "x" * 100, "must be at most 99", True),
    (kp_order, "shipping_address.phone", "x" * 100, "must be at most 99", True),
    (kp_order, "shipping_address.attention", "x" * 100, "must be at most 99", True),
    (kp_order, "shipping_address.organization_name", "x" * 100, "must be at most 99", True),
    # customer
    (kp_order, "customer.last_four_ssn", "12345", "must match ^([0-9]{4}|[0-9]{9})$", True),
    (kp_order, "customer.type", "company", "must match ^(person|organization)$", True),
    (
        kp_session,
        "customer.organization_entity_type",
        "LLC",
        "must be one of LIMITED_COMPANY",
        True,
    ),
    (kp_order, "customer.gender", 1, "must be a string, got an integer", True),
    # order lines, KP
    (kp_order, "order_lines.0.name", "", "must be at least 1 character long", True),
    (kp_order, "order_lines.0.name", "x" * 256, "must be at most 255 characters long", True),
    (kp_order, "order_lines.0.name", None, "required field missing", True),
    (kp_order, "order_lines.0.quantity", -1, "must be at least 0, got -1", True),
    (kp_order, "order_lines.0.quantity", True, "must be an integer, got a boolean", True),
    (kp_order, "order_lines.0.unit_price", 200_000_001, "must be at most 200000000", True),
    (kp_order, "order_lines.0.unit_price", None, "required field missing", True),
    (kp_order, "order_lines.0.total_amount", 200_000_001, "must be at most 200000000", True),
    (kp_order, "order_lines.0.tax_rate", -1, "must be at least 0, got -1", True),
    (kp_order, "order_lines.0.tax_rate", 10001, "must be at most 10000, got 10001", True),
    (kp_order, "order_lines.0.total_discount_amount", -1, "must be at least 0", True),
    (kp_order, "order_lines.0.total_tax_amount", 1.5, "must be an integer, got a number", True),
    (kp_order, "order_lines.0.reference", "x" * 256, "must be at most 255 characters", True),
    (kp_order, "order_lines.0.quantity_unit", "", "must be at least 1 character", True),
    (kp_order, "order_lines.0.quantity_unit", "kilograms", "must be at most 8 characters", True),
    (kp_order, "order_lines.0.merchant_data", "x" * 1025, "must be at most 1024", True),
    (kp_order, "order_lines.0.product_url", "x" * 1025, "must be at most 1024", True),
    (kp_order, "order_lines.0.image_url", "x" * 1025, "must be at most 1024", True),
    (kp_order, "order_lines.0.product_identifiers.brand", "x" * 71, "must be at most 70", True),
    (
        kp_order,
        "order_lines.0.product_identifiers.category_path",
        "x" * 751,
        "must be at most 750",
        True,
    ),
    (
        kp_order,
        "order_lines.0.product_identifiers.global_trade_item_number",
        "1" * 51,
        "must be at most 50",
        True,
    ),
    (
        kp_order,
        "order_lines.0.product_identifiers.manufacturer_part_number",
        "x" * 71,
        "must be at most 70",
        True,
    ),
    (kp_order, "order_lines.0.product_identifiers.color", "x" * 65, "must be at most 64", True),
    (kp_order, "order_lines.0.product_identifiers.size", "x" * 65, "must be at most 64", True),
    (kp_order, "order_lines.2", "a line", "must be OrderLine, got a string", True),
    # KP lists the line types in prose only: we hold KP to that list as CT does by enum.
    (kp_order, "order_lines.0.type", OrderLineType("physcial"), "must be one of physical,", False),
    (kp_order, "order_lines.0.type", OrderLineType.RETURN_FEE, "must be one of", False),
    # subscriptions
    (kp_order, "order_lines.0.subscription.name", "", "must be at least 1 character", True),
    (kp_order, "order_lines.0.subscription.name", "x" * 256, "must be at most 255", True),
    (kp_order, "order_lines.0.subscription.name", None, "required field missing", True),
    (
        kp_order,
        "order_lines.0.subscription.interval",
        Interval("MONTHLY"),
        "must be one of DAY, WEEK, MONTH, YEAR, got 'MONTHLY'",
        True,
    ),
    (kp_order, "order_lines.0.subscription.interval_count", 0, "must be at least 1, got 0", True),
    (kp_order, "order_lines.0.subscription.interval_count", None, "required field missing", True),
    # session only
    (kp_session, "intent", Intent("purchase"), "must be one of buy, tokenize", True),
    (kp_session, "acquiring_channel", AcquiringChannel("ONLINE"), "must be one of ECOMMERCE", True),
    (kp_session, "options.color_text", "red", "must match ^#[A-Fa-f0-9]{6}$", True),
    (kp_session, "options.color_border", "#FF990", "must match", True),
    (kp_session, "options.color_border_selected", "#GG9900", "must match", True),
    (kp_session, "options.color_details", "FF9900", "must match", True),
    (kp_session, "options.radius_border", 5, "must be a string, got an integer", True),
    (kp_session, "attachment.body", None, "required field missing", True),
    (kp_session, "attachment.content_type", None, "required field missing", True),
    (kp_session, "design", 5, "must be a string", True),
    # customer token request
    (token_request, "description", "", "must be at least 1 character long", True),
    (token_request, "description", "x" * 256, "must be at most 255 characters", True),
    (token_request, "description", None, "required field missing", True),
    (
        token_request,
        "intended_use",
        IntendedUse("subscriptions"),
        "must be one of SUBSCRIPTION, got 'subscriptions'",
        True,
    ),
    (token_request, "intended_use", None, "required field missing", True),
    (token_request, "locale", None, "required field missing", True),
    (token_request, "purchase_currency", None, "required field missing", True),
    (token_request, "purchase_country", "USA", "must match", True),
    (token_request, "billing_address.country", "USA", "must match", True),
    # CT order
    (token_order, "order_amount", 0, "must be at least 1, got 0", True),
    (token_order, "order_tax_amount", None, "required field missing", True),
    (token_order, "purchase_currency", None, "required field missing", True),
    (token_order, "order_lines.0.unit_price", 100_000_001, "must be at most 100000000", True),
    (token_order, "order_lines.0.total_amount", 100_000_001, "must be at most 100000000", True),
    (token_order, "order_lines.0.merchant_data", "x" * 256, "must be at most 255", True),
    (token_order, "order_lines.0.reference", "x" * 257, "must be at most 256", True),
    (token_order, "order_lines.0.type", OrderLineType("physcial"), "must be one of", True),
    (token_order, "order_lines.0.type", OrderLineType.RETURN_FEE, "must be one of", True),
    (token_order, "merchant_urls.confirmation", None, "required field missing", True),
    (token_order, "merchant_urls.push", "x" * 2001, "must be at most 2000", True),
    (token_order, "merchant_urls", MerchantUrls(), "must be TokenMerchantUrls", True),
    (token_order, "shipping_address.phone", "1234", "must be at least 5 characters long", True),
    (token_order, "attachment.body", 1, "must be a string", True),
    # CT's schema says only "non-negative" in prose and nothing on subscription names: ours.
    (token_order, "order_lines.0.tax_rate", -1, "must be at least 0", False),
    (token_order, "order_lines.0.tax_rate", 10001, "must be at most 10000", False),
    (token_order, "order_lines.0.subscription.name", "", "must be at least 1 character", False),
    (token_order, "order_lines.0.subscription.name", "x" * 256, "must be at most 255", False),
    (token_order, "order_lines.0.subscription.interval_count", 0, "must be at least 1", True),
    # codes: what the patterns let by and Klarna cannot accept (overrides.CODE_FORMATS)
    (kp_order, "purchase_currency", "XYZ", "must be an ISO 4217 currency code", False),
    (token_order, "purchase_currency", "eUx", "must be an ISO 4217 currency code", False),
    (kp_order, "purchase_country", "UK", "must be an ISO 3166-1 alpha-2 country code", False),
    (kp_order, "billing_address.country", "XX", "must be an ISO 3166-1 alpha-2", False),
    (token_order, "shipping_address.country", "zz", "must be an ISO 3166-1 alpha-2", False),
    (kp_order, "locale", "en", "must be language-COUNTRY (RFC 1766", False),
    (kp_order, "locale", "en-XX", "must be language-COUNTRY (RFC 1766", False),
    (kp_order, "locale", "en-GB-US", "must be language-COUNTRY (RFC 1766", False),
    (token_request, "locale", "sv-UK", "must be language-COUNTRY (RFC 1766", False),
    # a docs-only field: its rule is ours (the CT schema has no locale at all)
    (token_order, "locale", "de_DE", "must match ^[A-Za-z]{2,2}(?:-[A-Za-z]{2,2})*$", False),
    (token_order, "locale", "de-XX", "must be language-COUNTRY (RFC 1766", False),
    # int64 is every integer's format, and orjson cannot write more
    (kp_order, "order_lines.0.quantity", 2**63, "must be at most 9223372036854775807", False),
    (token_order, "order_tax_amount", 2**64, "must be at most 9223372036854775807", False),
]


@pytest.mark.parametrize(
    ("make", "field", "value", "message", "spec_agrees"),
    RULES,
    ids=[f"{r[0].__name__}-{r[1]}-{str(r[2])[:12]!r}" for r in RULES],
)
def test_each_rule_names_its_path(
    make: Any, field: str, value: Any, message: str, spec_agrees: bool
) -> None:
    """One broken rule gives one violation at its JSON path; Klarna's schema agrees."""
    request = set_path(make(), field, value)
    found = violations(request, check_amounts=False)
    assert list(found) == [json_path(field)]
    assert found[json_path(field)].startswith(message), found
    if spec_agrees:
        with pytest.raises(SpecViolation):
            validate_request_body(*OPERATIONS[type(request)], body_with(make(), field, value))


def test_docs_only_merchant_urls_are_checked_as_kp_merchant_urls() -> None:
    """The customer-token request's merchant_urls (a docs-only field) has KP's URL limits."""
    request = attrs.evolve(
        token_request(), merchant_urls=MerchantUrls(confirmation="x" * 2001, push="y" * 2001)
    )
    assert violations(request) == {
        "$.merchant_urls.confirmation": "must be at most 2000 characters long, got 2001",
        "$.merchant_urls.push": "must be at most 2000 characters long, got 2001",
    }
    wrong: Any = TokenMerchantUrls(confirmation="https://x")
    assert list(violations(attrs.evolve(token_request(), merchant_urls=wrong))) == [
        "$.merchant_urls"
    ]


@pytest.mark.parametrize(
    ("make", "field", "value"),
    [
        rule[:3]
        for rule in RULES
        # A model of the wrong class has no mapping form.
        if not (attrs.has(type(rule[2])) and rule[1].rsplit(".", 1)[-1] in ("merchant_urls",))
    ],
    ids=lambda x: str(getattr(x, "__name__", x))[:20],
)
def test_a_mapping_breaks_the_same_rule_at_the_same_path(make: Any, field: str, value: Any) -> None:
    """Each rule broken in the JSON form of the request: the same path as for the model."""
    with pytest.raises(RequestValidationError) as caught:
        encode_request(body_with(make(), field, value), type(make()), check_amounts=False)
    assert [v.path for v in caught.value.violations] == [json_path(field)]


class TestEveryProblemAtOnce:
    """Structure and type errors and rule errors of one body come in one error (issue 10,
    item 14): a wrong type no longer hides the lengths, patterns and sums around it."""

    def test_mapping_with_a_mistyped_amount(self) -> None:
        data: dict[str, Any] = orjson.loads(to_json(token_order()))
        data["order_amount"] = "999"
        data["purchase_currency"] = "EURO"
        data["merchant_reference1"] = "x" * 256
        data["merchant_referenc2"] = "typo"
        data["order_lines"][0]["total_amount"] = 22499
        data["order_lines"][1]["quantity"] = True
        data["order_lines"][2]["subscription"] = {"name": "", "interval": "monthly"}
        data["shipping_address"]["country"] = 46
        with pytest.raises(RequestValidationError) as caught:
            encode_request(data, TokenOrderRequest)
        assert {v.path: v.message for v in caught.value.violations} == {
            "$.merchant_referenc2": (
                "unknown field for TokenOrderRequest (did you mean 'merchant_reference2'?)"
            ),
            "$.purchase_currency": "must match ^[A-Za-z]{3,3}$ (ISO 4217, e.g. EUR)",
            "$.order_amount": "must be an integer, got a string",
            "$.order_lines[0].total_amount": (
                "must equal quantity * unit_price - total_discount_amount = 22500, got 22499"
            ),
            "$.order_lines[1].quantity": "must be an integer, got a boolean",
            "$.order_lines[2].subscription.name": "must be at least 1 character long",
            "$.order_lines[2].subscription.interval": (
                "must be one of DAY, WEEK, MONTH, YEAR, got 'monthly'"
            ),
            "$.order_lines[2].subscription.interval_count": "required field missing",
            "$.merchant_reference1": "must be at most 255 characters long, got 256",
            "$.shipping_address.country": "must be a string, got an integer",
        }

    def test_model_with_a_mistyped_amount(self) -> None:
        junk: Any = "22000"
        request = attrs.evolve(
            kp_order(), order_amount=junk, merchant_reference1="x" * 256, locale="en-XX"
        )
        request = set_path(request, "order_lines.1.total_amount", 501)
        assert list(violations(request)) == [
            "$.order_amount",
            "$.order_lines[1].total_amount",
            "$.locale",
            "$.merchant_reference1",
        ]

    def test_the_order_sum_waits_for_integer_lines(self) -> None:
        """The order's sum is judged only when every line's total is an integer; each line's
        own arithmetic is judged regardless."""
        data: dict[str, Any] = orjson.loads(to_json(kp_order()))
        data["order_lines"][0]["total_amount"] = "22500"
        data["order_lines"][1]["total_amount"] = 499
        data["order_amount"] = 1
        with pytest.raises(RequestValidationError) as caught:
            encode_request(data, OrderRequest)
        assert [v.path for v in caught.value.violations] == [
            "$.order_lines[0].total_amount",
            "$.order_lines[1].total_amount",
        ]
        assert "must equal quantity * unit_price" in caught.value.violations[1].message


def test_messages_never_quote_personal_data() -> None:
    """A too-long name or a malformed SSN is described, never repeated."""
    request = set_path(kp_order(), "billing_address.given_name", "Johnathan" * 20)
    request = set_path(request, "customer.last_four_ssn", "98765")
    with pytest.raises(RequestValidationError) as caught:
        validate(request)
    assert "Johnathan" not in str(caught.value)
    assert "98765" not in str(caught.value)


class TestApisDiffer:
    """One OrderLine class, two rule sets: what one API accepts the other may refuse."""

    @pytest.mark.parametrize(
        ("field", "value", "kp_ok"),
        [
            ("order_lines.0.merchant_data", "x" * 300, True),
            ("order_lines.0.reference", "x" * 256, False),
            ("order_lines.0.quantity_unit", "kilograms", False),
            ("shipping_address.phone", "123", True),
        ],
    )
    def test_same_line_different_verdicts(self, field: str, value: Any, kp_ok: bool) -> None:
        """The limits follow each API's schema, and each spec agrees with our verdict."""
        kp = set_path(kp_order(), field, value)
        ct = set_path(token_order(), field, value)
        ok, refused = (kp, ct) if kp_ok else (ct, kp)
        validate(ok)
        spec_check(ok)
        assert json_path(field) in violations(refused)
        with pytest.raises(SpecViolation):
            spec_check(refused)

    def test_amount_ceilings(self) -> None:
        """150 000 000 minor units fit a KP line (max 2e8) but not a CT line (max 1e8)."""
        big = {"order_lines.0.unit_price": 150_000_000, "order_lines.0.total_amount": 150_000_000}
        kp, ct = kp_order(), token_order()
        for field, value in big.items():
            kp, ct = set_path(kp, field, value), set_path(ct, field, value)
        validate(kp, check_amounts=False)
        spec_check(kp)
        assert set(violations(ct, check_amounts=False)) == {
            "$.order_lines[0].unit_price",
            "$.order_lines[0].total_amount",
        }

    def test_free_order(self) -> None:
        """An order of 0 is fine for KP (a free trial) but CT wants order_amount >= 1."""
        free = OrderLine(name="Free trial", quantity=1, unit_price=0, total_amount=0)
        kp = attrs.evolve(kp_order(), order_lines=(free,), order_amount=0, order_tax_amount=0)
        ct = attrs.evolve(token_order(), order_lines=(free,), order_amount=0, order_tax_amount=0)
        validate(kp)
        spec_check(kp)
        assert violations(ct) == {"$.order_amount": "must be at least 1, got 0"}


def test_every_violation_is_reported_together() -> None:
    """One pass, every problem: the caller fixes them all in one round."""
    request = set_path(token_order(), "purchase_currency", "EURO")
    request = set_path(request, "order_lines.0.tax_rate", 25)
    request = set_path(request, "order_lines.1.name", "")
    request = set_path(
        request,
        "order_lines.2.subscription",
        Subscription(name="x", interval=Interval.MONTH, interval_count=0),
    )
    request = set_path(request, "merchant_urls.confirmation", None)
    request = attrs.evolve(request, order_amount=1)
    found = violations(request)
    assert list(found) == [
        "$.purchase_currency",
        "$.order_lines[0].total_tax_amount",
        "$.order_lines[1].name",
        "$.order_lines[2].subscription.interval_count",
        "$.merchant_urls.confirmation",
        "$.order_amount",
    ]
    with pytest.raises(RequestValidationError, match="TokenOrderRequest is invalid: 6 problems"):
        validate(request)


def test_too_many_lines() -> None:
    """At most 1000 order lines."""
    line = OrderLine(name="x", quantity=1, unit_price=1, total_amount=1)
    request = attrs.evolve(
        token_order(), order_lines=(line,) * 1001, order_amount=1001, order_tax_amount=0
    )
    assert violations(request) == {"$.order_lines": "must hold at most 1000 items, got 1001"}
    validate(attrs.evolve(request, order_lines=(line,) * 1000, order_amount=1000))


def test_plain_strings_work_where_enums_are_expected() -> None:
    """A caller who writes "physical" instead of OrderLineType.PHYSICAL is not punished."""
    request = set_path(kp_order(), "order_lines.0.type", "physical")
    validate(request)
    assert orjson.loads(to_json(request))["order_lines"][0]["type"] == "physical"
    assert violations(set_path(request, "order_lines.0.type", 7)) == {
        "$.order_lines[0].type": "must be a string, got an integer"
    }


# --- arithmetic ---------------------------------------------------------------------------------


def line_order(*lines: OrderLine, order_amount: int, order_tax_amount: int | None) -> OrderRequest:
    return attrs.evolve(
        kp_order(), order_lines=lines, order_amount=order_amount, order_tax_amount=order_tax_amount
    )


class TestAmounts:
    def test_line_total_is_quantity_times_price_minus_discount(self) -> None:
        """total_amount = quantity * unit_price - total_discount_amount, to the minor unit."""
        line = OrderLine(
            name="x", quantity=3, unit_price=1000, total_discount_amount=500, total_amount=2500
        )
        validate(line_order(line, order_amount=2500, order_tax_amount=None))
        wrong = attrs.evolve(line, total_amount=3000)
        assert violations(line_order(wrong, order_amount=3000, order_tax_amount=None)) == {
            "$.order_lines[0].total_amount": (
                "must equal quantity * unit_price - total_discount_amount = 2500, got 3000"
            )
        }
        undiscounted = attrs.evolve(line, total_discount_amount=None)
        assert violations(line_order(undiscounted, order_amount=2500, order_tax_amount=None)) == {
            "$.order_lines[0].total_amount": (
                "must equal quantity * unit_price - total_discount_amount = 3000, got 2500"
            )
        }

    @pytest.mark.parametrize(
        ("total", "rate", "tax", "ok"),
        [
            (10000, 2500, 2000, True),
            (10000, 2500, 2001, True),
            (10000, 2500, 1999, True),
            (10000, 2500, 2002, False),
            (10000, 2500, 1998, False),
            (999, 2500, 200, True),  # exact 199.8
            (999, 2500, 199, True),
            (999, 2500, 201, False),
            (999, 2500, 198, False),
            (-1000, 2500, -200, True),  # discount lines carry negative tax
            (-1000, 2500, 200, False),
            (1190, 1900, 190, True),
            (500, 0, 0, True),
            (500, 0, 2, False),
            (500, 10000, 250, True),
        ],
    )
    def test_line_tax_within_one_minor_unit(
        self, total: int, rate: int, tax: int, ok: bool
    ) -> None:
        """total_tax_amount within ±1 of total_amount - total_amount*10000/(10000+tax_rate)."""
        line = OrderLine(
            name="x",
            quantity=1,
            unit_price=total,
            total_amount=total,
            tax_rate=rate,
            total_tax_amount=tax,
        )
        # A line without tax keeps the order total positive when the line is a discount.
        filler = OrderLine(name="filler", quantity=1, unit_price=5000, total_amount=5000)
        request = line_order(line, filler, order_amount=total + 5000, order_tax_amount=None)
        if ok:
            validate(request)
        else:
            message = violations(request)["$.order_lines[0].total_tax_amount"]
            assert message.startswith("must be within ±1 of total_amount - total_amount * 10000")
            assert message.endswith(f"got {tax}")

    def test_line_tax_needs_both_fields(self) -> None:
        """Without tax_rate there is nothing to check total_tax_amount against."""
        line = OrderLine(name="x", quantity=1, unit_price=100, total_amount=100, total_tax_amount=7)
        validate(line_order(line, order_amount=100, order_tax_amount=7))

    def test_order_amount_is_the_sum_of_line_totals(self) -> None:
        """order_amount must equal the sum of the lines' total_amount."""
        request = attrs.evolve(kp_order(), order_amount=22001)
        assert violations(request) == {
            "$.order_amount": "must equal the sum of order_lines[].total_amount = 22000, got 22001"
        }

    def test_order_tax_is_the_sum_of_line_taxes(self) -> None:
        """order_tax_amount must equal the sum of the lines' total_tax_amount."""
        request = attrs.evolve(kp_order(), order_tax_amount=4600)
        assert violations(request) == {
            "$.order_tax_amount": (
                "must equal the sum of order_lines[].total_tax_amount = 4400, got 4600"
            )
        }

    def test_us_sales_tax_line(self) -> None:
        """US: tax is a sales_tax line; order_tax_amount is its amount, order_amount all lines."""
        validate(us_sales_tax_order())
        spec_check(us_sales_tax_order())
        wrong = attrs.evolve(us_sales_tax_order(), order_tax_amount=700)
        assert violations(wrong) == {
            "$.order_tax_amount": (
                "must equal the sum of order_lines[].total_tax_amount = 0"
                " (or 800, counting sales_tax lines as tax), got 700"
            )
        }
        double_counted = attrs.evolve(us_sales_tax_order(), order_amount=11600)
        assert set(violations(double_counted)) == {"$.order_amount"}

    def test_us_lines_with_explicit_zero_tax(self) -> None:
        """US lines that spell out tax_rate 0 / total_tax_amount 0 still pass."""
        lines = tuple(
            attrs.evolve(line, tax_rate=0, total_tax_amount=0)
            for line in us_sales_tax_order().order_lines
        )
        validate(attrs.evolve(us_sales_tax_order(), order_lines=lines))

    def test_order_tax_without_line_taxes_is_not_judged(self) -> None:
        """When no line says anything about tax, order_tax_amount stands alone."""
        line = OrderLine(name="x", quantity=1, unit_price=100, total_amount=100)
        validate(line_order(line, order_amount=100, order_tax_amount=20))

    def test_check_amounts_off_keeps_every_other_rule(self) -> None:
        """check_amounts=False skips the arithmetic only."""
        request = set_path(kp_order(), "order_lines.0.total_amount", 1)
        request = set_path(request, "order_lines.1.tax_rate", 99999)
        request = attrs.evolve(request, order_amount=5, order_tax_amount=1)
        assert list(violations(request)) == [
            "$.order_lines[0].total_amount",
            "$.order_lines[0].total_tax_amount",
            "$.order_lines[1].tax_rate",
            "$.order_amount",
            "$.order_tax_amount",
        ]
        assert list(violations(request, check_amounts=False)) == ["$.order_lines[1].tax_rate"]
        validate(attrs.evolve(request, order_lines=request.order_lines[::2]), check_amounts=False)

    def test_int_subclasses_are_added_up_too(self) -> None:
        """An int subclass (an IntEnum, say) is its number: the sums still apply to it."""

        class Units(int):
            pass

        request = set_path(kp_order(), "order_lines.1.quantity", Units(2))
        assert violations(request) == {
            "$.order_lines[1].total_amount": (
                "must equal quantity * unit_price - total_discount_amount = 1000, got 500"
            )
        }

    def test_arithmetic_skips_values_already_reported(self) -> None:
        """A mistyped amount is reported once, by its own rule, not again by the sums."""
        request = set_path(kp_order(), "order_lines.0.total_amount", "22500")
        assert list(violations(request)) == ["$.order_lines[0].total_amount"]
        request = set_path(kp_order(), "order_lines.1.total_tax_amount", "100")
        assert list(violations(request)) == ["$.order_lines[1].total_tax_amount"]
        request = set_path(kp_order(), "order_lines.0.total_discount_amount", "2500")
        assert list(violations(request)) == ["$.order_lines[0].total_discount_amount"]
        request = set_path(kp_order(), "order_lines.0.quantity", None)
        assert list(violations(request)) == ["$.order_lines[0].quantity"]
        request = set_path(kp_order(), "order_lines", [kp_order().order_lines[0], "x"])
        assert list(violations(request)) == ["$.order_lines[1]"]
        assert list(violations(attrs.evolve(kp_order(), order_lines=()))) == ["$.order_lines"]
        junk: Any = "x"
        assert list(violations(attrs.evolve(kp_order(), order_lines=junk))) == ["$.order_lines"]


# --- entry points -------------------------------------------------------------------------------


class TestPrepare:
    def test_model_in_model_and_body_out(self) -> None:
        """A model is validated and written; the same object comes back."""
        request = token_order()
        model, body = prepare(request, TokenOrderRequest)
        assert model is request
        assert body == to_json(request)

    def test_mapping_in(self) -> None:
        """A mapping is structured, then validated."""
        model, body = prepare(to_dict(token_order()), TokenOrderRequest)
        assert model == token_order()
        assert body == to_json(token_order())

    def test_mapping_with_rule_violations(self) -> None:
        """A well-shaped mapping that breaks a spec rule fails validation."""
        data = to_dict(token_order())
        data["purchase_currency"] = "EURO"
        with pytest.raises(RequestValidationError) as caught:
            prepare(data, TokenOrderRequest)
        assert [v.path for v in caught.value.violations] == ["$.purchase_currency"]

    def test_mapping_with_unknown_key(self) -> None:
        """A typo in a mapping is a RequestValidationError, not silently dropped."""
        data = to_dict(token_order())
        data["merchant_reference"] = "ON4711"
        with pytest.raises(RequestValidationError) as caught:
            prepare(data, TokenOrderRequest)
        assert caught.value.violations[0].path == "$.merchant_reference"
        assert "did you mean" in caught.value.violations[0].message

    @pytest.mark.parametrize("wrong", [kp_order(), Order(order_id="x"), ["a"], None, "json"])
    def test_wrong_kind_is_a_type_error(self, wrong: Any) -> None:
        """Another model, or something that is not a mapping, is a bug: TypeError."""
        with pytest.raises(TypeError, match="expected TokenOrderRequest or a mapping"):
            prepare(wrong, TokenOrderRequest)

    def test_check_amounts_is_passed_on(self) -> None:
        """prepare(check_amounts=False) skips the arithmetic."""
        request = attrs.evolve(token_order(), order_amount=1)
        with pytest.raises(RequestValidationError):
            prepare(request, TokenOrderRequest)
        assert prepare(request, TokenOrderRequest, check_amounts=False)[0] is request

    def test_unencodable_string(self) -> None:
        """A lone surrogate is valid Python but not JSON: a violation, not a crash."""
        request = attrs.evolve(token_order(), merchant_data="\ud800")
        with pytest.raises(RequestValidationError) as caught:
            prepare(request, TokenOrderRequest)
        assert caught.value.violations[0].path == "$"


def test_validate_refuses_other_classes() -> None:
    """Only the four request models can be validated; anything else is a bug."""
    with pytest.raises(TypeError, match="no request validation for Order"):
        validate(Order(order_id="x"))


# --- properties ---------------------------------------------------------------------------------

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=5),
    st.binary(max_size=3),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.just(OrderLine(name="x", quantity=1, unit_price=1, total_amount=1)),
    st.just(Address()),
    st.just(()),
)


def _has_path(obj: Any, dotted: str) -> bool:
    for part in dotted.split("."):
        if isinstance(obj, tuple) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        elif attrs.has(type(obj)) and part in attrs.fields_dict(type(obj)):
            obj = getattr(obj, part)
        else:
            return False
    return True


def _field_paths(request: Any) -> list[str]:
    candidates = (
        *(f.name for f in attrs.fields(type(request))),
        *(f"order_lines.0.{f.name}" for f in attrs.fields(OrderLine)),
        *(f"order_lines.0.subscription.{f.name}" for f in attrs.fields(Subscription)),
        *(f"billing_address.{f.name}" for f in attrs.fields(Address)),
        *(f"merchant_urls.{f.name}" for f in attrs.fields(MerchantUrls)),
    )
    return [path for path in candidates if _has_path(request, path)]


FIELD_PATHS = {make: _field_paths(make()) for make in SAMPLES}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_junk_only_ever_raises_request_validation_error(data: st.DataObject) -> None:
    """Any value of any type in any field: a RequestValidationError or a valid JSON body."""
    make = data.draw(st.sampled_from(SAMPLES))
    request = make()
    for _ in range(data.draw(st.integers(1, 3))):
        # A path under a field that junk already replaced may be gone.
        path = data.draw(st.sampled_from([p for p in FIELD_PATHS[make] if _has_path(request, p)]))
        request = set_path(request, path, data.draw(JUNK))
    check_amounts = data.draw(st.booleans())
    problems: tuple[Any, ...] = ()
    try:
        cls: type[Any] = type(request)
        _, body = prepare(request, cls, check_amounts=check_amounts)
    except RequestValidationError as error:
        problems = error.violations
    event(f"accepted: {not problems}")
    if problems:
        assert all(v.path.startswith("$") for v in problems)
    else:
        validate_request_body(*OPERATIONS[type(request)], orjson.loads(body))


def _probe(usual: list[Any], probes: list[Any]) -> st.SearchStrategy[Any]:
    """Mostly an ordinary value, sometimes one at (or just past) a boundary of either spec."""
    return st.sampled_from(usual * 12 + probes)


def _text(usual: int, *probes: int) -> st.SearchStrategy[str]:
    return _probe([usual], [n for p in probes for n in (p - 1, p, p + 1) if n >= 0]).map(
        lambda n: "x" * n
    )


def _line(api: str) -> st.SearchStrategy[OrderLine]:
    ceilings = [n for c in (100_000_000, 200_000_000) for n in (c, c + 1)]
    return st.builds(
        OrderLine,
        name=_text(10, 0, 255),
        quantity=_probe([1, 2], [-1, 0]),
        unit_price=_probe([100, -100], ceilings),
        total_amount=_probe([100, -100], ceilings),
        type=st.none() | st.sampled_from([t for t in OrderLineType if t.value != "return_fee"]),
        reference=st.none() | _text(10, 255, 256),
        quantity_unit=st.none() | _text(3, 0, 8),
        # Keep clear of where we are stricter than CT's schema (tax_rate bounds in prose only).
        tax_rate=st.none()
        | _probe([2500], [0, 10000] if api != "payments" else [-1, 0, 10000, 10001]),
        total_discount_amount=st.none() | _probe([0, 5], [-1]),
        total_tax_amount=st.none() | st.integers(-5, 5),
        merchant_data=st.none() | _text(10, 255, 1024),
        product_url=st.none() | _text(10, 1024),
        image_url=st.none() | _text(10, 1024),
        product_identifiers=st.none() | st.builds(ProductIdentifiers, brand=_text(5, 70)),
        subscription=st.none()
        | st.builds(
            Subscription,
            name=st.sampled_from(["a", "x" * 255]),
            interval=st.sampled_from(list(Interval)),
            interval_count=_probe([1, 3], [0]),
        ),
    )


def _address() -> st.SearchStrategy[Address]:
    return st.builds(
        Address,
        country=st.none() | _probe(["SE", "se"], ["SWE", "S1", ""]),
        phone=st.none() | _text(12, 5, 99),
        postal_code=st.none() | _text(5, 10),
        title=st.none() | _text(2, 20),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    api=st.sampled_from(["payments", "customer_token"]),
    data=st.data(),
)
def test_our_verdict_is_the_schemas_verdict(api: str, data: st.DataObject) -> None:
    """Near every boundary the specs draw, we accept exactly what Klarna's schema accepts."""
    lines = tuple(
        data.draw(
            _probe([1, 2], [0]).flatmap(lambda n: st.lists(_line(api), min_size=n, max_size=n))
        )
    )
    common = {
        "purchase_currency": data.draw(_probe(["EUR", "eur"], ["EURO", "E1R"])),
        "order_lines": lines,
        "order_amount": data.draw(_probe([100], [-1, 0, 1])),
        "merchant_reference1": data.draw(st.none() | _text(6, 255)),
        "merchant_data": data.draw(st.none() | _text(6, 6000)),
        "shipping_address": data.draw(st.none() | _address()),
    }
    request: Any
    if api == "payments":
        request = OrderRequest(
            purchase_country=data.draw(_probe(["SE"], ["S", "SWE"])),
            # Away from where we are stricter than the pattern (language-COUNTRY, ISO codes).
            locale=data.draw(st.none() | _probe(["en-GB", "sv-se"], ["en-GB-x", "en_GB"])),
            order_tax_amount=data.draw(st.none() | _probe([0, 5], [-1])),
            **common,
        )
    else:
        request = TokenOrderRequest(order_tax_amount=data.draw(_probe([0, 5], [-1])), **common)
    try:
        validate(request, check_amounts=False)
    except RequestValidationError:
        ours = False
    else:
        ours = True
    try:
        spec_check(request)
    except SpecViolation:
        theirs = False
    else:
        theirs = True
    event(f"accepted: {ours}")
    assert ours == theirs
