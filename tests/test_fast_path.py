"""prepare()'s fast path: for a valid request the same bytes as to_json, otherwise the rules.

The fast path is generated code (``klarna_async._validation``): one function per request class
and ``check_amounts`` flag that tests a request and writes its JSON dict in one walk. These tests
hold it to the slow path it stands in for, the rule tree and then ``to_json``:

* what it accepts the rules accept, and its dict is ``to_dict``'s, key for key, in the same order
  and with the very same values, so the bytes are ``to_json``'s;
* what the rules accept it accepts too, unless a value is of a proper subclass of what its field
  declares (a str or int subclass, a model subclass): those it leaves to the slow path;
* ``prepare`` answers exactly as the code before the fast path (``reference_prepare``): the same
  model and bytes, or the same ``RequestValidationError`` (violations, paths, messages) or
  ``TypeError``, for a model and for a mapping (structured first, then on the fast path too).

The requests are drawn from the rule trees themselves: every field of every class, with values at
and just past each bound, wrong types, pseudo-members, subclasses, lone surrogates, and amounts
made to add up (or to miss by one) so that the arithmetic is judged too.
"""

from __future__ import annotations

import enum
import functools
import math
import typing
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from klarna_async import _validation
from klarna_async._converter import structure_request, to_dict, to_json
from klarna_async._errors import RequestValidationError, Violation
from klarna_async._models import (
    Address,
    Attachment,
    CustomerTokenRequest,
    FraudStatus,
    Interval,
    Order,
    OrderLine,
    OrderLineType,
    OrderRequest,
    SessionRequest,
    Subscription,
    TokenOrderRequest,
)
from klarna_async._validation import prepare, validate
from tests import samples
from tests.test_validation import RULES, SAMPLES, SEEDS, set_path

REQUEST_CLASSES: list[type[Any]] = [
    SessionRequest,
    OrderRequest,
    TokenOrderRequest,
    CustomerTokenRequest,
]


# --- the slow path as it was, and how to compare -------------------------------------------------


def reference_prepare(
    request: Any, cls: type[Any], *, check_amounts: bool = True
) -> tuple[Any, bytes]:
    """prepare() as it was before the fast path: structure, the rule tree, then to_json."""
    if isinstance(request, cls):
        model = request
    elif isinstance(request, Mapping):
        model = structure_request(request, cls)
    else:
        raise TypeError(f"expected {cls.__name__} or a mapping, got {type(request).__name__}")
    validate(model, check_amounts=check_amounts)
    try:
        body = to_json(model)
    except orjson.JSONEncodeError as exc:
        problem = Violation("$", f"cannot be written as JSON: {exc}")
        raise RequestValidationError([problem], model=cls.__name__) from None
    return model, body


def outcome(call: Callable[[], tuple[Any, bytes]], request: Any) -> tuple[Any, ...]:
    """What a prepare() call answers, in a form that compares with ==."""
    try:
        model, body = call()
    except RequestValidationError as error:
        cause = (error.__cause__, error.__suppress_context__)
        return ("invalid", error.model, error.violations, str(error), *cause)
    except TypeError as error:
        return ("TypeError", str(error))
    return ("ok", model is request, model, body)


def assert_prepare_unchanged(request: Any, cls: type[Any], check_amounts: Any = True) -> Any:
    ours = outcome(lambda: prepare(request, cls, check_amounts=check_amounts), request)
    before = outcome(lambda: reference_prepare(request, cls, check_amounts=check_amounts), request)
    assert ours == before
    return ours


def fast_path(request: Any, check_amounts: bool) -> dict[str, Any] | None:
    table = _validation._FAST_WITH_AMOUNTS if check_amounts else _validation._FAST_WITHOUT_AMOUNTS
    return table[type(request)](request)


def rules_accept(request: Any, check_amounts: bool) -> bool:
    try:
        validate(request, check_amounts=check_amounts)
    except RequestValidationError:
        return False
    return True


def assert_same_json(ours: Any, theirs: Any, path: str = "$") -> None:
    """The same keys in the same order, the same list lengths, and the very same scalars."""
    assert type(ours) is type(theirs), path
    if isinstance(ours, dict):
        assert list(ours) == list(theirs), path
        for key in ours:
            assert_same_json(ours[key], theirs[key], f"{path}.{key}")
    elif isinstance(ours, list):
        assert len(ours) == len(theirs), path
        for index, (mine, other) in enumerate(zip(ours, theirs, strict=True)):
            assert_same_json(mine, other, f"{path}[{index}]")
    else:
        assert ours is theirs, path


def dumps_outcome(write: Callable[[], bytes]) -> tuple[str, Any]:
    try:
        return ("bytes", write())
    except orjson.JSONEncodeError as error:
        return ("JSONEncodeError", str(error))


def exotic(value: Any, declared: Any) -> bool:
    """Whether ``value``, or a value inside it, is of a proper subclass of what its field declares
    (bool aside): the rules take such values, the fast path leaves them to the slow path."""
    if value is None:
        return False
    if type(None) in typing.get_args(declared):
        declared = next(arg for arg in typing.get_args(declared) if arg is not type(None))
    if typing.get_origin(declared) is tuple:
        if value.__class__ is not tuple and value.__class__ is not list:
            return isinstance(value, (tuple, list))
        return any(exotic(item, typing.get_args(declared)[0]) for item in value)
    if isinstance(declared, type) and issubclass(declared, enum.Enum):
        return isinstance(value, str) and value.__class__ not in (str, declared)
    if declared is int:
        return isinstance(value, int) and value.__class__ not in (int, bool)
    if declared is str:
        return isinstance(value, str) and value.__class__ is not str
    if declared is bool or not isinstance(value, declared):
        return False
    if value.__class__ is not declared:
        return True
    hints = typing.get_type_hints(declared)
    return any(exotic(getattr(value, f.name), hints[f.name]) for f in attrs.fields(declared))


def check_one(request: Any, check_amounts: bool) -> str:
    """Every promise of the fast path for one request; returns which way it went."""
    written = fast_path(request, check_amounts)
    accepted = rules_accept(request, check_amounts)
    if written is not None:
        assert accepted
        assert_same_json(written, to_dict(request))
        assert dumps_outcome(lambda: orjson.dumps(written)) == dumps_outcome(
            lambda: to_json(request)
        )
        # The same request as a mapping: structured, then on the fast path too.
        assert_prepare_unchanged(to_dict(request), type(request), check_amounts)
        way = "fast path"
    else:
        assert not accepted or exotic(request, type(request))
        way = "slow path, exotic value" if accepted else "slow path, invalid"
    assert_prepare_unchanged(request, type(request), check_amounts)
    return way


# --- requests drawn from the rule trees ---------------------------------------------------------


class Text(str):
    """A str subclass: the rules take it as a string, the fast path leaves it to them."""

    __slots__ = ()


class Count(int):
    """An int subclass, likewise."""


class Items(tuple):  # type: ignore[type-arg]
    """A tuple subclass, likewise."""

    __slots__ = ()


#: Per pattern of a string rule: values that match it and values that do not.
PATTERN_EXAMPLES: dict[str, tuple[list[str], list[str]]] = {
    r"^[A-Za-z]{2,2}$": (["SE", "se", "Us"], ["S", "SWE", "S1", "SE\n", ""]),
    r"^[A-Za-z]{3,3}$": (["EUR", "sek"], ["EURO", "E1R", "SEK\n"]),
    r"^[A-Za-z]{2,2}(?:-[A-Za-z]{2,2})*$": (
        ["en-GB", "en", "sv-SE-FI"],
        ["en-GB-x", "en_GB", "english"],
    ),
    r"^#[A-Fa-f0-9]{6}$": (["#FF9900", "#ff9900"], ["#FF990", "#GG9900", "FF9900"]),
    r"^([0-9]{4}|[0-9]{9})$": (["1234", "123456789"], ["12345", "abcd"]),
    r"^(person|organization)$": (["person", "organization"], ["company"]),
}

#: One subclass per model: the rules take it (isinstance), the fast path does not.
SUBCLASSES: dict[type[Any], type[Any]] = {}


def _subclass(cls: type[Any]) -> type[Any]:
    if cls not in SUBCLASSES:
        SUBCLASSES[cls] = type(f"{cls.__name__}Subclass", (cls,), {"__slots__": ()})
    return SUBCLASSES[cls]


#: About one draw of a field in RARE is a rare (mostly invalid) value. A request has some 60
#: fields, so about every other request drawn is valid before its amounts are judged.
RARE = 300


def _mostly(usual: list[Any], rare: list[Any], one_in: int = RARE) -> st.SearchStrategy[Any]:
    """One of ``usual`` nearly always; one of ``rare`` about once in ``one_in`` draws."""
    weight = max(1, math.ceil(one_in * len(rare) / len(usual)))
    return st.sampled_from(usual * weight + rare)


def _rarely(usual: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> Any:
    # sampled_from, not integers(): Hypothesis draws an integer's bounds far more often.
    return _mostly([False], [True]).flatmap(lambda is_rare: rare if is_rare else usual)


def _string(rule: Any) -> st.SearchStrategy[Any]:
    lowest, highest = rule.min_length, rule.max_length
    if rule.matcher is not None:
        usual, wrong = PATTERN_EXAMPLES[rule.matcher.__self__.pattern]
    else:
        top = 20 if highest is None else highest
        lengths = sorted({lowest, lowest + 1, 3, top - 1, top})
        usual = ["x" * n for n in lengths if lowest <= n <= top]
        usual += [text for text in ("Åsa ✓",) if lowest <= len(text) <= top]
        wrong = ["x" * n for n in (lowest - 1, top + 1) if n >= 0 and not lowest <= n <= top]
    # A lone surrogate is a valid str the rules accept, but not JSON.
    surrogate = ["\ud800"] if rule.matcher is None and lowest <= 1 <= (highest or 1) else []
    return _mostly(usual, [*wrong, *surrogate, Text(usual[0]), FraudStatus.ACCEPTED, 7, b"x"])


def _integer(rule: Any) -> st.SearchStrategy[Any]:
    lowest, highest = rule.minimum, rule.maximum
    typical = [n for n in (0, 1, 2, 3, 100, 999, 2500, -100) if lowest <= n <= highest]
    usual = typical * 4 + [lowest, lowest + 1, highest - 1, highest]
    return _mostly(usual, [lowest - 1, highest + 1, True, False, 1.0, "1", Count(2)])


def _one_of(rule: Any) -> st.SearchStrategy[Any]:
    (enum_class,) = rule.classes - {str}
    usual = [enum_class(value) for value in sorted(rule.allowed)]
    rare = [enum_class("no-such-value"), Text(usual[0].value), Interval.MONTH, 7]
    if enum_class is OrderLineType:
        rare.append(OrderLineType.RETURN_FEE)
    return _mostly(usual, rare)


def _array(rule: Any) -> st.SearchStrategy[Any]:
    item = strategy(rule.item)
    lowest, highest = rule.min_items, rule.max_items
    usual_sizes = [lowest, lowest, lowest + 1, lowest + 2]
    rare_sizes = [n for n in (lowest - 1, highest and highest + 1) if n is not None and n >= 0]

    def items(size: int) -> st.SearchStrategy[list[Any]]:
        if size > 5:  # 1001 lines: one drawn line, many times
            return item.map(lambda one: [one] * size)
        return st.lists(item, min_size=size, max_size=size)

    sized = _mostly(usual_sizes, rare_sizes).flatmap(items)
    container = _mostly([tuple, tuple, list], [Items])
    return _rarely(st.tuples(container, sized).map(lambda pair: pair[0](pair[1])), st.just("ab"))


def _model(rule: Any) -> st.SearchStrategy[Any]:
    return _rarely(
        _mostly([rule.cls], [_subclass(rule.cls)]).flatmap(lambda cls: _fields(rule, cls)),
        st.sampled_from(["x", {"name": "x"}, Address(), Attachment(body="b", content_type="c")]),
    )


def _fields(rule: Any, cls: type[Any]) -> st.SearchStrategy[Any]:
    fields = {
        name: _rarely(strategy(check), st.none()) if required else st.none() | strategy(check)
        for name, required, check in rule.fields
    }
    return st.builds(cls, **fields)


@functools.cache
def strategy(check: Any) -> st.SearchStrategy[Any]:
    """Values for one check of a rule tree, mostly valid, sometimes not."""
    rule = _validation._RULES[check]
    kinds: dict[type[Any], Callable[[Any], st.SearchStrategy[Any]]] = {
        _validation._StringRule: _string,
        _validation._IntegerRule: _integer,
        _validation._BooleanRule: lambda _: _mostly([True, False], [1, 0, "yes"]),
        _validation._OneOfRule: _one_of,
        _validation._ArrayRule: _array,
        _validation._ModelRule: _model,
    }
    return kinds[type(rule)](rule)


def requests(cls: type[Any]) -> st.SearchStrategy[Any]:
    rule = _validation._RULES[_validation._VALIDATORS[(cls, True)]]
    return _fields(rule, cls)


def _tax(total: int, rate: int) -> int:
    return round(total * rate / (10000 + rate))


def with_amounts_that_add_up(request: Any, data: st.DataObject) -> Any:
    """The request with its amounts made to add up, now and then missing by one (or two)."""
    lines = request.order_lines
    if not isinstance(lines, (tuple, list)) or not all(isinstance(x, OrderLine) for x in lines):
        return request
    fixed = []
    for line in lines:
        quantity, price, discount = line.quantity, line.unit_price, line.total_discount_amount
        if type(quantity) is int and type(price) is int and type(discount) in (int, type(None)):
            total = quantity * price - (discount or 0) + data.draw(_mostly([0], [1, -1], 40))
            changes: dict[str, Any] = {"total_amount": total}
            rate = line.tax_rate
            if type(rate) is int and 0 <= rate <= 10000 and line.total_tax_amount is not None:
                slack = data.draw(_mostly([0, 0, 1, -1], [2, -2], 20))
                changes["total_tax_amount"] = _tax(total, rate) + slack
            line = attrs.evolve(line, **changes)
        fixed.append(line)
    totals = [x.total_amount for x in fixed if type(x.total_amount) is int]
    taxes = sum(x.total_tax_amount for x in fixed if type(x.total_tax_amount) is int)
    # US style: a sales_tax line's amount is tax, and so is every other line's tax.
    us_taxes = [
        x.total_amount if x.type == OrderLineType.SALES_TAX else x.total_tax_amount for x in fixed
    ]
    us_tax = sum(tax for tax in us_taxes if type(tax) is int)
    changes = {
        "order_lines": type(lines)(fixed),
        "order_amount": sum(totals) + data.draw(_mostly([0], [1, -1], 20)),
    }
    if request.order_tax_amount is not None:
        changes["order_tax_amount"] = data.draw(_mostly([taxes, us_tax], [taxes + 1], 20))
    return attrs.evolve(request, **changes)


@pytest.mark.parametrize("cls", REQUEST_CLASSES, ids=lambda cls: cls.__name__)
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fast_path_is_the_rules_and_to_json(cls: type[Any], data: st.DataObject) -> None:
    """Drawn requests of every class, both flags: the fast path keeps every promise."""
    request = data.draw(requests(cls))
    if hasattr(request, "order_lines"):
        request = with_amounts_that_add_up(request, data)
    for check_amounts in (True, False):
        event(f"check_amounts={check_amounts}: {check_one(request, check_amounts)}")


# --- known requests -----------------------------------------------------------------------------

KNOWN: list[Callable[[], Any]] = [
    samples.token_order,
    lambda: samples.token_order(amount=1, reference="x"),
    samples.session_request,
    lambda: samples.session_request(subscription=True),
    samples.one_time_order,
    lambda: samples.one_time_order(subscription=True),
    samples.customer_token_request,
    *SAMPLES,
]


@pytest.mark.parametrize("make", KNOWN)
@pytest.mark.parametrize("check_amounts", [True, False])
def test_valid_requests_take_the_fast_path(make: Callable[[], Any], check_amounts: bool) -> None:
    """Every sample and example request is written by the fast path, byte for byte."""
    request = make()
    assert check_one(request, check_amounts) == "fast path"
    model, body = prepare(request, type(request), check_amounts=check_amounts)
    assert model is request
    assert body == to_json(request)


@pytest.mark.parametrize(("data", "cls"), SEEDS, ids=lambda x: getattr(x, "__name__", ""))
def test_seed_examples(data: dict[str, Any], cls: type[Any]) -> None:
    """A mapping goes the slow way in (structuring), and its model then the fast way."""
    assert_prepare_unchanged(data, cls)
    assert check_one(structure_request(data, cls), True) == "fast path"


@pytest.mark.parametrize(
    ("make", "field", "value"),
    [rule[:3] for rule in RULES],
    ids=[f"{r[0].__name__}-{r[1]}-{str(r[2])[:12]!r}" for r in RULES],
)
def test_each_broken_rule_takes_the_slow_path(make: Any, field: str, value: Any) -> None:
    """Each rule of test_validation broken once: the fast path steps aside, the error is as
    before."""
    request = set_path(make(), field, value)
    for check_amounts in (True, False):
        assert fast_path(request, check_amounts) is None
        assert assert_prepare_unchanged(request, type(request), check_amounts)[0] == "invalid"


@pytest.mark.parametrize(
    ("field", "value", "way"),
    [
        # What the rules take but the fast path leaves to them.
        ("merchant_data", Text("optional string"), "slow path, exotic value"),
        ("merchant_data", FraudStatus.ACCEPTED, "slow path, exotic value"),
        ("order_tax_amount", Count(0), "slow path, exotic value"),
        ("order_lines.0.subscription.interval", Text("MONTH"), "slow path, exotic value"),
        (
            "order_lines.0.subscription",
            _subclass(Subscription)(name="x", interval=Interval.DAY, interval_count=1),
            "slow path, exotic value",
        ),
        # What both take, written the same way.
        ("order_lines", list(samples.token_order().order_lines), "fast path"),
        ("merchant_data", "\ud800", "fast path"),  # and then to_json's error, as before
        ("order_lines.0.type", "digital", "fast path"),  # made the member by the model
        ("merchant_reference2", "", "fast path"),
        # What neither takes.
        ("auto_capture", 1, "slow path, invalid"),
        ("order_lines.0.quantity", True, "slow path, invalid"),
        ("order_amount", 999.0, "slow path, invalid"),
        ("order_lines.0.type", OrderLineType("digitial"), "slow path, invalid"),
        ("order_lines.0.type", OrderLineType.RETURN_FEE, "slow path, invalid"),
        ("order_lines.0.subscription.interval", "MONTHLY", "slow path, invalid"),
        ("order_tax_amount", 2**63, "slow path, invalid"),
        ("order_lines", Text("x"), "slow path, invalid"),
    ],
    ids=repr,
)
def test_edge_values(field: str, value: Any, way: str) -> None:
    """Subclasses, lists for tuples, plain strings for enums, bool for int, int64, surrogates."""
    request = set_path(samples.token_order(), field, value)
    for check_amounts in (True, False):
        assert check_one(request, check_amounts) == way


def test_unencodable_string_is_reported_as_before() -> None:
    """The fast path accepts a lone surrogate (the rules do), orjson refuses it: the same
    RequestValidationError at $ as before, from the slow path."""
    request = attrs.evolve(samples.token_order(), merchant_data="\ud800")
    result = assert_prepare_unchanged(request, TokenOrderRequest)
    assert result[0] == "invalid"
    assert [v.path for v in result[2]] == ["$"]


def test_subclass_of_the_request_class() -> None:
    """A subclass instance passes prepare's isinstance, then validate() refuses its class."""
    request = _subclass(TokenOrderRequest)(**attrs.asdict(samples.token_order(), recurse=False))
    assert assert_prepare_unchanged(request, TokenOrderRequest)[0] == "TypeError"


@pytest.mark.parametrize(
    ("request_", "cls"),
    [
        (Order(order_id="x"), Order),
        (Order(order_id="x"), TokenOrderRequest),
        (samples.token_order(), OrderRequest),
        ("json", TokenOrderRequest),
        (None, TokenOrderRequest),
        ({"purchase_currency": "EUR"}, TokenOrderRequest),
    ],
)
def test_not_a_request_of_that_class(request_: Any, cls: type[Any]) -> None:
    """Another class, another model, not a mapping, a bad mapping: as before."""
    assert assert_prepare_unchanged(request_, cls)[0] in ("TypeError", "invalid")


@pytest.mark.parametrize("flag", [1, 0, "", "yes", None])
def test_check_amounts_is_read_for_its_truth(flag: Any) -> None:
    """Any value for check_amounts works as bool(value), as validate() reads it."""
    wrong_sum = attrs.evolve(samples.token_order(), order_amount=1000)
    assert_prepare_unchanged(wrong_sum, TokenOrderRequest, flag)
    assert_prepare_unchanged(samples.token_order(), TokenOrderRequest, flag)


def test_list_of_order_lines_holds_at_most_1000() -> None:
    line = OrderLine(name="x", quantity=1, unit_price=1, total_amount=1)
    for count, way in ((1000, "fast path"), (1001, "slow path, invalid")):
        request = attrs.evolve(
            samples.token_order(), order_lines=[line] * count, order_amount=count
        )
        assert check_one(request, True) == way


# --- the writer beyond today's rule trees -------------------------------------------------------


@attrs.frozen(kw_only=True)
class Shape:
    code: str
    tags: tuple[str, ...] | None = None
    # Required by its rule although the model gives it a default.
    label: str | None = None


def test_writer_handles_required_fields_with_a_default_and_minimum_only_lengths() -> None:
    """Rules today's trees do not use: a required field that defaults to None, a string and an
    array with a lower bound only."""
    check = _validation._model(
        Shape,
        [
            _validation._f("code", _validation._string(min_length=2)),
            _validation._f("tags", _validation._array(_validation._TEXT, min_items=1)),
            _validation._f("label", _validation._TEXT, required=True),
        ],
    )
    fast = _validation._compile_fast_path(check, "fast_Shape")
    shapes = [
        Shape(code="ab", label="x"),
        Shape(code="ab", tags=("t",), label="x"),
        Shape(code="a", label="x"),
        Shape(code="ab", tags=(), label="x"),
        Shape(code="ab"),
        Shape(code="ab", label=Text("x")),
    ]
    for shape in shapes:
        problems: list[Violation] = []
        check(shape, "$", "", problems)
        written = fast(shape)
        if written is None:
            assert problems or shape.label.__class__ is Text
        else:
            assert not problems
            assert_same_json(written, to_dict(shape))
    assert [fast(shape) is not None for shape in shapes] == [True, True, False, False, False, False]


# --- remembered codes ---------------------------------------------------------------------------


def _known_codes(cls: type[Any]) -> list[set[str]]:
    """The sets of matched codes that the fast paths of ``cls`` remember."""
    return [
        value
        for table in (_validation._FAST_WITH_AMOUNTS, _validation._FAST_WITHOUT_AMOUNTS)
        for name, value in table[cls].__globals__.items()
        if name.startswith("_known")
    ]


def test_matched_codes_are_remembered_within_bounds() -> None:
    """Countries, currencies, locales and colours that matched are remembered, up to a bound in
    number and length; the verdict is the pattern's either way."""
    base = samples.customer_token_request()
    letters = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    countries = [a + b for a in letters for b in letters][: _validation._KNOWN_CODES_MAX + 50]
    for country in countries:
        assert check_one(attrs.evolve(base, purchase_country=country), True) == "fast path"
    long_locale = "en" + "-GB" * 6
    assert len(long_locale) > _validation._KNOWN_CODE_LENGTH_MAX
    assert check_one(attrs.evolve(base, locale=long_locale), True) == "fast path"
    for wrong in ("SWE", "S1", "SE\n"):
        assert check_one(attrs.evolve(base, purchase_country=wrong), True) == "slow path, invalid"
    known = _known_codes(CustomerTokenRequest)
    assert known
    for codes in known:
        assert len(codes) <= _validation._KNOWN_CODES_MAX
        assert long_locale not in codes
        assert not codes & {"SWE", "S1", "SE\n"}
    assert any("US" in codes for codes in known)
    assert any(len(codes) == _validation._KNOWN_CODES_MAX for codes in known)
