"""Klarna's notification about a pending order, parsed; and what the order says when read back.

When Klarna places an order with ``fraud_status`` ``PENDING``, it reviews it (usually within
hours, at most 24 h) and then POSTs to the order's ``merchant_urls.notification`` a JSON body
``{"order_id": ..., "event_type": "FRAUD_RISK_ACCEPTED" | "FRAUD_RISK_REJECTED" |
"FRAUD_RISK_STOPPED", ...}``.

**Klarna signs nothing on this channel**: anyone who learns the URL can POST a body that says
"accepted". Klarna's own safeguards (docs.klarna.com, pending orders and callbacks) are to read
the order back through Order Management, to accept callbacks only from Klarna's published
addresses, and to put a secret in the notification URL. So a notification here is only a hint to
look: :func:`parse_notification` reads it strictly (a typed error, never a guess), and
:meth:`Orders.verify_notification` reads the order back; :class:`FraudDecision` says what the
order, not the notification, says. Klarna may send a notification more than once: handle it
idempotently (capturing with a key derived from the order id does that for free).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import orjson

from klarna_async._errors import KlarnaError
from klarna_async._models.enums import FraudEvent, FraudStatus, OrderStatus, as_fraud_event
from klarna_async._models.orders import OrderManagementOrder

__all__ = ["FraudDecision", "FraudNotification", "InvalidNotificationError", "parse_notification"]

#: A notification is a few hundred bytes; anything much larger is not Klarna's.
MAX_NOTIFICATION_BYTES = 64 * 1024


class InvalidNotificationError(KlarnaError, ValueError):
    """A body posted to the notification URL is not Klarna's fraud-decision notification.

    Answer it with a 4xx and do nothing else. ``problems`` lists what is wrong, each with its
    JSON path; the text never repeats the body (it is untrusted input).
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("not a Klarna notification: " + "; ".join(problems))


@attrs.frozen(kw_only=True)
class FraudNotification:
    """Klarna's notification that a pending order's fraud review ended (unsigned: a hint).

    ``event_type`` is a :class:`FraudEvent`; a value Klarna adds later decodes, with
    ``event_type.known`` False.
    """

    order_id: str
    event_type: FraudEvent = attrs.field(converter=as_fraud_event)


def parse_notification(body: bytes | str | Mapping[str, Any]) -> FraudNotification:
    """The :class:`FraudNotification` in a POSTed body (raw bytes, text or parsed JSON).

    Raises :class:`InvalidNotificationError` listing every problem: not JSON, not an object,
    ``order_id`` or ``event_type`` missing or not a non-empty string, too large. Other fields
    are ignored (Klarna may add some).
    """
    data: Any = body
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    if isinstance(body, bytes | bytearray | memoryview):
        if len(body) > MAX_NOTIFICATION_BYTES:
            raise InvalidNotificationError([f"$: larger than {MAX_NOTIFICATION_BYTES} bytes"])
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise InvalidNotificationError(["$: not JSON"]) from None
    if not isinstance(data, Mapping):
        raise InvalidNotificationError(["$: expected a JSON object"])
    problems = []
    for name in ("order_id", "event_type"):
        value = data.get(name)
        if not isinstance(value, str) or not value.strip():
            problems.append(f"$.{name}: expected a non-empty string")
    if problems:
        raise InvalidNotificationError(problems)
    return FraudNotification(order_id=data["order_id"], event_type=data["event_type"])


#: Which order fraud status each event should leave behind.
_EXPECTED: Mapping[FraudEvent, frozenset[FraudStatus]] = {
    FraudEvent.FRAUD_RISK_ACCEPTED: frozenset({FraudStatus.ACCEPTED}),
    FraudEvent.FRAUD_RISK_REJECTED: frozenset({FraudStatus.REJECTED}),
    FraudEvent.FRAUD_RISK_STOPPED: frozenset({FraudStatus.REJECTED}),
}
_OPEN = frozenset({OrderStatus.AUTHORIZED, OrderStatus.PART_CAPTURED})
_GONE = frozenset({OrderStatus.CANCELLED})


@attrs.frozen(kw_only=True)
class FraudDecision:
    """A notification checked against the order as Order Management reports it.

    Act on the order, never on the notification alone: :attr:`accepted` (ship it),
    :attr:`rejected` (do not ship) and :attr:`pending` (nothing decided yet: a notification
    that says otherwise is stale, early or not Klarna's) read Klarna's own answer.
    :attr:`confirmed` says whether the notification agrees with it; log one that does not.
    """

    notification: FraudNotification
    order: OrderManagementOrder

    @property
    def accepted(self) -> bool:
        """Klarna accepted the order and it is not cancelled: ship it (and capture)."""
        order = self.order
        return order.fraud_status is FraudStatus.ACCEPTED and order.status not in _GONE

    @property
    def rejected(self) -> bool:
        """Klarna rejected or stopped the order (or it is cancelled): do not ship."""
        order = self.order
        return order.fraud_status is FraudStatus.REJECTED or order.status in _GONE

    @property
    def pending(self) -> bool:
        """Klarna has not decided yet (whatever the notification says)."""
        return not (self.accepted or self.rejected)

    @property
    def capturable(self) -> bool:
        """Accepted, and something is left to capture."""
        return self.accepted and self.order.status in _OPEN

    @property
    def confirmed(self) -> bool:
        """The order's fraud status is what the notification's event says it is."""
        expected = _EXPECTED.get(self.notification.event_type)
        return expected is not None and self.order.fraud_status in expected
