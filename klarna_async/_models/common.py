"""Objects shared by the Payments (KP) and Customer Token (CT) APIs.

Field names are Klarna's wire names. Money is an ``int`` in minor units (2500 = 25.00 EUR), tax
rates are basis points (2500 = 25 %). Every optional field defaults to ``None`` and is then left
out of the JSON; lists are tuples so that models stay frozen and hashable.

One :class:`OrderLine` class serves both APIs: their schemas differ only in limits (CT lines
allow at most 100000000 minor units and 255 characters of ``merchant_data``, KP lines 200000000
and 1024), which ``klarna_async._validation`` applies per API.
"""

from __future__ import annotations

import attrs

from klarna_async._models.enums import (
    AuthorizedPaymentMethodType,
    FraudStatus,
    Interval,
    OrderLineType,
    OrganizationEntityType,
    as_authorized_payment_method_type,
    as_fraud_status,
    as_interval,
    as_order_line_type,
    as_organization_entity_type,
)

__all__ = [
    "Address",
    "AssetUrls",
    "Attachment",
    "AuthorizedPaymentMethod",
    "Customer",
    "MerchantUrls",
    "Options",
    "Order",
    "OrderLine",
    "PaymentMethodCategory",
    "ProductIdentifiers",
    "Subscription",
    "TokenMerchantUrls",
]


@attrs.frozen(kw_only=True)
class Address:
    """``address``: a billing or shipping address (KP and CT)."""

    attention: str | None = None
    city: str | None = None
    country: str | None = None
    email: str | None = None
    family_name: str | None = None
    given_name: str | None = None
    organization_name: str | None = None
    phone: str | None = None
    postal_code: str | None = None
    #: ISO 3166-2 region or state; Klarna requires it for US and AU addresses.
    region: str | None = None
    street_address: str | None = None
    street_address2: str | None = None
    title: str | None = None


@attrs.frozen(kw_only=True)
class Subscription:
    """``subscription``: the recurring plan an order line belongs to."""

    name: str
    interval: Interval = attrs.field(converter=as_interval)
    interval_count: int


@attrs.frozen(kw_only=True)
class ProductIdentifiers:
    """``product_identifiers``: brand, category and trade numbers of an order line's product."""

    brand: str | None = None
    category_path: str | None = None
    global_trade_item_number: str | None = None
    manufacturer_part_number: str | None = None
    color: str | None = None
    size: str | None = None


@attrs.frozen(kw_only=True)
class OrderLine:
    """``order_line``: one item of an order; amounts include tax, in minor units."""

    name: str
    quantity: int
    #: Price of one unit, tax included, discount excluded.
    unit_price: int
    #: ``quantity * unit_price - total_discount_amount``.
    total_amount: int
    type: OrderLineType | None = attrs.field(default=None, converter=as_order_line_type)
    reference: str | None = None
    quantity_unit: str | None = None
    #: Basis points: 2500 = 25 %.
    tax_rate: int | None = None
    total_discount_amount: int | None = None
    #: Negative on a discount line.
    total_tax_amount: int | None = None
    merchant_data: str | None = None
    product_url: str | None = None
    image_url: str | None = None
    product_identifiers: ProductIdentifiers | None = None
    #: Required by Klarna on every line of a subscription order.
    subscription: Subscription | None = None


@attrs.frozen(kw_only=True)
class MerchantUrls:
    """KP ``merchant_urls``: where Klarna sends the customer and its callbacks."""

    confirmation: str | None = None
    notification: str | None = None
    push: str | None = None
    authorization: str | None = None


@attrs.frozen(kw_only=True)
class TokenMerchantUrls:
    """CT ``merchant_urls``: ``confirmation`` is required when the object is sent."""

    confirmation: str
    push: str | None = None


@attrs.frozen(kw_only=True)
class Customer:
    """``customer``: facts about the buyer (KP requests; also read back in a session)."""

    #: ``yyyy-mm-dd``.
    date_of_birth: str | None = None
    gender: str | None = None
    last_four_ssn: str | None = None
    national_identification_number: str | None = None
    organization_entity_type: OrganizationEntityType | None = attrs.field(
        default=None, converter=as_organization_entity_type
    )
    organization_registration_id: str | None = None
    title: str | None = None
    #: ``person`` or ``organization``; the latter starts a B2B session.
    type: str | None = None
    vat_id: str | None = None


@attrs.frozen(kw_only=True)
class Attachment:
    """``attachment``: extra merchant data, a JSON document serialized into ``body``."""

    body: str
    #: Usually ``application/vnd.klarna.internal.emd-v2+json``.
    content_type: str


@attrs.frozen(kw_only=True)
class Options:
    """``options``: colours and border radius of Klarna's widget in a KP session."""

    color_border: str | None = None
    color_border_selected: str | None = None
    color_details: str | None = None
    color_text: str | None = None
    radius_border: str | None = None


@attrs.frozen(kw_only=True)
class AssetUrls:
    """``asset_urls``: Klarna-hosted badges for a payment method category."""

    descriptive: str | None = None
    standard: str | None = None


@attrs.frozen(kw_only=True)
class PaymentMethodCategory:
    """``payment_method_category``: one way to pay that a session offers."""

    #: ``klarna``, ``pay_later``, ``pay_now``, ``pay_over_time``, ... : loads the widget.
    identifier: str | None = None
    name: str | None = None
    asset_urls: AssetUrls | None = None


@attrs.frozen(kw_only=True)
class AuthorizedPaymentMethod:
    """``authorized_payment_method``: how the customer chose to pay for an order."""

    # The spec sends an object; Klarna's own examples send the bare type ("invoice"). The
    # converter decodes that to AuthorizedPaymentMethod(type="invoice").
    type: AuthorizedPaymentMethodType = attrs.field(converter=as_authorized_payment_method_type)
    number_of_days: int | None = None
    number_of_installments: int | None = None


@attrs.frozen(kw_only=True)
class Order:
    """``order``: the answer to placing an order, by authorization token (KP) or token (CT)."""

    #: The id Order Management knows the order by.
    order_id: str
    #: ``ACCEPTED`` may be captured; ``PENDING`` waits for Klarna's notification.
    fraud_status: FraudStatus | None = attrs.field(default=None, converter=as_fraud_status)
    # The CT spec marks redirect_url required, yet Klarna's CT example answers without it.
    redirect_url: str | None = None
    authorized_payment_method: AuthorizedPaymentMethod | None = None
