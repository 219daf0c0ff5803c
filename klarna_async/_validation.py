"""Checks a request against Klarna's specs before anything is sent.

:func:`validate` walks a request model once and collects *every* broken rule, each with its JSON
path (``$.order_lines[2].tax_rate``), into one :class:`RequestValidationError`; it raises nothing
else for bad input, including values of the wrong Python type. :func:`prepare` is what the
resources call: mapping or model in, validated model and its JSON body out.

The rules are the constraints the two OpenAPI specs document for the request schemas. The
Payments API (KP) and the Customer Token API (CT) share one :class:`OrderLine` class but not its
limits, so each API gets its own rule tree:

========================  ==========================  ==========================
rule                      KP (``/payments/v1``)       CT (``/customer-token/v1``)
========================  ==========================  ==========================
line ``unit_price``,      at most 200000000           at most 100000000
``total_amount``
line ``merchant_data``    at most 1024 characters     at most 255 characters
line ``reference``        at most 255 characters      at most 256 characters
line ``quantity_unit``    1 to 8 characters           any string
``order_amount``          at least 0                  at least 1
``order_tax_amount``      optional                    required
``merchant_urls``         4 optional URLs             ``confirmation`` required, ``push``
address ``phone``         any length up to 99         5 to 99 characters
========================  ==========================  ==========================

Three rules go beyond a schema, on purpose: a line ``type`` must be one of the eight documented
types on KP too (KP lists them in prose, CT as an enum; ``return_fee`` belongs to Order
Management); ``tax_rate`` is 0 to 10000 on CT too (its schema only says "non-negative" in
prose); a subscription ``name`` is 1 to 255 characters on CT too (as on KP). Each catches a typo
that Klarna would otherwise reject, or worse, accept.

Amount arithmetic (``check_amounts``, on by default) is checked only where the numbers involved
are themselves valid:

* per line, ``total_amount == quantity * unit_price - total_discount_amount`` (KP/CT spec text);
* per line, ``total_tax_amount`` within ±1 of ``total_amount - total_amount * 10000 /
  (10000 + tax_rate)`` when both tax fields are given (spec text);
* per order, ``order_amount == sum(total_amount)`` and ``order_tax_amount ==
  sum(total_tax_amount)``. These two are Klarna practice (every example, the tax-handling guide)
  rather than written rules, hence the switch. US orders carry sales tax as a ``sales_tax`` line
  whose amount *is* the tax, so the tax sum may count such a line's ``total_amount`` instead.

Everything is built once at import as closures over precomputed tuples: a call does no
reflection on classes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Literal, TypeGuard, TypeVar

import attrs
import orjson

from klarna_async._converter import structure_request, to_json
from klarna_async._errors import RequestValidationError, Violation
from klarna_async._models.common import (
    Address,
    Attachment,
    Customer,
    MerchantUrls,
    Options,
    OrderLine,
    ProductIdentifiers,
    Subscription,
    TokenMerchantUrls,
)
from klarna_async._models.customer_tokens import TokenOrderRequest
from klarna_async._models.enums import (
    AcquiringChannel,
    IntendedUse,
    Intent,
    Interval,
    OrderLineType,
    OrganizationEntityType,
)
from klarna_async._models.payments import CustomerTokenRequest, OrderRequest, SessionRequest

__all__ = ["prepare", "validate"]

T = TypeVar("T", bound=attrs.AttrsInstance)

# A check gets a value that is not None, where it sits (``parent + key`` is its path, joined only
# when a violation needs it), and the list to append violations to.
_Check = Callable[[Any, str, str, list[Violation]], None]
_Api = Literal["payments", "customer_token"]

# int64 is the format of every integer in both specs, and orjson cannot write beyond it.
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_TAX_RATE_MAX: Final = 10000


_KINDS: Final = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}


def _kind(value: object) -> str:
    return _KINDS.get(type(value)) or f"a {type(value).__name__}"


def _is_int(value: object) -> TypeGuard[int]:
    # bool is an int subclass, and True is not a quantity.
    return isinstance(value, int) and value.__class__ is not bool


# --- checks for one value ---------------------------------------------------------------------
# Messages never quote free text: it may be personal data. Enum values and numbers are quoted.


def _string(
    *,
    min_length: int = 0,
    max_length: int | None = None,
    pattern: str | None = None,
    hint: str = "",
) -> _Check:
    # JSON Schema patterns are ECMA regexes searched in the whole string; with their ^...$
    # anchors fullmatch is the same test, and unlike re.match it refuses a trailing newline.
    matcher = re.compile(pattern).fullmatch if pattern is not None else None
    pattern_message = f"must match {pattern}" + (f" ({hint})" if hint else "")

    def check(value: Any, parent: str, key: str, out: list[Violation]) -> None:
        if not isinstance(value, str):
            out.append(Violation(parent + key, f"must be a string, got {_kind(value)}"))
            return
        length = len(value)
        if length < min_length:
            unit = "character" if min_length == 1 else "characters"
            out.append(Violation(parent + key, f"must be at least {min_length} {unit} long"))
        elif max_length is not None and length > max_length:
            message = f"must be at most {max_length} characters long, got {length}"
            out.append(Violation(parent + key, message))
        if matcher is not None and matcher(value) is None:
            out.append(Violation(parent + key, pattern_message))

    return check


def _integer(*, minimum: int = _INT64_MIN, maximum: int = _INT64_MAX) -> _Check:
    def check(value: Any, parent: str, key: str, out: list[Violation]) -> None:
        if not _is_int(value):
            out.append(Violation(parent + key, f"must be an integer, got {_kind(value)}"))
        elif value < minimum:
            out.append(Violation(parent + key, f"must be at least {minimum}, got {value}"))
        elif value > maximum:
            out.append(Violation(parent + key, f"must be at most {maximum}, got {value}"))

    return check


def _boolean(value: Any, parent: str, key: str, out: list[Violation]) -> None:
    if value is not True and value is not False:
        out.append(Violation(parent + key, f"must be a boolean, got {_kind(value)}"))


def _one_of(values: Iterable[str]) -> _Check:
    ordered = list(values)
    allowed = frozenset(ordered)
    listed = ", ".join(ordered)

    def check(value: Any, parent: str, key: str, out: list[Violation]) -> None:
        if not isinstance(value, str):
            out.append(Violation(parent + key, f"must be a string, got {_kind(value)}"))
        elif value not in allowed:
            out.append(Violation(parent + key, f"must be one of {listed}, got {str(value)!r}"))

    return check


def _array(item: _Check, *, min_items: int = 0, max_items: int | None = None) -> _Check:
    def check(value: Any, parent: str, key: str, out: list[Violation]) -> None:
        path = parent + key
        if not isinstance(value, (tuple, list)):
            out.append(Violation(path, f"must be a tuple, got {_kind(value)}"))
            return
        count = len(value)
        if count < min_items:
            out.append(Violation(path, f"must hold at least {min_items} item(s), got {count}"))
        elif max_items is not None and count > max_items:
            out.append(Violation(path, f"must hold at most {max_items} items, got {count}"))
        for index, element in enumerate(value):
            item(element, path, f"[{index}]", out)

    return check


@attrs.frozen
class _Field:
    name: str
    check: _Check
    required: bool = False


def _model(
    cls: type[Any], fields: Iterable[_Field], *after: Callable[[Any, str, list[Violation]], None]
) -> _Check:
    ordered = tuple(fields)
    # A field without a rule would be sent unchecked; fail at import instead.
    assert {f.name for f in ordered} == {a.name for a in attrs.fields(cls)}, cls
    rules = tuple((f.name, f".{f.name}", f.required, f.check) for f in ordered)
    name_of_cls = cls.__name__

    def check(obj: Any, parent: str, key: str, out: list[Violation]) -> None:
        if not isinstance(obj, cls):
            out.append(Violation(parent + key, f"must be {name_of_cls}, got {_kind(obj)}"))
            return
        path = parent + key
        for name, field_key, required, field_check in rules:
            value = getattr(obj, name)
            if value is not None:
                field_check(value, path, field_key, out)
            elif required:
                out.append(Violation(path + field_key, "required field missing"))
        for rule in after:
            rule(obj, path, out)

    return check


def _f(name: str, check: _Check, *, required: bool = False) -> _Field:
    return _Field(name, check, required)


# --- arithmetic ---------------------------------------------------------------------------------


def _line_amounts(line: OrderLine, path: str, out: list[Violation]) -> None:
    # ``type(x) is int`` rather than _is_int: this runs for every line of every charge, and a
    # value of another type has already been reported by its own check.
    total = line.total_amount
    if type(total) is not int:
        return
    quantity, unit_price, discount = line.quantity, line.unit_price, line.total_discount_amount
    if type(quantity) is int and type(unit_price) is int:
        if discount is None:
            expected = quantity * unit_price
        elif type(discount) is int:
            expected = quantity * unit_price - discount
        else:
            expected = total
        if total != expected:
            out.append(
                Violation(
                    f"{path}.total_amount",
                    "must equal quantity * unit_price - total_discount_amount"
                    f" = {expected}, got {total}",
                )
            )
    rate, tax = line.tax_rate, line.total_tax_amount
    if type(rate) is int and type(tax) is int and 0 <= rate <= _TAX_RATE_MAX:
        # Exact integer form of |tax - total * rate / (10000 + rate)| <= 1.
        denominator = 10000 + rate
        if abs(tax * denominator - total * rate) > denominator:
            expected_tax = total * rate / denominator
            out.append(
                Violation(
                    f"{path}.total_tax_amount",
                    "must be within ±1 of total_amount - total_amount * 10000 / (10000 + tax_rate)"
                    f" = {expected_tax:.2f}, got {tax}",
                )
            )


def _order_amounts(order: Any, path: str, out: list[Violation]) -> None:
    lines = order.order_lines
    if not isinstance(lines, (tuple, list)) or not lines:
        return
    total_sum = tax_sum = us_tax_sum = 0
    taxes_ok = True
    has_tax = False
    for line in lines:
        if line.__class__ is not OrderLine or type(line.total_amount) is not int:
            return
        total = line.total_amount
        total_sum += total
        tax = line.total_tax_amount
        if tax is not None:
            if type(tax) is int:
                has_tax = True
                tax_sum += tax
            else:
                taxes_ok = False
                tax = 0
        if line.type == OrderLineType.SALES_TAX:
            # US style: the sales_tax line's amount is the order's tax.
            has_tax = True
            us_tax_sum += total
        elif tax is not None:
            us_tax_sum += tax
    amount = order.order_amount
    if type(amount) is int and amount != total_sum:
        message = f"must equal the sum of order_lines[].total_amount = {total_sum}, got {amount}"
        out.append(Violation(f"{path}.order_amount", message))
    order_tax = order.order_tax_amount
    if taxes_ok and has_tax and type(order_tax) is int and order_tax not in (tax_sum, us_tax_sum):
        message = f"must equal the sum of order_lines[].total_tax_amount = {tax_sum}"
        if us_tax_sum != tax_sum:
            message += f" (or {us_tax_sum}, counting sales_tax lines as tax)"
        out.append(Violation(f"{path}.order_tax_amount", f"{message}, got {order_tax}"))


# --- the rule trees -----------------------------------------------------------------------------

_COUNTRY: Final = _string(pattern=r"^[A-Za-z]{2,2}$", hint="ISO 3166 alpha-2, e.g. SE")
_CURRENCY: Final = _string(pattern=r"^[A-Za-z]{3,3}$", hint="ISO 4217, e.g. EUR")
_LOCALE: Final = _string(pattern=r"^[A-Za-z]{2,2}(?:-[A-Za-z]{2,2})*$", hint="RFC 1766, e.g. en-GB")
_COLOUR: Final = _string(pattern=r"^#[A-Fa-f0-9]{6}$", hint="CSS hex colour, e.g. #FF9900")
_TEXT: Final = _string()
_REFERENCE: Final = _string(max_length=255)
_URL: Final = _string(max_length=2000)
_LINE_TYPES: Final = [t.value for t in OrderLineType if t is not OrderLineType.RETURN_FEE]


def _address(api: _Api) -> _Check:
    short = _string(max_length=99)
    phone = _string(min_length=5, max_length=99) if api == "customer_token" else short
    return _model(
        Address,
        [
            _f("attention", short),
            _f("city", short),
            _f("country", _COUNTRY),
            _f("email", short),
            _f("family_name", short),
            _f("given_name", short),
            _f("organization_name", short),
            _f("phone", phone),
            _f("postal_code", _string(max_length=10)),
            _f("region", short),
            _f("street_address", short),
            _f("street_address2", short),
            _f("title", _string(max_length=20)),
        ],
    )


def _order_line(api: _Api, check_amounts: bool) -> _Check:
    kp = api == "payments"
    amount_max = 200_000_000 if kp else 100_000_000
    product_identifiers = _model(
        ProductIdentifiers,
        [
            _f("brand", _string(max_length=70)),
            _f("category_path", _string(max_length=750)),
            _f("global_trade_item_number", _string(max_length=50)),
            _f("manufacturer_part_number", _string(max_length=70)),
            _f("color", _string(max_length=64)),
            _f("size", _string(max_length=64)),
        ],
    )
    subscription = _model(
        Subscription,
        [
            _f("name", _string(min_length=1, max_length=255), required=True),
            _f("interval", _one_of(Interval), required=True),
            _f("interval_count", _integer(minimum=1), required=True),
        ],
    )
    return _model(
        OrderLine,
        [
            _f("name", _string(min_length=1, max_length=255), required=True),
            _f("quantity", _integer(minimum=0), required=True),
            _f("unit_price", _integer(maximum=amount_max), required=True),
            _f("total_amount", _integer(maximum=amount_max), required=True),
            _f("type", _one_of(_LINE_TYPES)),
            _f("reference", _string(max_length=255 if kp else 256)),
            _f("quantity_unit", _string(min_length=1, max_length=8) if kp else _TEXT),
            _f("tax_rate", _integer(minimum=0, maximum=_TAX_RATE_MAX)),
            _f("total_discount_amount", _integer(minimum=0)),
            _f("total_tax_amount", _integer()),
            _f("merchant_data", _string(max_length=1024 if kp else 255)),
            _f("product_url", _string(max_length=1024)),
            _f("image_url", _string(max_length=1024)),
            _f("product_identifiers", product_identifiers),
            _f("subscription", subscription),
        ],
        *([_line_amounts] if check_amounts else []),
    )


_ATTACHMENT: Final = _model(
    Attachment, [_f("body", _TEXT, required=True), _f("content_type", _TEXT, required=True)]
)
_CUSTOMER: Final = _model(
    Customer,
    [
        _f("date_of_birth", _TEXT),
        _f("gender", _TEXT),
        _f("last_four_ssn", _string(pattern=r"^([0-9]{4}|[0-9]{9})$", hint="4 or 9 digits")),
        _f("national_identification_number", _TEXT),
        _f("organization_entity_type", _one_of(OrganizationEntityType)),
        _f("organization_registration_id", _TEXT),
        _f("title", _TEXT),
        _f("type", _string(pattern=r"^(person|organization)$", hint="person or organization")),
        _f("vat_id", _TEXT),
    ],
)
_MERCHANT_URLS: Final = _model(
    MerchantUrls,
    [
        _f("confirmation", _URL),
        _f("notification", _URL),
        _f("push", _URL),
        _f("authorization", _URL),
    ],
)
_TOKEN_MERCHANT_URLS: Final = _model(
    TokenMerchantUrls, [_f("confirmation", _URL, required=True), _f("push", _URL)]
)
_OPTIONS: Final = _model(
    Options,
    [
        _f("color_border", _COLOUR),
        _f("color_border_selected", _COLOUR),
        _f("color_details", _COLOUR),
        _f("color_text", _COLOUR),
        _f("radius_border", _TEXT),
    ],
)


def _order_lines(api: _Api, check_amounts: bool) -> _Check:
    return _array(_order_line(api, check_amounts), min_items=1, max_items=1000)


def _session_request(check_amounts: bool) -> _Check:
    address = _address("payments")
    return _model(
        SessionRequest,
        [
            _f("purchase_country", _COUNTRY, required=True),
            _f("purchase_currency", _CURRENCY, required=True),
            _f("order_amount", _integer(minimum=0), required=True),
            _f("order_lines", _order_lines("payments", check_amounts), required=True),
            _f("order_tax_amount", _integer(minimum=0)),
            _f("locale", _LOCALE),
            _f("intent", _one_of(Intent)),
            _f("acquiring_channel", _one_of(AcquiringChannel)),
            _f("billing_address", address),
            _f("shipping_address", address),
            _f("customer", _CUSTOMER),
            _f("merchant_urls", _MERCHANT_URLS),
            _f("merchant_reference1", _REFERENCE),
            _f("merchant_reference2", _REFERENCE),
            _f("merchant_data", _string(max_length=6000)),
            _f("attachment", _ATTACHMENT),
            _f("options", _OPTIONS),
            _f("custom_payment_method_ids", _array(_TEXT)),
            _f("design", _TEXT),
        ],
        *([_order_amounts] if check_amounts else []),
    )


def _order_request(check_amounts: bool) -> _Check:
    address = _address("payments")
    return _model(
        OrderRequest,
        [
            _f("purchase_country", _COUNTRY, required=True),
            _f("purchase_currency", _CURRENCY, required=True),
            _f("order_amount", _integer(minimum=0), required=True),
            _f("order_lines", _order_lines("payments", check_amounts), required=True),
            _f("order_tax_amount", _integer(minimum=0)),
            _f("locale", _LOCALE),
            _f("auto_capture", _boolean),
            _f("billing_address", address),
            _f("shipping_address", address),
            _f("customer", _CUSTOMER),
            _f("merchant_urls", _MERCHANT_URLS),
            _f("merchant_reference1", _REFERENCE),
            _f("merchant_reference2", _REFERENCE),
            _f("merchant_data", _string(max_length=6000)),
            _f("custom_payment_method_ids", _array(_TEXT)),
        ],
        *([_order_amounts] if check_amounts else []),
    )


def _customer_token_request() -> _Check:
    return _model(
        CustomerTokenRequest,
        [
            _f("purchase_country", _COUNTRY, required=True),
            _f("purchase_currency", _CURRENCY, required=True),
            _f("locale", _LOCALE, required=True),
            _f("description", _string(min_length=1, max_length=255), required=True),
            _f("intended_use", _one_of(IntendedUse), required=True),
            _f("billing_address", _address("payments")),
            _f("customer", _CUSTOMER),
        ],
    )


def _token_order_request(check_amounts: bool) -> _Check:
    return _model(
        TokenOrderRequest,
        [
            _f("purchase_currency", _CURRENCY, required=True),
            _f("order_amount", _integer(minimum=1), required=True),
            _f("order_tax_amount", _integer(minimum=0), required=True),
            _f("order_lines", _order_lines("customer_token", check_amounts), required=True),
            _f("auto_capture", _boolean),
            _f("merchant_reference1", _REFERENCE),
            _f("merchant_reference2", _REFERENCE),
            _f("merchant_data", _string(max_length=6000)),
            _f("merchant_urls", _TOKEN_MERCHANT_URLS),
            _f("shipping_address", _address("customer_token")),
            _f("attachment", _ATTACHMENT),
        ],
        *([_order_amounts] if check_amounts else []),
    )


_VALIDATORS: Final[Mapping[tuple[type[Any], bool], _Check]] = {
    (cls, check_amounts): build(check_amounts)
    for check_amounts in (True, False)
    for cls, build in (
        (SessionRequest, _session_request),
        (OrderRequest, _order_request),
        (TokenOrderRequest, _token_order_request),
        (CustomerTokenRequest, lambda _: _customer_token_request()),
    )
}


# --- entry points -------------------------------------------------------------------------------


def validate(request: attrs.AttrsInstance, *, check_amounts: bool = True) -> None:
    """Raise :class:`RequestValidationError` listing every rule ``request`` breaks.

    ``request`` is a :class:`SessionRequest`, :class:`OrderRequest`, :class:`TokenOrderRequest`
    or :class:`CustomerTokenRequest`; anything else is a ``TypeError`` (a bug, not bad input).
    ``check_amounts=False`` skips the amount arithmetic and keeps every other rule.
    """
    check = _VALIDATORS.get((request.__class__, bool(check_amounts)))
    if check is None:
        raise TypeError(f"no request validation for {type(request).__name__}")
    out: list[Violation] = []
    check(request, "$", "", out)
    if out:
        raise RequestValidationError(out, model=type(request).__name__)


def prepare(
    request: T | Mapping[str, Any], cls: type[T], *, check_amounts: bool = True
) -> tuple[T, bytes]:
    """The validated model and its JSON body, from a model or a mapping of the JSON shape.

    A mapping is structured first (:func:`~klarna_async._converter.structure_request`: unknown
    keys and wrong types are violations too). An attrs instance of another class is a
    ``TypeError``.
    """
    if isinstance(request, cls):
        model: T = request
    elif isinstance(request, Mapping):
        model = structure_request(request, cls)
    else:
        expected = f"expected {cls.__name__} or a mapping"
        raise TypeError(f"{expected}, got {type(request).__name__}")
    validate(model, check_amounts=check_amounts)
    try:
        body = to_json(model)
    except orjson.JSONEncodeError as exc:
        # e.g. a lone surrogate in a string: valid Python, not valid UTF-8.
        problem = Violation("$", f"cannot be written as JSON: {exc}")
        raise RequestValidationError([problem], model=cls.__name__) from None
    return model, body
