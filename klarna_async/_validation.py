"""Checks a request against the wire contract before anything is sent, and writes its body.

The rules are the constraints of Klarna's specs for the request schemas, with our deliberate
differences (:mod:`klarna_async._contract`: a generated table and a commented override table),
bound to the request models in :mod:`klarna_async._rules`. This module is the machinery that
applies them, and the amount arithmetic, which no schema can say.

Entry points:

* :func:`encode_request`: a request model, or a mapping of its JSON shape, in; the JSON body out.
  What the resources call.
* :func:`prepare`: the same, with the model too (a mapping is structured into one).
* :func:`validate`: raise for a model that breaks a rule.

A request goes through the generated fast path (:mod:`klarna_async._fast_path`) first; only if
that steps aside does the rule walk below run. The walk reads a model by attribute or a mapping
by key, and collects *every* problem of the body, each with its JSON path
(``$.order_lines[2].tax_rate``), into one :class:`RequestValidationError`: unknown keys, missing
fields and values of the wrong type together with broken lengths, patterns, codes and sums. It
raises nothing else for bad input. Messages never quote free text (it may be personal data);
numbers and enum values may be quoted.

Amount arithmetic (``check_amounts``, on by default) is checked only where the numbers involved
are themselves integers:

* per line, ``total_amount == quantity * unit_price - total_discount_amount`` (KP/CT spec text);
* per line, ``total_tax_amount`` within ±1 of ``total_amount - total_amount * 10000 /
  (10000 + tax_rate)`` when both tax fields are given (spec text);
* per order, ``order_amount == sum(total_amount)`` and ``order_tax_amount ==
  sum(total_tax_amount)``. These two are Klarna practice (every example, the tax-handling guide)
  rather than written rules, hence the switch. US orders carry sales tax as a ``sales_tax`` line
  whose amount *is* the tax, so the tax sum may count such a line's ``total_amount`` instead.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Final, TypeVar

import attrs
import orjson

from klarna_async._converter import structure_request, to_json
from klarna_async._errors import RequestValidationError, Violation
from klarna_async._fast_path import FAST_JSON, FAST_MODEL
from klarna_async._models.enums import OrderLineType
from klarna_async._rules import (
    REQUEST_RULES,
    ArrayRule,
    BooleanRule,
    EnumRule,
    IntegerRule,
    ObjectRule,
    Rule,
    StringRule,
    code_of,
    locale_ok,
)

__all__ = ["encode_request", "prepare", "validate"]

_MODEL_WITH_AMOUNTS: Final = FAST_MODEL[True]
_MODEL_WITHOUT_AMOUNTS: Final = FAST_MODEL[False]
_JSON_WITH_AMOUNTS: Final = FAST_JSON[True]
_JSON_WITHOUT_AMOUNTS: Final = FAST_JSON[False]

T = TypeVar("T", bound=attrs.AttrsInstance)

_TAX_RATE_MAX: Final = 10000
_KINDS: Final = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
    list: "an array",
    tuple: "an array",
    dict: "an object",
}
_CODE_MESSAGES: Final = {
    "currency": "must be an ISO 4217 currency code, e.g. EUR",
    "country": "must be an ISO 3166-1 alpha-2 country code, e.g. SE",
    "locale": "must be language-COUNTRY (RFC 1766 as Klarna uses it, e.g. en-GB), the country"
    " an ISO 3166-1 alpha-2 code",
}


def _kind(value: object) -> str:
    kind = _KINDS.get(type(value))
    if kind is not None:
        return kind
    if isinstance(value, Mapping):
        return "an object"
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


# --- the rule walk --------------------------------------------------------------------------------


class _Walk:
    """One walk of a request: a model (read by attribute) or a mapping (read by key)."""

    def __init__(self, *, json: bool, check_amounts: bool) -> None:
        self.json = json
        self.check_amounts = check_amounts
        self.out: list[Violation] = []

    def bad(self, path: str, message: str) -> None:
        self.out.append(Violation(path, message))

    def value(self, rule: Rule, value: Any, path: str) -> Any:
        """Check ``value`` (not None); return what would be sent (the value itself where it is
        wrong, None for a wrong object or array), for the arithmetic."""
        if isinstance(rule, StringRule):
            return self.string(rule, value, path)
        if isinstance(rule, IntegerRule):
            if not isinstance(value, int) or value.__class__ is bool:
                # bool is an int subclass, and True is not a quantity.
                self.bad(path, f"must be an integer, got {_kind(value)}")
            elif value < rule.minimum:
                self.bad(path, f"must be at least {rule.minimum}, got {value}")
            elif value > rule.maximum:
                self.bad(path, f"must be at most {rule.maximum}, got {value}")
            else:
                # An int subclass is the number it stands for, for the arithmetic too (which
                # skips anything that is not exactly an int, as already reported).
                return int(value)
            return value
        if isinstance(rule, BooleanRule):
            if value is not True and value is not False:
                self.bad(path, f"must be a boolean, got {_kind(value)}")
            return value
        if isinstance(rule, EnumRule):
            if not isinstance(value, str):
                self.bad(path, f"must be a string, got {_kind(value)}")
                return value
            canonical = rule.canonical(value)
            if canonical is None:
                listed = ", ".join(rule.values)
                self.bad(path, f"must be one of {listed}, got {str(value)!r}")
                return value
            return canonical
        if isinstance(rule, ArrayRule):
            return self.array(rule, value, path)
        return self.object(rule, value, path)

    def string(self, rule: StringRule, value: Any, path: str) -> Any:
        if not isinstance(value, str):
            self.bad(path, f"must be a string, got {_kind(value)}")
            return value
        length = len(value)
        if length < rule.min_length:
            unit = "character" if rule.min_length == 1 else "characters"
            self.bad(path, f"must be at least {rule.min_length} {unit} long")
        elif rule.max_length is not None and length > rule.max_length:
            self.bad(path, f"must be at most {rule.max_length} characters long, got {length}")
        if rule.matcher is not None and rule.matcher(value) is None:
            hint = f" ({rule.hint})" if rule.hint else ""
            self.bad(path, f"must match {rule.pattern}{hint}")
            return value
        if rule.code == "locale":
            if not locale_ok(value):
                self.bad(path, _CODE_MESSAGES["locale"])
        elif rule.code is not None:
            code = code_of(rule.code, value)
            if code is None:
                self.bad(path, _CODE_MESSAGES[rule.code])
            return code or value
        return value

    def array(self, rule: ArrayRule, value: Any, path: str) -> list[Any] | None:
        if not isinstance(value, (list, tuple)):
            self.bad(path, f"must be {'an array' if self.json else 'a tuple'}, got {_kind(value)}")
            return None
        count = len(value)
        if count < rule.min_items:
            self.bad(path, f"must hold at least {rule.min_items} item(s), got {count}")
        elif rule.max_items is not None and count > rule.max_items:
            self.bad(path, f"must hold at most {rule.max_items} items, got {count}")
        return [self.value(rule.item, item, f"{path}[{i}]") for i, item in enumerate(value)]

    def object(self, rule: ObjectRule, obj: Any, path: str) -> dict[str, Any] | None:
        """Check an object; return its fields' values (None if it is not an object)."""
        if self.json:
            if not isinstance(obj, Mapping):
                self.bad(path, f"must be an object, got {_kind(obj)}")
                return None
            self.unknown_keys(rule, obj, path)
        elif not isinstance(obj, rule.cls):
            self.bad(path, f"must be {rule.cls.__name__}, got {_kind(obj)}")
            return None
        values: dict[str, Any] = {}
        for field in rule.fields:
            value = obj.get(field.name) if self.json else getattr(obj, field.name)
            if value is None:
                if field.required:
                    self.bad(f"{path}.{field.name}", field.missing)
                values[field.name] = None
            else:
                values[field.name] = self.value(field.rule, value, f"{path}.{field.name}")
        if self.check_amounts:
            if rule.line_amounts:
                _line_amounts(values, path, self.out)
            if rule.order_amounts:
                _order_amounts(values, path, self.out)
        return values

    def unknown_keys(self, rule: ObjectRule, obj: Mapping[Any, Any], path: str) -> None:
        for key in obj:
            if key in rule.names:
                continue
            where = f"{path}.{key}" if isinstance(key, str) else f"{path}[{key!r}]"
            message = f"unknown field for {rule.cls.__name__}"
            close = difflib.get_close_matches(str(key), rule.names, n=1)
            if close:
                message += f" (did you mean {close[0]!r}?)"
            self.bad(where, message)


# --- arithmetic -----------------------------------------------------------------------------------
# On the values the walk returns: what would be sent where a value is right (an enum's member),
# the value itself where it is wrong. ``type(x) is int`` skips a value of another type, which its
# own rule has reported already.


def _line_amounts(line: Mapping[str, Any], path: str, out: list[Violation]) -> None:
    total = line["total_amount"]
    if type(total) is not int:
        return
    quantity, unit_price = line["quantity"], line["unit_price"]
    discount = line["total_discount_amount"]
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
    rate, tax = line["tax_rate"], line["total_tax_amount"]
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


def _order_amounts(order: Mapping[str, Any], path: str, out: list[Violation]) -> None:
    lines = order["order_lines"]
    if not lines:
        return
    total_sum = tax_sum = us_tax_sum = 0
    taxes_ok = True
    has_tax = False
    for line in lines:
        if line is None or type(line["total_amount"]) is not int:
            return
        total = line["total_amount"]
        total_sum += total
        tax = line["total_tax_amount"]
        if tax is not None:
            if type(tax) is int:
                has_tax = True
                tax_sum += tax
            else:
                taxes_ok = False
                tax = 0
        if line["type"] == OrderLineType.SALES_TAX:
            # US style: the sales_tax line's amount is the order's tax.
            has_tax = True
            us_tax_sum += total
        elif tax is not None:
            us_tax_sum += tax
    amount = order["order_amount"]
    if type(amount) is int and amount != total_sum:
        message = f"must equal the sum of order_lines[].total_amount = {total_sum}, got {amount}"
        out.append(Violation(f"{path}.order_amount", message))
    order_tax = order["order_tax_amount"]
    if taxes_ok and has_tax and type(order_tax) is int and order_tax not in (tax_sum, us_tax_sum):
        message = f"must equal the sum of order_lines[].total_tax_amount = {tax_sum}"
        if us_tax_sum != tax_sum:
            message += f" (or {us_tax_sum}, counting sales_tax lines as tax)"
        out.append(Violation(f"{path}.order_tax_amount", f"{message}, got {order_tax}"))


# --- entry points ---------------------------------------------------------------------------------


def _rule_of(cls: type[Any]) -> ObjectRule:
    rule = REQUEST_RULES.get(cls)
    if rule is None:
        raise TypeError(f"no request validation for {cls.__name__}")
    return rule


def _violations(
    request: Any, cls: type[Any], *, json: bool, check_amounts: bool
) -> list[Violation]:
    walk = _Walk(json=json, check_amounts=check_amounts)
    walk.object(_rule_of(cls), request, "$")
    return walk.out


def validate(request: attrs.AttrsInstance, *, check_amounts: bool = True) -> None:
    """Raise :class:`RequestValidationError` listing every rule ``request`` breaks.

    ``request`` is a :class:`SessionRequest`, :class:`OrderRequest`, :class:`TokenOrderRequest`
    or :class:`CustomerTokenRequest`; anything else is a ``TypeError`` (a bug, not bad input).
    ``check_amounts=False`` skips the amount arithmetic and keeps every other rule.
    """
    cls = request.__class__
    _rule_of(cls)
    check_amounts = bool(check_amounts)
    if FAST_MODEL[check_amounts][cls](request) is not None:
        return
    problems = _violations(request, cls, json=False, check_amounts=check_amounts)
    if problems:
        raise RequestValidationError(problems, model=cls.__name__)


def encode_request(
    request: T | Mapping[str, Any], cls: type[T], *, check_amounts: bool = True
) -> bytes:
    """The JSON body of a request model, or of a mapping of its JSON shape, once it is valid.

    A mapping is read as it is, never structured into models: unknown keys, missing fields and
    wrong types are violations like any other, and ``None`` values are left out as a model's
    are. The bytes are those of the equivalent model. Bad input raises one
    :class:`RequestValidationError` listing every problem; an attrs instance of another class,
    or something that is neither, is a ``TypeError``.
    """
    # The fast path for a model of exactly cls, or a plain dict; None: not one it knows.
    kind = request.__class__
    if kind is cls:
        fast = (_MODEL_WITH_AMOUNTS if check_amounts else _MODEL_WITHOUT_AMOUNTS).get(cls)
    elif kind is dict:
        fast = (_JSON_WITH_AMOUNTS if check_amounts else _JSON_WITHOUT_AMOUNTS).get(cls)
    else:
        fast = None
    data = None if fast is None else fast(request)
    if data is not None:
        try:
            return orjson.dumps(data)
        except orjson.JSONEncodeError:
            pass  # e.g. a lone surrogate: reported below, as the slow path does
    return _encode_slowly(request, cls, bool(check_amounts))[1]


def _encode_slowly(request: Any, cls: type[T], check_amounts: bool) -> tuple[T, bytes]:
    """The rule walk, then the converter: every violation, or the model and its body."""
    if isinstance(request, cls):
        json = False
        if request.__class__ is not cls:
            # A subclass may add fields or change how one is written: not a request we know.
            raise TypeError(f"no request validation for {type(request).__name__}")
    elif isinstance(request, Mapping):
        json = True
    else:
        expected = f"expected {cls.__name__} or a mapping"
        raise TypeError(f"{expected}, got {type(request).__name__}")
    problems = _violations(request, cls, json=json, check_amounts=check_amounts)
    if problems:
        raise RequestValidationError(problems, model=cls.__name__)
    # A valid mapping the fast path stepped aside for (not a plain dict, a str subclass, ...):
    # structured, so that the converter writes it exactly as the equivalent model.
    model: T = structure_request(request, cls) if json else request
    try:
        return model, to_json(model)
    except orjson.JSONEncodeError as exc:
        # e.g. a lone surrogate in a string: valid Python, not valid UTF-8.
        problem = Violation("$", f"cannot be written as JSON: {exc}")
        raise RequestValidationError([problem], model=cls.__name__) from None


def prepare(
    request: T | Mapping[str, Any], cls: type[T], *, check_amounts: bool = True
) -> tuple[T, bytes]:
    """The validated model and its JSON body (:func:`encode_request`'s bytes).

    A mapping is also structured into the model, which costs more than encoding it: callers that
    need only the body should call :func:`encode_request`.
    """
    body = encode_request(request, cls, check_amounts=check_amounts)
    if request.__class__ is cls:
        return request, body
    assert isinstance(request, Mapping)  # encode_request refused anything else
    return structure_request(request, cls), body
