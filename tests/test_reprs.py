"""No model's repr shows personal data or a full token (issue 10, item 12).

Every model class is built with a distinct sample value in every string field, nested models
included; the repr of each then shows exactly the fields this file lists as fit to show, a token
as ``'****'`` and its last four characters, a URL that may carry a token by its host, and no
other sample value at all. A field added to a model is hidden until it is listed here.
"""

from __future__ import annotations

import typing
from datetime import UTC, datetime
from typing import Any

import attrs
import pytest

import klarna_async._models as models
from klarna_async._models import _masks

MODEL_CLASSES = [
    getattr(models, name) for name in models.__all__ if attrs.has(getattr(models, name))
]

#: Fields whose values a repr may show: codes, ids Klarna support asks for, the merchant's own
#: references, URLs and product data. Nothing about the customer.
SHOWN = {
    ("Address", "country"),
    ("AssetUrls", "descriptive"),
    ("AssetUrls", "standard"),
    ("Attachment", "content_type"),
    ("Card", "brand"),
    ("Card", "masked_number"),  # masked by Klarna: "**1234"
    ("Customer", "type"),
    ("CustomerTokenRequest", "description"),
    ("CustomerTokenRequest", "locale"),
    ("CustomerTokenRequest", "purchase_country"),
    ("CustomerTokenRequest", "purchase_currency"),
    ("DirectDebit", "masked_number"),
    ("MerchantUrls", "authorization"),
    ("MerchantUrls", "confirmation"),
    ("MerchantUrls", "notification"),
    ("MerchantUrls", "push"),
    ("Options", "color_border"),
    ("Options", "color_border_selected"),
    ("Options", "color_details"),
    ("Options", "color_text"),
    ("Options", "radius_border"),
    ("Order", "order_id"),
    ("OrderLine", "image_url"),
    ("OrderLine", "name"),
    ("OrderLine", "product_url"),
    ("OrderLine", "quantity_unit"),
    ("OrderLine", "reference"),
    ("PaymentMethodCategory", "identifier"),
    ("PaymentMethodCategory", "name"),
    ("SessionCreated", "session_id"),
    ("Subscription", "name"),
    ("TokenMerchantUrls", "confirmation"),
    ("TokenMerchantUrls", "push"),
    *(
        ("ProductIdentifiers", name)
        for name in ("brand", "category_path", "color", "global_trade_item_number")
    ),
    ("ProductIdentifiers", "manufacturer_part_number"),
    ("ProductIdentifiers", "size"),
    *(
        (cls, name)
        for cls in ("OrderRequest", "SessionRequest", "TokenOrderRequest", "Session")
        for name in ("purchase_currency", "locale", "merchant_reference1", "merchant_reference2")
    ),
    *(
        (cls, name)
        for cls in ("OrderRequest", "SessionRequest", "Session")
        for name in ("purchase_country", "custom_payment_method_ids")
    ),
    ("SessionRequest", "design"),
    ("Session", "design"),
    # Order Management: ids, Klarna's and the merchant's references, the merchant's own texts.
    *(
        ("OrderManagementOrder", name)
        for name in (
            "order_id",
            "purchase_currency",
            "purchase_country",
            "locale",
            "klarna_reference",
            "merchant_reference1",
            "merchant_reference2",
        )
    ),
    *(("Capture", name) for name in ("capture_id", "description", "klarna_reference", "reference")),
    *(("Refund", name) for name in ("refund_id", "description", "reference")),
    *(("CaptureRequest", name) for name in ("description", "reference")),
    *(("RefundRequest", name) for name in ("description", "reference")),
    ("UpdateAuthorizationRequest", "description"),
    ("MerchantReferencesUpdate", "merchant_reference1"),
    ("MerchantReferencesUpdate", "merchant_reference2"),
    ("ShippingInfo", "shipping_company"),
    ("ShippingInfo", "return_shipping_company"),
    ("ExtendDueDateOptions", "currency"),
    ("InitialPaymentMethod", "type"),
    ("InitialPaymentMethod", "description"),
}
#: Tokens, and references that stand for one: '****' and the last four characters.
TOKENS = {
    ("CustomerTokenCreated", "token_id"),
    ("CustomerTokenCreated", "payment_method_reference"),
    ("SessionCreated", "client_token"),
    ("Session", "client_token"),
    ("Session", "authorization_token"),
}
#: URLs that may carry a token: the host only.
URLS = {
    ("CustomerTokenCreated", "redirect_url"),
    ("Order", "redirect_url"),
    # A tracking link leads to a person's parcel (and address): the host only.
    ("ShippingInfo", "tracking_uri"),
    ("ShippingInfo", "return_tracking_uri"),
}


def build(cls: type[Any], samples: list[tuple[str, str, str]]) -> Any:
    """An instance of ``cls`` with a distinct sample in every string field, recorded in
    ``samples`` as (class name, field name, value)."""
    hints = typing.get_type_hints(cls)
    values = {}
    for field in attrs.fields(cls):
        values[field.name] = _value(cls.__name__, field.name, hints[field.name], samples)
    return cls(**values)


def _value(owner: str, name: str, hint: Any, samples: list[tuple[str, str, str]]) -> Any:
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if type(None) in typing.get_args(hint):
        hint = args[0]
    if hint is str:
        if (owner, name) in URLS:
            value = f"https://pay.klarna.example/v1/{owner}-{name}/0b1d9815-secret/redirect"
        else:
            # A distinct tail per value, so that even a value's end can be looked for.
            value = f"sample-{owner}-{name}-q{len(samples):03d}z"
        samples.append((owner, name, value))
        return value
    if hint is int:
        return 7
    if hint is bool:
        return True
    if hint is datetime:
        return datetime(2030, 1, 1, tzinfo=UTC)
    if typing.get_origin(hint) is tuple:
        return (_value(owner, name, typing.get_args(hint)[0], samples),)
    if isinstance(hint, type) and issubclass(hint, models.OpenStrEnum):
        return next(iter(hint))
    assert attrs.has(hint), hint
    return build(hint, samples)


def _has_text(cls: type[Any]) -> bool:
    samples: list[tuple[str, str, str]] = []
    build(cls, samples)
    return bool(samples)


@pytest.mark.parametrize(
    "cls", [cls for cls in MODEL_CLASSES if _has_text(cls)], ids=lambda cls: cls.__name__
)
def test_repr_hides_personal_data_and_tokens(cls: type[Any]) -> None:
    """Each sample value is shown only where listed as fit to show; tokens and URLs masked."""
    samples: list[tuple[str, str, str]] = []
    text = repr(build(cls, samples))
    for owner, name, value in samples:
        if (owner, name) in SHOWN:
            # Codes are upper-cased by their models; the value is there either way.
            assert value in text or value.upper() in text, (owner, name)
        elif (owner, name) in TOKENS:
            assert value not in text, (owner, name)
            assert f"'****{value[-4:]}'" in text, (owner, name)
        elif (owner, name) in URLS:
            assert value not in text, (owner, name)
            assert "0b1d9815" not in text, (owner, name)
            assert "'https://pay.klarna.example/***'" in text, (owner, name)
        else:
            assert value not in text, (owner, name)
            assert value[-5:] not in text, (owner, name)


def test_every_listed_field_exists() -> None:
    """The lists name real fields, so a renamed field cannot leave a stale, vacuous entry."""
    fields = {(cls.__name__, f.name) for cls in MODEL_CLASSES for f in attrs.fields(cls)}
    assert fields >= SHOWN | TOKENS | URLS


def test_the_seed_documents_token_answer() -> None:
    """Klarna's own example answer: the token is visible only as its last four characters."""
    created = models.CustomerTokenCreated(
        token_id="0b1d9815-165e-42e2-8867-35bc03789e00",
        payment_method_reference="0b1d9815-165e-42e2-8867-35bc03789e00",
        redirect_url="https://credit.klarna.com/v1/sessions/0b1d9815-165e-42e2-8867-35bc03789e00/redirect",
        billing_address=models.Address(given_name="John", email="john@doe.com", country="US"),
    )
    text = repr(created)
    assert "165e" not in text
    assert "john" not in text.lower()
    assert "token_id='****9e00'" in text
    assert "redirect_url='https://credit.klarna.com/***'" in text
    assert "country='US'" in text


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "None"),
        ("short", "'****'"),
        ("12345678", "'****'"),
        ("123456789", "'****6789'"),
        (12345, "'***'"),
    ],
)
def test_token_mask(value: object, shown: str) -> None:
    """Eight characters or fewer show nothing: four of them would be half the secret."""
    assert _masks.token(value) == shown


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "None"),
        ("https://user:pw@host.example:8443/a/b?t=x#f", "'https://host.example:8443/***'"),
        ("https://host.example?token=abc", "'https://host.example/***'"),
        ("not a url", "'***'"),
    ],
)
def test_url_mask(value: object, shown: str) -> None:
    """Scheme and host (no credentials, path, query or fragment)."""
    assert _masks.url(value) == shown
