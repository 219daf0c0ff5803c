"""Klarna's OpenAPI specs as the wire contract of the tests.

The specs in ``tests/specs`` are Klarna's published exports (see SOURCES.md in the shared
reference). Tests validate what the client sends, and what the fake Klarna answers, against them:

* ``validate_request_body(spec, method, path, body)`` checks a request body against the
  operation's request schema in *write* mode (read-only fields must not be sent) and, by default,
  strictly: a property the schema does not list is an error, so a misspelt field cannot pass.
* ``validate_response_body(spec, method, path, status, body)`` checks an answer in *read* mode.
  Error statuses for which the spec declares no body are checked against the spec's ``ErrorV2``.

``spec`` is ``"payments"``, ``"customer_token"`` or ``"order_management"``; ``path`` is the
template as the spec writes it, e.g. ``/customer-token/v1/tokens/{customerToken}/order``.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

import yaml
from openapi_schema_validator import OAS30ReadValidator, OAS30WriteValidator

SPEC_DIR = Path(__file__).parent / "specs"
SPEC_FILES = {
    "payments": "klarna-payments-api-openapi.yml",
    "customer_token": "klarna-customer-token-api-openapi.yml",
    "order_management": "order-management-api-openapi.yml",
}
#: The error schema of a status the operation declares no body for: KP and CT have ErrorV2,
#: Order Management its ErrorMessageDto (error_code, error_messages, correlation_id).
ERROR_SCHEMAS = {"order_management": "ErrorMessageDto"}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


class SpecViolation(AssertionError):
    """A body does not match Klarna's schema; the message lists every problem with its path."""


@functools.cache
def load_spec(spec: str) -> dict[str, Any]:
    text = (SPEC_DIR / SPEC_FILES[spec]).read_text(encoding="utf-8")
    document: dict[str, Any] = yaml.safe_load(_CONTROL.sub("", text))
    _split_joined_enums(document)
    return document


def _split_joined_enums(node: Any) -> None:
    """Order Management's export writes an enum as one value of its members joined by ``|``
    (``order_line.type``); read it as those members, as klarna_async._contract.overrides does."""
    if isinstance(node, dict):
        enum = node.get("enum")
        if (
            isinstance(enum, list)
            and len(enum) == 1
            and isinstance(enum[0], str)
            and "|" in enum[0]
        ):
            node["enum"] = enum[0].split("|")
        for value in node.values():
            _split_joined_enums(value)
    elif isinstance(node, list):
        for item in node:
            _split_joined_enums(item)


def _resolve(document: dict[str, Any], node: Any, *, strict: bool) -> Any:
    """Inline every ``$ref`` so the validator needs no registry; optionally forbid extra keys."""
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            return _resolve(document, document["components"]["schemas"][name], strict=strict)
        out = {key: _resolve(document, value, strict=strict) for key, value in node.items()}
        if strict and out.get("type") == "object" and "properties" in out:
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(node, list):
        return [_resolve(document, item, strict=strict) for item in node]
    return node


def _operation(spec: str, method: str, path: str) -> dict[str, Any]:
    document = load_spec(spec)
    try:
        operation: dict[str, Any] = document["paths"][path][method.lower()]
    except KeyError:
        raise KeyError(f"{spec} spec has no operation {method.upper()} {path}") from None
    return operation


def has_request_body(spec: str, method: str, path: str) -> bool:
    """Whether the operation declares a request body (Order Management's acknowledge, cancel,
    release... POST without one)."""
    return "requestBody" in _operation(spec, method, path)


@functools.cache
def request_schema(spec: str, method: str, path: str, *, strict: bool = True) -> dict[str, Any]:
    operation = _operation(spec, method, path)
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    resolved: dict[str, Any] = _resolve(load_spec(spec), schema, strict=strict)
    return resolved


@functools.cache
def response_schema(spec: str, method: str, path: str, status: int) -> dict[str, Any] | None:
    """The schema of a response body, the API's error schema for a bodiless error status, None
    for none.

    Order Management's export declares ``application/json: {type: string}`` on some 201 and 204
    answers: a placeholder (a 204 has no body by HTTP, and Klarna's 201 carries its id in
    headers), read as "no body".
    """
    document = load_spec(spec)
    responses = _operation(spec, method, path).get("responses", {})
    entry = responses.get(str(status))
    content = (entry or {}).get("content") or {}
    for media in ("application/json", "*/*"):
        if media in content and "schema" in content[media]:
            schema = content[media]["schema"]
            if status in (201, 204) and schema == {"type": "string"}:
                return None
            resolved: dict[str, Any] = _resolve(document, schema, strict=False)
            return resolved
    if status >= 400:
        name = ERROR_SCHEMAS.get(spec, "ErrorV2")
        return _resolve(document, document["components"]["schemas"][name], strict=False)  # type: ignore[no-any-return]
    return None


def _check(validator_cls: Any, schema: dict[str, Any], body: Any, what: str) -> None:
    validator = validator_cls(copy.deepcopy(schema))
    problems = sorted(
        (
            f"${''.join(f'[{p}]' if isinstance(p, int) else f'.{p}' for p in e.absolute_path)}: "
            f"{e.message}"
        )
        for e in validator.iter_errors(body)
    )
    if problems:
        raise SpecViolation(f"{what} does not match the spec:\n  " + "\n  ".join(problems))


def validate_request_body(
    spec: str, method: str, path: str, body: Any, *, strict: bool = True
) -> None:
    """Raise :class:`SpecViolation` unless ``body`` is a valid request for the operation."""
    schema = request_schema(spec, method, path, strict=strict)
    _check(OAS30WriteValidator, schema, body, f"request {method.upper()} {path}")


def validate_response_body(spec: str, method: str, path: str, status: int, body: Any) -> None:
    """Raise :class:`SpecViolation` unless ``body`` is a valid answer with that status."""
    schema = response_schema(spec, method, path, status)
    if schema is None:
        if body not in (None, b"", ""):
            raise SpecViolation(f"{method.upper()} {path} {status} must have no body, got {body!r}")
        return
    _check(OAS30ReadValidator, schema, body, f"response {status} to {method.upper()} {path}")


#: Which spec and path template each client operation uses, for tests that map a captured
#: request back to its schema.
OPERATIONS: dict[str, tuple[str, str, str]] = {
    "payments.create_session": ("payments", "POST", "/payments/v1/sessions"),
    "payments.get_session": ("payments", "GET", "/payments/v1/sessions/{session_id}"),
    "payments.update_session": ("payments", "POST", "/payments/v1/sessions/{session_id}"),
    "payments.create_order": (
        "payments",
        "POST",
        "/payments/v1/authorizations/{authorizationToken}/order",
    ),
    "payments.create_customer_token": (
        "payments",
        "POST",
        "/payments/v1/authorizations/{authorizationToken}/customer-token",
    ),
    "payments.cancel_authorization": (
        "payments",
        "DELETE",
        "/payments/v1/authorizations/{authorizationToken}",
    ),
    "customer_tokens.get": ("customer_token", "GET", "/customer-token/v1/tokens/{customerToken}"),
    "customer_tokens.create_order": (
        "customer_token",
        "POST",
        "/customer-token/v1/tokens/{customerToken}/order",
    ),
    "customer_tokens.cancel": (
        "customer_token",
        "PATCH",
        "/customer-token/v1/tokens/{customerToken}/status",
    ),
    **{
        f"orders.{name}": (
            "order_management",
            method,
            "/ordermanagement/v1/orders/{order_id}" + path,
        )
        for name, method, path in (
            ("get", "GET", ""),
            ("acknowledge", "POST", "/acknowledge"),
            ("update_authorization", "PATCH", "/authorization"),
            ("capture", "POST", "/captures"),
            ("list_captures", "GET", "/captures"),
            ("get_capture", "GET", "/captures/{capture_id}"),
            ("extend_due_date", "PATCH", "/captures/{capture_id}/extend-due-date"),
            (
                "extend_due_date_options",
                "GET",
                "/captures/{capture_id}/extend-due-date-options",
            ),
            ("add_capture_shipping_info", "POST", "/captures/{capture_id}/shipping-info"),
            ("trigger_send_out", "POST", "/captures/{capture_id}/trigger-send-out"),
            ("update_customer_details", "PATCH", "/customer-details"),
            ("extend_authorization_time", "POST", "/extend-authorization-time"),
            ("update_merchant_references", "PATCH", "/merchant-references"),
            ("refund", "POST", "/refunds"),
            ("get_refund", "GET", "/refunds/{refund_id}"),
            ("release_remaining_authorization", "POST", "/release-remaining-authorization"),
            ("add_shipping_info", "POST", "/shipping-info"),
            ("cancel", "POST", "/cancel"),
        )
    },
}
