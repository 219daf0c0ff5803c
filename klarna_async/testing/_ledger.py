"""The fake Klarna's ledger: every order, every customer token, every request received.

Tests assert on it instead of on the client's view of the world::

    assert len(fake.ledger.orders_for_key(key)) == 1          # charged exactly once
    attempts = fake.ledger.requests_for("customer_tokens.create_order")
    assert {r.idempotency_key for r in attempts} == {key}     # same key on every attempt
    assert {r.body for r in attempts} == {attempts[0].body}   # and the same body bytes

Orders and tokens are kept for the life of the fake (they are its state). The request log keeps
the most recent ``keep_requests`` requests (``None``: all of them); the per-endpoint counters in
:attr:`Ledger.request_counts` are never trimmed. The ``Authorization`` header is never recorded.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Literal

from klarna_async.testing._faults import Fault

__all__ = ["Ledger", "OrderRecord", "RequestRecord", "TokenRecord"]

OrderKind = Literal["one-time", "recurring"]


@dataclass(slots=True)
class OrderRecord:
    """An order the fake created (the customer was charged)."""

    order_id: str
    kind: OrderKind
    amount: int
    tax_amount: int
    currency: str
    fraud_status: str
    auto_capture: bool
    created_at: float
    """Fake-clock POSIX time."""
    authorization_token: str | None = None
    customer_token: str | None = None
    idempotency_key: str | None = None
    merchant_reference1: str | None = None
    merchant_reference2: str | None = None
    session_id: str | None = None
    order_lines: list[Any] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "kind": self.kind,
            "amount": self.amount,
            "tax_amount": self.tax_amount,
            "currency": self.currency,
            "fraud_status": self.fraud_status,
            "auto_capture": self.auto_capture,
            "created_at": self.created_at,
            "authorization_token": self.authorization_token,
            "customer_token": self.customer_token,
            "idempotency_key": self.idempotency_key,
            "merchant_reference1": self.merchant_reference1,
            "merchant_reference2": self.merchant_reference2,
            "session_id": self.session_id,
        }


@dataclass(slots=True)
class TokenRecord:
    """A customer token the fake issued, with its current state."""

    token_id: str
    status: str
    """``ACTIVE``, ``SUSPENDED`` or ``CANCELLED`` (the fake's casing on the wire too)."""
    payment_method_type: str
    purchase_currency: str
    """Upper case; empty for a token auto-created by ``accept_unknown_tokens`` until charged."""
    purchase_country: str
    created_at: float
    outcome: str = "ok"
    """What charging it does: ``ok``, ``pending``, ``failed`` or ``unavailable``."""
    authorization_token: str | None = None
    session_id: str | None = None
    billing_address: dict[str, Any] | None = None
    description: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "token_id": self.token_id,
            "status": self.status,
            "payment_method_type": self.payment_method_type,
            "purchase_currency": self.purchase_currency,
            "purchase_country": self.purchase_country,
            "created_at": self.created_at,
            "outcome": self.outcome,
            "authorization_token": self.authorization_token,
            "session_id": self.session_id,
        }


@dataclass(slots=True)
class RequestRecord:
    """One request as received (after routing), and what became of it."""

    seq: int
    endpoint: str
    method: str
    path: str
    headers: dict[str, str]
    """Request headers as sent, minus ``Authorization``."""
    body: bytes
    idempotency_key: str | None
    received_at: float
    """Fake-clock POSIX time."""
    fault: Fault | None = None
    status: int | None = None
    """Status sent to the client; None when the connection was dropped or reset."""
    committed: bool = False
    """Whether processing happened (the answer was produced, possibly not delivered)."""
    replayed: bool = False
    """Whether the answer was an idempotent replay of an earlier one."""
    error_code: str | None = None
    correlation_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "endpoint": self.endpoint,
            "method": self.method,
            "path": self.path,
            "idempotency_key": self.idempotency_key,
            "received_at": self.received_at,
            "fault": None if self.fault is None else self.fault.value,
            "status": self.status,
            "committed": self.committed,
            "replayed": self.replayed,
            "error_code": self.error_code,
            "correlation_id": self.correlation_id,
            "body_size": len(self.body),
        }


class Ledger:
    """What happened, with O(1) lookups for the usual assertions."""

    def __init__(self, *, keep_requests: int | None = 50_000) -> None:
        if keep_requests is not None and keep_requests < 0:
            raise ValueError("keep_requests must be >= 0 or None")
        self.keep_requests = keep_requests
        self.orders: list[OrderRecord] = []
        self.customer_tokens: list[TokenRecord] = []
        self.requests: deque[RequestRecord] = deque(maxlen=keep_requests)
        self.request_counts: Counter[str] = Counter()
        """Requests received per endpoint (never trimmed)."""
        self._seq = 0
        self._orders_by_id: dict[str, OrderRecord] = {}
        self._orders_by_key: dict[str, list[OrderRecord]] = {}
        self._orders_by_token: dict[str, list[OrderRecord]] = {}
        self._tokens_by_id: dict[str, TokenRecord] = {}

    # -- recording (used by the fake) -----------------------------------------------------

    def record_request(
        self,
        endpoint: str,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        idempotency_key: str | None,
        received_at: float,
    ) -> RequestRecord:
        self._seq += 1
        self.request_counts[endpoint] += 1
        record = RequestRecord(
            self._seq, endpoint, method, path, headers, body, idempotency_key, received_at
        )
        if self.keep_requests != 0:
            self.requests.append(record)
        return record

    def add_order(self, order: OrderRecord) -> None:
        self.orders.append(order)
        self._orders_by_id[order.order_id] = order
        if order.idempotency_key is not None:
            self._orders_by_key.setdefault(order.idempotency_key, []).append(order)
        token = order.customer_token or order.authorization_token
        if token is not None:
            self._orders_by_token.setdefault(token, []).append(order)

    def add_token(self, token: TokenRecord) -> None:
        self.customer_tokens.append(token)
        self._tokens_by_id[token.token_id] = token

    # -- queries --------------------------------------------------------------------------

    def order(self, order_id: str) -> OrderRecord:
        """The order with that id (KeyError if none)."""
        return self._orders_by_id[order_id]

    def orders_for_key(self, idempotency_key: str) -> list[OrderRecord]:
        """Orders created by requests carrying ``Klarna-Idempotency-Key: idempotency_key``."""
        return list(self._orders_by_key.get(idempotency_key, ()))

    def orders_for_token(self, token: str) -> list[OrderRecord]:
        """Orders charged to a customer token, or placed with an authorization token."""
        return list(self._orders_by_token.get(token, ()))

    def token(self, token_id: str) -> TokenRecord:
        """The customer token record (KeyError if none)."""
        return self._tokens_by_id[token_id]

    def requests_for(self, endpoint: str) -> list[RequestRecord]:
        """Logged requests to one endpoint, oldest first (within ``keep_requests``)."""
        return [record for record in self.requests if record.endpoint == endpoint]

    def requests_without_idempotency_key(self, endpoint: str) -> list[RequestRecord]:
        """Logged requests to ``endpoint`` that carried no ``Klarna-Idempotency-Key``."""
        return [r for r in self.requests if r.endpoint == endpoint and r.idempotency_key is None]

    @property
    def total_charged(self) -> dict[str, int]:
        """Sum of order amounts per currency."""
        totals: Counter[str] = Counter()
        for order in self.orders:
            totals[order.currency] += order.amount
        return dict(totals)

    def to_json(self, *, include_requests: bool = False) -> dict[str, Any]:
        """A JSON-ready summary (what ``GET /_fake/ledger`` answers)."""
        summary: dict[str, Any] = {
            "orders": [order.to_json() for order in self.orders],
            "customer_tokens": [token.to_json() for token in self.customer_tokens],
            "request_counts": dict(self.request_counts),
            "requests_total": self._seq,
        }
        if include_requests:
            summary["requests"] = [record.to_json() for record in self.requests]
        return summary

    def clear(self) -> None:
        """Forget everything."""
        self.orders.clear()
        self.customer_tokens.clear()
        self.requests.clear()
        self.request_counts.clear()
        self._seq = 0
        self._orders_by_id.clear()
        self._orders_by_key.clear()
        self._orders_by_token.clear()
        self._tokens_by_id.clear()
