"""The fake Klarna's Order Management: every order placed, with real state and Klarna's rules.

Orders placed through the fake's Payments API (one-time) and Customer Token API (recurring)
appear here with their amounts, lines, addresses and fraud status (:meth:`OrderBook.add_placed`);
tests may also add orders directly (``FakeKlarna.add_order``). Each endpoint method returns a
:class:`~._state.Reply` or raises :class:`~._state.ApiError`, like :mod:`._state`; the app
routes, authenticates, faults and replays idempotency keys (every OM write is keyed: the first
answer under a key, status, body and ``Capture-Id``/``Refund-Id``/``Location`` headers, is
replayed to every repeat for 24 hours, whatever its body).

The rules, as Klarna documents them (OM spec, docs.klarna.com order management pages; see the
shared ``ecosystem-notes.md``), and where the docs are silent, the modelling choice:

* **Status** follows the amounts: ``AUTHORIZED`` (nothing captured), ``PART_CAPTURED``,
  ``CAPTURED`` (captured == order amount), ``CANCELLED`` (``cancel``), ``CLOSED``
  (``release_remaining_authorization``), ``EXPIRED`` (the authorization lapsed with nothing
  captured; a part-captured order whose authorization lapses is ``CLOSED``). Refunds never
  change it; they show in ``refunded_amount``. ``remaining_authorized_amount`` is order amount
  minus captured while the order is open, else 0.
* **Expiry**: 28 days of fake time after creation. ``extend_authorization_time`` moves it to
  28 days from the start of today's (UTC) date, never earlier than it was and at most 180 days
  after creation (a repeat on the same day gives the same date); 403 ``NOT_ALLOWED`` once
  expired, for a closed, cancelled or captured order, or when the 180 days are reached.
* **Capture**: 403 ``CAPTURE_NOT_ALLOWED`` for more than the remaining authorized amount, an
  order that is not open (cancelled, closed, expired, fully captured), or whose fraud status is
  not ``ACCEPTED`` (pending review or rejected). 0 is 400 ``BAD_VALUE``. ``auto_capture`` orders
  are captured in full when placed.
* **Refund**: 403 ``REFUND_NOT_ALLOWED`` for more than captured minus refunded (so also without
  captures). A refund is charged to the captures oldest first (their ``refunded_amount``).
* **Cancel**: only an ``AUTHORIZED`` order (no captures): else 403 ``CANCEL_NOT_ALLOWED``.
* **Release remaining authorization**: 403 ``NOT_ALLOWED`` without captures, when fully
  captured, or not open; then ``CLOSED``.
* **Update authorization**: 403 ``NOT_ALLOWED`` below the captured amount or when not open;
  replaces the lines when they are sent.
* **Merchant references**: 403 ``NOT_ALLOWED`` on a cancelled order. **Customer details**:
  403 ``NOT_ALLOWED`` on a cancelled or closed order; a shipping address without
  ``street_address`` or ``country`` is 422 ``INVALID_ADDRESS``.
* **Due dates**: every capture offers 14 days (free) and 30 days (295 minor units); extending
  by another number of days, or twice, is 403 ``NOT_ALLOWED``.
* **Unknown ids**: 404 ``NO_SUCH_ORDER`` (``NOT_FOUND`` on the refund endpoints, as the spec
  writes them), 404 ``NO_SUCH_CAPTURE`` for a capture, 404 ``NOT_FOUND`` for a refund.
* **Bodies** are checked as the OM spec says (types, lengths, ranges, at most 1000 lines, the
  line arithmetic): 400 ``BAD_VALUE`` ``"Bad value: <path>"``.
* **Pending orders**: an order placed with ``fraud_status`` ``PENDING`` stays so until a test
  decides (``FakeKlarna.decide_fraud``): ``accepted`` makes it ``ACCEPTED``; ``rejected`` and
  ``stopped`` make it ``REJECTED`` and cancel it. Then the fake POSTs Klarna's notification
  ``{"order_id", "event_type"}`` to the order's ``merchant_urls.notification`` (the order's, else
  its session's; ``{order.id}`` in it is replaced). Like Klarna's, it is not signed.
* **Bounded**: the most recent ``keep`` orders are kept (the ledger's ``keep_orders``); an older
  one answers 404 like an unknown one.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any, Final

import orjson

from klarna_async.testing._clock import FakeClock, isoformat
from klarna_async.testing._keys import Recent
from klarna_async.testing._ledger import Ledger
from klarna_async.testing._state import (
    _LINE_TYPES,
    ApiError,
    Reply,
    _int,
    _object,
    _Problems,
    _str,
)

__all__ = ["EXPIRY_DAYS", "FRAUD_DECISIONS", "MAX_AUTHORIZATION_DAYS", "OmOrder", "OrderBook"]

DAY: Final = 86_400.0
#: Days an authorization lasts, and how far ``extend_authorization_time`` moves it.
EXPIRY_DAYS: Final = 28
#: No authorization lasts beyond this many days after the order was created.
MAX_AUTHORIZATION_DAYS: Final = 180
#: What ``decide_fraud`` accepts, and what each does: (fraud_status, cancels, event_type).
FRAUD_DECISIONS: Final = {
    "accepted": ("ACCEPTED", False, "FRAUD_RISK_ACCEPTED"),
    "rejected": ("REJECTED", True, "FRAUD_RISK_REJECTED"),
    "stopped": ("REJECTED", True, "FRAUD_RISK_STOPPED"),
}
DUE_DATE_OPTIONS: Final = ((14, 0), (30, 295))

# Order Management's line types are the Payments API's plus a return fee.
_OM_LINE_TYPES: Final = _LINE_TYPES | {"return_fee"}
_INTERVALS: Final = frozenset({"DAY", "WEEK", "MONTH", "YEAR"})
_SHIPPING_METHODS: Final = frozenset(
    {
        "PickUpStore",
        "Home",
        "BoxReg",
        "BoxUnreg",
        "PickUpPoint",
        "Own",
        "Postal",
        "DHLPackstation",
        "Digital",
        "Undefined",
        "PickUpWarehouse",
        "ClickCollect",
        "PalletDelivery",
    }
)
_OM_ADDRESS_LIMITS: Final = {
    "attention": 255,
    "city": 200,
    "email": 100,
    "family_name": 100,
    "given_name": 100,
    "organization_name": 255,
    "phone": 100,
    "postal_code": 10,
    "region": 200,
    "street_address": 100,
    "street_address2": 100,
    "title": 20,
    "country": 1_000,
}
_AMOUNT_MAX: Final = 200_000_000
_OPEN: Final = frozenset({"AUTHORIZED", "PART_CAPTURED"})


class OmCapture:
    __slots__ = (
        "amount",
        "capture_id",
        "captured_at",
        "description",
        "due_extended",
        "number",
        "order_lines",
        "reference",
        "refunded",
        "shipping_info",
    )

    def __init__(
        self, capture_id: str, number: int, amount: int, captured_at: float, body: dict[str, Any]
    ) -> None:
        self.capture_id = capture_id
        self.number = number
        self.amount = amount
        self.captured_at = captured_at
        self.description: str | None = body.get("description")
        self.reference: str | None = body.get("reference")
        self.order_lines: list[Any] = body.get("order_lines") or []
        self.shipping_info: list[Any] = list(body.get("shipping_info") or [])
        self.refunded = 0
        self.due_extended = False


class OmRefund:
    __slots__ = ("amount", "description", "order_lines", "reference", "refund_id", "refunded_at")

    def __init__(self, refund_id: str, amount: int, refunded_at: float, body: dict[str, Any]):
        self.refund_id = refund_id
        self.amount = amount
        self.refunded_at = refunded_at
        self.description: str | None = body.get("description")
        self.reference: str | None = body.get("reference")
        self.order_lines: list[Any] = body.get("order_lines") or []


class OmOrder:
    """One order as Order Management holds it (see the module docstring for its rules)."""

    __slots__ = (
        "_lines",
        "acknowledged",
        "billing_address",
        "captured",
        "captures",
        "closed_as",
        "country",
        "created_at",
        "currency",
        "expires_at",
        "fraud_status",
        "klarna_reference",
        "locale",
        "merchant_data",
        "merchant_reference1",
        "merchant_reference2",
        "notification",
        "order_amount",
        "order_id",
        "original_amount",
        "payment_method",
        "refunded",
        "refunds",
        "shipping_address",
        "shipping_info",
    )

    def __init__(self, details: dict[str, Any]) -> None:
        self.order_id: str = details["order_id"]
        self.order_amount: int = details["amount"]
        self.original_amount: int = details["amount"]
        self.currency: str = details["currency"]
        self.country: str | None = details.get("country")
        self.locale: str | None = details.get("locale")
        self.fraud_status: str = details.get("fraud_status") or "ACCEPTED"
        self.created_at: float = details["created_at"]
        self.expires_at = self.created_at + EXPIRY_DAYS * DAY
        self.billing_address: dict[str, Any] | None = details.get("billing_address")
        self.shipping_address: dict[str, Any] | None = details.get("shipping_address")
        self.notification: str | None = details.get("notification")
        self.merchant_reference1: str | None = details.get("merchant_reference1")
        self.merchant_reference2: str | None = details.get("merchant_reference2")
        self.merchant_data: str | None = details.get("merchant_data")
        self.payment_method: str = details.get("payment_method") or "invoice"
        digest = hashlib.blake2b(self.order_id.encode(), digest_size=8).hexdigest().upper()
        self.klarna_reference = digest[:7]
        self.order_lines = details.get("order_lines") or []
        self.captured = 0
        self.refunded = 0
        self.captures: list[OmCapture] = []
        self.refunds: list[OmRefund] = []
        self.shipping_info: list[Any] = []
        self.closed_as: str | None = None
        self.acknowledged = False

    @property
    def order_lines(self) -> list[Any]:
        lines: list[Any] = orjson.loads(self._lines)
        return lines

    @order_lines.setter
    def order_lines(self, lines: list[Any]) -> None:
        self._lines = bytes(memoryview(orjson.dumps(lines)))

    def status(self, now: float) -> str:
        if self.closed_as is not None:
            return self.closed_as
        if self.captured and self.captured >= self.order_amount:
            return "CAPTURED"
        if now >= self.expires_at:
            return "EXPIRED" if not self.captured else "CLOSED"
        return "PART_CAPTURED" if self.captured else "AUTHORIZED"

    def remaining(self, now: float) -> int:
        return self.order_amount - self.captured if self.status(now) in _OPEN else 0

    def capture_by_id(self, capture_id: str) -> OmCapture:
        for capture in self.captures:
            if capture.capture_id == capture_id:
                return capture
        raise ApiError(404, "NO_SUCH_CAPTURE", "Capture not found.")

    # -- JSON ---------------------------------------------------------------------------

    def capture_json(self, capture: OmCapture) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "capture_id": capture.capture_id,
            "klarna_reference": f"{self.klarna_reference}-{capture.number}",
            "captured_amount": capture.amount,
            "captured_at": isoformat(capture.captured_at),
            "refunded_amount": capture.refunded,
            "order_lines": capture.order_lines,
            "shipping_info": capture.shipping_info,
        }
        for name in ("description", "reference"):
            value = getattr(capture, name)
            if value is not None:
                payload[name] = value
        if self.billing_address is not None:
            payload["billing_address"] = self.billing_address
        if self.shipping_address is not None:
            payload["shipping_address"] = self.shipping_address
        return payload

    @staticmethod
    def refund_json(refund: OmRefund) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "refund_id": refund.refund_id,
            "refunded_amount": refund.amount,
            "refunded_at": isoformat(refund.refunded_at),
            "order_lines": refund.order_lines,
            "credit_invoice": True,
        }
        for name in ("description", "reference"):
            value = getattr(refund, name)
            if value is not None:
                payload[name] = value
        return payload

    def to_json(self, now: float) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "order_id": self.order_id,
            "status": self.status(now),
            "fraud_status": self.fraud_status,
            "order_amount": self.order_amount,
            "original_order_amount": self.original_amount,
            "captured_amount": self.captured,
            "refunded_amount": self.refunded,
            "remaining_authorized_amount": self.remaining(now),
            "purchase_currency": self.currency,
            "created_at": isoformat(self.created_at),
            "expires_at": isoformat(self.expires_at),
            "klarna_reference": self.klarna_reference,
            "order_lines": self.order_lines,
            "captures": [self.capture_json(capture) for capture in self.captures],
            "refunds": [self.refund_json(refund) for refund in self.refunds],
            "shipping_info": self.shipping_info,
            "initial_payment_method": {
                "type": self.payment_method.upper(),
                "description": self.payment_method.replace("_", " ").capitalize(),
            },
        }
        for name, value in (
            ("purchase_country", self.country),
            ("locale", self.locale),
            ("merchant_reference1", self.merchant_reference1),
            ("merchant_reference2", self.merchant_reference2),
            ("merchant_data", self.merchant_data),
            ("billing_address", self.billing_address),
            ("shipping_address", self.shipping_address),
        ):
            if value is not None:
                payload[name] = value
        return payload


_CHECKED: Final = Reply(0)  # what a write returns with check_only=True


# -- validation ------------------------------------------------------------------------------


def _om_lines(body: dict[str, Any], p: _Problems) -> None:
    lines = body.get("order_lines")
    if lines is None:
        if "order_lines" in body:
            p.bad("order_lines")
        return
    if not isinstance(lines, list) or len(lines) > 1000:
        p.bad("order_lines")
        return
    for index, line in enumerate(lines):
        at = f"order_lines[{index}]"
        if not isinstance(line, dict):
            p.bad(at)
            continue
        before = len(p.items)
        _str(line, "name", f"{at}.name", p, required=True, max_len=255)
        _int(line, "quantity", f"{at}.quantity", p, required=True, minimum=0)
        _int(line, "unit_price", f"{at}.unit_price", p, required=True, maximum=_AMOUNT_MAX)
        _int(line, "total_amount", f"{at}.total_amount", p, required=True, maximum=_AMOUNT_MAX)
        _int(
            line,
            "total_discount_amount",
            f"{at}.total_discount_amount",
            p,
            minimum=0,
            maximum=_AMOUNT_MAX,
        )
        _int(line, "total_tax_amount", f"{at}.total_tax_amount", p, maximum=_AMOUNT_MAX)
        _int(line, "tax_rate", f"{at}.tax_rate", p, minimum=0, maximum=2**31 - 1)
        _str(line, "type", f"{at}.type", p, enum=_OM_LINE_TYPES)
        _str(line, "reference", f"{at}.reference", p, max_len=255)
        _str(line, "quantity_unit", f"{at}.quantity_unit", p, max_len=10)
        _str(line, "merchant_data", f"{at}.merchant_data", p, max_len=1024)
        _str(line, "image_url", f"{at}.image_url", p, max_len=1024)
        _str(line, "product_url", f"{at}.product_url", p, max_len=1024)
        subscription = _object(line, "subscription", p)
        if subscription is not None:
            where = f"{at}.subscription"
            _str(subscription, "name", f"{where}.name", p, required=True, max_len=255)
            _str(subscription, "interval", f"{where}.interval", p, required=True, enum=_INTERVALS)
            _int(subscription, "interval_count", f"{where}.interval_count", p, required=True)
        if "product_identifiers" in line and not isinstance(line["product_identifiers"], dict):
            p.bad(f"{at}.product_identifiers")
        if len(p.items) == before:
            expected = line["quantity"] * line["unit_price"] - (
                line.get("total_discount_amount") or 0
            )
            if line["total_amount"] != expected:
                p.bad(f"{at}.total_amount")


def _shipping_info(body: dict[str, Any], p: _Problems, *, required: bool) -> None:
    items = body.get("shipping_info")
    if items is None:
        if required or "shipping_info" in body:
            p.bad("shipping_info")
        return
    if not isinstance(items, list) or len(items) > 500 or (required and not items):
        p.bad("shipping_info")
        return
    for index, item in enumerate(items):
        at = f"shipping_info[{index}]"
        if not isinstance(item, dict):
            p.bad(at)
            continue
        for name, limit in (
            ("shipping_company", 100),
            ("tracking_number", 100),
            ("tracking_uri", 1024),
            ("return_shipping_company", 100),
            ("return_tracking_number", 100),
            ("return_tracking_uri", 1024),
        ):
            _str(item, name, f"{at}.{name}", p, max_len=limit)
        _str(item, "shipping_method", f"{at}.shipping_method", p, enum=_SHIPPING_METHODS)


def _om_address(body: dict[str, Any], key: str, p: _Problems) -> None:
    address = _object(body, key, p)
    if address is None:
        return
    for name, limit in _OM_ADDRESS_LIMITS.items():
        _str(address, name, f"{key}.{name}", p, max_len=limit)


def _no_body(body: Any) -> None:
    # Operations without a request body ignore one, as a server does.
    del body


class OrderBook:
    """Order Management's state: every order, bounded to the most recent ``keep``."""

    def __init__(self, clock: FakeClock, ledger: Ledger, keep: int | None = 50_000) -> None:
        self.clock = clock
        self.ledger = ledger
        self.orders: Recent[OmOrder] = Recent(keep)

    def reset(self) -> None:
        self.orders.clear()

    # -- orders coming in -----------------------------------------------------------------

    def add_placed(self, details: dict[str, Any]) -> None:
        """An order placed at checkout (or by a test): now in Order Management."""
        order = OmOrder(details)
        self.orders[order.order_id] = order
        if details.get("auto_capture"):
            self._capture(order, order.order_amount, {}, None, self.clock.time())

    def order(self, order_id: str, *, code: str = "NO_SUCH_ORDER") -> OmOrder:
        found = self.orders.get(order_id)
        if found is None:
            raise ApiError(404, code, "Order not found.")
        return found

    def decide_fraud(self, order_id: str, decision: str) -> tuple[str | None, bytes]:
        """Klarna's review of a pending order ends: (notification URL or None, its body)."""
        if decision not in FRAUD_DECISIONS:
            raise ValueError(f"decision must be one of {sorted(FRAUD_DECISIONS)}")
        order = self.orders.get(order_id)
        if order is None:
            raise KeyError(f"unknown order {order_id!r}")
        fraud_status, cancels, event = FRAUD_DECISIONS[decision]
        if decision == "stopped":
            if order.captured:
                raise ValueError("a captured order cannot be stopped")
        elif order.fraud_status != "PENDING":
            raise ValueError(f"order {order_id} is not pending (it is {order.fraud_status})")
        order.fraud_status = fraud_status
        if cancels:
            order.closed_as = "CANCELLED"
        url = order.notification
        if url is not None:
            url = url.replace("{order.id}", order_id)
        return url, orjson.dumps({"order_id": order_id, "event_type": event})

    # -- the endpoints --------------------------------------------------------------------

    def get(self, order_id: str) -> Reply:
        return Reply(200, self.order(order_id).to_json(self.clock.time()))

    def acknowledge(self, order_id: str, body: Any, *, check_only: bool = False) -> Reply:
        _no_body(body)
        order = self.order(order_id)
        if check_only:
            return _CHECKED
        order.acknowledged = True
        return Reply(204)

    def capture(
        self,
        order_id: str,
        body: dict[str, Any],
        key: str | None,
        base_url: str,
        *,
        check_only: bool = False,
    ) -> Reply:
        p = _Problems()
        _int(body, "captured_amount", "captured_amount", p, required=True, minimum=1)
        if isinstance(body.get("captured_amount"), int) and body["captured_amount"] > _AMOUNT_MAX:
            p.bad("captured_amount")
        _str(body, "description", "description", p, max_len=255)
        _str(body, "reference", "reference", p, max_len=255)
        _int(body, "shipping_delay", "shipping_delay", p, minimum=0)
        _om_lines(body, p)
        _shipping_info(body, p, required=False)
        p.raise_if_any()
        now = self.clock.time()
        order = self.order(order_id)
        amount: int = body["captured_amount"]
        status = order.status(now)
        if order.fraud_status != "ACCEPTED":
            raise ApiError(
                403,
                "CAPTURE_NOT_ALLOWED",
                f"Capture not allowed: the order's fraud status is {order.fraud_status}.",
            )
        if status not in _OPEN:
            raise ApiError(403, "CAPTURE_NOT_ALLOWED", f"Capture not allowed: order is {status}.")
        if amount > order.remaining(now):
            raise ApiError(
                403,
                "CAPTURE_NOT_ALLOWED",
                "Captured amount is higher than the remaining authorized amount.",
            )
        if check_only:
            return _CHECKED
        capture = self._capture(order, amount, body, key, now)
        location = f"{base_url}/ordermanagement/v1/orders/{order_id}/captures/{capture.capture_id}"
        return Reply(201, None, {"Capture-Id": capture.capture_id, "Location": location})

    def _capture(
        self, order: OmOrder, amount: int, body: dict[str, Any], key: str | None, now: float
    ) -> OmCapture:
        capture = OmCapture(str(uuid.uuid4()), len(order.captures) + 1, amount, now, body)
        order.captures.append(capture)
        order.captured += amount
        self.ledger.add_capture(order.currency, amount, key)
        return capture

    def list_captures(self, order_id: str) -> Reply:
        order = self.order(order_id)
        # A JSON array: the app sends the payload as it is.
        return Reply(200, [order.capture_json(c) for c in order.captures])

    def get_capture(self, order_id: str, capture_id: str) -> Reply:
        order = self.order(order_id)
        return Reply(200, order.capture_json(order.capture_by_id(capture_id)))

    def extend_due_date_options(self, order_id: str, capture_id: str) -> Reply:
        order = self.order(order_id)
        order.capture_by_id(capture_id)
        options = [{"number_of_days": days, "amount": fee} for days, fee in DUE_DATE_OPTIONS]
        return Reply(200, {"currency": order.currency, "options": options})

    def extend_due_date(
        self, order_id: str, capture_id: str, body: dict[str, Any], *, check_only: bool = False
    ) -> Reply:
        p = _Problems()
        _int(body, "number_of_days", "number_of_days", p, required=True)
        p.raise_if_any()
        order = self.order(order_id)
        capture = order.capture_by_id(capture_id)
        if capture.due_extended or body["number_of_days"] not in dict(DUE_DATE_OPTIONS):
            raise ApiError(403, "NOT_ALLOWED", "Extension of due date is not possible.")
        if check_only:
            return _CHECKED
        capture.due_extended = True
        return Reply(204)

    def add_capture_shipping_info(
        self, order_id: str, capture_id: str, body: dict[str, Any], *, check_only: bool = False
    ) -> Reply:
        p = _Problems()
        _shipping_info(body, p, required=True)
        p.raise_if_any()
        capture = self.order(order_id).capture_by_id(capture_id)
        if check_only:
            return _CHECKED
        capture.shipping_info.extend(body["shipping_info"])
        return Reply(204)

    def trigger_send_out(
        self, order_id: str, capture_id: str, body: Any, *, check_only: bool = False
    ) -> Reply:
        _no_body(body)
        self.order(order_id).capture_by_id(capture_id)
        return _CHECKED if check_only else Reply(204)

    def refund(
        self,
        order_id: str,
        body: dict[str, Any],
        key: str | None,
        base_url: str,
        *,
        check_only: bool = False,
    ) -> Reply:
        p = _Problems()
        _int(
            body,
            "refunded_amount",
            "refunded_amount",
            p,
            required=True,
            minimum=0,
            maximum=_AMOUNT_MAX,
        )
        _str(body, "description", "description", p, max_len=255)
        _str(body, "reference", "reference", p, max_len=255)
        _om_lines(body, p)
        p.raise_if_any()
        order = self.order(order_id, code="NOT_FOUND")
        amount: int = body["refunded_amount"]
        if amount > order.captured - order.refunded or not order.captures:
            raise ApiError(
                403,
                "REFUND_NOT_ALLOWED",
                "Refunded amount is higher than the captured amount not yet refunded.",
            )
        if check_only:
            return _CHECKED
        now = self.clock.time()
        refund = OmRefund(str(uuid.uuid4()), amount, now, body)
        order.refunds.append(refund)
        order.refunded += amount
        left = amount
        for capture in order.captures:  # charged to the captures, oldest first
            share = min(left, capture.amount - capture.refunded)
            capture.refunded += share
            left -= share
        self.ledger.add_refund(order.currency, amount, key)
        location = f"{base_url}/ordermanagement/v1/orders/{order_id}/refunds/{refund.refund_id}"
        return Reply(201, None, {"Refund-Id": refund.refund_id, "Location": location})

    def get_refund(self, order_id: str, refund_id: str) -> Reply:
        order = self.order(order_id, code="NOT_FOUND")
        for refund in order.refunds:
            if refund.refund_id == refund_id:
                return Reply(200, order.refund_json(refund))
        raise ApiError(404, "NOT_FOUND", "Refund not found.")

    def cancel(self, order_id: str, body: Any, *, check_only: bool = False) -> Reply:
        _no_body(body)
        order = self.order(order_id)
        status = order.status(self.clock.time())
        if order.captures or status != "AUTHORIZED":
            raise ApiError(403, "CANCEL_NOT_ALLOWED", f"Cancel not allowed: the order is {status}.")
        if check_only:
            return _CHECKED
        order.closed_as = "CANCELLED"
        return Reply(204)

    def release_remaining_authorization(
        self, order_id: str, body: Any, *, check_only: bool = False
    ) -> Reply:
        _no_body(body)
        order = self.order(order_id)
        status = order.status(self.clock.time())
        if not order.captures or status != "PART_CAPTURED":
            raise ApiError(
                403,
                "NOT_ALLOWED",
                f"Can not release when the order is {status} or has no captures.",
            )
        if check_only:
            return _CHECKED
        order.closed_as = "CLOSED"
        return Reply(204)

    def extend_authorization_time(
        self, order_id: str, body: Any, *, check_only: bool = False
    ) -> Reply:
        _no_body(body)
        order = self.order(order_id)
        now = self.clock.time()
        status = order.status(now)
        limit = order.created_at + MAX_AUTHORIZATION_DAYS * DAY
        if status not in _OPEN or order.expires_at >= limit:
            raise ApiError(
                403,
                "NOT_ALLOWED",
                f"Extension of authorization time not allowed: the order is {status}"
                + (", and at its 180 days" if order.expires_at >= limit else "."),
            )
        today = now // DAY * DAY
        if check_only:
            return _CHECKED
        order.expires_at = min(max(order.expires_at, today + EXPIRY_DAYS * DAY), limit)
        return Reply(204)

    def update_authorization(
        self, order_id: str, body: dict[str, Any], *, check_only: bool = False
    ) -> Reply:
        p = _Problems()
        _int(body, "order_amount", "order_amount", p, required=True, minimum=0)
        if isinstance(body.get("order_amount"), int) and body["order_amount"] > _AMOUNT_MAX:
            p.bad("order_amount")
        _str(body, "description", "description", p, max_len=255)
        _om_lines(body, p)
        p.raise_if_any()
        order = self.order(order_id)
        status = order.status(self.clock.time())
        amount: int = body["order_amount"]
        if status not in _OPEN or amount < order.captured:
            raise ApiError(
                403,
                "NOT_ALLOWED",
                "Update authorization not allowed: "
                + (
                    f"the order is {status}."
                    if status not in _OPEN
                    else "below the captured amount."
                ),
            )
        if check_only:
            return _CHECKED
        order.order_amount = amount
        if body.get("order_lines") is not None:
            order.order_lines = body["order_lines"]
        return Reply(204)

    def update_merchant_references(
        self, order_id: str, body: dict[str, Any], *, check_only: bool = False
    ) -> Reply:
        p = _Problems()
        _str(body, "merchant_reference1", "merchant_reference1", p, max_len=255)
        _str(body, "merchant_reference2", "merchant_reference2", p, max_len=255)
        p.raise_if_any()
        order = self.order(order_id)
        if order.status(self.clock.time()) == "CANCELLED":
            raise ApiError(403, "NOT_ALLOWED", "Can not update a cancelled order.")
        if check_only:
            return _CHECKED
        for name in ("merchant_reference1", "merchant_reference2"):
            if body.get(name) is not None:
                setattr(order, name, body[name])
        return Reply(204)

    def update_customer_details(
        self, order_id: str, body: dict[str, Any], *, check_only: bool = False
    ) -> Reply:
        p = _Problems()
        _om_address(body, "shipping_address", p)
        p.raise_if_any()
        order = self.order(order_id)
        status = order.status(self.clock.time())
        if status in ("CANCELLED", "CLOSED"):
            raise ApiError(
                403, "NOT_ALLOWED", f"Update customer details not allowed: the order is {status}."
            )
        address = body.get("shipping_address")
        if address is not None and not (address.get("street_address") and address.get("country")):
            raise ApiError(422, "INVALID_ADDRESS", "The address is not valid.")
        if check_only:
            return _CHECKED
        if address is not None:
            order.shipping_address = address
        return Reply(204)

    def add_shipping_info(
        self, order_id: str, body: dict[str, Any], *, check_only: bool = False
    ) -> Reply:
        p = _Problems()
        _shipping_info(body, p, required=True)
        p.raise_if_any()
        order = self.order(order_id)
        if check_only:
            return _CHECKED
        order.shipping_info.extend(body["shipping_info"])
        return Reply(204)
