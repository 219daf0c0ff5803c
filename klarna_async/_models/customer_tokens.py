"""Request and response bodies of the Klarna Customer Token API v1 (``/customer-token/v1/...``).

Placing an order with a token answers with the same :class:`~klarna_async._models.common.Order`
as the Payments API.
"""

from __future__ import annotations

import attrs

from klarna_async._models import _masks
from klarna_async._models.common import Address, Attachment, OrderLine, TokenMerchantUrls
from klarna_async._models.enums import (
    PaymentMethodType,
    TokenStatus,
    as_code,
    as_payment_method_type,
    as_token_status,
)

__all__ = ["Card", "CustomerToken", "DirectDebit", "TokenOrderRequest"]


@attrs.frozen(kw_only=True)
class TokenOrderRequest:
    """``customer_token_order``: the body that charges a customer token (a recurring order).

    ``locale`` is not in Klarna's spec export, but Klarna's docs send it; see
    ``klarna_async._contract.overrides``.
    """

    # Unlike a KP order the CT schema has no purchase_country or billing_address (the token
    # carries them), and it requires order_tax_amount.
    purchase_currency: str = attrs.field(converter=as_code)
    order_amount: int
    order_tax_amount: int
    order_lines: tuple[OrderLine, ...]
    auto_capture: bool | None = None
    merchant_reference1: str | None = None
    merchant_reference2: str | None = None
    merchant_data: str | None = attrs.field(default=None, repr=_masks.personal)
    merchant_urls: TokenMerchantUrls | None = None
    shipping_address: Address | None = None
    attachment: Attachment | None = None
    locale: str | None = None


@attrs.frozen(kw_only=True)
class Card:
    """``card_information``: the card behind a customer token, masked."""

    brand: str
    #: ``MM/YYYY`` (masked in the repr, as card data).
    expiry_date: str = attrs.field(repr=_masks.personal)
    #: Already masked by Klarna (``**1234``).
    masked_number: str


@attrs.frozen(kw_only=True)
class DirectDebit:
    """``direct_debit_information``: the bank account behind a customer token, masked."""

    masked_number: str


@attrs.frozen(kw_only=True)
class CustomerToken:
    """``customer_token``: a token's status and the payment method it charges."""

    status: TokenStatus = attrs.field(converter=as_token_status)
    payment_method_type: PaymentMethodType = attrs.field(converter=as_payment_method_type)
    card: Card | None = None
    direct_debit: DirectDebit | None = None
