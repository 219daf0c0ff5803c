"""Request and response bodies of Klarna's Order Management API v1 (``/ordermanagement/v1/...``).

Order Management shares its order lines, product identifiers, subscriptions and addresses with
the Payments API (the same field names; the limits differ and are applied per API by the wire
contract, see ``klarna_async._rules``), so those are the classes of ``_models.common``.

Requests are bound to the OM spec's request schemas (a field without a constraint fails the
import). Answers are read leniently where Klarna may grow (unknown fields are ignored, unknown
enum values decode, ``selected_shipping_option`` is not modelled and so ignored) and strictly
where money is: an order without its amounts, a capture without its id or amount, does not
decode (``ResponseDecodeError``), it never passes as zero.
"""

from __future__ import annotations

from datetime import datetime

import attrs

from klarna_async._models import _masks
from klarna_async._models.common import Address, OrderLine
from klarna_async._models.enums import (
    FraudStatus,
    OrderStatus,
    ShippingMethod,
    as_fraud_status,
    as_order_status,
    as_shipping_method,
)

__all__ = [
    "Capture",
    "CaptureRequest",
    "CustomerDetailsUpdate",
    "DueDateOption",
    "ExtendDueDateOptions",
    "ExtendDueDateRequest",
    "InitialPaymentMethod",
    "MerchantReferencesUpdate",
    "OrderCustomer",
    "OrderManagementOrder",
    "Refund",
    "RefundRequest",
    "ShippingInfo",
    "ShippingInfoUpdate",
    "UpdateAuthorizationRequest",
]


# --- requests -----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ShippingInfo:
    """``shipping_info``: how (part of) an order travels, and its return."""

    shipping_company: str | None = None
    shipping_method: ShippingMethod | None = attrs.field(default=None, converter=as_shipping_method)
    #: A tracking number finds a person's parcel: masked in the repr.
    tracking_number: str | None = attrs.field(default=None, repr=_masks.personal)
    tracking_uri: str | None = attrs.field(default=None, repr=_masks.url)
    return_shipping_company: str | None = None
    return_tracking_number: str | None = attrs.field(default=None, repr=_masks.personal)
    return_tracking_uri: str | None = attrs.field(default=None, repr=_masks.url)


@attrs.frozen(kw_only=True)
class CaptureRequest:
    """``CaptureObject``: the body of :meth:`Orders.capture`.

    ``captured_amount`` (minor units) may not exceed the order's remaining authorized amount;
    several captures per order are allowed. ``reference`` appears in Klarna's settlement files.
    """

    captured_amount: int
    description: str | None = None
    order_lines: tuple[OrderLine, ...] | None = None
    reference: str | None = None
    #: Days between the capture and the shipment (delays the customer's due date).
    shipping_delay: int | None = None
    shipping_info: tuple[ShippingInfo, ...] | None = None


@attrs.frozen(kw_only=True)
class RefundRequest:
    """``RefundObject``: the body of :meth:`Orders.refund`.

    ``refunded_amount`` may not exceed what was captured and not yet refunded. A return fee is
    an order line of type ``return_fee``.
    """

    refunded_amount: int
    description: str | None = None
    order_lines: tuple[OrderLine, ...] | None = None
    reference: str | None = None


@attrs.frozen(kw_only=True)
class UpdateAuthorizationRequest:
    """``Update authorization``: a new order amount (and lines) for an order not yet fully
    captured. Klarna refuses an amount below what is already captured."""

    order_amount: int
    description: str | None = None
    order_lines: tuple[OrderLine, ...] | None = None


@attrs.frozen(kw_only=True)
class MerchantReferencesUpdate:
    """``Update merchant references``: the merchant's own references of an order."""

    merchant_reference1: str | None = None
    merchant_reference2: str | None = None


@attrs.frozen(kw_only=True)
class CustomerDetailsUpdate:
    """``UpdateConsumer``: a new shipping address for the order."""

    shipping_address: Address | None = None


@attrs.frozen(kw_only=True)
class ShippingInfoUpdate:
    """``UpdateShippingInfo``: shipping information to add to an order or a capture (1 to 500
    entries)."""

    shipping_info: tuple[ShippingInfo, ...]


@attrs.frozen(kw_only=True)
class ExtendDueDateRequest:
    """``ExtendDueDateRequest``: extend a capture's (invoice) due date by one of the options of
    :meth:`Orders.extend_due_date_options`."""

    number_of_days: int


# --- answers ------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Capture:
    """``Capture``: money taken from an order, with what was shipped."""

    capture_id: str
    captured_amount: int
    captured_at: datetime | None = None
    description: str | None = None
    #: Klarna's reference of this capture, e.g. ``K4MADNY-1`` (what support asks for).
    klarna_reference: str | None = None
    reference: str | None = None
    refunded_amount: int | None = None
    order_lines: tuple[OrderLine, ...] | None = None
    billing_address: Address | None = None
    shipping_address: Address | None = None
    shipping_info: tuple[ShippingInfo, ...] | None = None


@attrs.frozen(kw_only=True)
class Refund:
    """``Refund``: money given back to the customer."""

    refund_id: str
    refunded_amount: int
    refunded_at: datetime | None = None
    description: str | None = None
    reference: str | None = None
    credit_invoice: bool | None = None
    order_lines: tuple[OrderLine, ...] | None = None


@attrs.frozen(kw_only=True)
class DueDateOption:
    """``OptionDto``: extend by ``number_of_days`` for ``amount`` (minor units, the merchant's
    fee)."""

    number_of_days: int
    amount: int | None = None


@attrs.frozen(kw_only=True)
class ExtendDueDateOptions:
    """``ExtendDueDateOptions``: the due-date extensions a capture allows."""

    currency: str | None = None
    options: tuple[DueDateOption, ...] = ()


@attrs.frozen(kw_only=True)
class InitialPaymentMethod:
    """``InitialPaymentMethodDto``: how the customer chose to pay, e.g. ``FIXED_AMOUNT``."""

    type: str | None = None
    description: str | None = None
    number_of_installments: int | None = None


@attrs.frozen(kw_only=True)
class OrderCustomer:
    """``customer`` of an Order Management order (personal data: masked in the repr)."""

    date_of_birth: str | None = attrs.field(default=None, repr=_masks.personal)
    national_identification_number: str | None = attrs.field(default=None, repr=_masks.personal)


@attrs.frozen(kw_only=True)
class OrderManagementOrder:
    """``Order`` of Order Management: an order as Klarna holds it now.

    Named apart from :class:`Order` (the answer to placing one). Amounts are minor units:
    ``order_amount`` (now, after any ``update_authorization``), ``captured_amount``,
    ``refunded_amount`` and ``remaining_authorized_amount`` (what may still be captured);
    ``expires_at`` is when the authorization lapses ("the order can only be captured until this
    time"). Its repr shows the order's state and amounts, not the customer.
    """

    order_id: str
    status: OrderStatus = attrs.field(converter=as_order_status)
    order_amount: int
    captured_amount: int
    refunded_amount: int
    remaining_authorized_amount: int
    original_order_amount: int | None = None
    #: ``ACCEPTED``, ``PENDING`` (Klarna is reviewing: do not ship) or ``REJECTED``.
    fraud_status: FraudStatus | None = attrs.field(default=None, converter=as_fraud_status)
    purchase_currency: str | None = None
    purchase_country: str | None = None
    locale: str | None = None
    created_at: datetime | None = None
    expires_at: datetime | None = None
    #: The customer-facing reference, e.g. ``K4MADNY``.
    klarna_reference: str | None = None
    merchant_reference1: str | None = None
    merchant_reference2: str | None = None
    merchant_data: str | None = attrs.field(default=None, repr=_masks.personal)
    order_lines: tuple[OrderLine, ...] = ()
    captures: tuple[Capture, ...] = ()
    refunds: tuple[Refund, ...] = ()
    billing_address: Address | None = None
    shipping_address: Address | None = None
    customer: OrderCustomer | None = None
    initial_payment_method: InitialPaymentMethod | None = None
    shipping_info: tuple[ShippingInfo, ...] = ()
