"""KlarnaClient against the fake Klarna, end to end: every flow of Klarna's "Step 3: Create an
order" (one-time orders, customer tokens, recurring charges) and its documented errors.

The fake is a real HTTP server on 127.0.0.1, so these tests exercise the client's whole stack
(validation, JSON, headers, retries, error decoding). Assertions use the fake's ledger as the
ground truth of what was charged. Every request body the client sends in these flows is checked
against Klarna's OpenAPI specs when the fixture closes.

Asserts read ``expected == actual`` like the rest of the suite, hence SIM300 off for this file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import attrs
import orjson
import pytest

from klarna_async import (
    Address,
    ApiError,
    AuthorizedPaymentMethod,
    AuthorizedPaymentMethodType,
    BadValueError,
    CaptureRequest,
    CustomerDetailsUpdate,
    CustomerTokenCreated,
    FraudStatus,
    Intent,
    InvalidOperationError,
    KlarnaClient,
    MerchantReferencesUpdate,
    NotFoundError,
    Order,
    OrderLine,
    OrderLineType,
    PaymentMethodFailedError,
    PaymentMethodType,
    RefundRequest,
    RejectedError,
    RetryPolicy,
    Session,
    SessionCreated,
    SessionStatus,
    ShippingInfo,
    ShippingInfoUpdate,
    ShippingMethod,
    TokenCanceledError,
    TokenNotFoundError,
    TokenOrderRequest,
    TokenStatus,
    TokenSuspendedError,
    UnauthorizedError,
    UnavailablePaymentMethodError,
    UpdateAuthorizationRequest,
    derive_idempotency_key,
)
from klarna_async.testing import FakeKlarna
from tests import samples
from tests._spec import OPERATIONS, has_request_body, validate_request_body

POLICY = RetryPolicy(max_attempts=3, initial_delay=0, max_delay=0, deadline=5, attempt_timeout=2)
NAMESPACE = "klarna-async-flow-tests"
AN_HOUR = 60 * 60
E = TypeVar("E", bound=ApiError)


@dataclass
class Env:
    fake: FakeKlarna
    client: KlarnaClient


def check_bodies_against_spec(fake: FakeKlarna) -> int:
    """Validate every logged request body (raw bytes) against its operation's spec schema.

    Bodiless operations (GET, DELETE, Order Management's POSTs without a request body) must
    have sent nothing. Returns how many were checked.
    """
    checked = 0
    for record in fake.ledger.requests:
        spec, method, template = OPERATIONS[record.endpoint]
        assert method == record.method, record.endpoint
        if method in ("GET", "DELETE") or not has_request_body(spec, method, template):
            assert b"" == record.body, record.endpoint
            continue
        validate_request_body(spec, method, template, orjson.loads(record.body))
        checked += 1
    return checked


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with FakeKlarna() as fake:
        async with KlarnaClient(
            username=fake.username, password=fake.password, base_url=fake.url, retry=POLICY
        ) as client:
            yield Env(fake, client)
        check_bodies_against_spec(fake)


async def authorized_session(
    env: Env, intent: Intent = Intent.BUY, *, subscription: bool = False, outcome: str = "approved"
) -> tuple[str, str]:
    """Create a session through the client and let the customer approve it: (session, token)."""
    created = await env.client.payments.create_session(
        samples.session_request(intent, subscription=subscription)
    )
    token = env.fake.authorize(created.session_id, outcome=outcome)
    return created.session_id, token


def usd_token_order(amount: int = 999, reference: str = "sub-1") -> TokenOrderRequest:
    """The seed's recurring order, in the currency of tokens made from the US sessions."""
    return attrs.evolve(samples.token_order(amount, reference), purchase_currency="USD")


def half_line(reference: str) -> OrderLine:
    return OrderLine(
        type=OrderLineType.PHYSICAL,
        reference=reference,
        name="Half a Battery Power Pack",
        quantity=1,
        unit_price=5,
        tax_rate=0,
        total_amount=5,
        total_discount_amount=0,
        total_tax_amount=0,
    )


def count(fake: FakeKlarna, endpoint: str) -> int:
    return fake.ledger.request_counts[endpoint]


class TestSessions:
    async def test_create_get_update(self, env: Env) -> None:
        """A session is created (id, client token, categories), read back with every field
        decoded, and updated (204, so None); the read after the update shows the change."""
        request = samples.session_request(Intent.BUY)
        created = await env.client.payments.create_session(request)
        assert isinstance(created, SessionCreated)
        assert created.client_token
        assert created.payment_method_categories is not None
        assert ["klarna"] == [c.identifier for c in created.payment_method_categories]

        session = await env.client.payments.get_session(created.session_id)
        assert isinstance(session, Session)
        assert SessionStatus.INCOMPLETE == session.status
        assert Intent.BUY == session.intent
        assert ("US", "USD", "en-US") == (
            session.purchase_country,
            session.purchase_currency,
            session.locale,
        )
        assert (10, 0) == (session.order_amount, session.order_tax_amount)
        assert request.order_lines == session.order_lines
        assert samples.US_ADDRESS == session.billing_address
        assert request.merchant_urls == session.merchant_urls
        assert created.client_token == session.client_token
        assert isinstance(session.expires_at, datetime)
        assert session.authorization_token is None

        updated = attrs.evolve(request, merchant_reference1="order-42")
        await env.client.payments.update_session(created.session_id, updated)
        assert 204 == env.fake.ledger.requests_for("payments.update_session")[0].status
        again = await env.client.payments.get_session(created.session_id)
        assert "order-42" == again.merchant_reference1

    async def test_session_completes_with_its_order(self, env: Env) -> None:
        """After authorize() the session shows its authorization token; after the order it is
        complete."""
        session_id, token = await authorized_session(env)
        assert token == (await env.client.payments.get_session(session_id)).authorization_token
        await env.client.payments.create_order(token, samples.one_time_order())
        session = await env.client.payments.get_session(session_id)
        assert SessionStatus.COMPLETE == session.status


class TestOneTimeOrder:
    async def test_accepted(self, env: Env) -> None:
        """buy session -> authorize -> create_order: the order the fake recorded, ACCEPTED,
        with the authorized payment method decoded and a redirect URL."""
        session_id, token = await authorized_session(env)
        order = await env.client.payments.create_order(token, samples.one_time_order())

        assert isinstance(order, Order)
        (recorded,) = env.fake.ledger.orders
        assert recorded.order_id == order.order_id
        assert FraudStatus.ACCEPTED == order.fraud_status
        assert (
            AuthorizedPaymentMethod(type=AuthorizedPaymentMethodType.INVOICE)
            == order.authorized_payment_method
        )
        assert order.redirect_url is not None
        assert ("one-time", 10, "USD", token, session_id) == (
            recorded.kind,
            recorded.amount,
            recorded.currency,
            recorded.authorization_token,
            recorded.session_id,
        )
        assert "45aa52f387871e3a210645d4" == recorded.merchant_reference1
        (sent,) = env.fake.ledger.requests_for("payments.create_order")
        assert "Klarna-Idempotency-Key" not in sent.headers

    async def test_pending(self, env: Env) -> None:
        """An authorization flagged for review gives fraud_status PENDING (still an order)."""
        _, token = await authorized_session(env, outcome="pending")
        order = await env.client.payments.create_order(token, samples.one_time_order())
        assert FraudStatus.PENDING == order.fraud_status
        assert "PENDING" == env.fake.ledger.order(order.order_id).fraud_status

    async def test_token_is_single_use(self, env: Env) -> None:
        """A second create_order with the same authorization token: NOT_FOUND, one order."""
        _, token = await authorized_session(env)
        first = await env.client.payments.create_order(token, samples.one_time_order())
        with pytest.raises(NotFoundError) as caught:
            await env.client.payments.create_order(token, samples.one_time_order())
        assert "NOT_FOUND" == caught.value.error_code
        assert 404 == caught.value.status
        assert ("Invalid authorization token",) == caught.value.error_messages
        assert 1 == caught.value.attempts
        assert [first.order_id] == [o.order_id for o in env.fake.ledger.orders]
        assert 2 == count(env.fake, "payments.create_order")

    async def test_token_expires_after_60_minutes(self, env: Env) -> None:
        """An order placed more than 60 minutes after authorization: NOT_FOUND "Invalid
        authorization token", no order."""
        _, token = await authorized_session(env)
        env.fake.clock.advance(AN_HOUR + 1)
        with pytest.raises(NotFoundError) as caught:
            await env.client.payments.create_order(token, samples.one_time_order())
        assert "NOT_FOUND" == caught.value.error_code
        assert ("Invalid authorization token",) == caught.value.error_messages
        assert [] == env.fake.ledger.orders
        assert 1 == count(env.fake, "payments.create_order")

    async def test_token_still_valid_at_59_minutes(self, env: Env) -> None:
        """59 minutes after authorization the order still goes through."""
        _, token = await authorized_session(env)
        env.fake.clock.advance(59 * 60)
        order = await env.client.payments.create_order(token, samples.one_time_order())
        assert [order.order_id] == [o.order_id for o in env.fake.ledger.orders]

    async def test_cancelled_authorization(self, env: Env) -> None:
        """cancel_authorization (204) releases the token: a later order is NOT_FOUND."""
        _, token = await authorized_session(env)
        await env.client.payments.cancel_authorization(token)
        assert 204 == env.fake.ledger.requests_for("payments.cancel_authorization")[0].status
        with pytest.raises(NotFoundError) as caught:
            await env.client.payments.create_order(token, samples.one_time_order())
        assert "NOT_FOUND" == caught.value.error_code
        assert [] == env.fake.ledger.orders


class TestOrderMismatches:
    async def test_billing_postal_code_changed(self, env: Env) -> None:
        """An order whose billing postal code differs from what was authorized: BAD_VALUE with
        not_matching_fields parsed; the token is not used up, the unchanged order then works."""
        _, token = await authorized_session(env)
        moved = attrs.evolve(samples.US_ADDRESS, postal_code="90211")
        with pytest.raises(BadValueError) as caught:
            await env.client.payments.create_order(
                token, samples.one_time_order(billing_address=moved)
            )
        assert "BAD_VALUE" == caught.value.error_code
        assert ("Not matching fields: [billing_address.postal_code]",) == (
            caught.value.error_messages
        )
        assert ("billing_address.postal_code",) == caught.value.not_matching_fields
        assert 1 == caught.value.attempts
        assert [] == env.fake.ledger.orders

        order = await env.client.payments.create_order(token, samples.one_time_order())
        assert [order.order_id] == [o.order_id for o in env.fake.ledger.orders]

    async def test_different_number_of_cart_lines(self, env: Env) -> None:
        """A cart with another number of lines than authorized (same total): BAD_VALUE with
        the documented "Incorrect number of items in the cart" item, parsed as one field."""
        _, token = await authorized_session(env)
        two_halves = samples.one_time_order(order_lines=(half_line("A"), half_line("B")))
        message = "Incorrect number of items in the cart. Expected: 1, Actual: 2"
        with pytest.raises(BadValueError) as caught:
            await env.client.payments.create_order(token, two_halves)
        assert "BAD_VALUE" == caught.value.error_code
        assert (f"Not matching fields: [{message}]",) == caught.value.error_messages
        assert [] == env.fake.ledger.orders
        assert (message,) == caught.value.not_matching_fields

    async def test_rejected(self, env: Env) -> None:
        """An authorization Klarna rejects on placement: RejectedError (403 REJECTED), no
        order, no retry."""
        _, token = await authorized_session(env, outcome="rejected")
        with pytest.raises(RejectedError) as caught:
            await env.client.payments.create_order(token, samples.one_time_order())
        assert (403, "REJECTED", ("Rejected",)) == (
            caught.value.status,
            caught.value.error_code,
            caught.value.error_messages,
        )
        assert [] == env.fake.ledger.orders
        assert 1 == count(env.fake, "payments.create_order")


class TestCustomerTokens:
    async def test_tokenize_then_recurring_charges(self, env: Env) -> None:
        """tokenize session -> authorize -> create_customer_token -> get (ACTIVE) -> recurring
        charges with derived idempotency keys, each one order on that token."""
        session_id, auth = await authorized_session(env, Intent.TOKENIZE, subscription=True)
        created = await env.client.payments.create_customer_token(
            auth, samples.customer_token_request()
        )
        assert isinstance(created, CustomerTokenCreated)
        (record,) = env.fake.ledger.customer_tokens
        assert record.token_id == created.token_id
        assert (auth, session_id, "USD") == (
            record.authorization_token,
            record.session_id,
            record.purchase_currency,
        )
        assert samples.US_ADDRESS == created.billing_address
        assert created.payment_method_reference

        token = await env.client.customer_tokens.get(created.token_id)
        assert TokenStatus.ACTIVE == token.status
        assert PaymentMethodType.INVOICE == token.payment_method_type
        session = await env.client.payments.get_session(session_id)
        assert SessionStatus.COMPLETE == session.status

        keys = [derive_idempotency_key(NAMESPACE, "sub-1", month) for month in ("01", "02")]
        orders = [
            await env.client.customer_tokens.create_order(
                created.token_id, usd_token_order(), idempotency_key=key
            )
            for key in keys
        ]
        assert 2 == len({o.order_id for o in orders})
        assert [FraudStatus.ACCEPTED] * 2 == [o.fraud_status for o in orders]
        assert [o.order_id for o in orders] == [
            o.order_id for o in env.fake.ledger.orders_for_token(created.token_id)
        ]
        for key, order in zip(keys, orders, strict=True):
            assert [order.order_id] == [o.order_id for o in env.fake.ledger.orders_for_key(key)]
        assert {"recurring"} == {o.kind for o in env.fake.ledger.orders}

    async def test_tokenize_intent_allows_no_order(self, env: Env) -> None:
        """An authorization with intent tokenize cannot place a one-time order:
        INVALID_OPERATION."""
        _, auth = await authorized_session(env, Intent.TOKENIZE, subscription=True)
        with pytest.raises(InvalidOperationError) as caught:
            await env.client.payments.create_order(auth, samples.one_time_order(subscription=True))
        assert 403 == caught.value.status
        assert [] == env.fake.ledger.orders

    async def test_buy_and_tokenize(self, env: Env) -> None:
        """buy_and_tokenize: one authorization token serves two calls (the order with its
        subscription line, then the customer token), and the new token is charged later."""
        _, auth = await authorized_session(env, Intent.BUY_AND_TOKENIZE, subscription=True)
        order = await env.client.payments.create_order(
            auth, samples.one_time_order(subscription=True)
        )
        assert FraudStatus.ACCEPTED == order.fraud_status
        created = await env.client.payments.create_customer_token(
            auth, samples.customer_token_request()
        )
        (first,) = env.fake.ledger.orders
        assert (order.order_id, "one-time", auth) == (
            first.order_id,
            first.kind,
            first.authorization_token,
        )
        assert samples.SUBSCRIPTION.name == first.order_lines[0]["subscription"]["name"]
        assert [created.token_id] == [t.token_id for t in env.fake.ledger.customer_tokens]

        # Both uses are done: the authorization token is spent for either call.
        with pytest.raises(NotFoundError):
            await env.client.payments.create_customer_token(auth, samples.customer_token_request())

        key = derive_idempotency_key(NAMESPACE, "buy-and-tokenize", 1)
        recurring = await env.client.customer_tokens.create_order(
            created.token_id, usd_token_order(), idempotency_key=key
        )
        assert [recurring.order_id] == [
            o.order_id for o in env.fake.ledger.orders_for_token(created.token_id)
        ]
        assert 2 == len(env.fake.ledger.orders)

    async def test_not_allowed_for_buy_intent(self, env: Env) -> None:
        """A customer token for a buy session: InvalidOperationError (403 INVALID_OPERATION)."""
        _, auth = await authorized_session(env, Intent.BUY)
        with pytest.raises(InvalidOperationError) as caught:
            await env.client.payments.create_customer_token(auth, samples.customer_token_request())
        assert (403, "INVALID_OPERATION") == (caught.value.status, caught.value.error_code)
        assert ("Not allowed to create customer tokens for intent buy.",) == (
            caught.value.error_messages
        )
        assert [] == env.fake.ledger.customer_tokens
        assert 1 == count(env.fake, "payments.create_customer_token")

    async def test_country_mismatch(self, env: Env) -> None:
        """A token request for another country than the session's: BAD_VALUE
        "Bad value: purchase_country", no token."""
        _, auth = await authorized_session(env, Intent.TOKENIZE, subscription=True)
        se_address = Address(
            given_name="John",
            family_name="Doe",
            email="john@doe.com",
            street_address="Kungsgatan 10",
            postal_code="11143",
            city="Stockholm",
            country="SE",
        )
        request = attrs.evolve(
            samples.customer_token_request(country="SE"), billing_address=se_address
        )
        with pytest.raises(BadValueError) as caught:
            await env.client.payments.create_customer_token(auth, request)
        assert ("BAD_VALUE", ("Bad value: purchase_country",)) == (
            caught.value.error_code,
            caught.value.error_messages,
        )
        assert () == caught.value.not_matching_fields
        assert [] == env.fake.ledger.customer_tokens

    async def test_expired_authorization(self, env: Env) -> None:
        """A customer token requested more than 60 minutes after authorization: NOT_FOUND."""
        _, auth = await authorized_session(env, Intent.TOKENIZE, subscription=True)
        env.fake.clock.advance(AN_HOUR + 1)
        with pytest.raises(NotFoundError) as caught:
            await env.client.payments.create_customer_token(auth, samples.customer_token_request())
        assert ("Invalid authorization token",) == caught.value.error_messages
        assert [] == env.fake.ledger.customer_tokens


class TestRecurringIdempotency:
    async def test_repeated_key_returns_the_same_order(self, env: Env) -> None:
        """The same key again (even with another body) answers the first order; Klarna charges
        once."""
        token = env.fake.add_customer_token(purchase_currency="EUR", purchase_country="DE")
        key = derive_idempotency_key(NAMESPACE, "sub-7", "2026-11")
        first = await env.client.customer_tokens.create_order(
            token, samples.token_order(), idempotency_key=key
        )
        again = await env.client.customer_tokens.create_order(
            token, samples.token_order(), idempotency_key=key
        )
        other_body = await env.client.customer_tokens.create_order(
            token, samples.token_order(amount=1500, reference="changed"), idempotency_key=key
        )
        assert first == again == other_body
        (recorded,) = env.fake.ledger.orders
        assert (first.order_id, 999, key) == (
            recorded.order_id,
            recorded.amount,
            recorded.idempotency_key,
        )
        sent = env.fake.ledger.requests_for("customer_tokens.create_order")
        assert [False, True, True] == [r.replayed for r in sent]

    async def test_different_key_makes_a_new_order(self, env: Env) -> None:
        """Another key is another charge, even with the same body."""
        token = env.fake.add_customer_token(purchase_currency="EUR", purchase_country="DE")
        first = await env.client.customer_tokens.create_order(
            token, samples.token_order(), idempotency_key=derive_idempotency_key(NAMESPACE, "a")
        )
        second = await env.client.customer_tokens.create_order(
            token, samples.token_order(), idempotency_key=derive_idempotency_key(NAMESPACE, "b")
        )
        assert first.order_id != second.order_id
        assert [first.order_id, second.order_id] == [o.order_id for o in env.fake.ledger.orders]

    async def test_every_charge_carries_a_key(self, env: Env) -> None:
        """Every customer_tokens.create_order request carries a Klarna-Idempotency-Key: the
        given one, or a fresh one per call when none is given."""
        token = env.fake.add_customer_token(purchase_currency="EUR", purchase_country="DE")
        given = derive_idempotency_key(NAMESPACE, "given")
        await env.client.customer_tokens.create_order(
            token, samples.token_order(), idempotency_key=given
        )
        await env.client.customer_tokens.create_order(token, samples.token_order())
        await env.client.customer_tokens.create_order(token, samples.token_order())

        sent = env.fake.ledger.requests_for("customer_tokens.create_order")
        assert 3 == len(sent)
        assert [] == env.fake.ledger.requests_without_idempotency_key(
            "customer_tokens.create_order"
        )
        assert [r.idempotency_key for r in sent] == [
            r.headers["Klarna-Idempotency-Key"] for r in sent
        ]
        assert given == sent[0].idempotency_key
        assert 3 == len({r.idempotency_key for r in sent})
        assert 3 == len(env.fake.ledger.orders)


class TestTokenErrors:
    async def charge_fails(self, env: Env, token: str, error: type[E]) -> E:
        """Charge ``token`` once; it must raise ``error`` after one attempt and charge nothing."""
        before = count(env.fake, "customer_tokens.create_order")
        key = derive_idempotency_key(NAMESPACE, "failing", token)
        with pytest.raises(error) as caught:
            await env.client.customer_tokens.create_order(
                token, samples.token_order(), idempotency_key=key
            )
        assert [] == env.fake.ledger.orders
        assert before + 1 == count(env.fake, "customer_tokens.create_order")
        assert 1 == caught.value.attempts
        assert key == caught.value.idempotency_key
        return caught.value

    async def test_unknown_token(self, env: Env) -> None:
        """Charging a token Klarna does not know: TokenNotFoundError (404 TOKEN_NOT_FOUND)."""
        error = await self.charge_fails(
            env, "0b1d9815-165e-42e2-8867-35bc03789e00", TokenNotFoundError
        )
        assert (404, "TOKEN_NOT_FOUND") == (error.status, error.error_code)

    async def test_suspended_token(self, env: Env) -> None:
        """A token Klarna suspended: TokenSuspendedError (403 TOKEN_SUSPENDED); get() shows it."""
        token = env.fake.add_customer_token()
        env.fake.suspend_token(token)
        assert TokenStatus.SUSPENDED == (await env.client.customer_tokens.get(token)).status
        error = await self.charge_fails(env, token, TokenSuspendedError)
        assert (403, "TOKEN_SUSPENDED") == (error.status, error.error_code)

    async def test_cancelled_token(self, env: Env) -> None:
        """customer_tokens.cancel (202), then get() says CANCELLED and a charge raises
        TokenCanceledError (403 TOKEN_CANCELED)."""
        token = env.fake.add_customer_token()
        await env.client.customer_tokens.cancel(token)
        (cancel,) = env.fake.ledger.requests_for("customer_tokens.cancel")
        assert (202, {"status": "CANCELLED"}) == (cancel.status, orjson.loads(cancel.body))
        assert "CANCELLED" == env.fake.ledger.token(token).status
        assert TokenStatus.CANCELLED == (await env.client.customer_tokens.get(token)).status
        error = await self.charge_fails(env, token, TokenCanceledError)
        assert (403, "TOKEN_CANCELED") == (error.status, error.error_code)

    async def test_payment_method_failed(self, env: Env) -> None:
        """A declined purchase: PaymentMethodFailedError (403), never retried automatically."""
        token = env.fake.add_customer_token()
        env.fake.set_payment_method_outcome(token, "failed")
        error = await self.charge_fails(env, token, PaymentMethodFailedError)
        assert (403, "PAYMENT_METHOD_FAILED") == (error.status, error.error_code)

    async def test_payment_method_unavailable(self, env: Env) -> None:
        """A method that cannot pay: UnavailablePaymentMethodError (403)."""
        token = env.fake.add_customer_token()
        env.fake.set_payment_method_outcome(token, "unavailable")
        error = await self.charge_fails(env, token, UnavailablePaymentMethodError)
        assert (403, "UNAVAILABLE_PAYMENT_METHOD") == (error.status, error.error_code)

    async def test_other_currency(self, env: Env) -> None:
        """A charge in another currency than the token's: UNAVAILABLE_PAYMENT_METHOD."""
        token = env.fake.add_customer_token(purchase_currency="SEK", purchase_country="SE")
        await self.charge_fails(env, token, UnavailablePaymentMethodError)

    async def test_unknown_token_read(self, env: Env) -> None:
        """Reading an unknown token: NotFoundError (404 NOT_FOUND), no retry."""
        with pytest.raises(NotFoundError) as caught:
            await env.client.customer_tokens.get("0b1d9815-165e-42e2-8867-35bc03789e00")
        assert (404, "NOT_FOUND", 1) == (
            caught.value.status,
            caught.value.error_code,
            caught.value.attempts,
        )
        assert 1 == count(env.fake, "customer_tokens.get")


class TestCredentials:
    async def test_wrong_password(self, env: Env) -> None:
        """Wrong credentials: UnauthorizedError (401) after one attempt, nothing done."""
        async with KlarnaClient(
            username=env.fake.username,
            password="not-the-s3cret",
            base_url=env.fake.url,
            retry=POLICY,
        ) as client:
            with pytest.raises(UnauthorizedError) as caught:
                await client.payments.create_session(samples.session_request())
            token = env.fake.add_customer_token()
            with pytest.raises(UnauthorizedError):
                await client.customer_tokens.create_order(token, samples.token_order())
        assert 401 == caught.value.status
        assert 1 == caught.value.attempts
        assert "not-the-s3cret" not in str(caught.value)
        assert 1 == count(env.fake, "payments.create_session")
        assert 1 == count(env.fake, "customer_tokens.create_order")
        assert [] == env.fake.ledger.orders
        assert {401} == {r.status for r in env.fake.ledger.requests}


async def every_order_management_operation(env: Env) -> None:
    """Each of the 18 Order Management operations once, with full bodies where they take one."""
    orders = env.client.orders
    order_id = env.fake.add_order(amount=5_000)
    line = OrderLine(
        type=OrderLineType.PHYSICAL,
        name="Battery",
        quantity=2,
        unit_price=1_000,
        total_amount=2_000,
        tax_rate=2_500,
        total_tax_amount=400,
        reference="B-1",
    )
    shipping = ShippingInfo(
        shipping_company="DHL",
        shipping_method=ShippingMethod.PICK_UP_POINT,
        tracking_number="1Z9",
        tracking_uri="https://track.example/1Z9",
    )
    await orders.get(order_id)
    await orders.acknowledge(order_id)
    await orders.update_authorization(
        order_id,
        UpdateAuthorizationRequest(order_amount=4_000, description="less", order_lines=(line,) * 2),
    )
    capture_id = await orders.capture(
        order_id,
        CaptureRequest(
            captured_amount=2_000,
            description="parcel 1",
            reference="P-1",
            shipping_delay=1,
            order_lines=(line,),
            shipping_info=(shipping,),
        ),
    )
    await orders.list_captures(order_id)
    await orders.get_capture(order_id, capture_id)
    await orders.extend_due_date_options(order_id, capture_id)
    await orders.extend_due_date(order_id, capture_id, 14)
    await orders.add_capture_shipping_info(
        order_id, capture_id, ShippingInfoUpdate(shipping_info=(shipping,))
    )
    await orders.trigger_send_out(order_id, capture_id)
    await orders.update_customer_details(
        order_id, CustomerDetailsUpdate(shipping_address=samples.US_ADDRESS)
    )
    await orders.extend_authorization_time(order_id)
    await orders.update_merchant_references(
        order_id, MerchantReferencesUpdate(merchant_reference1="a", merchant_reference2="b")
    )
    refund_id = await orders.refund(
        order_id, RefundRequest(refunded_amount=500, reference="R-1", order_lines=(line,))
    )
    await orders.get_refund(order_id, refund_id)
    await orders.add_shipping_info(order_id, ShippingInfoUpdate(shipping_info=(shipping,)))
    await orders.release_remaining_authorization(order_id)
    await orders.cancel(env.fake.add_order())


class TestWireContract:
    async def test_every_request_body_matches_the_spec(self, env: Env) -> None:
        """Every body the client sends on every endpoint, as raw bytes on the wire, validates
        against Klarna's spec (the fixture checks this after every test in this file too)."""
        session_id, auth = await authorized_session(env, Intent.BUY_AND_TOKENIZE, subscription=True)
        await env.client.payments.get_session(session_id)
        await env.client.payments.update_session(
            session_id, samples.session_request(Intent.BUY_AND_TOKENIZE, subscription=True)
        )
        auth = env.fake.authorize(session_id)  # re-authorize after the update
        await env.client.payments.create_order(auth, samples.one_time_order(subscription=True))
        created = await env.client.payments.create_customer_token(
            auth, samples.customer_token_request()
        )
        await env.client.customer_tokens.get(created.token_id)
        await env.client.customer_tokens.create_order(created.token_id, usd_token_order())
        await env.client.customer_tokens.cancel(created.token_id)
        _, other = await authorized_session(env)
        await env.client.payments.cancel_authorization(other)
        await every_order_management_operation(env)

        assert set(OPERATIONS) == set(env.fake.ledger.request_counts)
        assert 2 == count(env.fake, "payments.create_session")
        assert 7 + 8 == check_bodies_against_spec(env.fake)
