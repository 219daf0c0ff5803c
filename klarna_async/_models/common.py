"""Objects shared by the Payments (KP) and Customer Token (CT) APIs.

Field names are Klarna's wire names. Money is an ``int`` in minor units (2500 = 25.00 EUR), tax
rates are basis points (2500 = 25 %). Every optional field defaults to ``None`` and is then left
out of the JSON; lists are tuples so that models stay frozen and hashable.

One :class:`OrderLine` class serves both APIs: their schemas differ only in limits (CT lines
allow at most 100000000 minor units and 255 characters of ``merchant_data``, KP lines 200000000
and 1024), which the wire contract (``klarna_async._contract``, bound to the models in
``klarna_async._rules``) applies per API.
"""

from __future__ import annotations

import attrs

from klarna_async._models import _masks
from klarna_async._models.enums import (
    AuthorizedPaymentMethodType,
    FraudStatus,
    Interval,
    OrderLineType,
    OrganizationEntityType,
    as_authorized_payment_method_type,
    as_code,
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
    """``address``: a billing or shipping address (KP and CT).

    Its repr shows only the country: the rest is personal data.
    """

    attention: str | None = attrs.field(default=None, repr=_masks.personal)
    city: str | None = attrs.field(default=None, repr=_masks.personal)
    #: ISO 3166-1 alpha-2; sent upper-cased.
    country: str | None = attrs.field(default=None, converter=as_code)
    email: str | None = attrs.field(default=None, repr=_masks.personal)
    family_name: str | None = attrs.field(default=None, repr=_masks.personal)
    given_name: str | None = attrs.field(default=None, repr=_masks.personal)
    organization_name: str | None = attrs.field(default=None, repr=_masks.personal)
    phone: str | None = attrs.field(default=None, repr=_masks.personal)
    postal_code: str | None = attrs.field(default=None, repr=_masks.personal)
    #: ISO 3166-2 region or state; Klarna requires it for US and AU addresses.
    region: str | None = attrs.field(default=None, repr=_masks.personal)
    street_address: str | None = attrs.field(default=None, repr=_masks.personal)
    street_address2: str | None = attrs.field(default=None, repr=_masks.personal)
    title: str | None = attrs.field(default=None, repr=_masks.personal)


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
    #: Free text: its repr is masked, as it may carry anything.
    merchant_data: str | None = attrs.field(default=None, repr=_masks.personal)
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
    """``customer``: facts about the buyer (KP requests; also read back in a session).

    Its repr shows only ``type`` and ``organization_entity_type``: the rest is personal data.
    """

    #: ``yyyy-mm-dd``.
    date_of_birth: str | None = attrs.field(default=None, repr=_masks.personal)
    gender: str | None = attrs.field(default=None, repr=_masks.personal)
    last_four_ssn: str | None = attrs.field(default=None, repr=_masks.personal)
    national_identification_number: str | None = attrs.field(default=None, repr=_masks.personal)
    organization_entity_type: OrganizationEntityType | None = attrs.field(
        default=None, converter=as_organization_entity_type
    )
    organization_registration_id: str | None = attrs.field(default=None, repr=_masks.personal)
    title: str | None = attrs.field(default=None, repr=_masks.personal)
    #: ``person`` or ``organization``; the latter starts a B2B session.
    type: str | None = None
    vat_id: str | None = attrs.field(default=None, repr=_masks.personal)


@attrs.frozen(kw_only=True)
class Attachment:
    """``attachment``: extra merchant data, a JSON document serialized into ``body``."""

    #: Extra merchant data is mostly about the customer (accounts, e-mail): masked in the repr.
    body: str = attrs.field(repr=_masks.personal)
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
    # Its repr shows the host only: the path may carry a session's or a token's id.
    redirect_url: str | None = attrs.field(default=None, repr=_masks.url)
    authorized_payment_method: AuthorizedPaymentMethod | None = None
