"""Request and response bodies of the Klarna Payments API v1 (``/payments/v1/...``).

Read-only fields of the spec (``authorization_token``, ``client_token``, ``expires_at``,
``status``, ``payment_method_categories``) exist only on the response models, so they can never
be sent.
"""

from __future__ import annotations

from datetime import datetime

import attrs

from klarna_async._models import _masks
from klarna_async._models.common import (
    Address,
    Attachment,
    Customer,
    MerchantUrls,
    Options,
    OrderLine,
    PaymentMethodCategory,
)
from klarna_async._models.enums import (
    AcquiringChannel,
    IntendedUse,
    Intent,
    SessionStatus,
    as_acquiring_channel,
    as_code,
    as_intended_use,
    as_intent,
    as_session_status,
)

__all__ = [
    "CustomerTokenCreated",
    "CustomerTokenCustomer",
    "CustomerTokenRequest",
    "OrderRequest",
    "Session",
    "SessionCreated",
    "SessionRequest",
]


@attrs.frozen(kw_only=True)
class SessionRequest:
    """``session_create``: the body that creates (or updates) a payment session."""

    purchase_country: str = attrs.field(converter=as_code)
    purchase_currency: str = attrs.field(converter=as_code)
    order_amount: int
    order_lines: tuple[OrderLine, ...]
    order_tax_amount: int | None = None
    locale: str | None = None
    intent: Intent | None = attrs.field(default=None, converter=as_intent)
    acquiring_channel: AcquiringChannel | None = attrs.field(
        default=None, converter=as_acquiring_channel
    )
    billing_address: Address | None = None
    shipping_address: Address | None = None
    customer: Customer | None = None
    merchant_urls: MerchantUrls | None = None
    merchant_reference1: str | None = None
    merchant_reference2: str | None = None
    merchant_data: str | None = attrs.field(default=None, repr=_masks.personal)
    attachment: Attachment | None = None
    options: Options | None = None
    #: Promo codes agreed with Klarna.
    custom_payment_method_ids: tuple[str, ...] | None = None
    design: str | None = None


@attrs.frozen(kw_only=True)
class SessionCreated:
    """``merchant_session``: the answer to creating a session."""

    session_id: str
    #: Hand this to Klarna's JavaScript SDK in the browser (masked in the repr).
    client_token: str = attrs.field(repr=_masks.token)
    payment_method_categories: tuple[PaymentMethodCategory, ...] | None = None


@attrs.frozen(kw_only=True)
class Session:
    """``session_read``: a payment session as Klarna holds it."""

    status: SessionStatus | None = attrs.field(default=None, converter=as_session_status)
    intent: Intent | None = attrs.field(default=None, converter=as_intent)
    authorization_token: str | None = attrs.field(default=None, repr=_masks.token)
    client_token: str | None = attrs.field(default=None, repr=_masks.token)
    expires_at: datetime | None = None
    purchase_country: str | None = None
    purchase_currency: str | None = None
    locale: str | None = None
    order_amount: int | None = None
    order_tax_amount: int | None = None
    order_lines: tuple[OrderLine, ...] | None = None
    acquiring_channel: AcquiringChannel | None = attrs.field(
        default=None, converter=as_acquiring_channel
    )
    billing_address: Address | None = None
    shipping_address: Address | None = None
    customer: Customer | None = None
    merchant_urls: MerchantUrls | None = None
    merchant_reference1: str | None = None
    merchant_reference2: str | None = None
    merchant_data: str | None = attrs.field(default=None, repr=_masks.personal)
    attachment: Attachment | None = None
    options: Options | None = None
    payment_method_categories: tuple[PaymentMethodCategory, ...] | None = None
    custom_payment_method_ids: tuple[str, ...] | None = None
    design: str | None = None


@attrs.frozen(kw_only=True)
class OrderRequest:
    """``create_order_request``: the body that places a one-time order for an authorization."""

    purchase_country: str = attrs.field(converter=as_code)
    purchase_currency: str = attrs.field(converter=as_code)
    order_amount: int
    order_lines: tuple[OrderLine, ...]
    order_tax_amount: int | None = None
    locale: str | None = None
    #: Only if Klarna's contract with the merchant allows automatic capture.
    auto_capture: bool | None = None
    billing_address: Address | None = None
    shipping_address: Address | None = None
    customer: Customer | None = None
    merchant_urls: MerchantUrls | None = None
    merchant_reference1: str | None = None
    #: Appears in Klarna's settlement files.
    merchant_reference2: str | None = None
    merchant_data: str | None = attrs.field(default=None, repr=_masks.personal)
    custom_payment_method_ids: tuple[str, ...] | None = None


@attrs.frozen(kw_only=True)
class CustomerTokenRequest:
    """``customer_token_creation_request``: the body that turns an authorization into a token.

    ``merchant_urls`` is not in Klarna's spec export, but Klarna's docs send it (the customer is
    sent back to its ``confirmation`` URL); see ``klarna_async._contract.overrides``.
    """

    purchase_country: str = attrs.field(converter=as_code)
    purchase_currency: str = attrs.field(converter=as_code)
    locale: str
    description: str
    #: Any casing is accepted; the spec's ``SUBSCRIPTION`` is sent.
    intended_use: IntendedUse = attrs.field(converter=as_intended_use)
    billing_address: Address | None = None
    customer: Customer | None = None
    merchant_urls: MerchantUrls | None = None


@attrs.frozen(kw_only=True)
class CustomerTokenCustomer:
    """``customer_read_create_token``: the customer as echoed with a new token (personal data:
    masked in the repr)."""

    date_of_birth: str | None = attrs.field(default=None, repr=_masks.personal)
    gender: str | None = attrs.field(default=None, repr=_masks.personal)
    # Not in the spec, but Klarna's example answer carries it.
    title: str | None = attrs.field(default=None, repr=_masks.personal)


@attrs.frozen(kw_only=True)
class CustomerTokenCreated:
    """``customer_token_creation_response``: the new customer token and what it was built on.

    The repr shows the token and the payment method reference as ``'****'`` and their last four
    characters, and the redirect URL (which embeds the token) by its host only.
    """

    #: Charge it later with ``POST /customer-token/v1/tokens/{token_id}/order``.
    token_id: str = attrs.field(repr=_masks.token)
    redirect_url: str | None = attrs.field(default=None, repr=_masks.url)
    payment_method_reference: str | None = attrs.field(default=None, repr=_masks.token)
    billing_address: Address | None = None
    customer: CustomerTokenCustomer | None = None
