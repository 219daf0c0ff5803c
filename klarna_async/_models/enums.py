"""Open string enums for the values Klarna documents.

Klarna adds values over time (new payment methods, new fraud states), and a response must not
fail to decode because of one. Every enum here is a :class:`str` whose ``_missing_`` hands back a
*pseudo-member* for an unknown string: ``FraudStatus("NEW_THING")`` works, equals
``"NEW_THING"``, serializes back to ``"NEW_THING"``, and says ``.known == False``. Pseudo-members
are never added to the class, so iterating an enum lists only what Klarna documents. Request
validation (``klarna_async._validation``) rejects pseudo-members where the spec declares an enum,
so a typo is caught before it is sent.

The enums of request fields (and the token's status and payment method type) take any casing of
a documented value as that member: Klarna's own example sends ``"subscription"`` where the spec
says ``SUBSCRIPTION``, and the member's spelling is what is sent.
"""

from __future__ import annotations

import enum
from typing import Any, Self

__all__ = [
    "AcquiringChannel",
    "AuthorizedPaymentMethodType",
    "FraudEvent",
    "FraudStatus",
    "IntendedUse",
    "Intent",
    "Interval",
    "OpenStrEnum",
    "OrderLineType",
    "OrderStatus",
    "OrganizationEntityType",
    "PaymentMethodType",
    "SessionStatus",
    "ShippingMethod",
    "TokenStatus",
]


class OpenStrEnum(enum.StrEnum):
    """A :class:`str` enum that also accepts values it does not list (see the module doc)."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if not isinstance(value, str):
            return None
        return cls._pseudo_member(value)

    @classmethod
    def _pseudo_member(cls, value: str) -> Self:
        member = str.__new__(cls, value)
        member._value_ = value
        member._name_ = value
        return member

    @property
    def known(self) -> bool:
        """Whether the value is one Klarna documents (a real member, not a pseudo-member)."""
        return type(self)._value2member_map_.get(self._value_) is self

    def __repr__(self) -> str:
        if self.known:
            return super().__repr__()
        return f"<{type(self).__name__}({self._value_!r}), unknown>"


_FOLDED: dict[type[OpenStrEnum], dict[str, OpenStrEnum]] = {}


class _CaseInsensitiveOpenStrEnum(OpenStrEnum):
    # Any casing of a documented value is that member: Klarna's casing on the wire is not pinned
    # down for some fields (a token's status), and its own docs send "subscription" where the
    # spec's enum says "SUBSCRIPTION" (see klarna_async._contract.overrides.ENUMS_IGNORE_CASE).
    # So ``status is TokenStatus.ACTIVE`` keeps working, and a request sends the spec's spelling.
    # Only ASCII is folded: "\u017f".upper() is "S", and no documented value needs more.
    @classmethod
    def _missing_(cls, value: object) -> Any:
        if not isinstance(value, str):
            return None
        if value.isascii():
            folded = _FOLDED.get(cls)
            if folded is None:
                folded = _FOLDED[cls] = {
                    member.value.lower(): member for member in cls.__members__.values()
                }
            member = folded.get(value.lower())
            if member is not None:
                return member
        return cls._pseudo_member(value)


class Intent(_CaseInsensitiveOpenStrEnum):
    """``session_create.intent``: what the payment session is for."""

    BUY = "buy"
    TOKENIZE = "tokenize"
    BUY_AND_TOKENIZE = "buy_and_tokenize"


class AcquiringChannel(_CaseInsensitiveOpenStrEnum):
    """``session_create.acquiring_channel``."""

    ECOMMERCE = "ECOMMERCE"
    IN_STORE = "IN_STORE"
    TELESALES = "TELESALES"


class SessionStatus(OpenStrEnum):
    """``session_read.status``: ``complete`` once an order was placed."""

    COMPLETE = "complete"
    INCOMPLETE = "incomplete"


class Interval(_CaseInsensitiveOpenStrEnum):
    """``subscription.interval``: the cadence unit of a subscription."""

    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"
    YEAR = "YEAR"


class OrderLineType(_CaseInsensitiveOpenStrEnum):
    """``order_line.type``. ``return_fee`` exists only in Order Management refunds."""

    PHYSICAL = "physical"
    DISCOUNT = "discount"
    SHIPPING_FEE = "shipping_fee"
    SALES_TAX = "sales_tax"
    DIGITAL = "digital"
    GIFT_CARD = "gift_card"
    STORE_CREDIT = "store_credit"
    SURCHARGE = "surcharge"
    RETURN_FEE = "return_fee"


class FraudStatus(OpenStrEnum):
    """``order.fraud_status``: ``PENDING`` means wait for Klarna's notification."""

    ACCEPTED = "ACCEPTED"
    PENDING = "PENDING"
    REJECTED = "REJECTED"


class OrderStatus(OpenStrEnum):
    """Order Management ``order.status``: where an order is in its life.

    ``AUTHORIZED`` (nothing captured), ``PART_CAPTURED``, ``CAPTURED`` (all of the order
    amount), ``CANCELLED``, ``EXPIRED`` (the authorization lapsed with nothing captured),
    ``CLOSED`` (the rest of the authorization released). Refunds do not change it: they show in
    ``refunded_amount``.
    """

    AUTHORIZED = "AUTHORIZED"
    PART_CAPTURED = "PART_CAPTURED"
    CAPTURED = "CAPTURED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    CLOSED = "CLOSED"


class ShippingMethod(_CaseInsensitiveOpenStrEnum):
    """Order Management ``shipping_info.shipping_method``."""

    PICK_UP_STORE = "PickUpStore"
    HOME = "Home"
    BOX_REG = "BoxReg"
    BOX_UNREG = "BoxUnreg"
    PICK_UP_POINT = "PickUpPoint"
    OWN = "Own"
    POSTAL = "Postal"
    DHL_PACKSTATION = "DHLPackstation"
    DIGITAL = "Digital"
    UNDEFINED = "Undefined"
    PICK_UP_WAREHOUSE = "PickUpWarehouse"
    CLICK_COLLECT = "ClickCollect"
    PALLET_DELIVERY = "PalletDelivery"


class FraudEvent(OpenStrEnum):
    """``event_type`` of Klarna's notification about a pending order's fraud review."""

    #: Klarna accepted the order: it may be captured and shipped.
    FRAUD_RISK_ACCEPTED = "FRAUD_RISK_ACCEPTED"
    #: Klarna rejected the order: do not ship; it is cancelled.
    FRAUD_RISK_REJECTED = "FRAUD_RISK_REJECTED"
    #: Klarna stopped an order it had accepted: do not ship (stop the delivery if you can).
    FRAUD_RISK_STOPPED = "FRAUD_RISK_STOPPED"


class IntendedUse(_CaseInsensitiveOpenStrEnum):
    """``customer_token_creation_request.intended_use``."""

    SUBSCRIPTION = "SUBSCRIPTION"


class TokenStatus(_CaseInsensitiveOpenStrEnum):
    """``customer_token.status``; any casing decodes, and ``canceled`` means ``CANCELLED``."""

    ACTIVE = "ACTIVE"
    CANCELLED = "CANCELLED"
    SUSPENDED = "SUSPENDED"

    @classmethod
    def _missing_(cls, value: object) -> Any:
        # The spec spells it "cancelled", the subscriptions guide "canceled".
        if isinstance(value, str) and value.upper() == "CANCELED":
            return cls.CANCELLED
        return super()._missing_(value)


class PaymentMethodType(_CaseInsensitiveOpenStrEnum):
    """``customer_token.payment_method_type`` (the spec's example is ``INVOICE``)."""

    INVOICE = "INVOICE"
    CARD = "CARD"
    DIRECT_DEBIT = "DIRECT_DEBIT"


class AuthorizedPaymentMethodType(OpenStrEnum):
    """``authorized_payment_method.type``: the union of the KP and CT spec lists."""

    INVOICE = "invoice"
    FIXED_AMOUNT = "fixed_amount"
    PIX = "pix"
    BASE_ACCOUNT = "base_account"
    DEFERRED_INTEREST = "deferred_interest"
    DIRECT_DEBIT = "direct_debit"
    DIRECT_BANK_TRANSFER = "direct_bank_transfer"
    B2B_INVOICE = "b2b_invoice"
    CARD = "card"
    SLICE_IT_BY_CARD = "slice_it_by_card"
    PAY_LATER_BY_CARD = "pay_later_by_card"
    PAY_BY_CARD = "pay_by_card"
    FIXED_SUM_CREDIT = "fixed_sum_credit"
    ALTERNATIVE_PAYMENT_METHOD = "alternative_payment_method"


class OrganizationEntityType(_CaseInsensitiveOpenStrEnum):
    """``customer.organization_entity_type`` (B2B customers only)."""

    LIMITED_COMPANY = "LIMITED_COMPANY"
    PUBLIC_LIMITED_COMPANY = "PUBLIC_LIMITED_COMPANY"
    ENTREPRENEURIAL_COMPANY = "ENTREPRENEURIAL_COMPANY"
    LIMITED_PARTNERSHIP_LIMITED_COMPANY = "LIMITED_PARTNERSHIP_LIMITED_COMPANY"
    LIMITED_PARTNERSHIP = "LIMITED_PARTNERSHIP"
    GENERAL_PARTNERSHIP = "GENERAL_PARTNERSHIP"
    REGISTERED_SOLE_TRADER = "REGISTERED_SOLE_TRADER"
    SOLE_TRADER = "SOLE_TRADER"
    CIVIL_LAW_PARTNERSHIP = "CIVIL_LAW_PARTNERSHIP"
    PUBLIC_INSTITUTION = "PUBLIC_INSTITUTION"
    OTHER = "OTHER"


# --- attrs converters ---------------------------------------------------------------------------
# The models declare enum types, yet a caller may write the plain string (``interval="MONTH"``,
# or "month"): these turn any str into the enum's member (a pseudo-member if unknown, which
# request validation then rejects), so a model holds what will be sent. Anything else is left as
# it is, so that validation can report it with its path rather than the constructor raising. One
# named function per field type, because mypy's attrs plugin reads the accepted type from the
# converter's signature.


# The attrs converters below take a member, or its value as a plain string (the converter's
# generated hooks and callers pass strings). The member map first: Enum.__call__ is slow, and
# documented values are the rule; anything else goes through the enum's own lookup (casing,
# pseudo-members for values Klarna adds later).


def as_intent(value: Intent | str | None) -> Intent | None:
    if value.__class__ is not Intent and isinstance(value, str):
        return Intent._value2member_map_.get(value) or Intent(value)  # type: ignore[return-value]
    return value


def as_acquiring_channel(value: AcquiringChannel | str | None) -> AcquiringChannel | None:
    if value.__class__ is not AcquiringChannel and isinstance(value, str):
        return AcquiringChannel._value2member_map_.get(value) or AcquiringChannel(value)  # type: ignore[return-value]
    return value


def as_session_status(value: SessionStatus | str | None) -> SessionStatus | None:
    if value.__class__ is not SessionStatus and isinstance(value, str):
        return SessionStatus._value2member_map_.get(value) or SessionStatus(value)  # type: ignore[return-value]
    return value


def as_interval(value: Interval | str) -> Interval:
    if value.__class__ is not Interval and isinstance(value, str):
        return Interval._value2member_map_.get(value) or Interval(value)  # type: ignore[return-value]
    return value


def as_order_line_type(value: OrderLineType | str | None) -> OrderLineType | None:
    if value.__class__ is not OrderLineType and isinstance(value, str):
        return OrderLineType._value2member_map_.get(value) or OrderLineType(value)  # type: ignore[return-value]
    return value


def as_fraud_status(value: FraudStatus | str | None) -> FraudStatus | None:
    if value.__class__ is not FraudStatus and isinstance(value, str):
        return FraudStatus._value2member_map_.get(value) or FraudStatus(value)  # type: ignore[return-value]
    return value


def as_order_status(value: OrderStatus | str) -> OrderStatus:
    if value.__class__ is not OrderStatus and isinstance(value, str):
        return OrderStatus._value2member_map_.get(value) or OrderStatus(value)  # type: ignore[return-value]
    return value


def as_shipping_method(value: ShippingMethod | str | None) -> ShippingMethod | None:
    if value.__class__ is not ShippingMethod and isinstance(value, str):
        return ShippingMethod._value2member_map_.get(value) or ShippingMethod(value)  # type: ignore[return-value]
    return value


def as_fraud_event(value: FraudEvent | str) -> FraudEvent:
    if value.__class__ is not FraudEvent and isinstance(value, str):
        return FraudEvent._value2member_map_.get(value) or FraudEvent(value)  # type: ignore[return-value]
    return value


def as_intended_use(value: IntendedUse | str) -> IntendedUse:
    if value.__class__ is not IntendedUse and isinstance(value, str):
        return IntendedUse._value2member_map_.get(value) or IntendedUse(value)  # type: ignore[return-value]
    return value


def as_token_status(value: TokenStatus | str) -> TokenStatus:
    if value.__class__ is not TokenStatus and isinstance(value, str):
        return TokenStatus._value2member_map_.get(value) or TokenStatus(value)  # type: ignore[return-value]
    return value


def as_payment_method_type(value: PaymentMethodType | str) -> PaymentMethodType:
    if value.__class__ is not PaymentMethodType and isinstance(value, str):
        return PaymentMethodType._value2member_map_.get(value) or PaymentMethodType(value)  # type: ignore[return-value]
    return value


def as_authorized_payment_method_type(
    value: AuthorizedPaymentMethodType | str,
) -> AuthorizedPaymentMethodType:
    if value.__class__ is not AuthorizedPaymentMethodType and isinstance(value, str):
        return AuthorizedPaymentMethodType(value)
    return value


def as_organization_entity_type(
    value: OrganizationEntityType | str | None,
) -> OrganizationEntityType | None:
    if value.__class__ is not OrganizationEntityType and isinstance(value, str):
        return OrganizationEntityType(value)
    return value


def as_code(value: str) -> str:
    """An ISO currency or country code as Klarna's examples write it: upper case. Non-ASCII
    text and values of other types are left for validation to report."""
    checked: object = value  # the declared type is what callers should pass, not all they do
    if isinstance(checked, str) and checked.isascii():
        return checked.upper()
    return value
