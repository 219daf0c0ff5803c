"""Where we deliberately differ from Klarna's specs, each difference with its reason and source.

The generated table (:mod:`klarna_async._contract.spec`) says what the specs say; this module is
the only place that changes it, and :func:`contract` is the table with these changes applied.
Every :class:`Override` records what the spec says today (``spec``): ``tests/test_contract.py``
fails when a new export no longer says that, so each difference is looked at again when Klarna
changes the field.

Sources (tags as in the shared reference's NOTES.md):

* S-PAY, S-CT, S-OM: the Payments, Customer Token and Order Management specs in ``tests/specs``.
* D-STEP3: Klarna's "Step 3: Create an order" page
  (docs.klarna.com/payments/web-payments/integrate-with-klarna-payments/integrate-via-sdk/
  step-3-create-an-order), whose four request examples the client must accept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import attrs

from klarna_async._contract.kinds import Integer, Kind, Object, Schema, String
from klarna_async._contract.spec import SCHEMAS

__all__ = [
    "CODE_FORMATS",
    "ENUMS_IGNORE_CASE",
    "MISSING_NOTES",
    "OVERRIDES",
    "Override",
    "contract",
]


@attrs.frozen
class Override:
    """``schema.field`` is checked (and sent) as ``ours`` where the spec says ``spec``."""

    schema: str
    field: str
    #: What the spec says today; None: the spec has no such field.
    spec: Kind | None
    ours: Kind
    reason: str
    source: str


_KP_LINE_TYPES: Final = (
    "physical",
    "discount",
    "shipping_fee",
    "sales_tax",
    "digital",
    "gift_card",
    "store_credit",
    "surcharge",
)
_LOCALE: Final = r"^[A-Za-z]{2,2}(?:-[A-Za-z]{2,2})*$"

OVERRIDES: Final[tuple[Override, ...]] = (
    # --- stricter than a schema, where the spec states the rule in prose or elsewhere ---
    Override(
        "payments.order_line",
        "type",
        spec=String(),
        ours=String(enum=_KP_LINE_TYPES),
        reason="KP lists the eight line types in the field's description only; CT declares the "
        "same eight as an enum. A typo would otherwise reach Klarna (return_fee belongs to "
        "Order Management refunds).",
        source="S-PAY order_line.type description; S-CT order_line.type enum",
    ),
    Override(
        "customer_token.order_line",
        "tax_rate",
        spec=Integer(format="int64"),
        ours=Integer(minimum=0, maximum=10000, format="int64"),
        reason="CT says 'Non-negative value' with two implicit decimals in prose only; KP's "
        "schema bounds the same field to 0..10000 (0 to 100 %).",
        source="S-CT order_line.tax_rate description; S-PAY order_line.tax_rate",
    ),
    Override(
        "customer_token.subscription",
        "name",
        spec=String(),
        ours=String(min_length=1, max_length=255),
        reason="CT gives no bounds; KP's schema for the same subscription object (which the "
        "recurring order must repeat) says 1 to 255 characters.",
        source="S-PAY subscription.name",
    ),
    Override(
        "order_management.CaptureObject",
        "captured_amount",
        spec=Integer(minimum=0, maximum=200000000, format="int64"),
        ours=Integer(minimum=1, maximum=200000000, format="int64"),
        reason="A capture of 0 captures nothing and would still use up an idempotency key; the "
        "OM spec's own Capture schema (what Klarna answers for a capture) says minimum 1.",
        source="S-OM Capture.captured_amount",
    ),
    # --- fields Klarna's docs send and the spec exports lack ---
    Override(
        "payments.customer_token_creation_request",
        "merchant_urls",
        spec=None,
        ours=Object("payments.merchant_urls"),
        reason="Klarna's example sends merchant_urls.confirmation, and the answer's redirect_url "
        "sends the customer back to that confirmation URL; checked as KP's merchant_urls.",
        source="D-STEP3 'Create a customer token' example",
    ),
    Override(
        "customer_token.customer_token_order",
        "locale",
        spec=None,
        ours=String(pattern=_LOCALE),
        reason="Klarna's recurring-order example sends locale; checked as KP's locale.",
        source="D-STEP3 'Create an order with a customer token' example",
    ),
    # --- Order Management's export writes three enums as unanchored patterns ---
    Override(
        "order_management.order_line",
        "type",
        spec=String(
            pattern="physical|discount|shipping_fee|sales_tax|store_credit|gift_card|digital"
            "|surcharge|return_fee",
            enum=(
                "physical|discount|shipping_fee|sales_tax|store_credit|gift_card|digital"
                "|surcharge|return_fee",
            ),
        ),
        ours=String(enum=(*_KP_LINE_TYPES, "return_fee")),
        reason="The enum's one value is the nine types joined by '|', and the pattern is not "
        "anchored (it would let 'physicalx' by): read as the nine values it lists.",
        source="S-OM order_line.type",
    ),
    Override(
        "order_management.subscription",
        "interval",
        spec=String(pattern="DAY|WEEK|MONTH|YEAR"),
        ours=String(enum=("DAY", "WEEK", "MONTH", "YEAR")),
        reason="An unanchored pattern lets 'MONTHLY' by; KP and CT declare these four as an "
        "enum for the same object.",
        source="S-OM subscription.interval; S-PAY, S-CT subscription.interval",
    ),
    Override(
        "order_management.shipping_info",
        "shipping_method",
        spec=String(
            pattern="(PickUpStore|Home|BoxReg|BoxUnreg|PickUpPoint|Own|Postal|DHLPackstation"
            "|Digital|Undefined|PickUpWarehouse|ClickCollect|PalletDelivery)"
        ),
        ours=String(
            enum=(
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
            )
        ),
        reason="An unanchored pattern lets any text containing one method by: read as the "
        "thirteen values it lists.",
        source="S-OM shipping_info.shipping_method",
    ),
)

#: Values the spec's patterns let through but Klarna cannot accept, checked after the pattern on
#: every string field of these names in every request schema:
#:
#: * ``currency``: an ISO 4217 code (``codes.CURRENCIES``) in any case; sent upper-cased. The
#:   pattern ``^[A-Za-z]{3,3}$`` lets "XYZ" by, and the specs say "ISO 4217" in prose (S-PAY,
#:   S-CT purchase_currency).
#: * ``country``: an ISO 3166-1 alpha-2 code (``codes.COUNTRIES``) in any case; sent
#:   upper-cased. The pattern lets "UK" and "XX" by; the specs say "ISO 3166 alpha-2" (S-PAY
#:   purchase_country, address.country). Order Management's address.country has no pattern.
#: * ``locale``: RFC 1766 as Klarna uses it, "language-country" (S-PAY session_create.locale:
#:   "its value consists of language-country"): two letters, a hyphen and an ISO 3166-1 alpha-2
#:   country. The pattern also lets "en", "en-XX" and "en-GB-US" by. The language is not looked
#:   up: Klarna's own example sends "us-US" (D-STEP3).
CODE_FORMATS: Final[Mapping[str, str]] = {
    "purchase_currency": "currency",
    "purchase_country": "country",
    "country": "country",
    "locale": "locale",
}

#: Closed enums match in any casing, and the spec's spelling is what is sent: Klarna's own
#: example sends "intended_use": "subscription" where the spec's enum says "SUBSCRIPTION"
#: (D-STEP3, S-PAY customer_token_creation_request.intended_use).
ENUMS_IGNORE_CASE: Final = True

#: A missing required field whose message says more than "required" (schema, field) -> note.
MISSING_NOTES: Final[Mapping[tuple[str, str], str]] = {
    ("payments.customer_token_creation_request", "purchase_currency"): (
        "Klarna's spec requires it, though the docs' example leaves it out (D-STEP3)"
    ),
}


def contract() -> dict[str, Schema]:
    """The generated table with :data:`OVERRIDES` applied (a new dict; the table is unchanged).

    Raises ``ValueError`` when an override no longer matches what the spec says, so that a new
    export cannot silently change a field we override.
    """
    schemas = dict(SCHEMAS)
    for override in OVERRIDES:
        schema = schemas[override.schema]
        current = schema.properties.get(override.field)
        if current != override.spec:
            raise ValueError(
                f"{override.schema}.{override.field}: the spec now says {current!r}, the "
                f"override expects {override.spec!r}; review the override"
            )
        properties = {**schema.properties, override.field: override.ours}
        schemas[override.schema] = attrs.evolve(schema, properties=properties)
    return schemas
