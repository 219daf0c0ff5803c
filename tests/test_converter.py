"""The converter: request bodies out, responses in, with every problem named by its JSON path."""

from __future__ import annotations

import enum
import typing
from datetime import UTC, datetime
from typing import Any

import attrs
import orjson
import pytest

from klarna_async import _converter
from klarna_async._converter import (
    DecodeProblems,
    decode,
    field_layout,
    loads,
    structure_request,
    to_dict,
    to_json,
)
from klarna_async._errors import RequestValidationError
from klarna_async._models import (
    AuthorizedPaymentMethod,
    AuthorizedPaymentMethodType,
    CustomerToken,
    CustomerTokenCreated,
    CustomerTokenRequest,
    FraudStatus,
    Interval,
    Order,
    OrderLine,
    OrderLineType,
    OrderRequest,
    PaymentMethodType,
    Session,
    SessionCreated,
    SessionRequest,
    SessionStatus,
    Subscription,
    TokenMerchantUrls,
    TokenOrderRequest,
    TokenStatus,
)
from tests._spec import SpecViolation, validate_response_body

CT_ORDER = ("customer_token", "POST", "/customer-token/v1/tokens/{customerToken}/order")
KP_ORDER = ("payments", "POST", "/payments/v1/authorizations/{authorizationToken}/order")


def one_line_order(**changes: Any) -> TokenOrderRequest:
    line = OrderLine(
        type=OrderLineType.DIGITAL,
        name="Streaming Service Monthly",
        quantity=1,
        unit_price=999,
        total_amount=999,
        subscription=Subscription(
            name="Premium Monthly", interval=Interval.MONTH, interval_count=1
        ),
    )
    fields: dict[str, Any] = {
        "purchase_currency": "EUR",
        "order_amount": 999,
        "order_tax_amount": 0,
        "order_lines": (line,),
    }
    fields.update(changes)
    return TokenOrderRequest(**fields)


def every_field_set(cls: type[Any]) -> Any:
    """An instance of a model with every field set, nested models too."""
    hints = typing.get_type_hints(cls)
    return cls(**{field.name: _some(hints[field.name]) for field in attrs.fields(cls)})


def _some(hint: Any) -> Any:
    args = typing.get_args(hint)
    if type(None) in args:
        (hint,) = (arg for arg in args if arg is not type(None))
    if typing.get_origin(hint) is tuple:
        return (_some(typing.get_args(hint)[0]),)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return next(iter(hint))
    samples: dict[Any, Any] = {str: "x", int: 1, bool: False}
    return samples[hint] if hint in samples else every_field_set(hint)


def _types_in(hint: Any) -> list[Any]:
    return [hint, *(inner for arg in typing.get_args(hint) for inner in _types_in(arg))]


def _models_in(cls: type[Any]) -> set[type[Any]]:
    """``cls`` and every model its fields hold, at any depth."""
    found = {cls}
    for hint in typing.get_type_hints(cls).values():
        for arg in _types_in(hint):
            if isinstance(arg, type) and attrs.has(arg) and arg not in found:
                found |= _models_in(arg)
    return found


REQUEST_MODELS = sorted(
    set().union(
        *map(_models_in, (SessionRequest, OrderRequest, TokenOrderRequest, CustomerTokenRequest))
    ),
    key=lambda cls: cls.__name__,
)


def problems_of(data: Any, cls: type[Any]) -> list[str]:
    with pytest.raises(DecodeProblems) as caught:
        decode(data, cls)
    return caught.value.problems


def violations_of(data: Any, cls: type[Any]) -> dict[str, str]:
    with pytest.raises(RequestValidationError) as caught:
        structure_request(data, cls)
    assert caught.value.model == cls.__name__
    return {v.path: v.message for v in caught.value.violations}


# --- out ----------------------------------------------------------------------------------------


class TestToJson:
    def test_none_fields_are_left_out_and_nothing_is_invented(self) -> None:
        """Only what the caller set goes on the wire: no nulls, no empty lists, no defaults."""
        body = orjson.loads(to_json(one_line_order()))
        assert body == {
            "purchase_currency": "EUR",
            "order_amount": 999,
            "order_tax_amount": 0,
            "order_lines": [
                {
                    "type": "digital",
                    "name": "Streaming Service Monthly",
                    "quantity": 1,
                    "unit_price": 999,
                    "total_amount": 999,
                    "subscription": {
                        "name": "Premium Monthly",
                        "interval": "MONTH",
                        "interval_count": 1,
                    },
                }
            ],
        }

    def test_falsy_values_that_were_set_are_sent(self) -> None:
        """False, 0 and "" are choices, not absences."""
        body = orjson.loads(to_json(one_line_order(auto_capture=False, merchant_data="")))
        assert body["auto_capture"] is False
        assert body["merchant_data"] == ""
        assert body["order_tax_amount"] == 0

    def test_to_dict_is_the_same_json_shape(self) -> None:
        """to_dict is what to_json writes: arrays as lists, enums as their string values."""
        request = one_line_order(merchant_urls=TokenMerchantUrls(confirmation="https://x"))
        as_dict = to_dict(request)
        assert orjson.loads(to_json(request)) == as_dict
        assert isinstance(as_dict["order_lines"], list)
        assert as_dict["order_lines"][0]["type"] == "digital"
        assert isinstance(as_dict["order_lines"][0]["type"], str)
        assert as_dict["merchant_urls"] == {"confirmation": "https://x"}

    def test_unknown_enum_values_are_written_as_they_came(self) -> None:
        """A pseudo-member serializes back to the very string it was made from."""
        order = Order(order_id="o1", fraud_status=FraudStatus("UNDER_REVIEW"))
        assert orjson.loads(to_json(order)) == {"order_id": "o1", "fraud_status": "UNDER_REVIEW"}

    @pytest.mark.parametrize("cls", REQUEST_MODELS, ids=lambda cls: cls.__name__)
    def test_field_layout_is_the_key_order_of_to_dict(self, cls: type[Any]) -> None:
        """field_layout says in which order to_dict writes the keys and which it leaves out when
        None: the fast path of request validation writes its dicts by it."""
        layout = field_layout(cls)
        full = every_field_set(cls)
        assert list(to_dict(full)) == [name for name, _ in layout]
        required = {name: getattr(full, name) for name, left_out in layout if not left_out}
        assert list(to_dict(cls(**required))) == list(required)

    def test_field_layout_knows_none_defaults_only(self) -> None:
        """A default other than None would be left out when equal to it: not what we model."""

        @attrs.frozen
        class Odd:
            count: int = 5

        with pytest.raises(ValueError, match=r"Odd\.count: a default other than None"):
            field_layout(Odd)

    def test_datetimes_are_iso_8601(self) -> None:
        """A session's expiry goes out as RFC 3339 and comes back equal."""
        session = Session(expires_at=datetime(2038, 1, 19, 3, 14, 7, tzinfo=UTC))
        assert orjson.loads(to_json(session)) == {"expires_at": "2038-01-19T03:14:07+00:00"}
        assert decode(loads(to_json(session)), Session) == session


# --- in -----------------------------------------------------------------------------------------


class TestDecode:
    def test_spec_shaped_order(self) -> None:
        """The spec's order object decodes in full."""
        body = {
            "order_id": "3eaeb557-5e30-47f8-b840-b8d987f5945d",
            "fraud_status": "ACCEPTED",
            "redirect_url": "https://payments.klarna.com/redirect/...",
            "authorized_payment_method": {
                "type": "fixed_amount",
                "number_of_days": 30,
                "number_of_installments": 3,
            },
        }
        validate_response_body(*CT_ORDER, 200, body)
        order = decode(body, Order)
        assert order == Order(
            order_id="3eaeb557-5e30-47f8-b840-b8d987f5945d",
            fraud_status=FraudStatus.ACCEPTED,
            redirect_url="https://payments.klarna.com/redirect/...",
            authorized_payment_method=AuthorizedPaymentMethod(
                type=AuthorizedPaymentMethodType.FIXED_AMOUNT,
                number_of_days=30,
                number_of_installments=3,
            ),
        )
        assert order.fraud_status is FraudStatus.ACCEPTED

    def test_authorized_payment_method_as_a_bare_string(self) -> None:
        """Klarna's own example sends "invoice" where the spec has an object: both decode."""
        body = {
            "order_id": "3eaeb557-5e30-47f8-b840-b8d987f5945d",
            "redirect_url": "https://payments.klarna.com/redirect/...",
            "fraud_status": "PENDING",
            "authorized_payment_method": "invoice",
        }
        with pytest.raises(SpecViolation):
            validate_response_body(*KP_ORDER, 200, body)
        order = decode(body, Order)
        assert order.authorized_payment_method == AuthorizedPaymentMethod(
            type=AuthorizedPaymentMethodType.INVOICE
        )
        assert order.authorized_payment_method.type is AuthorizedPaymentMethodType.INVOICE
        assert order.fraud_status is FraudStatus.PENDING

    def test_ct_example_without_redirect_url(self) -> None:
        """The CT guide answers with only order_id and fraud_status: that is enough."""
        order = decode(loads(b'{"order_id": "a89ec121", "fraud_status": "ACCEPTED"}'), Order)
        assert order == Order(order_id="a89ec121", fraud_status=FraudStatus.ACCEPTED)

    def test_unknown_fields_are_ignored_at_every_depth(self) -> None:
        """Fields Klarna adds later are dropped, in nested objects and arrays too."""
        body = {
            "session_id": "s1",
            "client_token": "ct",
            "brand_new": {"x": 1},
            "payment_method_categories": [
                {
                    "identifier": "pay_later",
                    "name": "Pay later",
                    "asset_urls": {"standard": "https://a", "animated": "https://b"},
                    "badge": "new",
                }
            ],
        }
        validate_response_body("payments", "POST", "/payments/v1/sessions", 200, body)
        created = decode(body, SessionCreated)
        assert created.payment_method_categories is not None
        assert created.payment_method_categories[0].asset_urls is not None
        assert created.payment_method_categories[0].asset_urls.standard == "https://a"

    def test_new_enum_values_decode(self) -> None:
        """A fraud status, payment method or token status Klarna adds later is kept, not fatal."""
        order = decode(
            {
                "order_id": "o1",
                "fraud_status": "UNDER_REVIEW",
                "authorized_payment_method": {"type": "crypto_later"},
            },
            Order,
        )
        assert order.fraud_status == "UNDER_REVIEW"
        assert order.fraud_status is not None
        assert not order.fraud_status.known
        assert order.authorized_payment_method is not None
        assert order.authorized_payment_method.type == "crypto_later"
        token = decode({"status": "PAUSED", "payment_method_type": "PIX"}, CustomerToken)
        assert (token.status, token.payment_method_type) == ("PAUSED", "PIX")
        assert isinstance(token.status, TokenStatus)
        assert isinstance(token.payment_method_type, PaymentMethodType)

    def test_customer_token_in_any_casing(self) -> None:
        """The spec example says ACTIVE, the description "active": both are ACTIVE."""
        for status in ("ACTIVE", "active"):
            body = {
                "status": status,
                "payment_method_type": "INVOICE",
                "card": {"brand": "VISA", "expiry_date": "12/2020", "masked_number": "**1234"},
                "direct_debit": {"masked_number": "**124"},
            }
            validate_response_body(
                "customer_token", "GET", "/customer-token/v1/tokens/{customerToken}", 200, body
            )
            token = decode(body, CustomerToken)
            assert token.status is TokenStatus.ACTIVE
            assert token.card is not None
            assert token.card.masked_number == "**1234"

    def test_customer_token_creation_example(self) -> None:
        """The guide's answer (trailing comma removed) decodes, title included."""
        body = {
            "billing_address": {"city": "Beverly Hills", "country": "US", "title": "Mr"},
            "customer": {"date_of_birth": "01.01.1979", "gender": "M", "title": "Mr"},
            "payment_method_reference": "0b1d9815-165e-42e2-8867-35bc03789e00",
            "redirect_url": "https://credit.klarna.com/v1/sessions/0b1d9815/redirect",
            "token_id": "0b1d9815-165e-42e2-8867-35bc03789e00",
        }
        validate_response_body(
            "payments",
            "POST",
            "/payments/v1/authorizations/{authorizationToken}/customer-token",
            200,
            body,
        )
        created = decode(body, CustomerTokenCreated)
        assert created.token_id == "0b1d9815-165e-42e2-8867-35bc03789e00"
        assert created.customer is not None
        assert created.customer.title == "Mr"

    def test_session_read(self) -> None:
        """A read session decodes its enums, its lines and its expiry."""
        body = {
            "status": "complete",
            "intent": "buy_and_tokenize",
            "expires_at": "2038-01-19T03:14:07.000Z",
            "purchase_country": "SE",
            "order_amount": 100,
            "order_lines": [{"name": "x", "quantity": 1, "unit_price": 100, "total_amount": 100}],
        }
        session = decode(body, Session)
        assert session.status is SessionStatus.COMPLETE
        assert session.expires_at == datetime(2038, 1, 19, 3, 14, 7, tzinfo=UTC)
        assert session.order_lines is not None
        assert session.order_lines[0].total_amount == 100

    def test_missing_order_id_is_a_problem_with_its_path(self) -> None:
        """Without order_id the answer is unusable: the problem names $.order_id."""
        assert problems_of({"fraud_status": "ACCEPTED"}, Order) == [
            "$.order_id: required field missing"
        ]

    def test_problems_are_all_listed(self) -> None:
        """Every broken field is reported, each with its path."""
        problems = problems_of(
            {
                "fraud_status": 1,
                "redirect_url": None,
                "authorized_payment_method": {"number_of_days": "14"},
            },
            Order,
        )
        assert problems == [
            "$.order_id: required field missing",
            "$.fraud_status: expected a string, got integer",
            "$.authorized_payment_method.type: required field missing",
            "$.authorized_payment_method.number_of_days: expected an integer, got string",
        ]

    @pytest.mark.parametrize(
        ("data", "cls", "expected"),
        [
            ({"order_id": 123}, Order, "$.order_id: expected a string, got integer"),
            ({"order_id": None}, Order, "$.order_id: expected a string, got null"),
            ({"order_amount": "100"}, Session, "$.order_amount: expected an integer, got string"),
            ({"order_amount": 100.0}, Session, "$.order_amount: expected an integer, got number"),
            ({"order_amount": True}, Session, "$.order_amount: expected an integer, got boolean"),
            ({"intent": 3}, Session, "$.intent: expected a string, got integer"),
            ({"order_lines": "abc"}, Session, "$.order_lines: expected an array, got string"),
            ({"order_lines": {}}, Session, "$.order_lines: expected an array, got object"),
            (
                {"billing_address": "x"},
                Session,
                "$.billing_address: expected an object, got string",
            ),
            (
                {"custom_payment_method_ids": ["a", 1]},
                Session,
                "$.custom_payment_method_ids[1]: expected a string, got integer",
            ),
            (
                {
                    "order_lines": [
                        {"name": "x", "quantity": 1, "unit_price": 1, "total_amount": "1"}
                    ]
                },
                Session,
                "$.order_lines[0].total_amount: expected an integer, got string",
            ),
            (
                {"expires_at": "next tuesday"},
                Session,
                "$.expires_at: expected an ISO 8601 date-time, got 'next tuesday'",
            ),
            ({"expires_at": 0}, Session, "$.expires_at: expected a date-time string, got integer"),
            (
                {"order_id": "o", "authorized_payment_method": 7},
                Order,
                "$.authorized_payment_method: expected an object or a string, got integer",
            ),
            ([], Order, "$: expected an object, got array"),
            (None, Order, "$: expected an object, got null"),
            (
                {"status": "ACTIVE", "payment_method_type": "CARD", "card": {}},
                CustomerToken,
                "$.card.brand: required field missing",
            ),
        ],
    )
    def test_strict_types(self, data: Any, cls: type[Any], expected: str) -> None:
        """No coercion: 1 is not "1", "1" and 1.0 are not 1, true is not 1."""
        assert expected in problems_of(data, cls)

    def test_decode_problems_reads_well(self) -> None:
        """str() of the exception joins the lines."""
        error = DecodeProblems(["$.a: x", "$.b: y"])
        assert str(error) == "$.a: x; $.b: y"
        assert error.problems == ["$.a: x", "$.b: y"]


class TestLoads:
    def test_json(self) -> None:
        """Bytes of JSON become Python values."""
        assert loads(b'{"a": [1, "b"]}') == {"a": [1, "b"]}

    @pytest.mark.parametrize("body", [b"", b"<html>", b'{"a": ', b"\xff"])
    def test_not_json(self, body: bytes) -> None:
        """A proxy's HTML page or a cut-off body is a decode problem, not a crash."""
        with pytest.raises(DecodeProblems) as caught:
            loads(body)
        assert len(caught.value.problems) == 1
        assert caught.value.problems[0].startswith("not JSON: ")


# --- structure_request --------------------------------------------------------------------------


class TestStructureRequest:
    def test_mapping_becomes_the_model(self) -> None:
        """A plain dict of the JSON shape becomes the model, enums as enums."""
        request = structure_request(orjson.loads(to_json(one_line_order())), TokenOrderRequest)
        assert request == one_line_order()
        assert request.order_lines[0].type is OrderLineType.DIGITAL
        assert request.order_lines[0].subscription is not None
        assert request.order_lines[0].subscription.interval is Interval.MONTH

    def test_unknown_keys_are_errors_everywhere(self) -> None:
        """A typo is never dropped silently: top level, nested object, list item."""
        data: dict[Any, Any] = to_dict(one_line_order())
        data["ordr_tax_amount"] = 0
        data["order_lines"][0]["unit_prices"] = 999
        data["order_lines"][0]["subscription"]["every"] = "month"
        data["country"] = "DE"
        data[7] = "x"
        assert violations_of(data, TokenOrderRequest) == {
            "$.ordr_tax_amount": (
                "unknown field for TokenOrderRequest (did you mean 'order_tax_amount'?)"
            ),
            "$.order_lines[0].unit_prices": (
                "unknown field for OrderLine (did you mean 'unit_price'?)"
            ),
            "$.order_lines[0].subscription.every": "unknown field for Subscription",
            "$.country": "unknown field for TokenOrderRequest",
            "$[7]": "unknown field for TokenOrderRequest",
        }

    def test_every_problem_is_reported_at_once(self) -> None:
        """Missing, mistyped and unknown fields all come back in one error."""
        data = {
            "purchase_currency": 978,
            "order_amount": "999",
            "order_lines": [
                {"name": "x", "quantity": True, "total_amount": 9.99, "type": 1, "colour": "red"},
                "not a line",
            ],
            "auto_capture": "yes",
            "merchant_urls": "https://example.com",
        }
        assert violations_of(data, TokenOrderRequest) == {
            "$.order_lines[0].colour": "unknown field for OrderLine",
            "$.purchase_currency": "expected a string, got integer",
            "$.order_amount": "expected an integer, got string",
            "$.order_tax_amount": "required field missing",
            "$.order_lines[0].quantity": "expected an integer, got boolean",
            "$.order_lines[0].unit_price": "required field missing",
            "$.order_lines[0].total_amount": "expected an integer, got number",
            "$.order_lines[0].type": "expected a string, got integer",
            "$.order_lines[1]": "expected an object, got string",
            "$.auto_capture": "expected a boolean, got string",
            "$.merchant_urls": "expected an object, got string",
        }

    def test_not_a_mapping(self) -> None:
        """Anything but a mapping is one violation at the root."""
        assert violations_of(["a"], SessionRequest) == {"$": "expected an object, got array"}

    def test_enum_values_are_not_judged_here(self) -> None:
        """Unknown enum values structure; request validation is what rejects them."""
        data = to_dict(one_line_order())
        data["order_lines"][0]["type"] = "physcial"
        request = structure_request(data, TokenOrderRequest)
        assert request.order_lines[0].type == "physcial"
        assert request.order_lines[0].type is not None
        assert not request.order_lines[0].type.known


def test_hooks_are_generated_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hot path runs cached generated code: nothing is generated per call."""
    body = to_dict(one_line_order())
    structure_request(body, TokenOrderRequest)
    decode({"order_id": "o", "authorized_payment_method": {"type": "card"}}, Order)
    to_json(one_line_order())

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a hook was generated on the hot path")

    # Where the generators are looked up: our model hook factory and cattrs' converter module.
    monkeypatch.setattr(_converter, "make_dict_structure_fn", boom)
    monkeypatch.setattr("cattrs.converters.make_dict_unstructure_fn", boom)
    for _ in range(3):
        assert structure_request(body, TokenOrderRequest) == one_line_order()
        decode({"order_id": "o", "authorized_payment_method": "invoice"}, Order)
        to_json(one_line_order())
