"""Sans-I/O mapping of answers: every documented error code to its class, odd bodies to typed
errors, success bodies strictly."""

from __future__ import annotations

import attrs
import orjson
import pytest

from klarna_async import (
    ApiError,
    BadRequestError,
    BadValueError,
    ConflictError,
    ForbiddenError,
    FraudStatus,
    InvalidOperationError,
    KlarnaTimeoutError,
    MerchantInactiveError,
    NotFoundError,
    Order,
    PaymentMethodFailedError,
    ProxyError,
    RateLimitedError,
    RejectedError,
    ResponseDecodeError,
    ServerError,
    ServiceUnavailableError,
    SessionCompletedError,
    TokenCanceledError,
    TokenNotFoundError,
    TokenSuspendedError,
    UnauthorizedError,
    UnavailablePaymentMethodError,
)
from klarna_async._converter import decode
from klarna_async._responses import api_error, decode_success


def klarna_body(code: str, *messages: str, correlation_id: str = "6a9b1cb1") -> bytes:
    return orjson.dumps(
        {"error_code": code, "error_messages": list(messages), "correlation_id": correlation_id}
    )


# Every code the seed document, NOTES.md and the specs document, with the status Klarna uses.
DOCUMENTED = [
    (404, "NOT_FOUND", NotFoundError),
    (400, "BAD_VALUE", BadValueError),
    (409, "BAD_VALUE", BadValueError),
    (403, "REJECTED", RejectedError),
    (400, "BAD_REQUEST", BadRequestError),
    (403, "INVALID_OPERATION", InvalidOperationError),
    (403, "MERCHANT_INACTIVE", MerchantInactiveError),
    (404, "SESSION_COMPLETED", SessionCompletedError),
    (404, "TOKEN_NOT_FOUND", TokenNotFoundError),
    (403, "TOKEN_SUSPENDED", TokenSuspendedError),
    (403, "TOKEN_CANCELED", TokenCanceledError),
    (403, "UNAVAILABLE_PAYMENT_METHOD", UnavailablePaymentMethodError),
    (403, "PAYMENT_METHOD_FAILED", PaymentMethodFailedError),
    (503, "SERVICE_UNAVAILABLE", ServiceUnavailableError),
    (500, "INTERNAL_SERVER_ERROR", ServerError),
    (500, "TIMEOUT", KlarnaTimeoutError),
    (401, "UNAUTHORIZED", UnauthorizedError),
    (429, "RATE_LIMITED", RateLimitedError),
]


class TestErrors:
    @pytest.mark.parametrize(("status", "code", "cls"), DOCUMENTED)
    def test_documented_codes_map_to_classes(self, status: int, code: str, cls: type[ApiError]):
        """Each documented error_code becomes its own class with every field kept."""
        error = api_error(status, {}, klarna_body(code, "some message"))
        assert cls is type(error)
        assert (status, code, ("some message",), "6a9b1cb1") == (
            error.status,
            error.error_code,
            error.error_messages,
            error.correlation_id,
        )

    @pytest.mark.parametrize(
        ("status", "cls"),
        [
            (400, BadRequestError),
            (401, UnauthorizedError),
            (403, ForbiddenError),
            (404, NotFoundError),
            (409, ConflictError),
            (429, RateLimitedError),
            (503, ServiceUnavailableError),
            (500, ServerError),
            (418, ApiError),
        ],
    )
    def test_unknown_code_falls_back_to_status(self, status: int, cls: type[ApiError]):
        """A code Klarna adds later still lands in the right family."""
        assert cls is type(api_error(status, {}, klarna_body("SOMETHING_NEW")))

    def test_not_matching_fields_are_parsed(self):
        """BAD_VALUE lists the fields that differ from the authorization."""
        error = api_error(
            400,
            {},
            klarna_body(
                "BAD_VALUE", "Not matching fields: [billing_address.postal_code, order_amount]"
            ),
        )
        assert isinstance(error, BadValueError)
        assert ("billing_address.postal_code", "order_amount") == error.not_matching_fields

    def test_cart_message_is_kept_whole(self):
        """The cart variant of the message is kept as Klarna wrote it."""
        message = (
            "Not matching fields: [Incorrect number of items in the cart. Expected: 2, Actual: 3]"
        )
        error = api_error(400, {}, klarna_body("BAD_VALUE", message))
        assert isinstance(error, BadValueError)
        assert message in str(error)
        expected = ("Incorrect number of items in the cart. Expected: 2, Actual: 3",)
        assert expected == error.not_matching_fields

    @pytest.mark.parametrize(
        "body",
        [
            b"",
            b"   ",
            b"{}",
            b'{"error_code": 5}',
            b"[]",
            b'"text"',
            b'{"error_message": "singular form"}',
            b'{"error_messages": "just a string"}',
        ],
    )
    def test_error_bodies_are_read_leniently(self, body: bytes):
        """Missing fields, the singular form, an empty body: still a typed error, no KeyError."""
        error = api_error(403, {"Content-Type": "*/*"}, body)
        assert isinstance(error, ForbiddenError)
        assert error.status == 403

    def test_singular_error_message(self):
        """Some Klarna APIs say error_message; we keep it."""
        error = api_error(400, {}, b'{"error_code": "BAD_VALUE", "error_message": "nope"}')
        assert ("nope",) == error.error_messages

    def test_html_from_a_proxy(self):
        """An HTML 502 is a ProxyError: both a ServerError and a ResponseDecodeError."""
        page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
        error = api_error(502, {"Content-Type": "text/html"}, page)
        assert isinstance(error, ProxyError)
        assert isinstance(error, ServerError)
        assert isinstance(error, ResponseDecodeError)
        assert "text/html" in str(error)
        assert 502 == error.status

    def test_correlation_id_from_header_when_body_has_none(self):
        """A correlation id in the header is kept when the body lacks it."""
        error = api_error(404, {"Klarna-Correlation-Id": "hdr"}, b"")
        assert "hdr" == error.correlation_id

    def test_rate_limit_values(self):
        """429 exposes Klarna's X-Ratelimit-* values."""
        headers = {
            "X-Ratelimit-Limit": "40, 40;w=1",
            "X-Ratelimit-Remaining": "0",
            "X-Ratelimit-Reset": "0.5",
        }
        error = api_error(429, headers, b"")
        assert isinstance(error, RateLimitedError)
        assert ("40, 40;w=1", 0, 0.5) == (error.limit, error.remaining, error.reset)

    def test_rate_limit_values_absent_or_odd(self):
        """Unusable rate-limit headers read as None rather than crashing."""
        error = api_error(429, {"X-Ratelimit-Remaining": "lots"}, b"")
        assert isinstance(error, RateLimitedError)
        assert (None, None, None) == (error.limit, error.remaining, error.reset)

    def test_str_shows_what_matters(self):
        """str() has status, code, messages and correlation id."""
        error = api_error(403, {}, klarna_body("TOKEN_SUSPENDED", "Token suspended"))
        assert "HTTP 403 TOKEN_SUSPENDED: Token suspended [correlation_id=6a9b1cb1]" == str(error)


class TestSuccess:
    def test_order_decodes(self):
        """The seed's answer, with the string form of authorized_payment_method."""
        body = (
            b'{"order_id": "3eaeb557", "redirect_url": "https://x", "fraud_status": '
            b'"ACCEPTED", "authorized_payment_method": "invoice", "new_field": 1}'
        )
        order = decode_success(200, {}, body, Order)
        assert ("3eaeb557", FraudStatus.ACCEPTED) == (order.order_id, order.fraud_status)
        assert order.authorized_payment_method is not None
        assert "invoice" == order.authorized_payment_method.type

    @pytest.mark.parametrize(
        "answer",
        [
            {"order_id": "o-1", "fraud_status": "ACCEPTED", "redirect_url": "https://x/y"},
            {"order_id": "o-2", "fraud_status": "PENDING"},
            {"order_id": "o-3"},
            {"order_id": "o-4", "fraud_status": "accepted"},
            {"order_id": "o-5", "fraud_status": "SOMETHING_NEW", "redirect_url": "https://x"},
        ],
    )
    def test_plain_answers_decode_as_the_converter_does(self, answer: dict[str, str]):
        """The plain-answer shortcut gives the Order the converter gives: equal, same repr,
        same hash, frozen."""
        order = decode_success(200, {}, orjson.dumps(answer), Order)
        expected = decode(answer, Order)
        assert expected == order
        assert repr(expected) == repr(order)
        assert hash(expected) == hash(order)
        assert type(expected.fraud_status) is type(order.fraud_status)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            order.order_id = "changed"  # type: ignore[misc]

    @pytest.mark.parametrize(
        "body",
        [
            b"<html>OK</html>",
            b"",
            b'{"fraud_status": "ACCEPTED"}',
            b"[1]",
            b'{"order_id": 12, "fraud_status": "ACCEPTED"}',
        ],
    )
    def test_bad_success_bodies_are_typed_errors(self, body: bytes):
        """A 200 without a readable order never passes as success, nor crashes raw."""
        with pytest.raises(ResponseDecodeError) as caught:
            decode_success(200, {"Klarna-Correlation-Id": "c1"}, body, Order)
        assert (200, "c1") == (caught.value.status, caught.value.correlation_id)
        assert caught.value.problems
        assert str(caught.value)
