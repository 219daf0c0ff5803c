"""The rules of each request model: the wire contract (:mod:`klarna_async._contract`, the specs'
table with our overrides) bound to the attrs classes that carry it.

Built once, at import. For each request class (``SessionRequest``, ``OrderRequest``,
``CustomerTokenRequest``, ``TokenOrderRequest``, and Order Management's seven bodies) the
contract's schema is walked together with the class's fields: every field must have a
constraint and every writable constraint a field, or the import fails (a field without a rule
would be sent unchecked; a spec field without a model field could not be sent). The result is a
tree of plain rule objects that two consumers read: ``klarna_async._validation`` walks it to
collect every violation, and ``klarna_async._fast_path`` compiles it into one straight-line
function per class.

Nothing here judges a value, except the three code checks (currency, country, locale) both
consumers share.
"""

from __future__ import annotations

import enum
import re
import typing
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from klarna_async._contract.codes import COUNTRIES, CURRENCIES
from klarna_async._contract.kinds import Array, Boolean, Integer, Kind, Object, String
from klarna_async._contract.overrides import (
    CODE_FORMATS,
    ENUMS_IGNORE_CASE,
    MISSING_NOTES,
    contract,
)
from klarna_async._converter import field_layout
from klarna_async._models.customer_tokens import TokenOrderRequest
from klarna_async._models.orders import (
    CaptureRequest,
    CustomerDetailsUpdate,
    ExtendDueDateRequest,
    MerchantReferencesUpdate,
    RefundRequest,
    ShippingInfoUpdate,
    UpdateAuthorizationRequest,
)
from klarna_async._models.payments import CustomerTokenRequest, OrderRequest, SessionRequest

__all__ = [
    "REQUEST_RULES",
    "ArrayRule",
    "BooleanRule",
    "EnumRule",
    "FieldRule",
    "IntegerRule",
    "ObjectRule",
    "Rule",
    "StringRule",
    "code_of",
    "locale_ok",
]

#: Which schema of the contract each request model carries.
REQUEST_SCHEMAS: Final[Mapping[type[Any], str]] = {
    SessionRequest: "payments.session_create",
    OrderRequest: "payments.create_order_request",
    CustomerTokenRequest: "payments.customer_token_creation_request",
    TokenOrderRequest: "customer_token.customer_token_order",
    CaptureRequest: "order_management.CaptureObject",
    RefundRequest: "order_management.RefundObject",
    UpdateAuthorizationRequest: "order_management.Update authorization",
    MerchantReferencesUpdate: "order_management.Update merchant references",
    CustomerDetailsUpdate: "order_management.UpdateConsumer",
    ShippingInfoUpdate: "order_management.UpdateShippingInfo",
    ExtendDueDateRequest: "order_management.ExtendDueDateRequest",
}
#: Where the amount arithmetic applies (see klarna_async._validation): per line, per order.
#: Order Management's lines follow the same formula (S-OM order_line.total_amount). Its bodies
#: carry no order_tax_amount, and no source says a capture's or refund's amount must equal the
#: sum of its lines, so no order sum is checked there: capture <= remaining authorized and
#: refund <= captured need the order's state, which Klarna checks (403 CAPTURE_NOT_ALLOWED,
#: REFUND_NOT_ALLOWED).
LINE_SCHEMAS: Final = frozenset(
    {"payments.order_line", "customer_token.order_line", "order_management.order_line"}
)
ORDER_SCHEMAS: Final = frozenset(
    {
        "payments.session_create",
        "payments.create_order_request",
        "customer_token.customer_token_order",
    }
)

# int64 is the format of every integer in the specs that names one, and orjson cannot write
# beyond it: an integer without a format gets these bounds too.
_FORMAT_BOUNDS: Final = {"int64": (-(2**63), 2**63 - 1), "int32": (-(2**31), 2**31 - 1)}
# What a pattern means, for messages (the pattern alone is hard to read).
_PATTERN_HINTS: Final = {
    "^[A-Za-z]{2,2}$": "ISO 3166 alpha-2, e.g. SE",
    "^[A-Za-z]{3,3}$": "ISO 4217, e.g. EUR",
    "^[A-Za-z]{2,2}(?:-[A-Za-z]{2,2})*$": "RFC 1766, e.g. en-GB",
    "^#[A-Fa-f0-9]{6}$": "CSS hex colour, e.g. #FF9900",
    "^([0-9]{4}|[0-9]{9})$": "4 or 9 digits",
    "^(person|organization)$": "person or organization",
}


def _any_case(codes: frozenset[str]) -> dict[str, str]:
    """Every ASCII casing of each code -> the code (upper case), for one dict lookup."""
    table: dict[str, str] = {}
    for code in codes:
        variants = [""]
        for char in code:
            variants = [v + c for v in variants for c in {char.lower(), char.upper()}]
        table.update(dict.fromkeys(variants, code))
    return table


#: Code kind -> every accepted spelling -> the code as sent.
CODES: Final[Mapping[str, Mapping[str, str]]] = {
    "currency": _any_case(CURRENCIES),
    "country": _any_case(COUNTRIES),
}


def code_of(kind: str, value: str) -> str | None:
    """The code as sent (upper case) if ``value`` is a known code of ``kind`` in any casing."""
    return CODES[kind].get(value)


def locale_ok(value: str) -> bool:
    """RFC 1766 as Klarna uses it: ``language-COUNTRY``, the country an ISO 3166-1 code in any
    casing, the language any two ASCII letters (see ``overrides.CODE_FORMATS``)."""
    return (
        len(value) == 5
        and value[2] == "-"
        and value[:2].isascii()
        and value[:2].isalpha()
        and value[3:] in CODES["country"]
    )


# --- rules ----------------------------------------------------------------------------------------


@attrs.frozen
class StringRule:
    min_length: int
    max_length: int | None
    #: The pattern as the spec writes it (for messages) and its test: ``fullmatch`` of an
    #: anchored ``^...$`` pattern (ECMA's ``$`` does not match before a final newline, Python's
    #: does), ``search`` otherwise (JSON Schema's rule).
    pattern: str | None
    matcher: Callable[[str], object] | None
    hint: str
    #: "currency", "country", "locale" or None (overrides.CODE_FORMATS).
    code: str | None


@attrs.frozen
class IntegerRule:
    minimum: int
    maximum: int


@attrs.frozen
class BooleanRule:
    pass


@attrs.frozen
class EnumRule:
    #: The spec's values, in its order (for messages).
    values: tuple[str, ...]
    #: Each spec value -> what is sent: the model's enum member (a plain str where the model
    #: field is a plain str). A member hashes as its value, so members look themselves up too.
    members: Mapping[str, Any]
    #: The lower-cased values -> the same (empty unless ENUMS_IGNORE_CASE).
    folded: Mapping[str, Any]
    #: The model field's enum class, or None for a plain str field.
    enum_class: type[enum.Enum] | None

    def canonical(self, value: str) -> Any:
        """What is sent for ``value`` (a str), or None if it is not one of the values."""
        found = self.members.get(value)
        if found is None and self.folded and value.isascii():
            found = self.folded.get(value.lower())
        return found


@attrs.frozen
class ArrayRule:
    item: Rule
    min_items: int
    max_items: int | None


@attrs.frozen(eq=False)
class FieldRule:
    name: str
    rule: Rule
    required: bool
    #: The message when a required field is missing.
    missing: str


@attrs.frozen(eq=False)
class ObjectRule:
    #: The contract's schema key, e.g. "payments.address".
    schema: str
    cls: type[Any]
    #: In the class's field order.
    fields: tuple[FieldRule, ...]
    #: How the converter writes the class: (field name, left out when None), in key order.
    layout: tuple[tuple[str, bool], ...]
    names: frozenset[str]
    line_amounts: bool
    order_amounts: bool

    def field(self, name: str) -> FieldRule:
        return next(f for f in self.fields if f.name == name)


Rule = StringRule | IntegerRule | BooleanRule | EnumRule | ArrayRule | ObjectRule


# --- binding the contract to the models ----------------------------------------------------------


def _strip_optional(hint: Any) -> Any:
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if type(None) in typing.get_args(hint) and len(args) == 1:
        return args[0]
    return hint


class _Binder:
    def __init__(self) -> None:
        self.contract = contract()
        self.objects: dict[tuple[type[Any], str], ObjectRule] = {}

    def object(self, cls: type[Any], key: str) -> ObjectRule:
        found = self.objects.get((cls, key))
        if found is not None:
            return found
        schema = self.contract[key]
        names = [field.name for field in attrs.fields(cls)]
        if set(names) != set(schema.properties):
            raise TypeError(
                f"{cls.__name__} does not match {key}: fields without a constraint "
                f"{sorted(set(names) - set(schema.properties))}, constraints without a field "
                f"{sorted(set(schema.properties) - set(names))}"
            )
        hints = typing.get_type_hints(cls)
        fields = []
        for name, left_out in field_layout(cls):
            # The converter writes a field without a default even when it is None: only a
            # required field (which refuses None) may lack one.
            if not left_out and name not in schema.required:
                raise TypeError(f"{cls.__name__}.{name} has no default but {key} makes it optional")
        for name in names:
            required = name in schema.required
            missing = "required field missing"
            note = MISSING_NOTES.get((key, name))
            if note:
                missing += f": {note}"
            rule = self.kind(schema.properties[name], hints[name], name)
            fields.append(FieldRule(name, rule, required, missing))
        built = ObjectRule(
            schema=key,
            cls=cls,
            fields=tuple(fields),
            layout=tuple(field_layout(cls)),
            names=frozenset(names),
            line_amounts=key in LINE_SCHEMAS,
            order_amounts=key in ORDER_SCHEMAS,
        )
        self.objects[cls, key] = built
        return built

    def kind(self, kind: Kind, hint: Any, name: str) -> Rule:
        target = _strip_optional(hint)
        if isinstance(kind, Object):
            if not (isinstance(target, type) and attrs.has(target)):
                raise TypeError(f"{name}: {kind.schema} needs a model class, got {hint!r}")
            return self.object(target, kind.schema)
        if isinstance(kind, Array):
            args = typing.get_args(target)
            if typing.get_origin(target) is not tuple or len(args) != 2 or args[1] is not ...:
                raise TypeError(f"{name}: an array needs tuple[X, ...], got {hint!r}")
            item = self.kind(kind.items, args[0], name)
            return ArrayRule(item, kind.min_items, kind.max_items)
        if isinstance(kind, Integer):
            low, high = _FORMAT_BOUNDS.get(kind.format or "int64", _FORMAT_BOUNDS["int64"])
            if kind.minimum is not None:
                low = max(low, kind.minimum)
            if kind.maximum is not None:
                high = min(high, kind.maximum)
            return IntegerRule(low, high)
        if isinstance(kind, Boolean):
            return BooleanRule()
        return self.string(kind, target, name)

    @staticmethod
    def string(kind: String, target: Any, name: str) -> Rule:
        if kind.enum is not None:
            is_enum = isinstance(target, type) and issubclass(target, enum.Enum)
            enum_class = target if is_enum else None
            members: dict[str, Any] = {}
            for value in kind.enum:
                member = value if enum_class is None else enum_class(value)
                if enum_class is not None and member not in enum_class.__members__.values():
                    raise TypeError(f"{name}: {enum_class.__name__} has no member {value!r}")
                members[value] = member
            folded = {v.lower(): m for v, m in members.items()} if ENUMS_IGNORE_CASE else {}
            return EnumRule(kind.enum, members, folded, enum_class)
        matcher = None
        pattern = kind.pattern
        if pattern is not None:
            anchored = pattern.startswith("^") and pattern.endswith("$")
            compiled = re.compile(pattern)
            matcher = compiled.fullmatch if anchored else compiled.search
        return StringRule(
            min_length=kind.min_length,
            max_length=kind.max_length,
            pattern=pattern,
            matcher=matcher,
            hint=_PATTERN_HINTS.get(pattern or "", ""),
            code=CODE_FORMATS.get(name),
        )


def _bind() -> dict[type[Any], ObjectRule]:
    binder = _Binder()
    return {cls: binder.object(cls, key) for cls, key in REQUEST_SCHEMAS.items()}


#: Request class -> the rule of its body.
REQUEST_RULES: Final[Mapping[type[Any], ObjectRule]] = _bind()
