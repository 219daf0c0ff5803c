"""The fake Klarna's ledger: every order, every customer token, every request received.

Tests assert on it instead of on the client's view of the world::

    assert fake.ledger.order_count_for_key(key) == 1          # charged exactly once
    attempts = fake.ledger.requests_for_key(key)              # every attempt with that key...
    assert [r.committed for r in attempts] == [True, True]    # ... and whether Klarna acted on it
    assert {r.body for r in attempts} == {attempts[0].body}   # the same body bytes each time

What is kept, and for how long (so that a run of millions of charges stays flat in memory):

* **Exact for the whole run** (compact counters, never trimmed): orders per idempotency key
  (:meth:`Ledger.order_count_for_key`, about 20 bytes per key, see :mod:`._keys`), orders per
  customer or authorization token (:meth:`Ledger.order_count_for_token`),
  :attr:`Ledger.orders_total`, :attr:`Ledger.duplicate_orders` (orders beyond the first for one
  key), :attr:`Ledger.keys_with_orders`, :attr:`Ledger.total_charged` and the requests per
  endpoint (:attr:`Ledger.request_counts`); for Order Management, captures and refunds per
  idempotency key (:meth:`Ledger.capture_count_for_key`, :meth:`Ledger.refund_count_for_key`),
  :attr:`Ledger.captures_total`, :attr:`Ledger.refunds_total`, :attr:`Ledger.duplicate_captures`,
  :attr:`Ledger.duplicate_refunds`, :attr:`Ledger.total_captured` and
  :attr:`Ledger.total_refunded`. (An order's captures and refunds themselves are Order
  Management's state: ``fake.orders``.)
* **Detail records**: the most recent ``keep_orders`` orders (:attr:`Ledger.orders`, default
  50,000; ``None`` keeps all) and the most recent ``keep_requests`` requests
  (:attr:`Ledger.requests`, default 50,000). Lookups by id, key or token
  (:meth:`~Ledger.order`, :meth:`~Ledger.orders_for_key`, :meth:`~Ledger.requests_for_key`...)
  see the records still kept; the counts above see everything. The list of orders is trimmed a
  tenth at a time: it holds between nine tenths of ``keep_orders`` and ``keep_orders`` orders.
* Customer tokens are the fake's state: all are kept.

The ``Authorization`` header is never recorded.

Order ids of recurring charges and every ``Klarna-Correlation-Id`` come from :class:`IdSource`:
UUID-shaped (version 4), unique, with a per-ledger random prefix and a sequence number in the last
group, so that a stored answer can be rebuilt from a number (see :mod:`._idempotency`) and an id
read from a log leads back to its request (:meth:`Ledger.request_for_correlation_id`).
"""

from __future__ import annotations

import os
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from klarna_async.testing._faults import Fault
from klarna_async.testing._keys import ByteCounts, KeyTable

__all__ = ["IdSource", "Ledger", "OrderRecord", "RequestRecord", "TokenRecord"]

OrderKind = Literal["one-time", "recurring"]

_SEQUENCE_LIMIT = 1 << 48  # the last group of a UUID: 12 hex digits


class IdSource:
    """UUID-shaped ids ``pppppppp-pppp-4ppp-vppp-nnnnnnnnnnnn``: a random prefix, a number.

    They are valid version-4 UUIDs (version and variant bits set), unique within the source, and
    :meth:`order_number` / :meth:`request_seq` read the number back from an id of this source.
    """

    __slots__ = ("_correlation_prefix", "_order_prefix")

    def __init__(self) -> None:
        self._order_prefix = self._prefix()
        self._correlation_prefix = self._prefix()
        while self._correlation_prefix == self._order_prefix:  # pragma: no cover - 2**-74
            self._correlation_prefix = self._prefix()

    @staticmethod
    def _prefix() -> str:
        raw = bytearray(os.urandom(10))
        raw[6] = 0x40 | (raw[6] & 0x0F)  # version 4
        raw[8] = 0x80 | (raw[8] & 0x3F)  # RFC 4122 variant
        text = raw.hex()
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-"

    @staticmethod
    def _make(prefix: str, number: int) -> str:
        if not 0 <= number < _SEQUENCE_LIMIT:
            raise ValueError(f"sequence number out of range: {number}")
        return f"{prefix}{number:012x}"

    @staticmethod
    def _read(prefix: str, text: str) -> int | None:
        if len(text) != 36 or not text.startswith(prefix):
            return None
        try:
            return int(text[24:], 16)
        except ValueError:
            return None

    def order_id(self, number: int) -> str:
        return self._make(self._order_prefix, number)

    def order_number(self, order_id: str) -> int | None:
        """The number of an order id made by :meth:`order_id`, else None."""
        return self._read(self._order_prefix, order_id)

    def correlation_id(self, seq: int) -> str:
        return self._make(self._correlation_prefix, seq)

    def request_seq(self, correlation_id: str) -> int | None:
        """The request number of a correlation id made by :meth:`correlation_id`, else None."""
        return self._read(self._correlation_prefix, correlation_id)


class OrderRecord:
    """An order the fake created (the customer was charged).

    Compact on purpose (the ledger may hold 50,000 of them): the cart is kept as JSON bytes and
    decoded when :attr:`order_lines` is read.
    """

    __slots__ = (
        "_order_lines",
        "amount",
        "authorization_token",
        "auto_capture",
        "created_at",
        "currency",
        "customer_token",
        "fraud_status",
        "idempotency_key",
        "kind",
        "merchant_reference1",
        "merchant_reference2",
        "order_id",
        "session_id",
        "tax_amount",
    )

    def __init__(
        self,
        order_id: str,
        kind: OrderKind,
        amount: int,
        tax_amount: int,
        currency: str,
        fraud_status: str,
        auto_capture: bool,
        created_at: float,
        authorization_token: str | None = None,
        customer_token: str | None = None,
        idempotency_key: str | None = None,
        merchant_reference1: str | None = None,
        merchant_reference2: str | None = None,
        session_id: str | None = None,
        order_lines: list[Any] | None = None,
    ) -> None:
        self.order_id = order_id
        self.kind: OrderKind = kind
        self.amount = amount
        self.tax_amount = tax_amount
        self.currency = currency
        self.fraud_status = fraud_status
        self.auto_capture = auto_capture
        self.created_at = created_at
        """Fake-clock POSIX time."""
        self.authorization_token = authorization_token
        self.customer_token = customer_token
        self.idempotency_key = idempotency_key
        self.merchant_reference1 = merchant_reference1
        self.merchant_reference2 = merchant_reference2
        self.session_id = session_id
        self.order_lines = order_lines if order_lines is not None else []

    @property
    def order_lines(self) -> list[Any]:
        """The order's cart as sent (a fresh copy on every read)."""
        lines: list[Any] = orjson.loads(self._order_lines)
        return lines

    @order_lines.setter
    def order_lines(self, lines: list[Any]) -> None:
        # A copy of exactly the right size: orjson's output keeps a 4 KiB buffer per object.
        self._order_lines = bytes(memoryview(orjson.dumps(lines)))

    def __repr__(self) -> str:
        return (
            f"OrderRecord(order_id={self.order_id!r}, kind={self.kind!r}, amount={self.amount!r}, "
            f"currency={self.currency!r}, fraud_status={self.fraud_status!r}, "
            f"idempotency_key={self.idempotency_key!r})"
        )

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


def mask(token: str | None) -> str | None:
    """A token as a repr may show it: enough to tell two apart, never enough to use one."""
    if token is None:
        return None
    return "****" + token[-4:] if len(token) > 8 else "****"


def _masked_path(path: str) -> str:
    # Token-like path segments (authorization and customer tokens, session ids) are masked.
    return "/".join(mask(part) or "" if len(part) >= 20 else part for part in path.split("/"))


@dataclass(slots=True, repr=False)
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

    def __repr__(self) -> str:
        return (
            f"TokenRecord(token_id={mask(self.token_id)!r}, status={self.status!r}, "
            f"payment_method_type={self.payment_method_type!r}, outcome={self.outcome!r})"
        )

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


@dataclass(slots=True, repr=False)
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
    """Whether Klarna's processing ran to its end: an order placed, an answer stored under the
    idempotency key or replayed from it, a state change, or a business error decided. The answer
    may still not have reached the client (see :attr:`status`). False for answers given before
    processing (401, 429, injected faults that do not process) and for requests turned away
    before it ended (409 ``CONFLICT`` while the key was in flight, a check made before the
    replay under ``check_order="state_first"``)."""
    committed_at: float | None = None
    """Fake-clock time of the commit: later than :attr:`received_at` under a latency fault."""
    replayed: bool = False
    """Whether the answer was an idempotent replay of an earlier one."""
    order_id: str | None = None
    """The order this request created (not set for a replay of another request's order)."""
    client_gone: bool = False
    """Whether the client had already closed the connection when the answer was ready (it gave
    up on a slow request whose processing went on)."""
    error_code: str | None = None
    correlation_id: str | None = None

    def __repr__(self) -> str:
        # No body or headers (personal data), tokens in the path masked.
        return (
            f"RequestRecord(seq={self.seq!r}, endpoint={self.endpoint!r}, "
            f"path={_masked_path(self.path)!r}, idempotency_key={self.idempotency_key!r}, "
            f"fault={self.fault!r}, status={self.status!r}, committed={self.committed!r}, "
            f"replayed={self.replayed!r}, order_id={self.order_id!r})"
        )

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
            "committed_at": self.committed_at,
            "replayed": self.replayed,
            "order_id": self.order_id,
            "client_gone": self.client_gone,
            "error_code": self.error_code,
            "correlation_id": self.correlation_id,
            "body_size": len(self.body),
        }


class Ledger:
    """What happened, with O(1) lookups for the usual assertions (see the module docstring).

    :param keep_requests: how many of the most recent requests :attr:`requests` keeps (None:
        all).
    :param keep_orders: how many of the most recent orders :attr:`orders` keeps in detail (None:
        all). Counts stay exact either way.
    """

    def __init__(
        self, *, keep_requests: int | None = 50_000, keep_orders: int | None = 50_000
    ) -> None:
        if keep_requests is not None and keep_requests < 0:
            raise ValueError("keep_requests must be >= 0 or None")
        if keep_orders is not None and keep_orders < 0:
            raise ValueError("keep_orders must be >= 0 or None")
        self.keep_requests = keep_requests
        self.keep_orders = keep_orders
        self.ids = IdSource()
        """Where order and correlation ids come from."""
        self.keys = KeyTable()
        """Every idempotency key that placed an order or had an answer stored, numbered."""
        self.orders: list[OrderRecord] = []
        """The most recent orders (at most ``keep_orders``), oldest first."""
        self.customer_tokens: list[TokenRecord] = []
        self.requests: deque[RequestRecord] = deque(maxlen=keep_requests)
        """The most recent ``keep_requests`` requests, oldest first."""
        self.request_counts: Counter[str] = Counter()
        """Requests received per endpoint (never trimmed)."""
        self.orders_total = 0
        """Orders created since the start (or the last :meth:`clear`), kept or not."""
        self.duplicate_orders = 0
        """Orders beyond the first one for their idempotency key, over the whole run."""
        self.keys_with_orders = 0
        """Distinct idempotency keys that created at least one order."""
        self._seq = 0
        self._seq_at_clear = 0
        self._order_numbers = 0
        self._key_orders = ByteCounts()
        self.captures_total = 0
        """Captures made since the start (auto-captures included), whole run."""
        self.refunds_total = 0
        """Refunds made since the start, whole run."""
        self.duplicate_captures = 0
        """Captures beyond the first for one idempotency key (whole run): must stay 0."""
        self.duplicate_refunds = 0
        """Refunds beyond the first for one idempotency key (whole run): must stay 0."""
        self._key_captures = ByteCounts()
        self._key_refunds = ByteCounts()
        self._captured: Counter[str] = Counter()
        self._refunded: Counter[str] = Counter()
        self._token_orders: Counter[str] = Counter()
        self._charged: Counter[str] = Counter()
        self._orders_by_id: dict[str, OrderRecord] = {}
        self._orders_by_key: dict[str, OrderRecord | list[OrderRecord]] = {}
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

    def new_order_id(self) -> str:
        """A fresh order id (see :class:`IdSource`); the order is recorded by :meth:`add_order`."""
        self._order_numbers += 1
        return self.ids.order_id(self._order_numbers)

    def add_order(self, order: OrderRecord) -> None:
        self.orders_total += 1
        self._charged[order.currency] += order.amount
        key = order.idempotency_key
        if key is not None:
            count = self._key_orders.increment(self.keys.add(key))
            if count == 1:
                self.keys_with_orders += 1
            else:
                self.duplicate_orders += 1
        token = order.customer_token or order.authorization_token
        if token is not None:
            self._token_orders[token] += 1
        if self.keep_orders == 0:
            return
        self.orders.append(order)
        self._index(order)
        keep = self.keep_orders
        if keep is not None and len(self.orders) > keep:
            # Trim a tenth at once: O(1) amortised, where trimming one at a time would move the
            # whole list on every order; and never above the cap, so memory stays at its peak.
            del self.orders[: len(self.orders) - keep + max(1, keep // 10)]
            # The lookups are rebuilt rather than updated: a dict that keeps losing old keys
            # and gaining new ones grows to twice the size of one built afresh.
            self._orders_by_id = {}
            self._orders_by_key = {}
            self._orders_by_token = {}
            for kept in self.orders:
                self._index(kept)

    def _index(self, order: OrderRecord) -> None:
        self._orders_by_id[order.order_id] = order
        key = order.idempotency_key
        if key is not None:
            # Most keys place one order: no list for them.
            same_key = self._orders_by_key.get(key)
            if same_key is None:
                self._orders_by_key[key] = order
            elif isinstance(same_key, list):
                same_key.append(order)
            else:
                self._orders_by_key[key] = [same_key, order]
        token = order.customer_token or order.authorization_token
        if token is not None:
            same_token = self._orders_by_token.get(token)
            if same_token is None:
                self._orders_by_token[token] = [order]
            else:
                same_token.append(order)

    def add_capture(self, currency: str, amount: int, idempotency_key: str | None) -> None:
        """Count one capture (Order Management calls this as it captures)."""
        self.captures_total += 1
        self._captured[currency] += amount
        if (
            idempotency_key is not None
            and self._key_captures.increment(self.keys.add(idempotency_key)) > 1
        ):
            self.duplicate_captures += 1

    def add_refund(self, currency: str, amount: int, idempotency_key: str | None) -> None:
        """Count one refund."""
        self.refunds_total += 1
        self._refunded[currency] += amount
        if (
            idempotency_key is not None
            and self._key_refunds.increment(self.keys.add(idempotency_key)) > 1
        ):
            self.duplicate_refunds += 1

    def capture_count_for_key(self, idempotency_key: str) -> int:
        """How many captures requests with this ``Klarna-Idempotency-Key`` made (whole run)."""
        return self._key_captures.get(self.keys.find(idempotency_key))

    def refund_count_for_key(self, idempotency_key: str) -> int:
        """How many refunds requests with this ``Klarna-Idempotency-Key`` made (whole run)."""
        return self._key_refunds.get(self.keys.find(idempotency_key))

    @property
    def total_captured(self) -> dict[str, int]:
        """Sum of captured amounts per currency (whole run)."""
        return dict(self._captured)

    @property
    def total_refunded(self) -> dict[str, int]:
        """Sum of refunded amounts per currency (whole run)."""
        return dict(self._refunded)

    def add_token(self, token: TokenRecord) -> None:
        self.customer_tokens.append(token)
        self._tokens_by_id[token.token_id] = token

    # -- queries --------------------------------------------------------------------------

    def order_count_for_key(self, idempotency_key: str) -> int:
        """How many orders requests with this ``Klarna-Idempotency-Key`` created (whole run)."""
        return self._key_orders.get(self.keys.find(idempotency_key))

    def order_count_for_token(self, token: str) -> int:
        """How many orders were charged to a customer token or placed with an authorization
        token (whole run)."""
        return self._token_orders[token]

    @property
    def order_counts_by_token(self) -> dict[str, int]:
        """Orders per customer or authorization token (whole run)."""
        return dict(self._token_orders)

    def order(self, order_id: str) -> OrderRecord:
        """The order with that id, if still kept (KeyError if not)."""
        return self._orders_by_id[order_id]

    def orders_for_key(self, idempotency_key: str) -> list[OrderRecord]:
        """Kept orders created by requests carrying ``Klarna-Idempotency-Key: idempotency_key``
        (:meth:`order_count_for_key` counts them all)."""
        found = self._orders_by_key.get(idempotency_key)
        if found is None:
            return []
        return list(found) if isinstance(found, list) else [found]

    def orders_for_token(self, token: str) -> list[OrderRecord]:
        """Kept orders charged to a customer token, or placed with an authorization token."""
        return list(self._orders_by_token.get(token, ()))

    def token(self, token_id: str) -> TokenRecord:
        """The customer token record (KeyError if none)."""
        return self._tokens_by_id[token_id]

    def request(self, seq: int) -> RequestRecord:
        """The logged request with that sequence number (KeyError if not kept)."""
        requests = self.requests
        if requests:
            position = seq - requests[0].seq
            if 0 <= position < len(requests):
                return requests[position]
        raise KeyError(f"request #{seq} is not in the log (kept: {len(requests)})")

    def request_for_correlation_id(self, correlation_id: str) -> RequestRecord:
        """The request that first got this ``Klarna-Correlation-Id`` (a replay repeats the id of
        the request whose answer it replays) (KeyError if unknown or not kept)."""
        seq = self.ids.request_seq(correlation_id)
        if seq is None:
            raise KeyError(f"not a correlation id of this fake: {correlation_id!r}")
        return self.request(seq)

    def requests_for(self, endpoint: str) -> list[RequestRecord]:
        """Logged requests to one endpoint, oldest first (within ``keep_requests``)."""
        return [record for record in self.requests if record.endpoint == endpoint]

    def requests_for_key(self, idempotency_key: str) -> list[RequestRecord]:
        """Logged requests with this ``Klarna-Idempotency-Key``, oldest first: every attempt of
        one charge, each saying whether it was :attr:`~RequestRecord.committed`."""
        return [r for r in self.requests if r.idempotency_key == idempotency_key]

    def requests_without_idempotency_key(self, endpoint: str) -> list[RequestRecord]:
        """Logged requests to ``endpoint`` that carried no ``Klarna-Idempotency-Key``."""
        return [r for r in self.requests if r.endpoint == endpoint and r.idempotency_key is None]

    def key_state_nbytes(self) -> int:
        """Memory of the per-key state: the key table and the per-key order counts."""
        return self.keys.nbytes() + self._key_orders.nbytes()

    @property
    def total_charged(self) -> dict[str, int]:
        """Sum of order amounts per currency (whole run)."""
        return dict(self._charged)

    def to_json(
        self, *, include_requests: bool = False, include_orders: bool = True
    ) -> dict[str, Any]:
        """A JSON-ready summary (what ``GET /_fake/ledger`` answers)."""
        summary: dict[str, Any] = {
            "orders_total": self.orders_total,
            "duplicate_orders": self.duplicate_orders,
            "keys_with_orders": self.keys_with_orders,
            "total_charged": self.total_charged,
            "order_counts_by_token": self.order_counts_by_token,
            "orders_kept": len(self.orders),
            "customer_tokens": [token.to_json() for token in self.customer_tokens],
            "request_counts": dict(self.request_counts),
            "requests_total": self._seq - self._seq_at_clear,
            "captures_total": self.captures_total,
            "duplicate_captures": self.duplicate_captures,
            "total_captured": self.total_captured,
            "refunds_total": self.refunds_total,
            "duplicate_refunds": self.duplicate_refunds,
            "total_refunded": self.total_refunded,
        }
        if include_orders:
            summary["orders"] = [order.to_json() for order in self.orders]
        if include_requests:
            summary["requests"] = [record.to_json() for record in self.requests]
        return summary

    def clear(self) -> None:
        """Forget everything (order and correlation ids keep counting, so none repeats)."""
        self.orders.clear()
        self.customer_tokens.clear()
        self.requests.clear()
        self.request_counts.clear()
        self._seq_at_clear = self._seq
        self.orders_total = self.duplicate_orders = self.keys_with_orders = 0
        self.keys.clear()
        self._key_orders.clear()
        self._key_captures.clear()
        self._key_refunds.clear()
        self.captures_total = self.refunds_total = 0
        self.duplicate_captures = self.duplicate_refunds = 0
        self._captured.clear()
        self._refunded.clear()
        self._token_orders.clear()
        self._charged.clear()
        self._orders_by_id.clear()
        self._orders_by_key.clear()
        self._orders_by_token.clear()
        self._tokens_by_id.clear()
