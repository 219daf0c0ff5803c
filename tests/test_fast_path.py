"""The fast path (klarna_async._fast_path) against the rule walk and the converter.

The fast path is generated code: per request class and ``check_amounts`` flag, one function for
a model and one for a plain dict of the JSON shape, each testing the request and writing its JSON
dict in one walk. These tests hold it to the slow path it stands in for (the rule walk of
klarna_async._validation, then the converter's ``to_json``):

* what it accepts the rules accept, and the model function's dict is ``to_dict``'s, key for key,
  in the same order and with the very same values, so the bytes are ``to_json``'s;
* what the rules accept it accepts too, unless a value is of a proper subclass of what its field
  declares (a str or int subclass, a model subclass): those it leaves to the slow path;
* the JSON form of a valid model (as ``await request.json()`` would give it, in any key order,
  with ``None`` for absent fields, enum values in any casing, codes in lower case) is encoded to
  exactly the model's bytes, by the dict function; an invalid one is refused.

The requests are drawn from the rule trees themselves: every field of every class, with values at
and just past each bound, wrong types, pseudo-members, subclasses, lone surrogates, and amounts
made to add up (or to miss by one) so that the arithmetic is judged too.
"""

from __future__ import annotations

import enum
import functools
import math
import random
import typing
from collections.abc import Callable
from typing import Any

import attrs
import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from klarna_async import _fast_path, _rules, _validation
from klarna_async._converter import field_layout, structure_request, to_dict, to_json
from klarna_async._errors import RequestValidationError
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
from klarna_async._validation import encode_request, prepare
from tests import samples
from tests.test_validation import RULES, SAMPLES, SEEDS, body_with, json_path, set_path

REQUEST_CLASSES: list[type[Any]] = [
    SessionRequest,
    OrderRequest,
    TokenOrderRequest,
    CustomerTokenRequest,
]


# --- the two paths, and how to compare ---------------------------------------------------------


def fast_path(request: Any, check_amounts: bool) -> dict[str, Any] | None:
    return _fast_path.FAST_MODEL[check_amounts][type(request)](request)


def fast_json(data: Any, cls: type[Any], check_amounts: bool) -> dict[str, Any] | None:
    return _fast_path.FAST_JSON[check_amounts][cls](data)


def rules_accept(request: Any, cls: type[Any], check_amounts: bool, *, json: bool) -> bool:
    return not _validation._violations(request, cls, json=json, check_amounts=check_amounts)


def outcome(call: Callable[[], bytes]) -> tuple[Any, ...]:
    """What an encode call answers, in a form that compares with ==."""
    try:
        return ("ok", call())
    except RequestValidationError as error:
        return ("invalid", error.model, tuple(v.path for v in error.violations))
    except TypeError as error:
        return ("TypeError", str(error))


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
        # The model's converter turns any str into a member; another enum's member stays.
        return isinstance(value, enum.Enum) and value.__class__ is not declared
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


def json_forms(body: bytes, cls: type[Any], rng: random.Random) -> list[Any]:
    """The body as a caller's mapping would carry it: as parsed; and with keys shuffled, a
    ``None`` for an absent optional field, enum values and codes in another casing, tuples for
    some arrays."""
    parsed = orjson.loads(body)
    return [parsed, _scramble(parsed, _rules.REQUEST_RULES[cls], rng)]


def _scramble(value: Any, rule: _rules.Rule, rng: random.Random) -> Any:
    if isinstance(rule, _rules.ObjectRule) and isinstance(value, dict):
        fields = {field.name: field for field in rule.fields}
        items = [(key, _scramble(item, fields[key].rule, rng)) for key, item in value.items()]
        absent = [f.name for f in rule.fields if f.name not in value and not f.required]
        if absent and rng.random() < 0.5:
            items.append((rng.choice(absent), None))
        rng.shuffle(items)
        return dict(items)
    if isinstance(rule, _rules.ArrayRule) and isinstance(value, list):
        items = [_scramble(item, rule.item, rng) for item in value]
        return tuple(items) if rng.random() < 0.3 else items
    case_free = isinstance(rule, _rules.EnumRule) or (
        isinstance(rule, _rules.StringRule) and rule.code in ("currency", "country")
    )
    if case_free and isinstance(value, str) and rng.random() < 0.5:
        return value.swapcase()
    return value


def check_one(request: Any, check_amounts: bool, rng: random.Random | None = None) -> str:
    """Every promise of the fast paths for one request; returns which way it went."""
    cls = type(request)
    written = fast_path(request, check_amounts)
    accepted = rules_accept(request, cls, check_amounts, json=False)
    before = outcome(lambda: encode_request(request, cls, check_amounts=check_amounts))
    if written is not None:
        assert accepted
        assert_same_json(written, to_dict(request))
        expected = dumps_outcome(lambda: to_json(request))
        assert dumps_outcome(lambda: orjson.dumps(written)) == expected
        way = "fast path"
    else:
        assert not accepted or exotic(request, cls)
        way = "slow path, exotic value" if accepted else "slow path, invalid"
    if accepted:
        ok = dumps_outcome(lambda: to_json(request))
        assert before == (("ok", ok[1]) if ok[0] == "bytes" else ("invalid", cls.__name__, ("$",)))
        if ok[0] == "bytes":
            for data in json_forms(ok[1], cls, rng or random.Random(0)):
                check_json(data, cls, check_amounts, ok[1])
    else:
        assert before[0] == "invalid"
    return way


def check_json(data: Any, cls: type[Any], check_amounts: bool, body: bytes) -> None:
    """The JSON form of a valid model: the dict path writes the model's bytes."""
    written = fast_json(data, cls, check_amounts)
    assert rules_accept(data, cls, check_amounts, json=True)
    if written is not None:
        assert orjson.dumps(written) == body
    assert encode_request(data, cls, check_amounts=check_amounts) == body
    model, prepared = prepare(data, cls, check_amounts=check_amounts)
    assert prepared == body
    assert to_json(model) == body


# --- requests drawn from the rule trees ---------------------------------------------------------


class Text(str):
    """A str subclass: the rules take it as a string, the fast path leaves it to them."""

    __slots__ = ()


class Count(int):
    """An int subclass, likewise."""


class Items(tuple):  # type: ignore[type-arg]
    """A tuple subclass, likewise."""

    __slots__ = ()


#: Per code of a string rule (overrides.CODE_FORMATS): values that are right, values that are
#: not (some of them right by the spec's pattern).
CODE_EXAMPLES: dict[str, tuple[list[str], list[str]]] = {
    "country": (["SE", "se", "Us"], ["S", "SWE", "S1", "SE\n", "", "UK", "XX"]),
    "currency": (["EUR", "sek"], ["EURO", "E1R", "SEK\n", "XYZ", "xts"]),
    "locale": (
        ["en-GB", "sv-se", "us-US"],
        ["en-GB-x", "en_GB", "english", "en", "en-XX", "sv-SE-FI"],
    ),
}
#: Per pattern of a string rule: values that match it and values that do not.
PATTERN_EXAMPLES: dict[str, tuple[list[str], list[str]]] = {
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
    if rule.code is not None:
        usual, wrong = CODE_EXAMPLES[rule.code]
    elif rule.pattern is not None:
        usual, wrong = PATTERN_EXAMPLES[rule.pattern]
    else:
        top = 20 if highest is None else highest
        lengths = sorted({lowest, lowest + 1, 3, top - 1, top})
        usual = ["x" * n for n in lengths if lowest <= n <= top]
        usual += [text for text in ("Åsa ✓",) if lowest <= len(text) <= top]
        wrong = ["x" * n for n in (lowest - 1, top + 1) if n >= 0 and not lowest <= n <= top]
    # A lone surrogate is a valid str the rules accept, but not JSON.
    surrogate = ["\ud800"] if rule.pattern is None and lowest <= 1 <= (highest or 1) else []
    return _mostly(usual, [*wrong, *surrogate, Text(usual[0]), FraudStatus.ACCEPTED, 7, b"x"])


def _integer(rule: Any) -> st.SearchStrategy[Any]:
    lowest, highest = rule.minimum, rule.maximum
    typical = [n for n in (0, 1, 2, 3, 100, 999, 2500, -100) if lowest <= n <= highest]
    usual = typical * 4 + [lowest, lowest + 1, highest - 1, highest]
    return _mostly(usual, [lowest - 1, highest + 1, True, False, 1.0, "1", Count(2)])


def _one_of(rule: Any) -> st.SearchStrategy[Any]:
    enum_class = rule.enum_class
    usual = [rule.members[value] for value in rule.values]
    # Another casing and a str subclass become the member in the model; the rest is wrong.
    rare = [enum_class("no-such-value"), Text(usual[0].value), usual[0].swapcase(), Interval.MONTH]
    rare.append(7)
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
        f.name: _rarely(strategy(f.rule), st.none()) if f.required else st.none() | strategy(f.rule)
        for f in rule.fields
    }
    return st.builds(cls, **fields)


_STRATEGIES: dict[int, st.SearchStrategy[Any]] = {}


def strategy(rule: Any) -> st.SearchStrategy[Any]:
    """Values for one rule of a rule tree, mostly valid, sometimes not."""
    found = _STRATEGIES.get(id(rule))
    if found is None:
        kinds: dict[type[Any], Callable[[Any], st.SearchStrategy[Any]]] = {
            _rules.StringRule: _string,
            _rules.IntegerRule: _integer,
            _rules.BooleanRule: lambda _: _mostly([True, False], [1, 0, "yes"]),
            _rules.EnumRule: _one_of,
            _rules.ArrayRule: _array,
            _rules.ObjectRule: _model,
        }
        # Deferred: a tree's strategies are built when first drawn, not while being built.
        found = _STRATEGIES[id(rule)] = st.deferred(lambda: kinds[type(rule)](rule))
    return found


def requests(cls: type[Any]) -> st.SearchStrategy[Any]:
    return _fields(_rules.REQUEST_RULES[cls], cls)


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
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
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
    """A mapping takes the dict fast path, and its bytes are its model's."""
    model = structure_request(data, cls)
    assert check_one(model, True) == "fast path"
    assert fast_json(data, cls, True) is not None
    assert encode_request(data, cls) == to_json(model)


@pytest.mark.parametrize(
    ("make", "field", "value"),
    [rule[:3] for rule in RULES],
    ids=[f"{r[0].__name__}-{r[1]}-{str(r[2])[:12]!r}" for r in RULES],
)
def test_each_broken_rule_takes_the_slow_path(make: Any, field: str, value: Any) -> None:
    """Each rule of test_validation broken once: both fast paths step aside, and the error
    names that rule's path."""
    request = set_path(make(), field, value)
    cls = type(request)
    data = body_with(make(), field, value)
    for check_amounts in (True, False):
        assert fast_path(request, check_amounts) is None
        assert fast_json(data, cls, check_amounts) is None
        for form in (request, data):
            found = outcome(
                functools.partial(encode_request, form, cls, check_amounts=check_amounts)
            )
            assert found[0] == "invalid"
            # A model of the wrong class is, as a mapping, that class's fields.
            assert any(path.startswith(json_path(field)) for path in found[2])


@pytest.mark.parametrize(
    ("field", "value", "way"),
    [
        # What the rules take but the fast path leaves to them.
        ("merchant_data", Text("optional string"), "slow path, exotic value"),
        ("merchant_data", FraudStatus.ACCEPTED, "slow path, exotic value"),
        ("order_tax_amount", Count(0), "slow path, exotic value"),
        ("order_lines", Items(samples.token_order().order_lines), "slow path, exotic value"),
        (
            "order_lines.0.subscription",
            _subclass(Subscription)(name="x", interval=Interval.DAY, interval_count=1),
            "slow path, exotic value",
        ),
        # What both take, written the same way.
        ("order_lines", list(samples.token_order().order_lines), "fast path"),
        ("merchant_data", "\ud800", "fast path"),  # and then to_json's error, as before
        ("order_lines.0.type", "digital", "fast path"),  # made the member by the model
        ("order_lines.0.type", "DIGITAL", "fast path"),  # in any casing
        ("order_lines.0.subscription.interval", Text("month"), "fast path"),
        ("purchase_currency", "eur", "fast path"),  # upper-cased by the model
        ("merchant_reference2", "", "fast path"),
        ("locale", "de-DE", "fast path"),  # docs-only
        # What neither takes.
        ("auto_capture", 1, "slow path, invalid"),
        ("order_lines.0.quantity", True, "slow path, invalid"),
        ("order_amount", 999.0, "slow path, invalid"),
        ("order_lines.0.type", OrderLineType("digitial"), "slow path, invalid"),
        ("order_lines.0.type", OrderLineType.RETURN_FEE, "slow path, invalid"),
        ("order_lines.0.subscription.interval", "MONTHLY", "slow path, invalid"),
        ("order_tax_amount", 2**63, "slow path, invalid"),
        ("order_lines", Text("x"), "slow path, invalid"),
        ("purchase_currency", "XYZ", "slow path, invalid"),
        ("locale", "de-XX", "slow path, invalid"),
    ],
    ids=repr,
)
def test_edge_values(field: str, value: Any, way: str) -> None:
    """Subclasses, lists for tuples, plain strings for enums, bool for int, int64, surrogates."""
    request = set_path(samples.token_order(), field, value)
    for check_amounts in (True, False):
        assert check_one(request, check_amounts) == way


def test_unencodable_string_is_reported() -> None:
    """The fast paths accept a lone surrogate (the rules do), orjson refuses it: one violation
    at $ from the slow path, for a model and for a mapping."""
    request = attrs.evolve(samples.token_order(), merchant_data="\ud800")
    data = {**to_dict(samples.token_order()), "merchant_data": "\ud800"}
    for form in (request, data):
        with pytest.raises(RequestValidationError) as caught:
            encode_request(form, TokenOrderRequest)
        assert [v.path for v in caught.value.violations] == ["$"]
        assert caught.value.__cause__ is None
        assert caught.value.__suppress_context__


def test_subclass_of_the_request_class() -> None:
    """A subclass instance is not a request we know: TypeError, a bug rather than bad input."""
    request = _subclass(TokenOrderRequest)(**attrs.asdict(samples.token_order(), recurse=False))
    with pytest.raises(TypeError, match="no request validation for TokenOrderRequestSubclass"):
        encode_request(request, TokenOrderRequest)


@pytest.mark.parametrize(
    ("request_", "cls", "answer"),
    [
        (Order(order_id="x"), Order, "TypeError"),
        (Order(order_id="x"), TokenOrderRequest, "TypeError"),
        (samples.token_order(), OrderRequest, "TypeError"),
        ("json", TokenOrderRequest, "TypeError"),
        (None, TokenOrderRequest, "TypeError"),
        ({"purchase_currency": "EUR"}, TokenOrderRequest, "invalid"),
        ({"purchase_currency": "EUR"}, Order, "TypeError"),
    ],
)
def test_not_a_request_of_that_class(request_: Any, cls: type[Any], answer: str) -> None:
    """Another class, another model, not a mapping: a TypeError; a bad mapping: invalid."""
    assert outcome(lambda: encode_request(request_, cls))[0] == answer


@pytest.mark.parametrize("flag", [1, 0, "", "yes", None])
def test_check_amounts_is_read_for_its_truth(flag: Any) -> None:
    """Any value for check_amounts works as bool(value)."""
    wrong_sum = attrs.evolve(samples.token_order(), order_amount=1000)
    for form in (wrong_sum, to_dict(wrong_sum)):
        found = outcome(
            functools.partial(encode_request, form, TokenOrderRequest, check_amounts=flag)
        )
        assert found[0] == ("invalid" if flag else "ok")
    assert check_one(samples.token_order(), bool(flag)) == "fast path"


def test_list_of_order_lines_holds_at_most_1000() -> None:
    line = OrderLine(name="x", quantity=1, unit_price=1, total_amount=1)
    for count, way in ((1000, "fast path"), (1001, "slow path, invalid")):
        request = attrs.evolve(
            samples.token_order(), order_lines=[line] * count, order_amount=count
        )
        assert check_one(request, True) == way


# --- mappings -------------------------------------------------------------------------------------


def test_a_mapping_is_encoded_as_its_model() -> None:
    """Key order, ``None`` for absent fields, enum and code casing, tuples for arrays: the
    bytes of the equivalent model, from the dict fast path."""
    model = samples.token_order()
    body = to_json(model)
    data = orjson.loads(body)
    reordered = dict(reversed(list(data.items())))
    reordered["order_lines"] = (
        {**data["order_lines"][0], "type": "DIGITAL", "merchant_data": None},
    )
    reordered["purchase_currency"] = "eur"
    reordered["shipping_address"] = None
    assert list(reordered) != list(data)
    assert fast_json(reordered, TokenOrderRequest, True) is not None
    assert encode_request(reordered, TokenOrderRequest) == body


def test_a_mapping_may_hold_enum_members() -> None:
    """A dict built in Python (``to_dict``'s, say) may hold the enums' members: the same bytes,
    by the dict fast path."""
    data = to_dict(samples.token_order())
    assert isinstance(data["order_lines"][0]["type"], OrderLineType)
    assert fast_json(data, TokenOrderRequest, True) is not None
    assert encode_request(data, TokenOrderRequest) == to_json(samples.token_order())


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"purchase_currenc": "EUR"}, "$.purchase_currenc"),
        ({7: "x"}, "$[7]"),
        ({"order_amount": None}, "$.order_amount"),
        ({"order_amount": "999"}, "$.order_amount"),
        ({"order_lines": "x"}, "$.order_lines"),
        ({"merchant_urls": {"push": "https://x"}}, "$.merchant_urls.confirmation"),
        ({"shipping_address": {"country": "SE", "phone_number": "1"}}, "$.shipping_address"),
    ],
    ids=repr,
)
def test_a_bad_mapping_is_refused_like_its_model(change: dict[Any, Any], path: str) -> None:
    """Unknown keys, nulls where required, wrong types: refused, never dropped or coerced."""
    data = {**orjson.loads(to_json(samples.token_order())), **change}
    assert fast_json(data, TokenOrderRequest, True) is None
    found = outcome(lambda: encode_request(data, TokenOrderRequest))
    assert found[0] == "invalid"
    assert any(p.startswith(path) for p in found[2]), found


def test_a_mapping_of_another_kind_takes_the_slow_path() -> None:
    """A Mapping that is not a dict is read by key too, and written as its model."""
    from types import MappingProxyType

    data = to_dict(samples.token_order())
    assert encode_request(MappingProxyType(data), TokenOrderRequest) == to_json(
        samples.token_order()
    )


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
    text = _rules.StringRule(0, None, None, None, "", None)
    rule = _rules.ObjectRule(
        schema="test.shape",
        cls=Shape,
        fields=(
            _rules.FieldRule("code", _rules.StringRule(2, None, None, None, "", None), False, ""),
            _rules.FieldRule("tags", _rules.ArrayRule(text, 1, None), False, ""),
            _rules.FieldRule("label", text, True, "required field missing"),
        ),
        layout=tuple(field_layout(Shape)),
        names=frozenset({"code", "tags", "label"}),
        line_amounts=False,
        order_amounts=False,
    )
    shapes = [
        Shape(code="ab", label="x"),
        Shape(code="ab", tags=("t",), label="x"),
        Shape(code="a", label="x"),
        Shape(code="ab", tags=(), label="x"),
        Shape(code="ab"),
        Shape(code="ab", label=Text("x")),
    ]
    for json in (False, True):
        fast = _fast_path.compile_fast_path(rule, json=json, check_amounts=True)
        for shape in shapes:
            given = to_dict(shape) if json else shape
            walk = _validation._Walk(json=json, check_amounts=True)
            walk.object(rule, given, "$")
            written = fast(given)
            if written is None:
                assert walk.out or shape.label.__class__ is Text
            else:
                assert not walk.out
                assert_same_json(written, to_dict(shape))
        verdicts = [fast(to_dict(s) if json else s) is not None for s in shapes]
        assert verdicts == [True, True, False, False, False, False]
