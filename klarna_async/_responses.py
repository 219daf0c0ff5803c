"""Sans-I/O: an HTTP answer (status, headers, body) becomes a model or a typed error.

Pure functions, no aiohttp: the unit tests feed them bytes. Error bodies are read leniently
(Klarna's ``error_messages`` or ``error_message``, any field missing, an empty body, any content
type); success bodies strictly, since a missing ``order_id`` must never pass as a success.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import attrs
import orjson

from klarna_async._converter import DecodeProblems, decode, loads
from klarna_async._errors import ApiError, ProxyError, ResponseDecodeError, error_class_for
from klarna_async._models import FraudStatus, Order
from klarna_async._models.enums import as_fraud_status

__all__ = ["api_error", "decode_success"]

T = TypeVar("T")

_CORRELATION_HEADER = "Klarna-Correlation-Id"


def decode_success(status: int, headers: Mapping[str, str], body: bytes, model: type[T]) -> T:
    """The model a 2xx answer carries, or :class:`ResponseDecodeError`."""
    try:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = loads(body)  # raises DecodeProblems with the reason
        if model is Order:
            fast = _plain_order(data)
            if fast is not None:
                return fast  # type: ignore[return-value]
        return decode(data, model)
    except DecodeProblems as exc:
        error = ResponseDecodeError(
            f"HTTP {status} answer is not a valid {model.__name__}",
            status=status,
            headers=headers,
            body=body,
            problems=exc.problems,
        )
        error.correlation_id = headers.get(_CORRELATION_HEADER)
        raise error from None


def api_error(status: int, headers: Mapping[str, str], body: bytes) -> ApiError:
    """The typed error for a non-2xx answer (returned, not raised, so the caller chooses)."""
    fields = _error_fields(body)
    correlation_id = _text(fields.get("correlation_id")) or headers.get(_CORRELATION_HEADER)
    if fields is _NOT_KLARNA and status >= 500:
        return ProxyError(
            status=status,
            headers=headers,
            body=body,
            problems=(f"body is not Klarna's error JSON: {_excerpt(body, headers)}",),
        )
    error_code = _text(fields.get("error_code"))
    messages = fields.get("error_messages")
    if isinstance(messages, list):
        texts = tuple(m if isinstance(m, str) else str(m) for m in messages)
    elif isinstance(messages, str):
        texts = (messages,)
    else:
        single = _text(fields.get("error_message"))
        texts = (single,) if single else ()
    cls = error_class_for(status, error_code)
    return cls(
        status=status,
        error_code=error_code,
        error_messages=texts,
        correlation_id=correlation_id,
        headers=headers,
        body=body,
    )


_FRAUD_STATUSES = {member.value: member for member in FraudStatus}

# The plain answer's Order is made without Order.__init__, whose keyword parsing and converter
# cost twice what the rest of decoding does: a new instance and its four slots set directly.
# That is only right while these are all of Order's fields, with no validator and no converter
# but fraud_status's (which _plain_order stands in for); so fail at import if they change.
_ORDER_FIELDS: dict[str, object] = {
    "order_id": None,
    "fraud_status": as_fraud_status,
    "redirect_url": None,
    "authorized_payment_method": None,
}
_converters: dict[str, object] = {field.name: field.converter for field in attrs.fields(Order)}
if _converters != _ORDER_FIELDS or any(
    field.validator for field in attrs.fields(Order)
):  # pragma: no cover - a guard
    raise RuntimeError("Order's fields changed: update _plain_order")
_new_instance = object.__new__
_set_order_id = Order.__dict__["order_id"].__set__
_set_fraud_status = Order.__dict__["fraud_status"].__set__
_set_redirect_url = Order.__dict__["redirect_url"].__set__
_set_authorized_payment_method = Order.__dict__["authorized_payment_method"].__set__


def _plain_order(data: Any) -> Order | None:
    """The answer to a charge, decoded without cattrs when it has the usual plain shape.

    Every charge pays for decoding its answer. The common answer (``order_id``,
    ``fraud_status``, maybe ``redirect_url``, all strings) is built directly; anything else
    (``authorized_payment_method``, unknown fields, wrong types) goes through the converter,
    which decides and explains. The result is the same ``Order`` either way (tested).
    """
    if data.__class__ is not dict:
        return None
    order_id = data.get("order_id")
    fraud_status = data.get("fraud_status")
    redirect_url = data.get("redirect_url")
    if (
        len(data) != 1 + (fraud_status is not None) + (redirect_url is not None)  # other keys
        or order_id.__class__ is not str
        or (fraud_status is not None and fraud_status.__class__ is not str)
        or (redirect_url is not None and redirect_url.__class__ is not str)
    ):
        return None
    if fraud_status is not None:
        # A member when we know it (the enum's own lookup costs more), else a pseudo-member.
        fraud_status = _FRAUD_STATUSES.get(fraud_status) or FraudStatus(fraud_status)
    order: Order = _new_instance(Order)
    _set_order_id(order, order_id)
    _set_fraud_status(order, fraud_status)
    _set_redirect_url(order, redirect_url)
    _set_authorized_payment_method(order, None)
    return order


_NOT_KLARNA: dict[str, Any] = {}


def _error_fields(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _NOT_KLARNA
    return parsed if isinstance(parsed, dict) else _NOT_KLARNA


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _excerpt(body: bytes, headers: Mapping[str, str]) -> str:
    kind = headers.get("Content-Type", "no content type")
    text = " ".join(body[:120].decode("utf-8", "replace").split())
    return f"{kind}, {len(body)} bytes: {text!r}"
