"""Sans-I/O: an HTTP answer (status, headers, body) becomes a model or a typed error.

Pure functions, no aiohttp: the unit tests feed them bytes. Error bodies are read leniently
(Klarna's ``error_messages`` or ``error_message``, any field missing, an empty body, any content
type); success bodies strictly, since a missing ``order_id`` must never pass as a success.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import orjson

from klarna_async._converter import DecodeProblems, decode, loads
from klarna_async._errors import (
    ApiError,
    ProxyError,
    ResponseDecodeError,
    error_class_for,
    scrub,
)
from klarna_async._models import Order

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
            plain = _plain_order(data)
            if plain is not None:
                return plain  # type: ignore[return-value]
        return decode(data, model)
    except DecodeProblems as exc:
        problems = exc.problems
    # Raised out here, not in the except block: the decoding exception stays out of the chain.
    error = ResponseDecodeError(
        f"HTTP {status} answer is not a valid {model.__name__}",
        status=status,
        headers=headers,
        body=body,
        problems=problems,
    )
    error.correlation_id = headers.get(_CORRELATION_HEADER)
    raise error


def _plain_order(data: Any) -> Order | None:
    """The answer to a charge, when it has its usual plain shape, made with ``Order(...)``.

    Every charge decodes its answer, and the converter's generated hook, with its per-field
    helpers, cost about 5 µs a charge in place more than this (``benchmarks/OPTIMIZATIONS.md``).
    Only the plain shape is taken here: ``order_id``, ``fraud_status`` and ``redirect_url``, all
    strings, nothing else; any other answer (an ``authorized_payment_method``, a field Klarna
    adds, a wrong type) goes to the converter, which decides and explains. ``Order.__init__``
    runs as always, so the result is the converter's (a test compares them).
    """
    if data.__class__ is not dict:
        return None
    order_id = data.get("order_id")
    fraud_status = data.get("fraud_status")
    redirect_url = data.get("redirect_url")
    if (
        order_id.__class__ is not str
        or len(data) != 1 + (fraud_status is not None) + (redirect_url is not None)
        or (fraud_status is not None and fraud_status.__class__ is not str)
        or (redirect_url is not None and redirect_url.__class__ is not str)
    ):
        return None
    return Order(order_id=order_id, fraud_status=fraud_status, redirect_url=redirect_url)


def api_error(status: int, headers: Mapping[str, str], body: bytes) -> ApiError:
    """The typed error for a non-2xx answer (returned, not raised, so the caller chooses)."""
    fields = _error_fields(body)
    correlation_id = _text(fields.get("correlation_id")) or headers.get(_CORRELATION_HEADER)
    error_code = _text(fields.get("error_code"))
    if status >= 500 and error_code is None:
        # Not Klarna's error JSON (an HTML or text page, an empty body): a gateway's answer,
        # which may come after it forwarded the request (see _retry's rules).
        return ProxyError(
            status=status,
            headers=headers,
            body=body,
            problems=(f"body is not Klarna's error JSON: {_excerpt(body, headers)}",),
        )
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
    # Scrubbed: a gateway's page may quote the request path (a token) or its headers.
    text = scrub(" ".join(body[:120].decode("utf-8", "replace").split()))
    return f"{kind}, {len(body)} bytes: {text!r}"
