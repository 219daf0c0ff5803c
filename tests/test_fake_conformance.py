"""Everything the fake Klarna answers matches Klarna's OpenAPI specs.

The flows below produce every answer the fake gives (successes and documented errors, for every
endpoint); each body is validated against the response schema of its operation and status. The
request bodies the tests send are checked against the request schemas too, so the fake is shown to
accept what the spec allows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from klarna_async.testing import FakeClock, FakeKlarna, Fault, Ledger
from klarna_async.testing._state import ApiError, FakeState, Reply
from tests._spec import OPERATIONS, validate_request_body, validate_response_body
from tests.test_fake_klarna import (
    ADDRESS,
    Answer,
    Api,
    cart,
    klarna_session,
    order_body,
    recurring_body,
    session_body,
    token_body,
)


@pytest.fixture
async def api(fake_klarna: FakeKlarna) -> AsyncIterator[Api]:
    async with klarna_session(fake_klarna.url) as http:
        yield Api(http)


def check(answer: Answer) -> None:
    spec, method, path = OPERATIONS[answer.endpoint]
    assert answer.content_type in ("application/json", "application/octet-stream"), answer
    validate_response_body(spec, method, path, answer.status, answer.body)
    if answer.status >= 400:
        body = answer.body
        assert set(body) == {"error_code", "error_messages", "correlation_id"}
        assert body["correlation_id"] == answer.headers["Klarna-Correlation-Id"]


async def exercise_everything(api: Api, fake: FakeKlarna) -> None:
    """Drive every endpoint through its successes and errors (answers land in ``api.log``)."""
    confirmation = {"confirmation": "https://shop.example/c/{order.id}"}
    customer = {"date_of_birth": "1980-01-01", "gender": "male"}

    # Sessions.
    session_id = await api.new_session(merchant_urls=confirmation, customer=customer)
    await api.get_session(session_id)
    await api.update_session(session_id, {"merchant_reference2": "r2"})
    await api.update_session(session_id, {"order_amount": -1})
    await api.update_session("missing", {"locale": "en-GB"})
    await api.get_session("missing")
    await api.create_session(session_body(order_lines="many"))

    # One-time orders: ACCEPTED with redirect_url, PENDING without, and the errors.
    token = fake.authorize(session_id)
    await api.create_order(token, order_body(cart(3)))  # 409 cart count
    await api.create_order(token, order_body(billing_address=dict(ADDRESS, city="Bonn")))
    await api.create_order(token, order_body(order_amount="10"))  # 400
    await api.create_order(token, order_body())
    await api.get_session(session_id)  # complete, with authorization_token
    await api.update_session(session_id, {"locale": "en-GB"})  # SESSION_COMPLETED
    await api.create_order(token, order_body())  # 404
    pending = fake.authorize(await api.new_session(), outcome="pending", payment_method="card")
    await api.create_order(pending, order_body(auto_capture=True))
    rejected = fake.authorize(await api.new_session(), outcome="rejected")
    await api.create_order(rejected, order_body())  # 403 REJECTED
    tokenize = fake.authorize(await api.new_session("tokenize", customer=customer))
    await api.create_order(tokenize, order_body())  # 403 INVALID_OPERATION

    # Customer tokens from sessions.
    await api.create_token(tokenize, token_body(country="SE"))  # 400
    await api.create_token(tokenize, token_body(intended_use="OTHER"))  # 400
    created = await api.create_token(tokenize, token_body())
    await api.create_token(tokenize, token_body())  # 404
    buy = fake.authorize(await api.new_session("buy"))
    await api.create_token(buy, token_body())  # 403
    both = fake.authorize(
        await api.new_session("buy_and_tokenize", merchant_urls=confirmation),
        payment_method="direct_debit",
    )
    await api.create_order(both, order_body())
    await api.create_token(both, token_body())

    # Authorizations.
    spare = fake.authorize(await api.new_session())
    await api.cancel_authorization(spare)
    await api.cancel_authorization(spare)

    # Reading, charging and cancelling tokens.
    token_id = created.body["token_id"]
    card = fake.add_customer_token(payment_method_type="CARD")
    debit = fake.add_customer_token(payment_method_type="DIRECT_DEBIT")
    other = fake.add_customer_token(payment_method_type="PIX")
    for tid in (token_id, card, debit, other, "missing"):
        await api.get_token(tid)
    await api.charge(card, key="c-1")
    await api.charge(card, key="c-1")  # replay
    await api.charge(debit, key="c-2")
    await api.charge(other, key="c-3")
    await api.charge(card, recurring_body(order_amount=0), key="c-4")  # 400
    await api.charge(card, recurring_body(purchase_currency="SEK"), key="c-5")  # 403
    await api.charge("missing", key="c-6")  # 404
    fake.set_payment_method_outcome(debit, "pending")
    await api.charge(debit, key="c-7")
    fake.set_payment_method_outcome(debit, "failed")
    await api.charge(debit, key="c-8")
    fake.set_payment_method_outcome(debit, "unavailable")
    await api.charge(debit, key="c-9")
    fake.suspend_token(other)
    await api.charge(other, key="c-10")
    await api.cancel_token(card)
    await api.cancel_token(card, status="PAUSED")
    await api.cancel_token("missing")
    await api.charge(card, key="c-11")  # TOKEN_CANCELED

    # Transport-level answers that still have Klarna's shape.
    fake.faults.script("customer_tokens.create_order", [Fault.SERVICE_UNAVAILABLE])
    await api.charge(debit, key="c-12")
    await api.call(
        "payments.create_session",
        "POST",
        "/payments/v1/sessions",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    )


async def test_every_answer_matches_the_spec(api: Api, fake_klarna: FakeKlarna) -> None:
    await exercise_everything(api, fake_klarna)
    for answer in api.log:
        check(answer)
    seen = {(answer.endpoint, answer.status) for answer in api.log}
    expected = {
        ("payments.create_session", 200),
        ("payments.create_session", 400),
        ("payments.get_session", 200),
        ("payments.get_session", 404),
        ("payments.update_session", 204),
        ("payments.update_session", 400),
        ("payments.update_session", 404),
        ("payments.create_order", 200),
        ("payments.create_order", 400),
        ("payments.create_order", 403),
        ("payments.create_order", 404),
        ("payments.create_order", 409),
        ("payments.create_customer_token", 200),
        ("payments.create_customer_token", 400),
        ("payments.create_customer_token", 403),
        ("payments.create_customer_token", 404),
        ("payments.cancel_authorization", 204),
        ("payments.cancel_authorization", 404),
        ("customer_tokens.get", 200),
        ("customer_tokens.get", 404),
        ("customer_tokens.create_order", 200),
        ("customer_tokens.create_order", 400),
        ("customer_tokens.create_order", 403),
        ("customer_tokens.create_order", 404),
        ("customer_tokens.create_order", 503),
        ("customer_tokens.cancel", 202),
        ("customer_tokens.cancel", 400),
        ("customer_tokens.cancel", 404),
    }
    assert expected <= seen, expected - seen


async def test_auth_and_rate_limit_answers_match_the_spec(fake_klarna_factory: Any) -> None:
    fake = await fake_klarna_factory(rate_limit=1)
    token_id = fake.add_customer_token()
    async with klarna_session(fake.url, auth=None) as http:
        check(await Api(http).get_token(token_id))
    async with klarna_session(fake.url) as http:
        api = Api(http)
        await api.get_token(token_id)
        await api.charge(token_id)
    assert [answer.status for answer in api.log] == [200, 429]
    for answer in api.log:
        check(answer)


def test_request_bodies_used_by_the_tests_are_spec_valid() -> None:
    validate_request_body("payments", "POST", "/payments/v1/sessions", session_body())
    validate_request_body(
        "payments",
        "POST",
        "/payments/v1/sessions",
        session_body("buy_and_tokenize", merchant_urls={"confirmation": "https://x.example"}),
    )
    validate_request_body(
        "payments", "POST", "/payments/v1/authorizations/{authorizationToken}/order", order_body()
    )
    validate_request_body(
        "payments",
        "POST",
        "/payments/v1/authorizations/{authorizationToken}/customer-token",
        token_body(billing_address=ADDRESS),
    )
    validate_request_body(
        "customer_token",
        "POST",
        "/customer-token/v1/tokens/{customerToken}/order",
        recurring_body(),
    )
    validate_request_body(
        "customer_token",
        "PATCH",
        "/customer-token/v1/tokens/{customerToken}/status",
        {"status": "CANCELLED"},
    )


# -- robustness: any JSON body gets a success or a Klarna-shaped error, never a crash --------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
_keys = st.sampled_from(
    [
        "order_amount",
        "order_tax_amount",
        "order_lines",
        "purchase_country",
        "purchase_currency",
        "intent",
        "locale",
        "billing_address",
        "merchant_urls",
        "auto_capture",
        "description",
        "intended_use",
        "status",
        "attachment",
        "customer",
    ]
)
_line = st.dictionaries(
    st.sampled_from(
        [
            "name",
            "quantity",
            "unit_price",
            "total_amount",
            "tax_rate",
            "total_tax_amount",
            "total_discount_amount",
            "type",
            "subscription",
        ]
    ),
    _json,
)
_bodies = st.dictionaries(_keys, _json | st.lists(_line, min_size=1, max_size=3), max_size=10)


def _state() -> tuple[FakeState, str, str, str]:
    state = FakeState(FakeClock(datetime(2030, 1, 1, tzinfo=UTC)), Ledger(keep_requests=0))
    reply = state.create_session(session_body("buy_and_tokenize"), "http://fake")
    assert reply.payload is not None
    session_id = reply.payload["session_id"]
    return state, session_id, state.authorize(session_id), state.add_customer_token()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_bodies)
def test_arbitrary_bodies_never_crash_the_fake(body: dict[str, Any]) -> None:
    state, session_id, auth, token_id = _state()
    calls: list[Callable[[], Reply]] = [
        lambda: state.create_session(body, "http://fake"),
        lambda: state.update_session(session_id, body),
        lambda: state.create_order(auth, body, "http://fake"),
        lambda: state.create_customer_token(auth, body, "http://fake"),
        lambda: state.create_token_order(token_id, body, "k", "http://fake"),
        lambda: state.cancel_token(token_id, body),
    ]
    for call in calls:
        error: ApiError | None = None
        reply: Reply | None = None
        try:
            reply = call()
        except ApiError as raised:
            error = raised
        if error is not None:
            assert 400 <= error.status < 500
            assert error.error_code.isupper()
            assert error.messages
        else:
            assert reply is not None
            assert reply.status in (200, 202, 204)


KLARNA_SHAPED_FAULTS = [
    Fault.SERVICE_UNAVAILABLE,
    Fault.CONFLICT,
    Fault.HTTP500_NOT_FOUND,
    Fault.HTTP500_NOT_FOUND_COMMITTED,
    Fault.HTTP502_BAD_REQUEST,
    Fault.HTTP502_BAD_REQUEST_COMMITTED,
    Fault.HTTP504_REJECTED,
    Fault.HTTP504_REJECTED_COMMITTED,
    Fault.RATE_LIMIT_NAN,
    Fault.RATE_LIMIT_INF,
    Fault.RATE_LIMIT_NEGATIVE,
    Fault.RATE_LIMIT_HUGE,
    Fault.PAUSE_NAN,
    Fault.PAUSE_INF,
    Fault.PAUSE_NEGATIVE,
    Fault.PAUSE_HUGE,
    Fault.IN_FLIGHT_CONFLICT,
    Fault.STATE_FIRST,
    Fault.LATENCY,
]


async def test_klarna_shaped_fault_answers_match_the_spec(
    api: Api, fake_klarna: FakeKlarna
) -> None:
    """Faults that answer as Klarna would (JSON error body, correlation id) stay in the spec;
    the gateway faults are meant not to (tests/test_fake_faults.py checks they look like
    gateways)."""
    token_id = fake_klarna.add_customer_token()
    fake_klarna.faults.script(
        "customer_tokens.create_order", KLARNA_SHAPED_FAULTS, latency_seconds=0.0
    )
    for n, fault in enumerate(KLARNA_SHAPED_FAULTS):
        answer = await api.charge(token_id, key=f"spec-{n}")
        assert answer.headers["Klarna-Correlation-Id"], fault
        check(answer)
    statuses = {answer.status for answer in api.log}
    assert statuses == {200, 409, 429, 500, 502, 503, 504}
    # Every Klarna-shaped fault is in the list above; every other one is a gateway's answer.
    gateway = {
        fault
        for fault in Fault
        if fault.value.startswith(("envoy", "empty", "html", "redirect", "timeout", "too_early"))
    }
    klarna = set(KLARNA_SHAPED_FAULTS) | {Fault.DROP_AFTER_COMMIT, Fault.RESET_BEFORE}
    assert gateway | klarna == set(Fault)
    assert not gateway & klarna


# -- Order Management ------------------------------------------------------------------------------

_OM = "/ordermanagement/v1/orders/"


async def exercise_order_management(api: Api, fake: FakeKlarna) -> None:
    """Every OM endpoint through its successes and documented refusals (answers in api.log)."""
    keys = iter(range(10_000))

    async def om(name: str, method: str, path: str, body: Any = None, valid: bool = True) -> Answer:
        headers = {} if method == "GET" else {"Klarna-Idempotency-Key": f"om-{next(keys)}"}
        if body is not None and valid:
            spec, _, template = OPERATIONS[f"orders.{name}"]
            validate_request_body(spec, method, template, body)
        return await api.call(f"orders.{name}", method, _OM + path, body, headers=headers)

    address = dict(ADDRESS)
    line = {"name": "Item", "quantity": 1, "unit_price": 6000, "total_amount": 6000}
    info = {"shipping_company": "DHL", "shipping_method": "Home", "tracking_number": "1Z"}
    # An order from the checkout, with addresses, lines, references, locale.
    session_id = await api.new_session()
    placed = await api.create_order(fake.authorize(session_id), order_body(merchant_data="m"))
    checkout = placed.body["order_id"]
    await om("get", "GET", checkout)
    order = fake.add_order(amount=10_000)
    await om("acknowledge", "POST", f"{order}/acknowledge")
    await om("update_authorization", "PATCH", f"{order}/authorization", {"order_amount": 12_000})
    await om("capture", "POST", f"{order}/captures", {"captured_amount": 99_000})  # 403
    created = await om(
        "capture",
        "POST",
        f"{order}/captures",
        {"captured_amount": 6000, "order_lines": [line], "shipping_info": [info]},
    )
    assert created.headers["Capture-Id"] in created.headers["Location"]
    capture = created.headers["Capture-Id"]
    await om("capture", "POST", f"{order}/captures", {"captured_amount": "x"}, False)  # 400
    await om("capture", "POST", "missing/captures", {"captured_amount": 1})  # 404
    await om("list_captures", "GET", f"{order}/captures")
    await om("list_captures", "GET", "missing/captures")
    await om("get_capture", "GET", f"{order}/captures/{capture}")
    await om("get_capture", "GET", f"{order}/captures/missing")
    await om(
        "extend_due_date_options", "GET", f"{order}/captures/{capture}/extend-due-date-options"
    )
    await om("extend_due_date_options", "GET", f"{order}/captures/missing/extend-due-date-options")
    extend = f"{order}/captures/{capture}/extend-due-date"
    await om("extend_due_date", "PATCH", extend, {"number_of_days": 14})
    await om("extend_due_date", "PATCH", extend, {"number_of_days": 14})  # 403
    await om(
        "extend_due_date",
        "PATCH",
        f"{order}/captures/missing/extend-due-date",
        {"number_of_days": 14},
    )
    shipping = {"shipping_info": [info]}
    await om(
        "add_capture_shipping_info", "POST", f"{order}/captures/{capture}/shipping-info", shipping
    )
    await om(
        "add_capture_shipping_info", "POST", f"{order}/captures/missing/shipping-info", shipping
    )
    await om("trigger_send_out", "POST", f"{order}/captures/{capture}/trigger-send-out")
    await om("trigger_send_out", "POST", f"{order}/captures/missing/trigger-send-out")
    await om(
        "update_customer_details",
        "PATCH",
        f"{order}/customer-details",
        {"shipping_address": address},
    )
    await om(
        "update_customer_details",
        "PATCH",
        f"{order}/customer-details",
        {"shipping_address": {"city": "Bonn"}},
    )  # 422
    await om("extend_authorization_time", "POST", f"{order}/extend-authorization-time")
    references = {"merchant_reference1": "r1", "merchant_reference2": "r2"}
    await om("update_merchant_references", "PATCH", f"{order}/merchant-references", references)
    refund = await om(
        "refund",
        "POST",
        f"{order}/refunds",
        {"refunded_amount": 1000, "description": "Returned", "order_lines": [line]},
    )
    assert refund.headers["Refund-Id"] in refund.headers["Location"]
    await om("refund", "POST", f"{order}/refunds", {"refunded_amount": 99_000})  # 403
    await om("refund", "POST", "missing/refunds", {"refunded_amount": 1})  # 404
    await om("get_refund", "GET", f"{order}/refunds/{refund.headers['Refund-Id']}")
    await om("get_refund", "GET", f"{order}/refunds/missing")
    await om("add_shipping_info", "POST", f"{order}/shipping-info", shipping)
    await om("add_shipping_info", "POST", "missing/shipping-info", shipping)
    await om("cancel", "POST", f"{order}/cancel")  # 403: it has a capture
    await om("get", "GET", order)
    await om("release_remaining_authorization", "POST", f"{order}/release-remaining-authorization")
    await om("release_remaining_authorization", "POST", f"{order}/release-remaining-authorization")
    await om("update_authorization", "PATCH", f"{order}/authorization", {"order_amount": 1})  # 403
    await om("extend_authorization_time", "POST", f"{order}/extend-authorization-time")  # 403
    spare = fake.add_order(fraud_status="PENDING")
    await om("get", "GET", spare)
    await om("cancel", "POST", f"{spare}/cancel")
    await om("update_merchant_references", "PATCH", f"{spare}/merchant-references", references)
    await om("get", "GET", spare)
    await om("get", "GET", "missing")
    await om("acknowledge", "POST", "missing/acknowledge")


async def test_every_order_management_answer_matches_the_spec(
    api: Api, fake_klarna: FakeKlarna
) -> None:
    await exercise_order_management(api, fake_klarna)
    for answer in api.log:
        check(answer)
    seen = {(answer.endpoint, answer.status) for answer in api.log}
    expected = {
        ("orders.get", 200),
        ("orders.get", 404),
        ("orders.acknowledge", 204),
        ("orders.acknowledge", 404),
        ("orders.update_authorization", 204),
        ("orders.update_authorization", 403),
        ("orders.capture", 201),
        ("orders.capture", 400),
        ("orders.capture", 403),
        ("orders.capture", 404),
        ("orders.list_captures", 200),
        ("orders.list_captures", 404),
        ("orders.get_capture", 200),
        ("orders.get_capture", 404),
        ("orders.extend_due_date", 204),
        ("orders.extend_due_date", 403),
        ("orders.extend_due_date", 404),
        ("orders.extend_due_date_options", 200),
        ("orders.extend_due_date_options", 404),
        ("orders.add_capture_shipping_info", 204),
        ("orders.add_capture_shipping_info", 404),
        ("orders.trigger_send_out", 204),
        ("orders.trigger_send_out", 404),
        ("orders.update_customer_details", 204),
        ("orders.update_customer_details", 422),
        ("orders.extend_authorization_time", 204),
        ("orders.extend_authorization_time", 403),
        ("orders.update_merchant_references", 204),
        ("orders.update_merchant_references", 403),
        ("orders.refund", 201),
        ("orders.refund", 403),
        ("orders.refund", 404),
        ("orders.get_refund", 200),
        ("orders.get_refund", 404),
        ("orders.release_remaining_authorization", 204),
        ("orders.release_remaining_authorization", 403),
        ("orders.add_shipping_info", 204),
        ("orders.add_shipping_info", 404),
        ("orders.cancel", 204),
        ("orders.cancel", 403),
    }
    assert expected <= seen, expected - seen
    # Every OM operation of the spec is one the fake serves and this test reached.
    operations = {name for name, (spec, _, _) in OPERATIONS.items() if spec == "order_management"}
    assert 18 == len(operations) == len({endpoint for endpoint, _ in seen} & operations)


_om_keys = st.sampled_from(
    [
        "captured_amount",
        "refunded_amount",
        "order_amount",
        "order_lines",
        "shipping_info",
        "shipping_address",
        "merchant_reference1",
        "number_of_days",
        "description",
        "reference",
    ]
)
_om_bodies = st.dictionaries(_om_keys, _json | st.lists(_line, min_size=1, max_size=3), max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_om_bodies)
def test_arbitrary_bodies_never_crash_order_management(body: dict[str, Any]) -> None:
    from klarna_async.testing._orders import OrderBook

    clock = FakeClock(datetime(2030, 1, 1, tzinfo=UTC))
    book = OrderBook(clock, Ledger(keep_requests=0))
    book.add_placed(
        {"order_id": "o", "amount": 1000, "currency": "EUR", "created_at": clock.time()}
    )
    book.capture("o", {"captured_amount": 100}, "k", "http://fake")
    capture_id = book.orders["o"].captures[0].capture_id
    calls: list[Callable[[], Reply]] = [
        lambda: book.capture("o", body, "k2", "http://fake"),
        lambda: book.refund("o", body, "k3", "http://fake"),
        lambda: book.update_authorization("o", body),
        lambda: book.update_merchant_references("o", body),
        lambda: book.update_customer_details("o", body),
        lambda: book.add_shipping_info("o", body),
        lambda: book.add_capture_shipping_info("o", capture_id, body),
        lambda: book.extend_due_date("o", capture_id, body),
    ]
    for call in calls:
        refused: ApiError | None = None
        try:
            reply = call()
        except ApiError as raised:
            refused = raised
        if refused is not None:
            assert 400 <= refused.status < 500
            assert refused.error_code.isupper()
        else:
            assert reply.status in (201, 204)
    assert book.orders["o"].to_json(clock.time())["order_id"] == "o"
