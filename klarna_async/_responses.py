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
