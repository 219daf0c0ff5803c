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
from klarna_async._errors import ApiError, ProxyError, ResponseDecodeError, error_class_for

__all__ = ["api_error", "decode_success"]

T = TypeVar("T")

_CORRELATION_HEADER = "Klarna-Correlation-Id"


def decode_success(status: int, headers: Mapping[str, str], body: bytes, model: type[T]) -> T:
    """The model a 2xx answer carries, or :class:`ResponseDecodeError`."""
    try:
        return decode(loads(body), model)
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
