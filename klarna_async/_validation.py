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

:func:`prepare` has a fast path for the common case, a valid request model: each rule tree is
also compiled at import into one generated function that tests the request and writes its JSON
dict in a single walk (see "the fast path" below). It only ever says "valid, here is the dict"
or "ask the rules"; the rules and ``to_json`` stay the one authority on what is wrong and how it
is written, and the tests hold the two paths to the same answers.
"""

from __future__ import annotations

import linecache
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Literal, TypeGuard, TypeVar, cast

import attrs
import orjson

from klarna_async._converter import field_layout, structure_request, to_json
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
# A rule on a whole model, after its fields: the model, its path, the list of violations.
_AfterRule = Callable[[Any, str, list[Violation]], None]
_Api = Literal["payments", "customer_token"]

# int64 is the format of every integer in both specs, and orjson cannot write beyond it.
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_TAX_RATE_MAX: Final = 10000


_KINDS: Final = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}


# What each check tests, kept beside it for the fast path's code generator (see prepare); the
# checks themselves never read these.


@attrs.frozen
class _StringRule:
    min_length: int
    max_length: int | None
    matcher: Callable[[str], object] | None
    #: The values are codes from a small set (a country, a currency), never personal data: the
    #: fast path may remember the ones that matched rather than match them again.
    codes: bool


@attrs.frozen
class _IntegerRule:
    minimum: int
    maximum: int


@attrs.frozen
class _BooleanRule:
    pass


@attrs.frozen
class _OneOfRule:
    allowed: frozenset[str]
    #: str and the classes of the listed values (an enum): the only classes the fast path lets by.
    classes: frozenset[type[Any]]


@attrs.frozen
class _ArrayRule:
    item: _Check
    min_items: int
    max_items: int | None


@attrs.frozen
class _ModelRule:
    cls: type[Any]
    #: (field name, required, check), in class order.
    fields: Sequence[tuple[str, bool, _Check]]
    after: Sequence[_AfterRule]


_Rule = _StringRule | _IntegerRule | _BooleanRule | _OneOfRule | _ArrayRule | _ModelRule
_RULES: Final[dict[_Check, _Rule]] = {}


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
    codes: bool = False,
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

    _RULES[check] = _StringRule(min_length, max_length, matcher, codes)
    return check


def _integer(*, minimum: int = _INT64_MIN, maximum: int = _INT64_MAX) -> _Check:
    def check(value: Any, parent: str, key: str, out: list[Violation]) -> None:
        if not _is_int(value):
            out.append(Violation(parent + key, f"must be an integer, got {_kind(value)}"))
        elif value < minimum:
            out.append(Violation(parent + key, f"must be at least {minimum}, got {value}"))
        elif value > maximum:
            out.append(Violation(parent + key, f"must be at most {maximum}, got {value}"))

    _RULES[check] = _IntegerRule(minimum, maximum)
    return check


def _boolean(value: Any, parent: str, key: str, out: list[Violation]) -> None:
    if value is not True and value is not False:
        out.append(Violation(parent + key, f"must be a boolean, got {_kind(value)}"))


_RULES[_boolean] = _BooleanRule()


def _one_of(values: Iterable[str]) -> _Check:
    ordered = list(values)
    allowed = frozenset(ordered)
    listed = ", ".join(ordered)

    def check(value: Any, parent: str, key: str, out: list[Violation]) -> None:
        if not isinstance(value, str):
            out.append(Violation(parent + key, f"must be a string, got {_kind(value)}"))
        elif value not in allowed:
            out.append(Violation(parent + key, f"must be one of {listed}, got {str(value)!r}"))

    _RULES[check] = _OneOfRule(allowed, frozenset({str, *map(type, ordered)}))
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

    _RULES[check] = _ArrayRule(item, min_items, max_items)
    return check


@attrs.frozen
class _Field:
    name: str
    check: _Check
    required: bool = False


def _model(cls: type[Any], fields: Iterable[_Field], *after: _AfterRule) -> _Check:
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

    _RULES[check] = _ModelRule(cls, tuple((f.name, f.required, f.check) for f in ordered), after)
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

_COUNTRY: Final = _string(pattern=r"^[A-Za-z]{2,2}$", hint="ISO 3166 alpha-2, e.g. SE", codes=True)
_CURRENCY: Final = _string(pattern=r"^[A-Za-z]{3,3}$", hint="ISO 4217, e.g. EUR", codes=True)
_LOCALE: Final = _string(
    pattern=r"^[A-Za-z]{2,2}(?:-[A-Za-z]{2,2})*$", hint="RFC 1766, e.g. en-GB", codes=True
)
_COLOUR: Final = _string(
    pattern=r"^#[A-Fa-f0-9]{6}$", hint="CSS hex colour, e.g. #FF9900", codes=True
)
_TEXT: Final = _string()
_REFERENCE: Final = _string(max_length=255)
_URL: Final = _string(max_length=2000)
_LINE_TYPES: Final = [t for t in OrderLineType if t is not OrderLineType.RETURN_FEE]


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


# --- the fast path -------------------------------------------------------------------------------
# A valid request is the common case, and for it the rule walk above plus to_json was the largest
# CPU cost of a charge on our side. So each tree is also compiled, at import, into one
# straight-line function that reads every field once, tests it inline and builds the JSON-ready
# dict as it goes, exactly as the converter writes it (klarna_async._converter.field_layout). At
# the first failed test it returns None and prepare() takes the slow path: the rule tree, which
# collects every violation, then to_json. Its tests are stricter than the rules, never looser:
# exact classes (a str or int subclass, a subclass of a model go the slow way), so that what it
# accepts the rules accept and the converter writes the same way. tests/test_fast_path.py checks
# both against the slow path.

_FastPath = Callable[[Any], "dict[str, Any] | None"]


class _FastWriter:
    """Writes the source of one fast-path function from a rule tree."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.namespace: dict[str, Any] = {}
        self._count = 0

    def fresh(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def constant(self, value: Any, stem: str) -> str:
        name = self.fresh(f"_{stem}")
        self.namespace[name] = value
        return name

    def line(self, indent: int, text: str) -> None:
        self.lines.append("    " * indent + text)

    def fail_if(self, indent: int, *conditions: str) -> None:
        self.line(indent, f"if {' or '.join(conditions)}: return None")

    def value(self, check: _Check, var: str, indent: int, on_item: _ItemHook | None = None) -> str:
        """Test ``var`` (not None) against ``check``; return the expression of its JSON value."""
        rule = _RULES[check]
        if isinstance(rule, _StringRule):
            tests = [f"{var}.__class__ is not str"]
            tests += self.length(var, rule.min_length, rule.max_length)
            if rule.codes:
                known, matches = _remembering(rule.matcher)
                known_name = self.constant(known, "known")
                tests.append(
                    f"{var} not in {known_name} and not {self.constant(matches, 'match')}({var})"
                )
            elif rule.matcher is not None:
                tests.append(f"{self.constant(rule.matcher, 'match')}({var}) is None")
            self.fail_if(indent, *tests)
        elif isinstance(rule, _IntegerRule):
            bounds = f"{rule.minimum} <= {var} <= {rule.maximum}"
            self.fail_if(indent, f"{var}.__class__ is not int", f"not {bounds}")
        elif isinstance(rule, _BooleanRule):
            self.fail_if(indent, f"{var} is not True and {var} is not False")
        elif isinstance(rule, _OneOfRule):
            classes = self.constant(rule.classes, "classes")
            allowed = self.constant(rule.allowed, "allowed")
            self.fail_if(indent, f"{var}.__class__ not in {classes}", f"{var} not in {allowed}")
        elif isinstance(rule, _ArrayRule):
            return self.array(rule, var, indent, on_item)
        else:
            return self.model(rule, var, indent)[0]
        # Scalars go out as they are, as the converter's identity hooks leave them (an enum member
        # included: orjson writes its value).
        return var

    @staticmethod
    def length(var: str, minimum: int, maximum: int | None) -> list[str]:
        """The test that ``len(var)`` is out of bounds, if there are any."""
        lower = f"{minimum} <= " if minimum else ""
        upper = f" <= {maximum}" if maximum is not None else ""
        return [f"not {lower}len({var}){upper}"] if lower or upper else []

    def array(self, rule: _ArrayRule, var: str, indent: int, on_item: _ItemHook | None) -> str:
        self.fail_if(
            indent,
            f"{var}.__class__ is not tuple and {var}.__class__ is not list",
            *self.length(var, rule.min_items, rule.max_items),
        )
        item = self.fresh("item")
        self.line(indent, f"for {item} in {var}:")
        item_rule = _RULES[rule.item]
        if not isinstance(item_rule, _ModelRule):
            self.value(rule.item, item, indent + 1)
            return f"list({var})"
        written = self.fresh("items")
        self.lines.insert(len(self.lines) - 1, "    " * indent + f"{written} = []")
        data, values = self.model(item_rule, item, indent + 1)
        if on_item is not None:
            on_item(values, indent + 1)
        self.line(indent + 1, f"{written}.append({data})")
        return written

    def model(self, rule: _ModelRule, var: str, indent: int) -> tuple[str, dict[str, str]]:
        """Test a model and write its dict; return the dict's name and each field's variable."""
        self.fail_if(indent, f"{var}.__class__ is not {self.constant(rule.cls, rule.cls.__name__)}")
        checks = {name: (required, check) for name, required, check in rule.fields}
        values = {name: self.fresh(name) for name in checks}
        # _order_amounts adds up the order lines; its sums are kept while the lines are tested.
        add_line = self.order_sums(values, indent) if _order_amounts in rule.after else None
        hooks = {"order_lines": add_line}
        layout = field_layout(rule.cls)
        data = self.fresh("data")
        literal: list[str] = []
        for name, left_out in layout:
            if not left_out:
                # The converter writes these even when None; every check refuses None.
                self.line(indent, f"{values[name]} = {var}.{name}")
                expression = self.value(checks[name][1], values[name], indent, hooks.get(name))
                literal.append(f"{name!r}: {expression}")
        self.line(indent, f"{data} = {{{', '.join(literal)}}}")
        for name, left_out in layout:
            if left_out:
                required, check = checks[name]
                self.line(indent, f"{values[name]} = {var}.{name}")
                inner = indent
                if not required:
                    self.line(indent, f"if {values[name]} is not None:")
                    inner += 1
                expression = self.value(check, values[name], inner, hooks.get(name))
                self.line(inner, f"{data}[{name!r}] = {expression}")
        for after in rule.after:
            _AFTER_WRITERS[after](self, values, indent)
        return data, values

    def order_sums(self, order: dict[str, str], indent: int) -> _ItemHook:
        """Start the sums of _order_amounts; the hook adds each line, the end rule judges."""
        for name in ("total_sum", "tax_sum", "us_tax_sum"):
            order[name] = self.fresh(name)
            self.line(indent, f"{order[name]} = 0")
        order["has_tax"] = self.fresh("has_tax")
        self.line(indent, f"{order['has_tax']} = False")
        sales_tax = self.constant(OrderLineType.SALES_TAX, "SALES_TAX")

        def add_line(line: dict[str, str], indent: int) -> None:
            total, tax = line["total_amount"], line["total_tax_amount"]
            self.line(indent, f"{order['total_sum']} += {total}")
            self.line(indent, f"if {tax} is not None:")
            self.line(indent + 1, f"{order['has_tax']} = True")
            self.line(indent + 1, f"{order['tax_sum']} += {tax}")
            self.line(indent, f"if {line['type']} == {sales_tax}:")
            self.line(indent + 1, f"{order['has_tax']} = True")
            self.line(indent + 1, f"{order['us_tax_sum']} += {total}")
            self.line(indent, f"elif {tax} is not None:")
            self.line(indent + 1, f"{order['us_tax_sum']} += {tax}")

        return add_line


_ItemHook = Callable[[dict[str, str], int], None]

# How many matching codes a fast path remembers per rule, and how long each may be: a bound on
# the memory that callers' values can take, far above the codes there are.
_KNOWN_CODES_MAX: Final = 512
_KNOWN_CODE_LENGTH_MAX: Final = 16


def _remembering(matcher: Callable[[str], object] | None) -> tuple[set[str], Callable[[str], bool]]:
    """A set of the values that matched (for an exact str, being in it is matching: the pattern
    is a pure function of the text) and the test that matches and fills it."""
    assert matcher is not None, "codes=True needs a pattern"
    known: set[str] = set()

    def matches(value: str) -> bool:
        if matcher(value) is None:
            return False
        if len(known) < _KNOWN_CODES_MAX and len(value) <= _KNOWN_CODE_LENGTH_MAX:
            known.add(value)
        return True

    return known, matches


def _write_line_amounts(writer: _FastWriter, line: dict[str, str], indent: int) -> None:
    # _line_amounts for values that passed their own rules: exact ints, or None where optional.
    quantity, unit_price, total = line["quantity"], line["unit_price"], line["total_amount"]
    discount, rate, tax = line["total_discount_amount"], line["tax_rate"], line["total_tax_amount"]
    writer.line(indent, f"if {discount} is None:")
    writer.fail_if(indent + 1, f"{total} != {quantity} * {unit_price}")
    writer.line(indent, f"elif {total} != {quantity} * {unit_price} - {discount}: return None")
    writer.line(indent, f"if {tax} is not None and {rate} is not None:")
    denominator = writer.fresh("denominator")
    writer.line(indent + 1, f"{denominator} = 10000 + {rate}")
    writer.fail_if(
        indent + 1,
        f"not 0 <= {rate} <= {_TAX_RATE_MAX}",
        f"abs({tax} * {denominator} - {total} * {rate}) > {denominator}",
    )


def _write_order_amounts(writer: _FastWriter, order: dict[str, str], indent: int) -> None:
    # _order_amounts, with the sums that order_sums' hook added up line by line.
    amount, order_tax = order["order_amount"], order["order_tax_amount"]
    writer.fail_if(indent, f"{amount} != {order['total_sum']}")
    writer.fail_if(
        indent,
        f"{order['has_tax']} and {order_tax} is not None and {order_tax} != {order['tax_sum']}"
        f" and {order_tax} != {order['us_tax_sum']}",
    )


# An after-rule the writer does not know is a KeyError at import, not a rule the fast path skips.
_AfterWriter = Callable[[_FastWriter, dict[str, str], int], None]
_AFTER_WRITERS: Final[Mapping[_AfterRule, _AfterWriter]] = {
    _line_amounts: _write_line_amounts,
    _order_amounts: _write_order_amounts,
}


def _compile_fast_path(check: _Check, name: str) -> _FastPath:
    writer = _FastWriter()
    rule = _RULES[check]
    assert isinstance(rule, _ModelRule), rule
    writer.line(0, f"def {name}(request):")
    data, _ = writer.model(rule, "request", 1)
    writer.line(1, f"return {data}")
    source = "\n".join(writer.lines) + "\n"
    filename = f"<klarna_async fast path {name}>"
    # In linecache, as cattrs does, so that a traceback through it shows the line.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), writer.namespace)  # noqa: S102
    return cast(_FastPath, writer.namespace[name])


_FAST_PATHS: Final[Mapping[bool, Mapping[type[Any], _FastPath]]] = {
    check_amounts: {
        cls: _compile_fast_path(
            check, f"fast_{cls.__name__}" + ("" if check_amounts else "_without_amounts")
        )
        for (cls, flag), check in _VALIDATORS.items()
        if flag is check_amounts
    }
    for check_amounts in (True, False)
}
_FAST_WITH_AMOUNTS: Final = _FAST_PATHS[True]
_FAST_WITHOUT_AMOUNTS: Final = _FAST_PATHS[False]


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

    A model of exactly ``cls`` (given, or structured from the mapping) that the fast path finds
    valid is written from the dict the fast path built; anything else (invalid, a subclass
    somewhere, not JSON-encodable) goes through :func:`validate` and
    :func:`~klarna_async._converter.to_json`, with the same result.
    """
    if request.__class__ is cls or isinstance(request, cls):
        model: T = request
    elif isinstance(request, Mapping):
        model = structure_request(request, cls)
    else:
        expected = f"expected {cls.__name__} or a mapping"
        raise TypeError(f"{expected}, got {type(request).__name__}")
    if model.__class__ is cls:
        # The fast path (see above): one generated function tests and writes a valid request.
        fast = (_FAST_WITH_AMOUNTS if check_amounts else _FAST_WITHOUT_AMOUNTS).get(cls)
        if fast is not None:
            data = fast(model)
            if data is not None:
                try:
                    return model, orjson.dumps(data)
                except orjson.JSONEncodeError:
                    pass  # e.g. a lone surrogate: reported below, as the slow path does
    validate(model, check_amounts=check_amounts)
    try:
        body = to_json(model)
    except orjson.JSONEncodeError as exc:
        # e.g. a lone surrogate in a string: valid Python, not valid UTF-8.
        problem = Violation("$", f"cannot be written as JSON: {exc}")
        raise RequestValidationError([problem], model=cls.__name__) from None
    return model, body
