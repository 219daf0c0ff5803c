"""The fake Klarna's business state: sessions, authorizations, customer tokens, orders.

Everything here is plain, synchronous Python on parsed JSON; :mod:`._app` does HTTP. Each
endpoint method returns a :class:`Reply` or raises :class:`ApiError`, which the app turns into
Klarna's error body ``{"error_code", "error_messages", "correlation_id"}``.

Modelling choices (where Klarna's documentation is silent or contradictory):

* **Validation** is hand-written (no JSON-schema engine on the hot path) and covers required
  fields, JSON types, enums, patterns, lengths and ranges from the specs. Every problem is one
  message ``"Bad value: <path>"`` (also for a missing required field), error code ``BAD_VALUE``,
  HTTP 400. A body that is not a JSON object is ``BAD_REQUEST``. With ``strict_amounts`` (the
  default) the arithmetic Klarna checks is enforced too: ``total_amount = quantity * unit_price -
  total_discount_amount``, ``total_tax_amount`` within +-1 of ``total_amount - total_amount *
  10000 / (10000 + tax_rate)``, ``order_amount = sum(total_amount)`` and (when every line has a
  ``total_tax_amount``) ``order_tax_amount`` within +-(number of lines) of their sum. The body
  is validated first: a bad body is 400 even with an unknown or expired token.
* **Authorization** (``FakeKlarna.authorize``) snapshots the session's cart, country, currency,
  billing and shipping address (or the overrides given). A later session update does not change
  what was authorized. A new authorization of the same session invalidates the previous token.
* **Placing a one-time order** compares the order with that snapshot: differences answer 409
  ``BAD_VALUE`` ``"Not matching fields: [...]"`` listing ``order_amount``, the cart-count message
  ``Incorrect number of items in the cart. Expected: 2, Actual: 3`` (or, with equal counts,
  ``order_lines[i].quantity|unit_price|total_amount``), ``purchase_currency``,
  ``purchase_country``, then every differing ``billing_address.<field>`` and
  ``shipping_address.<field>`` (an address the order omits is not compared). A mismatch does not
  consume the token. ``redirect_url`` is returned only if the *session* has
  ``merchant_urls.confirmation``.
* **Single use.** An authorization token allows the operations of its session's intent, each
  once: ``buy`` one order; ``tokenize`` one customer token; ``buy_and_tokenize`` one order *and*
  one customer token, in either order, with the same token. Repeating a done operation, or any use
  after 60 minutes, after ``DELETE`` or once everything is done, answers 404 ``NOT_FOUND``
  ``"Invalid authorization token"``. Orders on a ``tokenize`` authorization answer 403
  ``INVALID_OPERATION``. An authorization approved with ``outcome="rejected"`` answers 403
  ``REJECTED`` ``"Rejected"`` to the operation and is used up.
* **Customer tokens** have status ``"ACTIVE"``, ``"SUSPENDED"`` or ``"CANCELLED"`` (upper case, as
  the spec's example ``ACTIVE`` and the status-update enum ``CANCELLED``). Reading or cancelling an
  unknown token answers 404 ``NOT_FOUND`` ``"Invalid customer-token ID"`` (as Klarna documents for
  reads); charging one answers 404 ``TOKEN_NOT_FOUND``. Charging a cancelled token answers 403
  ``TOKEN_CANCELED`` (Klarna's spelling), a suspended one 403 ``TOKEN_SUSPENDED``, another currency
  403 ``UNAVAILABLE_PAYMENT_METHOD``. Token orders always carry ``redirect_url`` (the Customer
  Token spec marks it required).
* **Idempotency** (``Klarna-Idempotency-Key``, customer-token orders only, as declared in the
  spec): the first answer produced by processing under a key (success or error, any status) is
  stored for 24 hours of fake time and replayed byte for byte (with its original
  ``Klarna-Correlation-Id``) to every later request with that key, whatever its body or token
  path ("only the key matters", as Klarna's Order Management API documents). Answers that never
  reached processing (401, 429, injected faults) are not stored, nor are a 409 ``CONFLICT``
  while the key is in flight and the refusals of the checks made before the replay under
  ``check_order="state_first"`` (see :mod:`._faults`). Recurring order ids are
  :class:`~._ledger.IdSource` ids, so the store keeps a replayable answer in a few bytes.
* **Unknown customer tokens** are 404 unless ``accept_unknown_tokens`` is set (for running a
  batch of real-looking token ids against the fake): then any unknown id is an ``ACTIVE``
  ``INVOICE`` token, created on first use, that takes the currency of its first order.
* **Sessions** live 48 hours from creation (then 404 ``NOT_FOUND``). Placing the order (or, for
  ``tokenize``, creating the token) makes the session ``complete``; it can still be read, but an
  update answers 404 ``SESSION_COMPLETED``.
"""

from __future__ import annotations

import base64
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from klarna_async.testing._clock import FakeClock, isoformat
from klarna_async.testing._idempotency import IDEMPOTENCY_TTL, IdempotencyStore, StoredAnswer
from klarna_async.testing._keys import Recent
from klarna_async.testing._ledger import Ledger, OrderRecord, TokenRecord

__all__ = [
    "AUTHORIZATION_TTL",
    "IDEMPOTENCY_TTL",
    "SESSION_TTL",
    "ApiError",
    "AuthorizationDeclined",
    "FakeState",
    "IdempotencyStore",
    "RateLimiter",
    "Reply",
    "StoredAnswer",
]

AUTHORIZATION_TTL: Final = 60 * 60.0
SESSION_TTL: Final = 48 * 60 * 60.0

OUTCOMES: Final = ("approved", "pending", "declined", "rejected")
TOKEN_OUTCOMES: Final = ("ok", "pending", "failed", "unavailable")
TOKEN_STATUSES: Final = ("ACTIVE", "SUSPENDED", "CANCELLED")

# authorized_payment_method.type values in the Payments spec.
_KP_METHOD_TYPES: Final = frozenset(
    {
        "invoice",
        "fixed_amount",
        "base_account",
        "direct_debit",
        "direct_bank_transfer",
        "b2b_invoice",
        "card",
        "slice_it_by_card",
        "pay_later_by_card",
        "pay_by_card",
        "fixed_sum_credit",
        "alternative_payment_method",
    }
)
# ... and in the Customer Token spec.
_CT_METHOD_TYPES: Final = frozenset(
    {
        "invoice",
        "fixed_amount",
        "pix",
        "base_account",
        "deferred_interest",
        "direct_debit",
        "direct_bank_transfer",
        "b2b_invoice",
        "card",
        "slice_it_by_card",
        "pay_later_by_card",
        "fixed_sum_credit",
        "pay_by_card",
    }
)
_CARD_TYPES: Final = frozenset({"card", "pay_by_card", "slice_it_by_card", "pay_later_by_card"})
_LINE_TYPES: Final = frozenset(
    {
        "physical",
        "discount",
        "shipping_fee",
        "sales_tax",
        "digital",
        "gift_card",
        "store_credit",
        "surcharge",
    }
)
_INTENTS: Final = frozenset({"buy", "tokenize", "buy_and_tokenize"})
_CHANNELS: Final = frozenset({"ECOMMERCE", "IN_STORE", "TELESALES"})
_INTERVALS: Final = frozenset({"DAY", "WEEK", "MONTH", "YEAR"})
_COUNTRY: Final = re.compile(r"[A-Za-z]{2}")
_CURRENCY: Final = re.compile(r"[A-Za-z]{3}")
_LOCALE: Final = re.compile(r"[A-Za-z]{2}(?:-[A-Za-z]{2})*")
_ADDRESS_LIMITS: Final = {
    "attention": 99,
    "city": 99,
    "email": 99,
    "family_name": 99,
    "given_name": 99,
    "organization_name": 99,
    "phone": 99,
    "postal_code": 10,
    "region": 99,
    "street_address": 99,
    "street_address2": 99,
    "title": 20,
}
_COMPARED_LINE_FIELDS: Final = ("quantity", "unit_price", "total_amount")
_PAYMENT_METHOD_CATEGORIES: Final = (
    {
        "identifier": "klarna",
        "name": "Pay with Klarna",
        "asset_urls": {
            "descriptive": "https://x.klarnacdn.net/payment-method/assets/badges/generic/klarna.svg",
            "standard": "https://x.klarnacdn.net/payment-method/assets/badges/generic/klarna.svg",
        },
    },
)
# Session fields a merchant may send (read-only ones are ignored).
_SESSION_FIELDS: Final = frozenset(
    {
        "acquiring_channel",
        "attachment",
        "billing_address",
        "custom_payment_method_ids",
        "customer",
        "design",
        "intent",
        "locale",
        "merchant_data",
        "merchant_reference1",
        "merchant_reference2",
        "merchant_urls",
        "options",
        "order_amount",
        "order_lines",
        "order_tax_amount",
        "purchase_country",
        "purchase_currency",
        "shipping_address",
    }
)


class ApiError(Exception):
    """An answer in Klarna's error shape."""

    def __init__(self, status: int, error_code: str, *messages: str) -> None:
        super().__init__(f"{status} {error_code}: {'; '.join(messages)}")
        self.status = status
        self.error_code = error_code
        self.messages = list(messages)


class AuthorizationDeclined(Exception):
    """``FakeKlarna.authorize(..., outcome="declined")``: the customer was refused in the widget."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"authorization of session {session_id} was declined")
        self.session_id = session_id


@dataclass(slots=True)
class Reply:
    """A successful answer: status, JSON payload (None for no body) and headers of its own
    (Order Management's ``Capture-Id``, ``Location``)."""

    status: int
    payload: dict[str, Any] | list[Any] | None = None
    headers: dict[str, str] | None = None


class RateLimiter:
    """Klarna-style fixed window on the fake monotonic clock.

    ``rate`` requests per second: a 1-second window allowing ``int(rate)`` requests (a rate below
    1 becomes one request per ``1/rate`` seconds). Once the window is used up every request gets
    429 until it resets. Headers, on every answer: ``X-Ratelimit-Limit: "N, N;w=W"``,
    ``X-Ratelimit-Remaining`` and ``X-Ratelimit-Reset`` (whole seconds until the window resets).
    """

    def __init__(self, rate: float, clock: FakeClock) -> None:
        if not rate > 0:
            raise ValueError(f"rate_limit must be > 0, got {rate!r}")
        self.rate = float(rate)
        self.window = 1.0 if rate >= 1 else 1.0 / rate
        self.allowed = max(1, int(rate * self.window + 1e-9))
        self._clock = clock
        self._window_end = -math.inf
        self._used = 0
        self._limit_header = f"{self.allowed}, {self.allowed};w={self.window:g}"

    def hit(self) -> tuple[bool, dict[str, str]]:
        """Count one request: (allowed?, the headers to send)."""
        now = self._clock.monotonic()
        if now >= self._window_end:
            self._window_end = now + self.window
            self._used = 0
        self._used += 1
        ok = self._used <= self.allowed
        headers = {
            "X-Ratelimit-Limit": self._limit_header,
            "X-Ratelimit-Remaining": str(max(0, self.allowed - self._used)),
            "X-Ratelimit-Reset": str(max(1, math.ceil(self._window_end - now))),
        }
        return ok, headers

    def reset(self) -> None:
        self._window_end = -math.inf
        self._used = 0


# -- validation helpers --------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Problems:
    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[str] = []

    def bad(self, path: str) -> None:
        self.items.append(f"Bad value: {path}")

    def raise_if_any(self) -> None:
        if self.items:
            raise ApiError(400, "BAD_VALUE", *self.items[:25])


def _str(
    obj: dict[str, Any],
    key: str,
    path: str,
    p: _Problems,
    *,
    required: bool = False,
    min_len: int = 0,
    max_len: int | None = None,
    pattern: re.Pattern[str] | None = None,
    enum: frozenset[str] | None = None,
) -> None:
    value = obj.get(key)
    if value is None:
        if required or key in obj:
            p.bad(path)
        return
    if (
        not isinstance(value, str)
        or len(value) < min_len
        or (max_len is not None and len(value) > max_len)
        or (pattern is not None and pattern.fullmatch(value) is None)
        or (enum is not None and value not in enum)
    ):
        p.bad(path)


def _int(
    obj: dict[str, Any],
    key: str,
    path: str,
    p: _Problems,
    *,
    required: bool = False,
    minimum: int | None = None,
    maximum: int | None = None,
) -> None:
    value = obj.get(key)
    if value is None:
        if required or key in obj:
            p.bad(path)
        return
    if (
        not _is_int(value)
        or (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
    ):
        p.bad(path)


def _bool(obj: dict[str, Any], key: str, path: str, p: _Problems) -> None:
    if key in obj and not isinstance(obj[key], bool):
        p.bad(path)


def _address(obj: dict[str, Any], key: str, p: _Problems) -> None:
    value = obj.get(key)
    if value is None:
        if key in obj:
            p.bad(key)
        return
    if not isinstance(value, dict):
        p.bad(key)
        return
    for name, limit in _ADDRESS_LIMITS.items():
        if name in value:
            _str(value, name, f"{key}.{name}", p, max_len=limit)
    if "country" in value:
        _str(value, "country", f"{key}.country", p, pattern=_COUNTRY)


def _object(obj: dict[str, Any], key: str, p: _Problems) -> dict[str, Any] | None:
    value = obj.get(key)
    if value is None:
        if key in obj:
            p.bad(key)
        return None
    if not isinstance(value, dict):
        p.bad(key)
        return None
    return value


def _merchant_urls(obj: dict[str, Any], p: _Problems, *, confirmation_required: bool) -> None:
    urls = _object(obj, "merchant_urls", p)
    if urls is None:
        return
    for name in ("confirmation", "notification", "push", "authorization"):
        _str(
            urls,
            name,
            f"merchant_urls.{name}",
            p,
            max_len=2000,
            required=confirmation_required and name == "confirmation",
        )


def _attachment(obj: dict[str, Any], p: _Problems) -> None:
    attachment = _object(obj, "attachment", p)
    if attachment is not None:
        _str(attachment, "body", "attachment.body", p, required=True)
        _str(attachment, "content_type", "attachment.content_type", p, required=True)


def _order_lines(
    obj: dict[str, Any], p: _Problems, *, required: bool, customer_token: bool
) -> list[dict[str, Any]] | None:
    lines = obj.get("order_lines")
    if lines is None:
        if required or "order_lines" in obj:
            p.bad("order_lines")
        return None
    if not isinstance(lines, list) or not 1 <= len(lines) <= 1000:
        p.bad("order_lines")
        return None
    limit = 100_000_000 if customer_token else 200_000_000
    good = True
    for index, line in enumerate(lines):
        at = f"order_lines[{index}]"
        if not isinstance(line, dict):
            p.bad(at)
            good = False
            continue
        before = len(p.items)
        _str(line, "name", f"{at}.name", p, required=True, min_len=1, max_len=255)
        _int(line, "quantity", f"{at}.quantity", p, required=True, minimum=0)
        _int(line, "unit_price", f"{at}.unit_price", p, required=True, maximum=limit)
        _int(line, "total_amount", f"{at}.total_amount", p, required=True, maximum=limit)
        _int(line, "total_discount_amount", f"{at}.total_discount_amount", p, minimum=0)
        _int(line, "total_tax_amount", f"{at}.total_tax_amount", p)
        _int(line, "tax_rate", f"{at}.tax_rate", p, minimum=0, maximum=10_000)
        if customer_token:
            _str(line, "type", f"{at}.type", p, enum=_LINE_TYPES)
        else:
            _str(line, "type", f"{at}.type", p)
        _str(line, "reference", f"{at}.reference", p, max_len=256 if customer_token else 255)
        data_limit = 255 if customer_token else 1024
        _str(line, "merchant_data", f"{at}.merchant_data", p, max_len=data_limit)
        _str(line, "image_url", f"{at}.image_url", p, max_len=1024)
        _str(line, "product_url", f"{at}.product_url", p, max_len=1024)
        if not customer_token:
            _str(line, "quantity_unit", f"{at}.quantity_unit", p, min_len=1, max_len=8)
        else:
            _str(line, "quantity_unit", f"{at}.quantity_unit", p)
        subscription = _object(line, "subscription", p)
        if subscription is not None:
            _str(subscription, "name", f"{at}.subscription.name", p, required=True, min_len=1)
            _str(
                subscription,
                "interval",
                f"{at}.subscription.interval",
                p,
                required=True,
                enum=_INTERVALS,
            )
            _int(
                subscription,
                "interval_count",
                f"{at}.subscription.interval_count",
                p,
                required=True,
                minimum=1,
            )
        if "product_identifiers" in line and not isinstance(line["product_identifiers"], dict):
            p.bad(f"{at}.product_identifiers")
        if len(p.items) != before:
            good = False
    return lines if good else None


def _amounts(obj: dict[str, Any], lines: list[dict[str, Any]], p: _Problems) -> None:
    """Klarna's arithmetic checks, on a body whose types are already valid."""
    before = len(p.items)
    total = 0
    tax_total = 0
    every_line_taxed = True
    for index, line in enumerate(lines):
        amount: int = line["total_amount"]
        total += amount
        expected = line["quantity"] * line["unit_price"] - (line.get("total_discount_amount") or 0)
        if amount != expected:
            p.bad(f"order_lines[{index}].total_amount")
        line_tax = line.get("total_tax_amount")
        if line_tax is None:
            every_line_taxed = False
            continue
        tax_total += line_tax
        rate = line.get("tax_rate")
        if rate is not None and abs(line_tax - (amount - amount * 10_000 / (10_000 + rate))) > 1:
            p.bad(f"order_lines[{index}].total_tax_amount")
    if len(p.items) != before:
        return
    if obj.get("order_amount") != total:
        p.bad("order_amount")
    order_tax = obj.get("order_tax_amount")
    if order_tax is not None and every_line_taxed and abs(order_tax - tax_total) > len(lines):
        p.bad("order_tax_amount")


# -- state records --------------------------------------------------------------------------


@dataclass(slots=True)
class Session:
    session_id: str
    client_token: str
    data: dict[str, Any]
    created_at: float
    expires_at: float
    status: str = "incomplete"
    authorization_token: str | None = None

    @property
    def intent(self) -> str:
        intent = self.data.get("intent")
        return intent if isinstance(intent, str) else "buy"


@dataclass(slots=True)
class Authorization:
    token: str
    session_id: str
    intent: str
    purchase_country: str
    purchase_currency: str
    order_amount: int
    order_lines: list[dict[str, Any]]
    billing_address: dict[str, Any] | None
    shipping_address: dict[str, Any] | None
    outcome: str
    payment_method: str
    created_at: float
    expires_at: float
    order_placed: bool = False
    token_created: bool = False

    @property
    def fraud_status(self) -> str:
        return "PENDING" if self.outcome == "pending" else "ACCEPTED"

    @property
    def done(self) -> bool:
        if self.intent == "buy":
            return self.order_placed
        if self.intent == "tokenize":
            return self.token_created
        return self.order_placed and self.token_created


def _new_id() -> str:
    return str(uuid.uuid4())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_INVALID_AUTH: Final = "Invalid authorization token"
_CHECKS_PASSED: Final = Reply(0)  # what create_token_order(check_only=True) returns
_INVALID_TOKEN_ID: Final = "Invalid customer-token ID"  # noqa: S105 - not a secret


class FakeState:
    """All of the fake's state; endpoint methods are called by the app, controls by tests."""

    def __init__(
        self,
        clock: FakeClock,
        ledger: Ledger,
        *,
        strict_amounts: bool = True,
        accept_unknown_tokens: bool = False,
    ) -> None:
        self.clock = clock
        self.ledger = ledger
        self.strict_amounts = strict_amounts
        self.accept_unknown_tokens = accept_unknown_tokens
        self.sessions: dict[str, Session] = {}
        self.authorizations: dict[str, Authorization] = {}
        self.tokens: dict[str, TokenRecord] = {}
        self.idempotency = IdempotencyStore(keys=ledger.keys, ids=ledger.ids)
        # Where /_fake/redirect/{id} leads: kept for as many orders as the ledger keeps.
        self._confirmation_by_order: Recent[tuple[str, str | None]] = Recent(ledger.keep_orders)
        #: Told of every order placed, with what Order Management needs to know of it (the app
        #: wires Order Management's state in here; see :mod:`._orders`).
        self.order_listeners: list[Callable[[dict[str, Any]], None]] = []

    def _placed(self, details: dict[str, Any]) -> None:
        for listener in self.order_listeners:
            listener(details)

    def reset(self) -> None:
        self.sessions.clear()
        self.authorizations.clear()
        self.tokens.clear()
        self.idempotency.clear()
        self._confirmation_by_order.clear()

    # -- lookups --------------------------------------------------------------------------

    def _session(self, session_id: str, now: float) -> Session:
        session = self.sessions.get(session_id)
        if session is None:
            raise ApiError(404, "NOT_FOUND", "Invalid session id")
        if session.expires_at <= now:
            del self.sessions[session_id]
            raise ApiError(404, "NOT_FOUND", "Invalid session id")
        return session

    def _authorization(self, token: str, now: float) -> Authorization:
        authorization = self.authorizations.get(token)
        if authorization is None:
            raise ApiError(404, "NOT_FOUND", _INVALID_AUTH)
        if authorization.expires_at <= now or authorization.done:
            del self.authorizations[token]
            raise ApiError(404, "NOT_FOUND", _INVALID_AUTH)
        return authorization

    def confirmation_target(self, order_id: str) -> tuple[str, str | None] | None:
        """(confirmation URL template, session id) for a redirect, if the order has one."""
        return self._confirmation_by_order.get(order_id)

    # -- validation -----------------------------------------------------------------------

    def _validate_session_fields(self, body: dict[str, Any], p: _Problems, *, create: bool) -> None:
        _int(body, "order_amount", "order_amount", p, required=create, minimum=0)
        _int(body, "order_tax_amount", "order_tax_amount", p, minimum=0)
        _str(body, "purchase_country", "purchase_country", p, required=create, pattern=_COUNTRY)
        _str(body, "purchase_currency", "purchase_currency", p, required=create, pattern=_CURRENCY)
        _str(body, "intent", "intent", p, enum=_INTENTS)
        _str(body, "locale", "locale", p, pattern=_LOCALE)
        _str(body, "acquiring_channel", "acquiring_channel", p, enum=_CHANNELS)
        _str(body, "merchant_reference1", "merchant_reference1", p, max_len=255)
        _str(body, "merchant_reference2", "merchant_reference2", p, max_len=255)
        _str(body, "merchant_data", "merchant_data", p, max_len=6000)
        _str(body, "design", "design", p)
        _merchant_urls(body, p, confirmation_required=False)
        _address(body, "billing_address", p)
        _address(body, "shipping_address", p)
        _object(body, "customer", p)
        _object(body, "options", p)
        _attachment(body, p)
        ids = body.get("custom_payment_method_ids")
        if ids is not None and (
            not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)
        ):
            p.bad("custom_payment_method_ids")
        _order_lines(body, p, required=create, customer_token=False)

    def _check_amounts(self, body: dict[str, Any], p: _Problems) -> None:
        if self.strict_amounts and not p.items and isinstance(body.get("order_lines"), list):
            _amounts(body, body["order_lines"], p)

    # -- payments: sessions ---------------------------------------------------------------

    def create_session(self, body: dict[str, Any], base_url: str) -> Reply:
        p = _Problems()
        self._validate_session_fields(body, p, create=True)
        self._check_amounts(body, p)
        p.raise_if_any()
        now = self.clock.time()
        session_id = _new_id()
        data = {key: value for key, value in body.items() if key in _SESSION_FIELDS}
        header = _b64(b'{"alg":"HS256","typ":"JWT","kid":"fake-klarna"}')
        claims = _b64(
            orjson.dumps(
                {
                    "session_id": session_id,
                    "base_url": base_url,
                    "design": "klarna",
                    "environment": "fake",
                    "purchase_country": data["purchase_country"],
                }
            )
        )
        client_token = f"{header}.{claims}.{_b64(uuid.uuid4().bytes)}"
        self.sessions[session_id] = Session(
            session_id, client_token, data, now, now + SESSION_TTL, "incomplete"
        )
        return Reply(
            200,
            {
                "session_id": session_id,
                "client_token": client_token,
                "payment_method_categories": list(_PAYMENT_METHOD_CATEGORIES),
            },
        )

    def get_session(self, session_id: str) -> Reply:
        session = self._session(session_id, self.clock.time())
        payload = dict(session.data)
        customer = payload.get("customer")
        if isinstance(customer, dict):
            payload["customer"] = {
                k: v
                for k, v in customer.items()
                if k not in ("last_four_ssn", "national_identification_number")
            }
        payload.setdefault("intent", "buy")
        payload["client_token"] = session.client_token
        payload["expires_at"] = isoformat(session.expires_at)
        payload["status"] = session.status
        payload["payment_method_categories"] = list(_PAYMENT_METHOD_CATEGORIES)
        if session.authorization_token is not None:
            payload["authorization_token"] = session.authorization_token
        return Reply(200, payload)

    def update_session(self, session_id: str, body: dict[str, Any]) -> Reply:
        session = self._session(session_id, self.clock.time())
        p = _Problems()
        self._validate_session_fields(body, p, create=False)
        if not p.items:
            merged = dict(session.data)
            merged.update((k, v) for k, v in body.items() if k in _SESSION_FIELDS)
            self._check_amounts(merged, p)
        else:
            merged = session.data
        p.raise_if_any()
        if session.status == "complete":
            raise ApiError(404, "SESSION_COMPLETED", "Session is completed")
        session.data = merged
        return Reply(204)

    # -- the customer's approval (test side) -------------------------------------------------

    def authorize(
        self,
        session_id: str,
        *,
        outcome: str = "approved",
        billing_address: dict[str, Any] | None = None,
        order_lines: list[dict[str, Any]] | None = None,
        payment_method: str = "invoice",
    ) -> str:
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
        if payment_method not in _KP_METHOD_TYPES:
            raise ValueError(f"unknown payment method type {payment_method!r}")
        now = self.clock.time()
        session = self.sessions.get(session_id)
        if session is None or session.expires_at <= now:
            raise KeyError(f"no open session {session_id!r} (unknown or expired)")
        if session.status == "complete":
            raise ValueError(f"session {session_id!r} is already complete")
        if outcome == "declined":
            raise AuthorizationDeclined(session_id)
        data = session.data
        lines = order_lines if order_lines is not None else data["order_lines"]
        if order_lines is not None:
            amount = sum(int(line.get("total_amount", 0)) for line in order_lines)
        else:
            amount = data["order_amount"]
        if session.authorization_token is not None:
            self.authorizations.pop(session.authorization_token, None)
        token = _new_id()
        address = billing_address if billing_address is not None else data.get("billing_address")
        self.authorizations[token] = Authorization(
            token=token,
            session_id=session_id,
            intent=session.intent,
            purchase_country=data["purchase_country"],
            purchase_currency=data["purchase_currency"],
            order_amount=amount,
            order_lines=[dict(line) for line in lines],
            billing_address=dict(address) if address is not None else None,
            shipping_address=data.get("shipping_address"),
            outcome=outcome,
            payment_method=payment_method,
            created_at=now,
            expires_at=now + AUTHORIZATION_TTL,
        )
        session.authorization_token = token
        return token

    # -- payments: authorizations -----------------------------------------------------------

    def create_order(self, token: str, body: dict[str, Any], base_url: str) -> Reply:
        p = _Problems()
        _int(body, "order_amount", "order_amount", p, required=True, minimum=0)
        _int(body, "order_tax_amount", "order_tax_amount", p, minimum=0)
        _str(body, "purchase_country", "purchase_country", p, required=True, pattern=_COUNTRY)
        _str(body, "purchase_currency", "purchase_currency", p, required=True, pattern=_CURRENCY)
        _str(body, "locale", "locale", p, pattern=_LOCALE)
        _str(body, "merchant_reference1", "merchant_reference1", p, max_len=255)
        _str(body, "merchant_reference2", "merchant_reference2", p, max_len=255)
        _str(body, "merchant_data", "merchant_data", p, max_len=6000)
        _bool(body, "auto_capture", "auto_capture", p)
        _merchant_urls(body, p, confirmation_required=False)
        _address(body, "billing_address", p)
        _address(body, "shipping_address", p)
        _object(body, "customer", p)
        _order_lines(body, p, required=True, customer_token=False)
        self._check_amounts(body, p)
        p.raise_if_any()

        now = self.clock.time()
        authorization = self._authorization(token, now)
        if authorization.intent == "tokenize":
            raise ApiError(
                403, "INVALID_OPERATION", "Not allowed to create orders for intent tokenize."
            )
        if authorization.order_placed:
            raise ApiError(404, "NOT_FOUND", _INVALID_AUTH)
        mismatches = self._mismatches(authorization, body)
        if mismatches:
            raise ApiError(409, "BAD_VALUE", f"Not matching fields: [{', '.join(mismatches)}]")
        if authorization.outcome == "rejected":  # used up entirely
            del self.authorizations[token]
            raise ApiError(403, "REJECTED", "Rejected")
        authorization.order_placed = True
        if authorization.done:
            del self.authorizations[token]

        session = self.sessions.get(authorization.session_id)
        order_id = _new_id()
        payload: dict[str, Any] = {
            "order_id": order_id,
            "fraud_status": authorization.fraud_status,
            "authorized_payment_method": {"type": authorization.payment_method},
        }
        if session is not None:
            session.status = "complete"
            urls = session.data.get("merchant_urls")
            if isinstance(urls, dict) and isinstance(urls.get("confirmation"), str):
                self._confirmation_by_order[order_id] = (urls["confirmation"], session.session_id)
                payload["redirect_url"] = f"{base_url}/_fake/redirect/{order_id}"
        self.ledger.add_order(
            OrderRecord(
                order_id=order_id,
                kind="one-time",
                amount=body["order_amount"],
                tax_amount=body.get("order_tax_amount") or 0,
                currency=body["purchase_currency"].upper(),
                fraud_status=authorization.fraud_status,
                auto_capture=bool(body.get("auto_capture", False)),
                created_at=now,
                authorization_token=token,
                merchant_reference1=body.get("merchant_reference1"),
                merchant_reference2=body.get("merchant_reference2"),
                session_id=authorization.session_id,
                order_lines=body["order_lines"],
            )
        )
        data = session.data if session is not None else {}
        urls = body.get("merchant_urls") or data.get("merchant_urls") or {}
        self._placed(
            {
                "order_id": order_id,
                "amount": body["order_amount"],
                "currency": body["purchase_currency"].upper(),
                "country": body["purchase_country"].upper(),
                "locale": body.get("locale") or data.get("locale"),
                "order_lines": body["order_lines"],
                "fraud_status": authorization.fraud_status,
                "auto_capture": bool(body.get("auto_capture", False)),
                "billing_address": body.get("billing_address") or authorization.billing_address,
                "shipping_address": body.get("shipping_address"),
                "notification": urls.get("notification"),
                "merchant_reference1": body.get("merchant_reference1"),
                "merchant_reference2": body.get("merchant_reference2"),
                "merchant_data": body.get("merchant_data"),
                "payment_method": authorization.payment_method,
                "created_at": now,
            }
        )
        return Reply(200, payload)

    @staticmethod
    def _mismatches(authorization: Authorization, body: dict[str, Any]) -> list[str]:
        found: list[str] = []
        if body["order_amount"] != authorization.order_amount:
            found.append("order_amount")
        lines: list[dict[str, Any]] = body["order_lines"]
        expected = authorization.order_lines
        if len(lines) != len(expected):
            found.append(
                "Incorrect number of items in the cart. "
                f"Expected: {len(expected)}, Actual: {len(lines)}"
            )
        else:
            for index, (line, authorized) in enumerate(zip(lines, expected, strict=True)):
                for name in _COMPARED_LINE_FIELDS:
                    if line.get(name) != authorized.get(name):
                        found.append(f"order_lines[{index}].{name}")
        if body["purchase_currency"].upper() != authorization.purchase_currency.upper():
            found.append("purchase_currency")
        if body["purchase_country"].upper() != authorization.purchase_country.upper():
            found.append("purchase_country")
        for key, authorized_address in (
            ("billing_address", authorization.billing_address),
            ("shipping_address", authorization.shipping_address),
        ):
            sent = body.get(key)
            if sent is None or authorized_address is None:
                continue
            names = list(authorized_address)
            names.extend(name for name in sent if name not in authorized_address)
            found.extend(
                f"{key}.{name}" for name in names if sent.get(name) != authorized_address.get(name)
            )
        return found

    def create_customer_token(self, token: str, body: dict[str, Any], base_url: str) -> Reply:
        p = _Problems()
        _str(body, "description", "description", p, required=True, min_len=1, max_len=255)
        intended = body.get("intended_use")
        if not isinstance(intended, str) or intended.upper() != "SUBSCRIPTION":
            p.bad("intended_use")
        _str(body, "locale", "locale", p, required=True, pattern=_LOCALE)
        _str(body, "purchase_country", "purchase_country", p, required=True, pattern=_COUNTRY)
        _str(body, "purchase_currency", "purchase_currency", p, required=True, pattern=_CURRENCY)
        _address(body, "billing_address", p)
        _object(body, "customer", p)
        p.raise_if_any()

        now = self.clock.time()
        authorization = self._authorization(token, now)
        if authorization.intent == "buy":
            raise ApiError(
                403, "INVALID_OPERATION", "Not allowed to create customer tokens for intent buy."
            )
        if authorization.token_created:
            raise ApiError(404, "NOT_FOUND", _INVALID_AUTH)
        country = authorization.purchase_country.upper()
        address = body.get("billing_address") or {}
        if body["purchase_country"].upper() != country or (
            isinstance(address.get("country"), str) and address["country"].upper() != country
        ):
            raise ApiError(400, "BAD_VALUE", "Bad value: purchase_country")
        if body["purchase_currency"].upper() != authorization.purchase_currency.upper():
            raise ApiError(400, "BAD_VALUE", "Bad value: purchase_currency")
        if authorization.outcome == "rejected":  # used up entirely
            del self.authorizations[token]
            raise ApiError(403, "REJECTED", "Rejected")
        authorization.token_created = True
        if authorization.done:
            del self.authorizations[token]

        session = self.sessions.get(authorization.session_id)
        token_id = _new_id()
        method = authorization.payment_method
        record = TokenRecord(
            token_id=token_id,
            status="ACTIVE",
            payment_method_type="CARD" if method in _CARD_TYPES else method.upper(),
            purchase_currency=authorization.purchase_currency.upper(),
            purchase_country=country,
            created_at=now,
            authorization_token=token,
            session_id=authorization.session_id,
            billing_address=authorization.billing_address,
            description=body["description"],
        )
        self.tokens[token_id] = record
        self.ledger.add_token(record)
        payload: dict[str, Any] = {
            "token_id": token_id,
            "payment_method_reference": _new_id(),
        }
        if authorization.billing_address is not None:
            payload["billing_address"] = authorization.billing_address
        if session is not None:
            if authorization.intent == "tokenize":
                session.status = "complete"
            customer = session.data.get("customer")
            if isinstance(customer, dict):
                known = {k: customer[k] for k in ("date_of_birth", "gender") if k in customer}
                if known:
                    payload["customer"] = known
            urls = session.data.get("merchant_urls")
            if isinstance(urls, dict) and isinstance(urls.get("confirmation"), str):
                self._confirmation_by_order[token_id] = (urls["confirmation"], session.session_id)
                payload["redirect_url"] = f"{base_url}/_fake/redirect/{token_id}"
        return Reply(200, payload)

    def cancel_authorization(self, token: str) -> Reply:
        self._authorization(token, self.clock.time())
        del self.authorizations[token]
        return Reply(204)

    # -- customer tokens ------------------------------------------------------------------

    def add_customer_token(
        self,
        *,
        purchase_currency: str = "EUR",
        purchase_country: str = "DE",
        payment_method_type: str = "INVOICE",
        status: str = "ACTIVE",
    ) -> str:
        if _CURRENCY.fullmatch(purchase_currency) is None:
            raise ValueError(f"bad currency {purchase_currency!r}")
        if _COUNTRY.fullmatch(purchase_country) is None:
            raise ValueError(f"bad country {purchase_country!r}")
        if status not in TOKEN_STATUSES:
            raise ValueError(f"status must be one of {TOKEN_STATUSES}")
        token_id = _new_id()
        record = TokenRecord(
            token_id=token_id,
            status=status,
            payment_method_type=payment_method_type.upper(),
            purchase_currency=purchase_currency.upper(),
            purchase_country=purchase_country.upper(),
            created_at=self.clock.time(),
        )
        self.tokens[token_id] = record
        self.ledger.add_token(record)
        return token_id

    def _lookup_token(self, token_id: str) -> TokenRecord | None:
        record = self.tokens.get(token_id)
        if record is None and self.accept_unknown_tokens:
            # An ACTIVE invoice token that takes the currency of its first order.
            record = TokenRecord(
                token_id=token_id,
                status="ACTIVE",
                payment_method_type="INVOICE",
                purchase_currency="",
                purchase_country="",
                created_at=self.clock.time(),
            )
            self.tokens[token_id] = record
            self.ledger.add_token(record)
        return record

    def _token(self, token_id: str) -> TokenRecord:
        record = self.tokens.get(token_id)
        if record is None:
            raise KeyError(f"unknown customer token {token_id!r}")
        return record

    def set_token_status(self, token_id: str, status: str) -> None:
        if status not in TOKEN_STATUSES:
            raise ValueError(f"status must be one of {TOKEN_STATUSES}")
        self._token(token_id).status = status

    def set_payment_method_outcome(self, token_id: str, outcome: str) -> None:
        if outcome not in TOKEN_OUTCOMES:
            raise ValueError(f"outcome must be one of {TOKEN_OUTCOMES}, got {outcome!r}")
        self._token(token_id).outcome = outcome

    def get_token(self, token_id: str) -> Reply:
        record = self._lookup_token(token_id)
        if record is None:
            raise ApiError(404, "NOT_FOUND", _INVALID_TOKEN_ID)
        payload: dict[str, Any] = {
            "status": record.status,
            "payment_method_type": record.payment_method_type,
        }
        if record.payment_method_type == "CARD":
            payload["card"] = {
                "brand": "VISA",
                "expiry_date": "12/2030",
                "masked_number": "************1111",
            }
        elif record.payment_method_type == "DIRECT_DEBIT":
            payload["direct_debit"] = {"masked_number": "**********1234"}
        return Reply(200, payload)

    def cancel_token(self, token_id: str, body: dict[str, Any]) -> Reply:
        p = _Problems()
        _str(body, "status", "status", p, required=True, enum=frozenset({"CANCELLED"}))
        p.raise_if_any()
        record = self._lookup_token(token_id)
        if record is None:
            raise ApiError(404, "NOT_FOUND", _INVALID_TOKEN_ID)
        record.status = "CANCELLED"
        return Reply(202)

    def create_token_order(
        self,
        token_id: str,
        body: dict[str, Any],
        idempotency_key: str | None,
        base_url: str,
        *,
        check_only: bool = False,
    ) -> Reply:
        p = _Problems()
        _int(body, "order_amount", "order_amount", p, required=True, minimum=1)
        _int(body, "order_tax_amount", "order_tax_amount", p, required=True, minimum=0)
        _str(body, "purchase_currency", "purchase_currency", p, required=True, pattern=_CURRENCY)
        _str(body, "merchant_reference1", "merchant_reference1", p, max_len=255)
        _str(body, "merchant_reference2", "merchant_reference2", p, max_len=255)
        _str(body, "merchant_data", "merchant_data", p, max_len=6000)
        _bool(body, "auto_capture", "auto_capture", p)
        _merchant_urls(body, p, confirmation_required=True)
        _address(body, "shipping_address", p)
        _attachment(body, p)
        lines = _order_lines(body, p, required=True, customer_token=True)
        if self.strict_amounts and lines is not None and not p.items:
            _amounts(body, lines, p)
        p.raise_if_any()

        record = self._lookup_token(token_id)
        if record is None:
            raise ApiError(404, "TOKEN_NOT_FOUND", "Customer token not found")
        if record.status == "CANCELLED":
            raise ApiError(403, "TOKEN_CANCELED", "Customer token is canceled")
        if record.status == "SUSPENDED":
            raise ApiError(403, "TOKEN_SUSPENDED", "Customer token is suspended")
        if check_only:  # check_token_order: the checks a server may make before a replay
            return _CHECKS_PASSED
        currency = body["purchase_currency"].upper()
        if not record.purchase_currency:  # an auto-created token (accept_unknown_tokens)
            record.purchase_currency = currency
        if currency != record.purchase_currency or record.outcome == "unavailable":
            raise ApiError(
                403,
                "UNAVAILABLE_PAYMENT_METHOD",
                f"Payment method is not available for purchase currency {currency}",
            )
        if record.outcome == "failed":
            raise ApiError(403, "PAYMENT_METHOD_FAILED", "Purchase for payment method failed")

        now = self.clock.time()
        order_id = self.ledger.new_order_id()  # rebuildable from a number (see _idempotency)
        fraud_status = "PENDING" if record.outcome == "pending" else "ACCEPTED"
        payload: dict[str, Any] = {
            "order_id": order_id,
            "fraud_status": fraud_status,
            "redirect_url": f"{base_url}/_fake/redirect/{order_id}",
        }
        method = record.payment_method_type.lower()
        if method in _CT_METHOD_TYPES:
            payload["authorized_payment_method"] = {"type": method}
        urls = body.get("merchant_urls")
        if isinstance(urls, dict):
            self._confirmation_by_order[order_id] = (urls["confirmation"], None)
        self.ledger.add_order(
            OrderRecord(
                order_id=order_id,
                kind="recurring",
                amount=body["order_amount"],
                tax_amount=body["order_tax_amount"],
                currency=currency,
                fraud_status=fraud_status,
                auto_capture=bool(body.get("auto_capture", False)),
                created_at=now,
                customer_token=token_id,
                idempotency_key=idempotency_key,
                merchant_reference1=body.get("merchant_reference1"),
                merchant_reference2=body.get("merchant_reference2"),
                order_lines=body["order_lines"],
            )
        )
        self._placed(
            {
                "order_id": order_id,
                "amount": body["order_amount"],
                "currency": currency,
                "country": record.purchase_country or None,
                "locale": body.get("locale"),
                "order_lines": body["order_lines"],
                "fraud_status": fraud_status,
                "auto_capture": bool(body.get("auto_capture", False)),
                "billing_address": record.billing_address,
                "shipping_address": body.get("shipping_address"),
                # The Customer Token API's merchant_urls has no notification URL.
                "notification": None,
                "merchant_reference1": body.get("merchant_reference1"),
                "merchant_reference2": body.get("merchant_reference2"),
                "merchant_data": body.get("merchant_data"),
                "payment_method": method,
                "created_at": now,
            }
        )
        return Reply(200, payload)

    def check_token_order(self, token_id: str, body: dict[str, Any]) -> None:
        """The checks of :meth:`create_token_order` before any charge: the body, then the token's
        existence and status (cancelled or suspended: 403). Raises :class:`ApiError`; changes
        nothing (except that ``accept_unknown_tokens`` creates an unknown token, as a charge
        would)."""
        self.create_token_order(token_id, body, None, "", check_only=True)
