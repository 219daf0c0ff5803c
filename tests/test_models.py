"""The wire models and their open enums: shape, immutability, and lossless round trips."""

from __future__ import annotations

import pickle
import types
import typing
from datetime import UTC, datetime
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from klarna_async._contract.kinds import String
from klarna_async._contract.overrides import OVERRIDES, contract
from klarna_async._contract.spec import SCHEMAS
from klarna_async._converter import decode, loads, structure_request, to_dict, to_json
from klarna_async._models import (
    AcquiringChannel,
    Address,
    AssetUrls,
    Attachment,
    AuthorizedPaymentMethod,
    AuthorizedPaymentMethodType,
    Card,
    Customer,
    CustomerToken,
    CustomerTokenCreated,
    CustomerTokenCustomer,
    CustomerTokenRequest,
    DirectDebit,
    FraudStatus,
    IntendedUse,
    Intent,
    Interval,
    MerchantUrls,
    OpenStrEnum,
    Options,
    Order,
    OrderLine,
    OrderLineType,
    OrderRequest,
    OrganizationEntityType,
    PaymentMethodCategory,
    PaymentMethodType,
    ProductIdentifiers,
    Session,
    SessionCreated,
    SessionRequest,
    SessionStatus,
    Subscription,
    TokenMerchantUrls,
    TokenOrderRequest,
    TokenStatus,
)
from klarna_async._rules import REQUEST_RULES, REQUEST_SCHEMAS, ArrayRule, EnumRule, ObjectRule

REQUEST_MODELS = (SessionRequest, OrderRequest, TokenOrderRequest, CustomerTokenRequest)
RESPONSE_MODELS = (
    SessionCreated,
    Session,
    Order,
    CustomerTokenCreated,
    CustomerToken,
    Card,
    DirectDebit,
    AuthorizedPaymentMethod,
    PaymentMethodCategory,
    AssetUrls,
    CustomerTokenCustomer,
)
NESTED_MODELS = (
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
ALL_MODELS = REQUEST_MODELS + RESPONSE_MODELS + NESTED_MODELS
ALL_ENUMS = (
    AcquiringChannel,
    AuthorizedPaymentMethodType,
    FraudStatus,
    IntendedUse,
    Intent,
    Interval,
    OrderLineType,
    OrganizationEntityType,
    PaymentMethodType,
    SessionStatus,
    TokenStatus,
)
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


# --- hypothesis strategies built from the models' own annotations ------------------------------


def _strip_optional(hint: Any) -> tuple[Any, bool]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], True
    return hint, False


def strategy_for(hint: Any) -> st.SearchStrategy[Any]:
    """Any value of an annotated model field, including unknown enum values."""
    inner, optional = _strip_optional(hint)
    strategy = _strategy_for(inner)
    return st.none() | strategy if optional else strategy


def _strategy_for(hint: Any) -> st.SearchStrategy[Any]:
    if hint is str:
        return st.text(max_size=12)
    if hint is int:
        return INT64
    if hint is bool:
        return st.booleans()
    if hint is datetime:
        return st.datetimes(min_value=datetime(1000, 1, 1), timezones=st.sampled_from([None, UTC]))
    if typing.get_origin(hint) is tuple:
        return st.lists(strategy_for(typing.get_args(hint)[0]), max_size=3).map(tuple)
    if isinstance(hint, type) and issubclass(hint, OpenStrEnum):
        return st.sampled_from(list(hint)) | st.text(min_size=1, max_size=12).map(hint)
    assert attrs.has(hint), hint
    return models(hint)


def models(cls: type[Any]) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    # Deferred, so that a model's strategy is built only when drawn.
    fields = {f.name: _deferred(hints[f.name]) for f in attrs.fields(cls)}
    return st.builds(cls, **fields)


def _deferred(hint: Any) -> st.SearchStrategy[Any]:
    return st.deferred(lambda: strategy_for(hint))


# --- shape --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_MODELS, ids=lambda c: c.__name__)
def test_models_are_frozen_slotted_keyword_only(cls: type[Any]) -> None:
    """Every model is frozen, slotted, keyword-only, and has a one-line wire docstring."""
    assert attrs.has(cls)
    assert "__slots__" in cls.__dict__
    assert all(f.kw_only for f in attrs.fields(cls))
    assert cls.__doc__ is not None
    assert cls.__doc__.strip()
    instance = _minimal(cls)
    name = attrs.fields(cls)[0].name
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        setattr(instance, name, None)
    hash(instance)


@pytest.mark.parametrize("cls", ALL_MODELS, ids=lambda c: c.__name__)
def test_optional_fields_default_to_none_and_lists_are_tuples(cls: type[Any]) -> None:
    """Optional fields default to None; list fields are tuples, never lists."""
    hints = typing.get_type_hints(cls)
    for field in attrs.fields(cls):
        inner, optional = _strip_optional(hints[field.name])
        if optional:
            assert field.default is None, field.name
        else:
            assert field.default is attrs.NOTHING, field.name
        assert typing.get_origin(inner) is not list, field.name
        if inner is int or inner is float:
            assert inner is int, f"money must be int minor units: {field.name}"


def test_read_only_fields_exist_only_on_response_models() -> None:
    """Fields the specs mark readOnly can never be sent: request models do not have them."""
    read_only: set[str] = set()
    for cls, key in REQUEST_SCHEMAS.items():
        fields = set(attrs.fields_dict(cls))
        assert fields.isdisjoint(SCHEMAS[key].read_only), cls
        read_only.update(SCHEMAS[key].read_only)
    assert {"authorization_token", "client_token", "expires_at", "status"} <= read_only
    assert {"authorization_token", "client_token", "expires_at", "status"} <= set(
        attrs.fields_dict(Session)
    )


def test_request_models_hold_exactly_what_each_api_accepts() -> None:
    """Each request model's fields are its schema's writable properties, plus the fields Klarna's
    docs send that the exports lack (and nothing else): KP and CT bodies differ."""
    docs_only = {(o.schema, o.field) for o in OVERRIDES if o.spec is None}
    assert docs_only == {
        ("payments.customer_token_creation_request", "merchant_urls"),
        ("customer_token.customer_token_order", "locale"),
    }
    for cls, key in REQUEST_SCHEMAS.items():
        added = {field for schema, field in docs_only if schema == key}
        assert set(attrs.fields_dict(cls)) == set(SCHEMAS[key].properties) | added, cls
    token_order = set(attrs.fields_dict(TokenOrderRequest))
    assert {"purchase_country", "billing_address"}.isdisjoint(token_order)
    assert attrs.fields_dict(TokenOrderRequest)["order_tax_amount"].default is attrs.NOTHING
    assert attrs.fields_dict(OrderRequest)["order_tax_amount"].default is None
    assert attrs.fields_dict(CustomerTokenRequest)["merchant_urls"].default is None
    assert attrs.fields_dict(TokenOrderRequest)["locale"].default is None
    assert attrs.fields_dict(TokenMerchantUrls)["confirmation"].default is attrs.NOTHING


def _minimal(cls: type[Any]) -> Any:
    hints = typing.get_type_hints(cls)
    values = {}
    for field in attrs.fields(cls):
        if field.default is attrs.NOTHING:
            values[field.name] = _example(hints[field.name])
    return cls(**values)


def _example(hint: Any) -> Any:
    if hint is str:
        return "x"
    if hint is int:
        return 1
    if typing.get_origin(hint) is tuple:
        return ()
    if isinstance(hint, type) and issubclass(hint, OpenStrEnum):
        return next(iter(hint))
    return _minimal(hint)


# --- open enums ---------------------------------------------------------------------------------


@pytest.mark.parametrize("enum_cls", ALL_ENUMS, ids=lambda c: c.__name__)
def test_unknown_values_make_pseudo_members(enum_cls: type[OpenStrEnum]) -> None:
    """A value Klarna adds later is accepted, equal to its string, and marked unknown."""
    value = enum_cls("SOMETHING_NEW_2031")
    assert isinstance(value, enum_cls)
    assert isinstance(value, str)
    assert value == "SOMETHING_NEW_2031"
    assert value.value == "SOMETHING_NEW_2031"
    assert str(value) == "SOMETHING_NEW_2031"
    assert value.known is False
    assert "unknown" in repr(value)
    assert "SOMETHING_NEW_2031" not in enum_cls.__members__
    assert value not in list(enum_cls)
    assert pickle.loads(pickle.dumps(value)) == value  # noqa: S301 (our own bytes)
    assert all(member.known for member in enum_cls)


@pytest.mark.parametrize("enum_cls", ALL_ENUMS, ids=lambda c: c.__name__)
def test_documented_values_are_the_members(enum_cls: type[OpenStrEnum]) -> None:
    """Looking a documented value up gives the member itself, with a normal repr."""
    for member in enum_cls:
        assert enum_cls(member.value) is member
        assert member.known
        assert repr(member).startswith(f"<{enum_cls.__name__}.")


@pytest.mark.parametrize("bad", [1, None, 2.5, b"ACCEPTED"])
def test_non_strings_are_not_enum_values(bad: object) -> None:
    """Only strings become pseudo-members: a number is still an error."""
    with pytest.raises(ValueError, match="is not a valid FraudStatus"):
        FraudStatus(typing.cast(str, bad))
    with pytest.raises(ValueError, match="is not a valid TokenStatus"):
        TokenStatus(typing.cast(str, bad))


def test_token_status_and_payment_method_type_ignore_casing() -> None:
    """Klarna never pinned the casing of these two down: any casing is the documented member."""
    assert TokenStatus("active") is TokenStatus.ACTIVE
    assert TokenStatus("Suspended") is TokenStatus.SUSPENDED
    assert TokenStatus("cancelled") is TokenStatus.CANCELLED
    # The subscriptions guide spells it the American way.
    assert TokenStatus("canceled") is TokenStatus.CANCELLED
    assert PaymentMethodType("invoice") is PaymentMethodType.INVOICE
    assert PaymentMethodType("direct_debit") is PaymentMethodType.DIRECT_DEBIT
    assert not TokenStatus("paused").known
    assert TokenStatus("paused") == "paused"


def test_request_enums_ignore_casing() -> None:
    """A closed enum of a request takes any casing of a documented value and holds the spec's
    spelling, which is what is sent (Klarna's own example sends "subscription")."""
    assert IntendedUse("subscription") is IntendedUse.SUBSCRIPTION
    assert Intent("BUY_AND_TOKENIZE") is Intent.BUY_AND_TOKENIZE
    assert Interval("Month") is Interval.MONTH
    assert OrderLineType("Sales_Tax") is OrderLineType.SALES_TAX
    assert AcquiringChannel("ecommerce") is AcquiringChannel.ECOMMERCE
    assert OrganizationEntityType("other") is OrganizationEntityType.OTHER
    request = CustomerTokenRequest(
        purchase_country="us",
        purchase_currency="usd",
        locale="en-US",
        description="x",
        intended_use="subscription",
    )
    assert request.intended_use is IntendedUse.SUBSCRIPTION
    assert b'"intended_use":"SUBSCRIPTION"' in to_json(request)
    # Only ASCII folds: "\u017f".upper() is "S", and "\u017fubscription" is no documented value.
    assert not IntendedUse("\u017fubscription").known


def test_other_enums_keep_casing() -> None:
    """In answers the case is part of the value: "accepted" is not ACCEPTED."""
    assert FraudStatus("accepted") is not FraudStatus.ACCEPTED
    assert not FraudStatus("accepted").known
    assert not SessionStatus("COMPLETE").known


def test_codes_are_upper_cased() -> None:
    """ISO currency and country codes are held (and sent) upper-cased; anything else is left
    for validation to report."""
    request = CustomerTokenRequest(
        purchase_country="us",
        purchase_currency="usd",
        locale="en-us",
        description="x",
        intended_use=IntendedUse.SUBSCRIPTION,
        billing_address=Address(country="us"),
    )
    assert (request.purchase_country, request.purchase_currency) == ("US", "USD")
    assert request.billing_address is not None
    assert request.billing_address.country == "US"
    assert request.locale == "en-us"  # RFC 1766 tags are case-insensitive: sent as given
    junk: Any = 978
    assert attrs.evolve(request, purchase_currency=junk).purchase_currency == 978
    assert Address(country="\u00e9s").country == "\u00e9s"


def _enum_fields() -> list[tuple[str, str, EnumRule]]:
    found = []
    seen: set[int] = set()

    def walk(rule: ObjectRule) -> None:
        if id(rule) in seen:
            return
        seen.add(id(rule))
        for field in rule.fields:
            inner = field.rule.item if isinstance(field.rule, ArrayRule) else field.rule
            if isinstance(inner, EnumRule):
                found.append((rule.schema, field.name, inner))
            elif isinstance(inner, ObjectRule):
                walk(inner)

    for rule in REQUEST_RULES.values():
        walk(rule)
    return found


def test_enum_lists_match_the_specs() -> None:
    """Each request enum's members are the values of its field in the contract (the specs'
    table with our overrides): read from the table, not written out here again."""
    found = _enum_fields()
    assert {(schema, field) for schema, field, _ in found} >= {
        ("payments.session_create", "intent"),
        ("payments.session_create", "acquiring_channel"),
        ("payments.subscription", "interval"),
        ("customer_token.subscription", "interval"),
        ("payments.order_line", "type"),
        ("customer_token.order_line", "type"),
        ("payments.customer_token_creation_request", "intended_use"),
        ("payments.customer", "organization_entity_type"),
    }
    contract_ = contract()
    for schema, field, rule in found:
        kind = contract_[schema].properties[field]
        assert isinstance(kind, String)
        assert kind.enum is not None
        assert rule.values == kind.enum
        assert rule.enum_class is not None
        members = {m.value for m in rule.enum_class}  # type: ignore[attr-defined]
        if rule.enum_class is OrderLineType and schema != "order_management.order_line":
            # One class for KP/CT lines and Order Management's, which adds return_fee.
            om_line = contract_["order_management.order_line"].properties["type"]
            assert isinstance(om_line, String)
            assert members == set(om_line.enum or ())
            assert members - set(kind.enum) == {"return_fee"}
        else:
            assert members == set(kind.enum), (schema, field)
    assert "pix" in {m.value for m in AuthorizedPaymentMethodType}
    assert "alternative_payment_method" in {m.value for m in AuthorizedPaymentMethodType}


# --- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", RESPONSE_MODELS + NESTED_MODELS, ids=lambda c: c.__name__)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_response_models_survive_the_wire(cls: type[Any], data: st.DataObject) -> None:
    """decode(loads(to_json(x))) == x, unknown enum values included."""
    instance = data.draw(models(cls))
    assert decode(loads(to_json(instance)), cls) == instance


@pytest.mark.parametrize("cls", REQUEST_MODELS + NESTED_MODELS, ids=lambda c: c.__name__)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_request_models_survive_to_dict(cls: type[Any], data: st.DataObject) -> None:
    """structure_request(to_dict(x)) == x, with enums structured back into enums."""
    instance = data.draw(models(cls))
    again = structure_request(to_dict(instance), cls)
    assert again == instance
    for field in attrs.fields(cls):
        value = getattr(again, field.name)
        if isinstance(getattr(instance, field.name), OpenStrEnum):
            assert type(value) is type(getattr(instance, field.name))


def test_constructors_take_plain_strings_for_enums() -> None:
    """``interval="MONTH"`` is the enum member; junk of another type is left for validation."""
    subscription = Subscription(name="Premium", interval="MONTH", interval_count=1)
    assert subscription.interval is Interval.MONTH
    line = OrderLine(name="x", quantity=1, unit_price=1, total_amount=1, type="physcial")
    assert isinstance(line.type, OrderLineType)
    assert not line.type.known
    junk: Any = 5
    kept: Any = OrderLine(name="x", quantity=1, unit_price=1, total_amount=1, type=junk).type
    assert kept == 5
    assert (
        SessionRequest(
            purchase_country="SE",
            purchase_currency="SEK",
            order_amount=0,
            order_lines=(),
            intent="tokenize",
            acquiring_channel="IN_STORE",
        ).intent
        is Intent.TOKENIZE
    )
    assert Order(order_id="o", fraud_status="PENDING").fraud_status is FraudStatus.PENDING
    assert CustomerToken(status="active", payment_method_type="card").status is TokenStatus.ACTIVE
