"""The fake Klarna's behaviour, driven over HTTP with plain aiohttp requests.

Helpers here (``Api``, cart builders) are reused by the other ``test_fake_*`` modules.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from klarna_async.testing import (
    AuthorizationDeclined,
    FakeClock,
    FakeKlarna,
    Fault,
    serve_in_thread,
)

pytest_plugins = ["pytester"]

AUTH = "Basic " + base64.b64encode(b"test_user:test_password").decode()
MINUTE = 60.0
HOUR = 60 * MINUTE

ADDRESS: dict[str, Any] = {
    "given_name": "Erika",
    "family_name": "Mustermann",
    "email": "erika@example.com",
    "street_address": "Heidestrasse 17",
    "postal_code": "51147",
    "city": "Koeln",
    "phone": "+4930123456",
    "country": "DE",
}


def line(
    name: str = "Battery Power Pack", quantity: int = 1, unit_price: int = 1000
) -> dict[str, Any]:
    """An order line whose amounts pass Klarna's arithmetic (25 % tax included)."""
    total = quantity * unit_price
    return {
        "type": "physical",
        "reference": name[:10],
        "name": name,
        "quantity": quantity,
        "unit_price": unit_price,
        "tax_rate": 2500,
        "total_amount": total,
        "total_discount_amount": 0,
        "total_tax_amount": round(total - total * 10000 / 12500),
    }


def cart(count: int = 2) -> list[dict[str, Any]]:
    return [line(f"Item {i}", quantity=i + 1, unit_price=500 * (i + 1)) for i in range(count)]


def totals(lines: list[dict[str, Any]]) -> dict[str, int]:
    return {
        "order_amount": sum(item["total_amount"] for item in lines),
        "order_tax_amount": sum(item["total_tax_amount"] for item in lines),
    }


def session_body(
    intent: str | None = None, lines: list[dict[str, Any]] | None = None, **extra: Any
) -> dict[str, Any]:
    lines = cart() if lines is None else lines
    body: dict[str, Any] = {
        "purchase_country": "DE",
        "purchase_currency": "EUR",
        "locale": "de-DE",
        "order_lines": lines,
        "billing_address": dict(ADDRESS),
        **totals(lines),
    }
    if intent is not None:
        body["intent"] = intent
    body.update(extra)
    return body


def order_body(lines: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    lines = cart() if lines is None else lines
    body: dict[str, Any] = {
        "purchase_country": "DE",
        "purchase_currency": "EUR",
        "order_lines": lines,
        "billing_address": dict(ADDRESS),
        **totals(lines),
    }
    body.update(extra)
    return body


def token_body(country: str = "DE", currency: str = "EUR", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "purchase_country": country,
        "purchase_currency": currency,
        "locale": "de-DE",
        "description": "Streaming subscription",
        "intended_use": "SUBSCRIPTION",
    }
    body.update(extra)
    return body


def recurring_body(amount: int = 999, reference: str = "sub-1", **extra: Any) -> dict[str, Any]:
    item = line("Monthly plan", 1, amount)
    item["type"] = "digital"
    item["subscription"] = {"name": "Monthly plan", "interval": "MONTH", "interval_count": 1}
    body: dict[str, Any] = {
        "purchase_currency": "EUR",
        "order_lines": [item],
        "merchant_reference1": reference,
        "auto_capture": True,
        **totals([item]),
    }
    body.update(extra)
    return body


@dataclass
class Answer:
    endpoint: str
    status: int
    raw: bytes
    headers: Any
    content_type: str

    @property
    def body(self) -> Any:
        return (
            orjson.loads(self.raw) if self.raw and self.content_type == "application/json" else None
        )

    @property
    def error(self) -> tuple[str, list[str]]:
        body = self.body
        return body["error_code"], body["error_messages"]


@dataclass
class Api:
    """Thin wrapper over an aiohttp session: one method per endpoint, every answer recorded."""

    http: aiohttp.ClientSession
    log: list[Answer] = field(default_factory=list)

    async def call(
        self,
        endpoint: str,
        method: str,
        path: str,
        json: Any = None,
        *,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
        client_timeout: float | None = None,
    ) -> Answer:
        kwargs: dict[str, Any] = {"headers": headers or {}}
        if json is not None:
            kwargs["json"] = json
        if data is not None:
            kwargs["data"] = data
        if client_timeout is not None:
            kwargs["timeout"] = aiohttp.ClientTimeout(total=client_timeout)
        async with self.http.request(method, path, **kwargs) as response:
            answer = Answer(
                endpoint,
                response.status,
                await response.read(),
                response.headers,
                response.content_type,
            )
        self.log.append(answer)
        return answer

    async def create_session(self, body: dict[str, Any]) -> Answer:
        return await self.call("payments.create_session", "POST", "/payments/v1/sessions", body)

    async def new_session(self, intent: str | None = None, **extra: Any) -> str:
        answer = await self.create_session(session_body(intent, **extra))
        assert answer.status == 200, answer.raw
        session_id: str = answer.body["session_id"]
        return session_id

    async def get_session(self, session_id: str) -> Answer:
        path = f"/payments/v1/sessions/{session_id}"
        return await self.call("payments.get_session", "GET", path)

    async def update_session(self, session_id: str, body: dict[str, Any]) -> Answer:
        path = f"/payments/v1/sessions/{session_id}"
        return await self.call("payments.update_session", "POST", path, body)

    async def create_order(self, token: str, body: dict[str, Any], **kw: Any) -> Answer:
        path = f"/payments/v1/authorizations/{token}/order"
        return await self.call("payments.create_order", "POST", path, body, **kw)

    async def create_token(self, token: str, body: dict[str, Any]) -> Answer:
        path = f"/payments/v1/authorizations/{token}/customer-token"
        return await self.call("payments.create_customer_token", "POST", path, body)

    async def cancel_authorization(self, token: str) -> Answer:
        path = f"/payments/v1/authorizations/{token}"
        return await self.call("payments.cancel_authorization", "DELETE", path)

    async def get_token(self, token: str) -> Answer:
        path = f"/customer-token/v1/tokens/{token}"
        return await self.call("customer_tokens.get", "GET", path)

    async def charge(
        self, token: str, body: dict[str, Any] | None = None, key: str | None = "key-1", **kw: Any
    ) -> Answer:
        path = f"/customer-token/v1/tokens/{token}/order"
        headers = {} if key is None else {"Klarna-Idempotency-Key": key}
        body = recurring_body() if body is None else body
        return await self.call(
            "customer_tokens.create_order", "POST", path, body, headers=headers, **kw
        )

    async def cancel_token(self, token: str, status: str = "CANCELLED") -> Answer:
        path = f"/customer-token/v1/tokens/{token}/status"
        return await self.call("customer_tokens.cancel", "PATCH", path, {"status": status})


def klarna_session(url: str, auth: str | None = AUTH) -> aiohttp.ClientSession:
    headers = {} if auth is None else {"Authorization": auth}
    return aiohttp.ClientSession(url, headers=headers)


@pytest.fixture
async def api(fake_klarna: FakeKlarna) -> AsyncIterator[Api]:
    async with klarna_session(fake_klarna.url) as http:
        yield Api(http)


# -- sessions -------------------------------------------------------------------------------


async def test_create_read_update_session(api: Api, fake_klarna: FakeKlarna) -> None:
    created = await api.create_session(session_body(merchant_reference1="cart-7"))
    assert created.status == 200
    assert created.headers["Klarna-Correlation-Id"]
    session_id = created.body["session_id"]
    assert created.body["client_token"].count(".") == 2
    assert created.body["payment_method_categories"][0]["identifier"] == "klarna"

    read = await api.get_session(session_id)
    assert read.status == 200
    assert read.body["intent"] == "buy"
    assert read.body["status"] == "incomplete"
    assert read.body["order_amount"] == session_body()["order_amount"]
    assert read.body["merchant_reference1"] == "cart-7"
    assert read.body["expires_at"].endswith("Z")

    lines = cart(3)
    updated = await api.update_session(session_id, {"order_lines": lines, **totals(lines)})
    assert updated.status == 204
    assert updated.raw == b""
    read = await api.get_session(session_id)
    assert len(read.body["order_lines"]) == 3
    assert read.body["order_amount"] == totals(lines)["order_amount"]


@pytest.mark.parametrize("intent", ["buy", "tokenize", "buy_and_tokenize"])
async def test_session_intents(api: Api, intent: str) -> None:
    session_id = await api.new_session(intent)
    assert (await api.get_session(session_id)).body["intent"] == intent


async def test_unknown_and_expired_sessions(api: Api, fake_klarna: FakeKlarna) -> None:
    missing = await api.get_session("no-such-session")
    assert missing.status == 404
    assert missing.error[0] == "NOT_FOUND"

    session_id = await api.new_session()
    fake_klarna.clock.advance(47 * HOUR)
    assert (await api.get_session(session_id)).status == 200
    fake_klarna.clock.advance(1 * HOUR + 1)
    assert (await api.get_session(session_id)).status == 404
    assert (await api.update_session(session_id, {"locale": "en-GB"})).status == 404
    with pytest.raises(KeyError):
        fake_klarna.authorize(session_id)


@pytest.mark.parametrize(
    ("mutate", "messages"),
    [
        (lambda b: b.pop("order_amount"), ["Bad value: order_amount"]),
        (lambda b: b["order_lines"][0].update(name=""), ["Bad value: order_lines[0].name"]),
        (
            lambda b: b["order_lines"][1].update(quantity="2"),
            ["Bad value: order_lines[1].quantity"],
        ),
        (lambda b: b.update(purchase_country="DEU"), ["Bad value: purchase_country"]),
        (lambda b: b.update(intent="lease"), ["Bad value: intent"]),
        (lambda b: b.update(order_lines=[]), ["Bad value: order_lines"]),
        (lambda b: b.update(order_amount=1), ["Bad value: order_amount"]),
        (
            lambda b: b["order_lines"][0].update(total_tax_amount=0),
            ["Bad value: order_lines[0].total_tax_amount"],
        ),
        (
            lambda b: (
                b.pop("purchase_currency"),
                b["billing_address"].update(postal_code="1" * 11),
            ),
            ["Bad value: purchase_currency", "Bad value: billing_address.postal_code"],
        ),
    ],
)
async def test_session_validation(api: Api, mutate: Any, messages: list[str]) -> None:
    body = session_body()
    mutate(body)
    answer = await api.create_session(body)
    assert answer.status == 400
    assert answer.error == ("BAD_VALUE", messages)
    assert answer.body["correlation_id"] == answer.headers["Klarna-Correlation-Id"]


async def test_lenient_amounts(fake_klarna_factory: Any) -> None:
    fake = await fake_klarna_factory(strict_amounts=False)
    async with klarna_session(fake.url) as http:
        answer = await Api(http).create_session(session_body(order_amount=1))
    assert answer.status == 200


async def test_malformed_json_and_content_type(api: Api) -> None:
    bad = await api.call(
        "payments.create_session",
        "POST",
        "/payments/v1/sessions",
        data=b'{"order_amount": ',
        headers={"Content-Type": "application/json"},
    )
    assert bad.status == 400
    assert bad.error[0] == "BAD_REQUEST"
    not_object = await api.call("payments.create_session", "POST", "/payments/v1/sessions", [1])
    assert not_object.status == 400
    assert not_object.error[0] == "BAD_REQUEST"
    text = await api.call(
        "payments.create_session",
        "POST",
        "/payments/v1/sessions",
        data=b"{}",
        headers={"Content-Type": "text/plain"},
    )
    assert text.status == 415
    assert text.error[0] == "BAD_REQUEST"


async def test_completed_session_cannot_be_updated(api: Api, fake_klarna: FakeKlarna) -> None:
    session_id = await api.new_session()
    token = fake_klarna.authorize(session_id)
    assert (await api.create_order(token, order_body())).status == 200
    read = await api.get_session(session_id)
    assert read.body["status"] == "complete"
    update = await api.update_session(session_id, {"locale": "en-GB"})
    assert update.status == 404
    assert update.error[0] == "SESSION_COMPLETED"
    with pytest.raises(ValueError, match="complete"):
        fake_klarna.authorize(session_id)


# -- one-time orders -------------------------------------------------------------------------


async def test_one_time_order_accepted(api: Api, fake_klarna: FakeKlarna) -> None:
    urls = {"confirmation": "https://shop.example/thanks?order={order.id}&s={session.id}"}
    session_id = await api.new_session(merchant_urls=urls)
    token = fake_klarna.authorize(session_id)
    answer = await api.create_order(token, order_body(auto_capture=True, merchant_reference1="A-1"))
    assert answer.status == 200
    order_id = answer.body["order_id"]
    assert answer.body["fraud_status"] == "ACCEPTED"
    assert answer.body["authorized_payment_method"] == {"type": "invoice"}
    assert answer.body["redirect_url"].startswith(fake_klarna.url)

    [order] = fake_klarna.ledger.orders
    assert (order.order_id, order.kind, order.authorization_token) == (order_id, "one-time", token)
    assert (order.amount, order.currency, order.auto_capture) == (
        totals(cart())["order_amount"],
        "EUR",
        True,
    )
    assert order.merchant_reference1 == "A-1"
    assert order.session_id == session_id

    # The redirect URL leads back to the merchant's confirmation page.
    async with api.http.get(answer.body["redirect_url"], allow_redirects=False) as redirect:
        assert redirect.status == 302
        assert redirect.headers["Location"] == (
            f"https://shop.example/thanks?order={order_id}&s={session_id}"
        )


async def test_redirect_url_only_with_confirmation_url(api: Api, fake_klarna: FakeKlarna) -> None:
    token = fake_klarna.authorize(await api.new_session())
    answer = await api.create_order(
        token, order_body(merchant_urls={"confirmation": "https://shop.example/c"})
    )
    assert answer.status == 200
    assert "redirect_url" not in answer.body


async def test_one_time_order_pending(api: Api, fake_klarna: FakeKlarna) -> None:
    token = fake_klarna.authorize(await api.new_session(), outcome="pending")
    answer = await api.create_order(token, order_body())
    assert answer.body["fraud_status"] == "PENDING"
    assert fake_klarna.ledger.orders[0].fraud_status == "PENDING"


async def test_authorization_token_is_single_use(api: Api, fake_klarna: FakeKlarna) -> None:
    token = fake_klarna.authorize(await api.new_session())
    assert (await api.create_order(token, order_body())).status == 200
    again = await api.create_order(token, order_body())
    assert again.status == 404
    assert again.error == ("NOT_FOUND", ["Invalid authorization token"])
    assert len(fake_klarna.ledger.orders) == 1


async def test_authorization_token_expires_after_60_minutes(
    api: Api, fake_klarna: FakeKlarna
) -> None:
    early = fake_klarna.authorize(await api.new_session())
    late = fake_klarna.authorize(await api.new_session())
    fake_klarna.clock.advance(59 * MINUTE)
    assert (await api.create_order(early, order_body())).status == 200
    fake_klarna.clock.advance(1 * MINUTE + 1)
    expired = await api.create_order(late, order_body())
    assert expired.status == 404
    assert expired.error == ("NOT_FOUND", ["Invalid authorization token"])


async def test_not_matching_billing_address(api: Api, fake_klarna: FakeKlarna) -> None:
    token = fake_klarna.authorize(await api.new_session())
    body = order_body()
    body["billing_address"]["postal_code"] = "10115"
    answer = await api.create_order(token, body)
    assert answer.status == 409
    assert answer.error == ("BAD_VALUE", ["Not matching fields: [billing_address.postal_code]"])

    body["billing_address"]["city"] = "Berlin"
    del body["billing_address"]["phone"]
    answer = await api.create_order(token, body)
    assert answer.error == (
        "BAD_VALUE",
        [
            "Not matching fields: [billing_address.postal_code, billing_address.city, "
            "billing_address.phone]"
        ],
    )
    # A mismatch does not use the token up: the corrected order goes through.
    assert (await api.create_order(token, order_body())).status == 200


async def test_not_matching_cart(api: Api, fake_klarna: FakeKlarna) -> None:
    token = fake_klarna.authorize(await api.new_session(lines=cart(2)))
    answer = await api.create_order(token, order_body(cart(3)))
    assert answer.status == 409
    assert answer.error == (
        "BAD_VALUE",
        [
            "Not matching fields: [order_amount, "
            "Incorrect number of items in the cart. Expected: 2, Actual: 3]"
        ],
    )
    lines = cart(3)[:2]
    lines[0] = line("Item 0", quantity=1, unit_price=700)
    answer = await api.create_order(token, order_body(lines))
    assert answer.error == (
        "BAD_VALUE",
        [
            "Not matching fields: [order_amount, order_lines[0].unit_price, "
            "order_lines[0].total_amount]"
        ],
    )
    same_count = order_body(purchase_currency="SEK")
    assert (await api.create_order(token, same_count)).error == (
        "BAD_VALUE",
        ["Not matching fields: [purchase_currency]"],
    )


async def test_authorize_with_overrides(api: Api, fake_klarna: FakeKlarna) -> None:
    session_id = await api.new_session(lines=cart(2))
    other = dict(ADDRESS, postal_code="20095", city="Hamburg")
    token = fake_klarna.authorize(session_id, billing_address=other, order_lines=cart(3))
    body = order_body(cart(3))
    body["billing_address"] = other
    assert (await api.create_order(token, body)).status == 200


async def test_reauthorizing_invalidates_the_previous_token(
    api: Api, fake_klarna: FakeKlarna
) -> None:
    session_id = await api.new_session()
    first = fake_klarna.authorize(session_id)
    second = fake_klarna.authorize(session_id)
    assert (await api.create_order(first, order_body())).status == 404
    assert (await api.create_order(second, order_body())).status == 200
    assert (await api.get_session(session_id)).body["authorization_token"] == second


async def test_rejected_and_declined(api: Api, fake_klarna: FakeKlarna) -> None:
    token = fake_klarna.authorize(await api.new_session(), outcome="rejected")
    answer = await api.create_order(token, order_body())
    assert answer.status == 403
    assert answer.error == ("REJECTED", ["Rejected"])
    assert (await api.create_order(token, order_body())).status == 404
    assert fake_klarna.ledger.orders == []

    session_id = await api.new_session()
    with pytest.raises(AuthorizationDeclined) as declined:
        fake_klarna.authorize(session_id, outcome="declined")
    assert declined.value.session_id == session_id
    with pytest.raises(ValueError, match="outcome"):
        fake_klarna.authorize(session_id, outcome="maybe")


async def test_cancel_authorization(api: Api, fake_klarna: FakeKlarna) -> None:
    token = fake_klarna.authorize(await api.new_session())
    cancelled = await api.cancel_authorization(token)
    assert cancelled.status == 204
    assert cancelled.raw == b""
    assert (await api.create_order(token, order_body())).status == 404
    again = await api.cancel_authorization(token)
    assert again.status == 404
    assert again.error == ("NOT_FOUND", ["Invalid authorization token"])


async def test_order_on_tokenize_authorization_is_not_allowed(
    api: Api, fake_klarna: FakeKlarna
) -> None:
    token = fake_klarna.authorize(await api.new_session("tokenize"))
    answer = await api.create_order(token, order_body())
    assert answer.status == 403
    assert answer.error[0] == "INVALID_OPERATION"


async def test_order_body_validation(api: Api, fake_klarna: FakeKlarna) -> None:
    token = fake_klarna.authorize(await api.new_session())
    body = order_body(auto_capture="yes")
    del body["purchase_country"]
    answer = await api.create_order(token, body)
    assert answer.status == 400
    assert answer.error == (
        "BAD_VALUE",
        ["Bad value: purchase_country", "Bad value: auto_capture"],
    )


# -- customer tokens -----------------------------------------------------------------------


async def test_tokenize_creates_a_customer_token(api: Api, fake_klarna: FakeKlarna) -> None:
    session_id = await api.new_session(
        "tokenize",
        merchant_urls={"confirmation": "https://shop.example/c"},
        customer={"date_of_birth": "1980-01-01", "gender": "female"},
    )
    token = fake_klarna.authorize(session_id, payment_method="card")
    created = await api.create_token(token, token_body())
    assert created.status == 200
    token_id = created.body["token_id"]
    assert created.body["billing_address"] == ADDRESS
    assert created.body["customer"] == {"date_of_birth": "1980-01-01", "gender": "female"}
    assert "redirect_url" in created.body
    assert (await api.get_session(session_id)).body["status"] == "complete"

    read = await api.get_token(token_id)
    assert read.status == 200
    assert read.body["status"] == "ACTIVE"
    assert read.body["payment_method_type"] == "CARD"
    assert read.body["card"]["masked_number"].endswith("1111")
    assert fake_klarna.ledger.token(token_id).session_id == session_id

    again = await api.create_token(token, token_body())
    assert again.status == 404
    assert again.error == ("NOT_FOUND", ["Invalid authorization token"])

    charged = await api.charge(token_id)
    assert charged.status == 200
    assert charged.body["authorized_payment_method"] == {"type": "card"}


async def test_buy_and_tokenize_uses_the_token_twice(api: Api, fake_klarna: FakeKlarna) -> None:
    token = fake_klarna.authorize(await api.new_session("buy_and_tokenize"))
    order = await api.create_order(token, order_body())
    assert order.status == 200
    created = await api.create_token(token, token_body())
    assert created.status == 200
    # Each of the two operations once; then the authorization is used up.
    assert (await api.create_order(token, order_body())).status == 404
    assert (await api.create_token(token, token_body())).status == 404
    assert (await api.cancel_authorization(token)).status == 404

    # In the other order too, and a repeated token call is refused while the order is still open.
    token = fake_klarna.authorize(await api.new_session("buy_and_tokenize"))
    assert (await api.create_token(token, token_body())).status == 200
    assert (await api.create_token(token, token_body())).status == 404
    assert (await api.create_order(token, order_body())).status == 200
    assert len(fake_klarna.ledger.orders) == 2
    assert len(fake_klarna.ledger.customer_tokens) == 2


async def test_customer_token_for_buy_intent(api: Api, fake_klarna: FakeKlarna) -> None:
    token = fake_klarna.authorize(await api.new_session("buy"))
    answer = await api.create_token(token, token_body())
    assert answer.status == 403
    assert answer.error == (
        "INVALID_OPERATION",
        ["Not allowed to create customer tokens for intent buy."],
    )


async def test_customer_token_country_mismatch(api: Api, fake_klarna: FakeKlarna) -> None:
    token = fake_klarna.authorize(await api.new_session("tokenize"))
    answer = await api.create_token(token, token_body(country="SE"))
    assert answer.status == 400
    assert answer.error == ("BAD_VALUE", ["Bad value: purchase_country"])
    billing_elsewhere = token_body(billing_address=dict(ADDRESS, country="AT"))
    assert (await api.create_token(token, billing_elsewhere)).error == (
        "BAD_VALUE",
        ["Bad value: purchase_country"],
    )
    # The failed attempts did not use the authorization up.
    assert (await api.create_token(token, token_body())).status == 200


async def test_customer_token_expiry_and_validation(api: Api, fake_klarna: FakeKlarna) -> None:
    token = fake_klarna.authorize(await api.new_session("tokenize"))
    invalid = await api.create_token(token, token_body(intended_use="LEASE", description=""))
    assert invalid.status == 400
    assert invalid.error == ("BAD_VALUE", ["Bad value: description", "Bad value: intended_use"])
    fake_klarna.clock.advance(60 * MINUTE + 1)
    expired = await api.create_token(token, token_body())
    assert expired.status == 404
    assert expired.error == ("NOT_FOUND", ["Invalid authorization token"])


async def test_token_read_cancel_and_charge_errors(api: Api, fake_klarna: FakeKlarna) -> None:
    token_id = fake_klarna.add_customer_token()
    read = await api.get_token(token_id)
    assert read.body == {"status": "ACTIVE", "payment_method_type": "INVOICE"}

    cancelled = await api.cancel_token(token_id)
    assert cancelled.status == 202
    assert cancelled.raw == b""
    assert (await api.get_token(token_id)).body["status"] == "CANCELLED"
    assert (await api.cancel_token(token_id)).status == 202
    charge = await api.charge(token_id, key="k-cancelled")
    assert charge.status == 403
    assert charge.error[0] == "TOKEN_CANCELED"

    bad_status = await api.cancel_token(token_id, status="ACTIVE")
    assert bad_status.status == 400
    assert bad_status.error == ("BAD_VALUE", ["Bad value: status"])

    suspended = fake_klarna.add_customer_token()
    fake_klarna.suspend_token(suspended)
    assert (await api.get_token(suspended)).body["status"] == "SUSPENDED"
    answer = await api.charge(suspended, key="k-suspended")
    assert (answer.status, answer.error[0]) == (403, "TOKEN_SUSPENDED")


@pytest.mark.parametrize(
    ("outcome", "status", "code"),
    [
        ("failed", 403, "PAYMENT_METHOD_FAILED"),
        ("unavailable", 403, "UNAVAILABLE_PAYMENT_METHOD"),
        ("pending", 200, None),
        ("ok", 200, None),
    ],
)
async def test_payment_method_outcomes(
    api: Api, fake_klarna: FakeKlarna, outcome: str, status: int, code: str | None
) -> None:
    token_id = fake_klarna.add_customer_token()
    fake_klarna.set_payment_method_outcome(token_id, outcome)
    answer = await api.charge(token_id)
    assert answer.status == status
    if code is None:
        assert answer.body["fraud_status"] == ("PENDING" if outcome == "pending" else "ACCEPTED")
        assert len(fake_klarna.ledger.orders) == 1
    else:
        assert answer.error[0] == code
        assert fake_klarna.ledger.orders == []


async def test_unknown_tokens_and_currency(api: Api, fake_klarna: FakeKlarna) -> None:
    missing = await api.charge("no-such-token")
    assert missing.status == 404
    assert missing.error[0] == "TOKEN_NOT_FOUND"
    read = await api.get_token("no-such-token")
    assert read.status == 404
    assert read.error == ("NOT_FOUND", ["Invalid customer-token ID"])
    assert (await api.cancel_token("no-such-token")).status == 404

    token_id = fake_klarna.add_customer_token(purchase_currency="SEK", purchase_country="SE")
    wrong_currency = await api.charge(token_id, key="k-eur")
    assert wrong_currency.status == 403
    assert wrong_currency.error[0] == "UNAVAILABLE_PAYMENT_METHOD"
    assert (
        await api.charge(token_id, recurring_body(purchase_currency="SEK"), key="k-sek")
    ).status == 200


async def test_accept_unknown_tokens(fake_klarna_factory: Any) -> None:
    fake = await fake_klarna_factory(accept_unknown_tokens=True)
    async with klarna_session(fake.url) as http:
        api = Api(http)
        first = await api.charge("tok-from-a-csv", recurring_body(purchase_currency="USD"))
        assert first.status == 200
        assert (await api.get_token("tok-from-a-csv")).body["status"] == "ACTIVE"
        # The token took the currency of its first order.
        assert (await api.charge("tok-from-a-csv", key="k-eur")).status == 403
        assert (await api.get_token("other")).status == 200
    assert fake.ledger.token("tok-from-a-csv").purchase_currency == "USD"
    assert [o.customer_token for o in fake.ledger.orders] == ["tok-from-a-csv"]


async def test_recurring_order_ledger(api: Api, fake_klarna: FakeKlarna) -> None:
    token_id = fake_klarna.add_customer_token(payment_method_type="DIRECT_DEBIT")
    read = await api.get_token(token_id)
    assert read.body["direct_debit"]["masked_number"]
    answer = await api.charge(token_id, recurring_body(amount=1999, reference="inv-9"), key="k-9")
    assert answer.status == 200
    assert set(answer.body) == {
        "order_id",
        "fraud_status",
        "redirect_url",
        "authorized_payment_method",
    }
    [order] = fake_klarna.ledger.orders_for_key("k-9")
    assert order.order_id == answer.body["order_id"]
    assert (order.kind, order.customer_token, order.amount, order.currency) == (
        "recurring",
        token_id,
        1999,
        "EUR",
    )
    assert (order.merchant_reference1, order.auto_capture, order.fraud_status) == (
        "inv-9",
        True,
        "ACCEPTED",
    )
    assert fake_klarna.ledger.orders_for_token(token_id) == [order]
    assert fake_klarna.ledger.total_charged == {"EUR": 1999}


async def test_recurring_body_validation(api: Api, fake_klarna: FakeKlarna) -> None:
    token_id = fake_klarna.add_customer_token()
    body = recurring_body()
    del body["order_tax_amount"]
    body["order_lines"][0]["type"] = "service"
    body["merchant_urls"] = {"push": "https://shop.example/push"}
    answer = await api.charge(token_id, body)
    assert answer.status == 400
    assert answer.error == (
        "BAD_VALUE",
        [
            "Bad value: order_tax_amount",
            "Bad value: merchant_urls.confirmation",
            "Bad value: order_lines[0].type",
        ],
    )


# -- idempotency ----------------------------------------------------------------------------


async def test_repeated_key_replays_the_first_answer(api: Api, fake_klarna: FakeKlarna) -> None:
    token_id = fake_klarna.add_customer_token()
    first = await api.charge(token_id, recurring_body(amount=500), key="sub-2024-05")
    again = await api.charge(token_id, recurring_body(amount=700), key="sub-2024-05")
    assert (again.status, again.raw) == (first.status, first.raw)
    # A replay is the stored answer, its correlation id included.
    assert again.headers["Klarna-Correlation-Id"] == first.headers["Klarna-Correlation-Id"]
    assert len(fake_klarna.ledger.orders_for_key("sub-2024-05")) == 1
    assert fake_klarna.ledger.orders[0].amount == 500
    attempts = fake_klarna.ledger.requests_for("customer_tokens.create_order")
    assert [r.replayed for r in attempts] == [False, True]

    # A new key is a new charge.
    other = await api.charge(token_id, recurring_body(amount=700), key="sub-2024-06")
    assert other.body["order_id"] != first.body["order_id"]


async def test_error_answers_are_replayed_too(api: Api, fake_klarna: FakeKlarna) -> None:
    token_id = fake_klarna.add_customer_token()
    fake_klarna.suspend_token(token_id)
    first = await api.charge(token_id, key="k-err")
    assert first.status == 403
    fake_klarna.set_token_status(token_id, "ACTIVE")
    again = await api.charge(token_id, key="k-err")
    assert (again.status, again.raw) == (403, first.raw)
    assert again.headers["Klarna-Correlation-Id"] == first.body["correlation_id"]
    assert fake_klarna.ledger.orders == []


async def test_idempotency_keys_are_forgotten_after_24_hours(
    api: Api, fake_klarna: FakeKlarna
) -> None:
    token_id = fake_klarna.add_customer_token()
    first = await api.charge(token_id, key="k-day")
    fake_klarna.clock.advance(23 * HOUR)
    assert (await api.charge(token_id, key="k-day")).raw == first.raw
    fake_klarna.clock.advance(1 * HOUR + 1)
    later = await api.charge(token_id, key="k-day")
    assert later.status == 200
    assert later.body["order_id"] != first.body["order_id"]
    assert len(fake_klarna.ledger.orders_for_key("k-day")) == 2


async def test_missing_idempotency_key_is_allowed_and_recorded(
    api: Api, fake_klarna: FakeKlarna
) -> None:
    token_id = fake_klarna.add_customer_token()
    first = await api.charge(token_id, key=None)
    second = await api.charge(token_id, key=None)
    assert first.status == second.status == 200
    assert first.body["order_id"] != second.body["order_id"]
    missing = fake_klarna.ledger.requests_without_idempotency_key("customer_tokens.create_order")
    assert len(missing) == 2
    assert all(order.idempotency_key is None for order in fake_klarna.ledger.orders)


# -- auth, rate limit, ledger ---------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [
        None,
        "Basic " + base64.b64encode(b"test_user:wrong").decode(),
        "Bearer test_password",
        "Basic !!!",
    ],
)
async def test_credentials_are_checked(fake_klarna: FakeKlarna, auth: str | None) -> None:
    async with klarna_session(fake_klarna.url, auth) as http:
        answer = await Api(http).create_session(session_body())
    assert answer.status == 401
    assert answer.error[0] == "UNAUTHORIZED"
    assert answer.body["correlation_id"] == answer.headers["Klarna-Correlation-Id"]
    assert fake_klarna.state.sessions == {}


async def test_custom_credentials_and_lowercase_scheme(fake_klarna_factory: Any) -> None:
    fake = await fake_klarna_factory(username="K123_abc", password="s3cret")
    lowercase = "basic " + base64.b64encode(b"K123_abc:s3cret").decode()
    async with klarna_session(fake.url, lowercase) as http:
        assert (await Api(http).create_session(session_body())).status == 200


async def test_rate_limit(fake_klarna_factory: Any) -> None:
    fake = await fake_klarna_factory(rate_limit=3)
    token_id = fake.add_customer_token()
    async with klarna_session(fake.url) as http:
        api = Api(http)
        answers = [await api.get_token(token_id) for _ in range(4)]
        assert [a.status for a in answers] == [200, 200, 200, 429]
        assert [a.headers["X-Ratelimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
        limited = answers[-1]
        assert limited.error[0] == "TOO_MANY_REQUESTS"
        assert limited.headers["X-Ratelimit-Limit"] == "3, 3;w=1"
        assert int(limited.headers["X-Ratelimit-Reset"]) >= 1
        fake.clock.advance(1.0)  # the window is on the fake's monotonic clock
        assert (await api.get_token(token_id)).status == 200


async def test_no_rate_limit_headers_without_a_limit(api: Api, fake_klarna: FakeKlarna) -> None:
    answer = await api.get_token(fake_klarna.add_customer_token())
    assert "X-Ratelimit-Limit" not in answer.headers


async def test_request_log(api: Api, fake_klarna: FakeKlarna) -> None:
    token_id = fake_klarna.add_customer_token()
    sent = orjson.dumps(recurring_body())
    await api.call(
        "customer_tokens.create_order",
        "POST",
        f"/customer-token/v1/tokens/{token_id}/order",
        data=sent,
        headers={"Content-Type": "application/json", "Klarna-Idempotency-Key": "k-log"},
    )
    [record] = fake_klarna.ledger.requests_for("customer_tokens.create_order")
    assert record.body == sent
    assert record.idempotency_key == "k-log"
    assert record.method == "POST"
    assert record.path == f"/customer-token/v1/tokens/{token_id}/order"
    assert record.status == 200
    assert record.committed
    assert record.fault is None
    assert "Authorization" not in record.headers
    assert "authorization" not in {k.lower() for k in record.headers}
    assert record.headers["Klarna-Idempotency-Key"] == "k-log"
    assert fake_klarna.ledger.request_counts["customer_tokens.create_order"] == 1


async def test_request_log_is_capped(fake_klarna_factory: Any) -> None:
    fake = await fake_klarna_factory(keep_requests=3)
    token_id = fake.add_customer_token()
    async with klarna_session(fake.url) as http:
        api = Api(http)
        for _ in range(5):
            await api.get_token(token_id)
    assert len(fake.ledger.requests) == 3
    assert [r.seq for r in fake.ledger.requests] == [3, 4, 5]
    assert fake.ledger.request_counts["customer_tokens.get"] == 5


# -- HTTP controls ----------------------------------------------------------------------------


async def test_control_endpoints(api: Api, fake_klarna: FakeKlarna) -> None:
    http = api.http
    session_id = await api.new_session()

    async def control(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        # No credentials needed: send without the session's Authorization header.
        async with (
            aiohttp.ClientSession(fake_klarna.url) as bare,
            bare.request(method, path, json=body) as response,
        ):
            return response.status, await response.json()

    assert await control("GET", "/_fake/health") == (200, {"ok": True})
    status, auth = await control("POST", "/_fake/authorize", {"session_id": session_id})
    assert status == 200
    assert (await api.create_order(auth["authorization_token"], order_body())).status == 200
    status, declined = await control(
        "POST", "/_fake/authorize", {"session_id": await api.new_session(), "outcome": "declined"}
    )
    assert (status, declined["declined"]) == (409, True)
    assert (await control("POST", "/_fake/authorize", {"session_id": "nope"}))[0] == 404
    assert (await control("POST", "/_fake/authorize", {}))[0] == 400

    status, created = await control(
        "POST", "/_fake/customer-tokens", {"purchase_currency": "SEK", "purchase_country": "SE"}
    )
    token_id = created["token_id"]
    assert fake_klarna.ledger.token(token_id).purchase_currency == "SEK"
    status, answer = await control(
        "POST", f"/_fake/customer-tokens/{token_id}/status", {"status": "SUSPENDED"}
    )
    assert status == 200
    assert answer == {"token_id": token_id, "status": "SUSPENDED"}
    assert fake_klarna.state.tokens[token_id].status == "SUSPENDED"
    status, answer = await control(
        "POST", f"/_fake/customer-tokens/{token_id}/outcome", {"outcome": "failed"}
    )
    assert (status, answer) == (200, {"token_id": token_id, "outcome": "failed"})
    assert fake_klarna.state.tokens[token_id].outcome == "failed"
    assert (await control("POST", "/_fake/customer-tokens/nope/outcome", {"outcome": "ok"}))[
        0
    ] == 404

    before = fake_klarna.clock.time()
    status, now = await control("POST", "/_fake/clock/advance", {"seconds": 3600})
    assert status == 200
    assert fake_klarna.clock.time() - before >= 3600
    assert now["now"].endswith("Z")
    assert (await control("POST", "/_fake/clock/advance", {"seconds": -1}))[0] == 400

    status, ledger = await control("GET", "/_fake/ledger")
    assert len(ledger["orders"]) == 1
    assert {t["token_id"] for t in ledger["customer_tokens"]} == {token_id}
    assert ledger["request_counts"]["payments.create_order"] == 1
    status, ledger = await control("GET", "/_fake/ledger?requests=1")
    assert ledger["requests"][0]["endpoint"] == "payments.create_session"

    status, faults = await control(
        "POST",
        "/_fake/faults",
        {"seed": 5, "script": {"customer_tokens.get": ["service_unavailable", None]}},
    )
    assert (status, faults) == (200, {"seed": 5})
    assert fake_klarna.faults.pending("customer_tokens.get") == 2
    assert (await control("POST", "/_fake/faults", {"script": {"nope": []}}))[0] == 400

    assert await control("POST", "/_fake/reset") == (200, {"ok": True})
    assert fake_klarna.ledger.orders == []
    assert fake_klarna.state.tokens == {}
    assert fake_klarna.faults.pending("customer_tokens.get") == 0
    assert abs(fake_klarna.clock.offset) < 1
    async with http.get("/_fake/redirect/unknown") as response:
        assert response.status == 200


async def test_control_index_lists_every_control(fake_klarna: FakeKlarna) -> None:
    async with (
        klarna_session(fake_klarna.url, auth=None) as http,
        http.get("/_fake/") as response,
    ):
        assert response.status == 200
        index = await response.json()
    listed = {(c["method"], c["path"]) for c in index["controls"]}
    served = {
        (route.method, route.resource.canonical)
        for route in fake_klarna.app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/_fake/")
        and route.method != "HEAD"  # aiohttp adds HEAD to every GET
    }
    assert listed == served
    for control in index["controls"]:
        assert 10 < len(control["description"]) <= 250, control
        assert "\n" not in control["description"]
    assert {(a["method"], a["endpoint"]) for a in index["api"]} >= {
        ("POST", "customer_tokens.create_order")
    }
    assert [f["name"] for f in index["faults"]] == [fault.value for fault in Fault]
    assert all(f["description"] for f in index["faults"])
    assert index["options"]["check_order"] == {
        "value": "replay_first",
        "choices": ["replay_first", "state_first"],
    }
    assert "test_password" not in str(index)  # the index names no credential


async def test_add_customer_token_arguments(fake_klarna: FakeKlarna) -> None:
    with pytest.raises(ValueError, match="currency"):
        fake_klarna.add_customer_token(purchase_currency="EURO")
    with pytest.raises(KeyError):
        fake_klarna.suspend_token("nope")
    with pytest.raises(ValueError, match="outcome"):
        fake_klarna.set_payment_method_outcome(fake_klarna.add_customer_token(), "maybe")


# -- lifecycle, clock, thread and pytest plugin -------------------------------------------------


async def test_lifecycle() -> None:
    fake = FakeKlarna()
    with pytest.raises(RuntimeError, match="not started"):
        _ = fake.url
    async with fake:
        assert fake.url.startswith("http://127.0.0.1:")
        assert fake.started
        with pytest.raises(RuntimeError, match="already started"):
            await fake.start()
    assert not fake.started


def test_clock() -> None:
    from datetime import UTC, datetime

    clock = FakeClock(datetime(2030, 1, 1, tzinfo=UTC))
    assert clock.now().year == 2030
    start = clock.monotonic()
    clock.advance(3600)
    assert clock.monotonic() - start >= 3600
    with pytest.raises(ValueError, match="non-negative"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="aware"):
        FakeClock(datetime(2030, 1, 1))
    clock.reset()
    assert clock.now().year == 2030


def test_serve_in_thread_for_synchronous_code() -> None:
    async def roundtrip(url: str, token_id: str) -> int:
        async with klarna_session(url) as http:
            return (await Api(http).charge(token_id)).status

    with serve_in_thread(seed=3) as fake:
        token_id = fake.add_customer_token()
        assert asyncio.run(roundtrip(fake.url, token_id)) == 200
        assert len(fake.ledger.orders) == 1
        assert fake.faults.seed == 3


PLUGIN_TEST = textwrap.dedent(
    """
    import base64

    import aiohttp

    AUTH = "Basic " + base64.b64encode(b"test_user:test_password").decode()

    {marker}
    async def test_fixture(fake_klarna, fake_klarna_factory):
        other = await fake_klarna_factory(rate_limit=10)
        token_id = fake_klarna.add_customer_token()
        async with aiohttp.ClientSession(headers={{"Authorization": AUTH}}) as http:
            async with http.get(f"{{fake_klarna.url}}/customer-token/v1/tokens/{{token_id}}") as r:
                assert r.status == 200
            async with http.get(f"{{other.url}}/_fake/health") as r:
                assert r.status == 200
    """
)

SYNC_PLUGIN_TEST = textwrap.dedent(
    """
    import base64
    import urllib.request

    AUTH = "Basic " + base64.b64encode(b"test_user:test_password").decode()

    def test_fixture(fake_klarna, fake_klarna_factory):
        other = fake_klarna_factory(seed=9)
        assert other.faults.seed == 9
        token_id = fake_klarna.add_customer_token()
        request = urllib.request.Request(
            f"{fake_klarna.url}/customer-token/v1/tokens/{token_id}",
            headers={"Authorization": AUTH},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
    """
)


def test_plugin_in_strict_mode(pytester: pytest.Pytester) -> None:
    # An ini file of its own: a scratch project must not take the settings of a pyproject.toml
    # that happens to sit above the temporary directory.
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(PLUGIN_TEST.format(marker="import pytest\n@pytest.mark.asyncio"))
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-o",
        "asyncio_mode=strict",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        "-W",
        "error",
        timeout=60,
    )
    result.assert_outcomes(passed=1)


def test_plugin_without_pytest_asyncio(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(SYNC_PLUGIN_TEST)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:asyncio", "-W", "error", timeout=60
    )
    result.assert_outcomes(passed=1)


def test_the_fake_imports_nothing_from_the_client() -> None:
    """A bug in the client must not be able to hide behind the same bug in the fake."""
    package = Path(__import__("klarna_async.testing").testing.__file__).parent
    offending = []
    for source in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else ["<relative>"]
            offending.extend(
                f"{source.name}: {name}"
                for name in names
                if name == "<relative>"
                or (name.startswith("klarna_async") and not name.startswith("klarna_async.testing"))
            )
    assert offending == []
