"""The validate-and-serialise fast path: one generated function per request class that tests a
valid request and writes its JSON dict in a single walk.

A valid request is the common case, and for it the rule walk of :mod:`klarna_async._validation`
plus the converter's ``to_json`` were the largest CPU cost of a charge on our side. So each rule
tree of :mod:`klarna_async._rules` is compiled, at import, into straight-line code that reads
every field once, tests it inline and builds the JSON-ready dict as it goes, in the key order the
converter writes (:func:`klarna_async._converter.field_layout`). Two inputs, two functions per
class and ``check_amounts`` flag:

* ``model``: the request model, read by attribute;
* ``json``: a plain ``dict`` of the JSON shape (``await request.json()``), read by key. Its dict
  is the one the model path writes for the equivalent model, value for value (enum values as the
  enum's members, codes upper-cased), so the bytes are the same; unknown keys and ``None`` are
  treated as the model path treats them (refused; left out).

At the first failed test a function returns None and the caller takes the slow path: the rule
walk, which collects every violation. Its tests are stricter than the rules, never looser: exact
classes (``str``, ``int``, ``dict``, ``list``/``tuple``, the model class), so that what it
accepts the rules accept and the converter writes the same way. tests/test_fast_path.py holds the
two paths to the same answers.
"""

from __future__ import annotations

import linecache
from collections.abc import Callable, Mapping
from typing import Any, Final, cast

from klarna_async._models.enums import OrderLineType
from klarna_async._rules import (
    CODES,
    REQUEST_RULES,
    ArrayRule,
    BooleanRule,
    EnumRule,
    IntegerRule,
    ObjectRule,
    Rule,
    StringRule,
    locale_ok,
)

__all__ = ["FAST_JSON", "FAST_MODEL", "FastPath", "compile_fast_path"]

FastPath = Callable[[Any], "dict[str, Any] | None"]
_ItemHook = Callable[[dict[str, str], int], None]
_TAX_RATE_MAX: Final = 10000


class _Writer:
    """Writes the source of one fast-path function from a rule tree."""

    def __init__(self, *, json: bool, check_amounts: bool) -> None:
        self.json = json
        self.check_amounts = check_amounts
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

    def value(self, rule: Rule, var: str, indent: int, on_item: _ItemHook | None = None) -> str:
        """Test ``var`` (not None) against ``rule``; return the expression of its JSON value.

        A scalar is written as it is (an enum member included: orjson writes its value), after
        ``var`` is set to what is sent where that differs (a code's casing, an enum's spelling).
        """
        if isinstance(rule, StringRule):
            tests = [f"{var}.__class__ is not str"]
            tests += self.length(var, rule.min_length, rule.max_length)
            if rule.code == "locale":
                tests.append(f"not {self.constant(locale_ok, 'locale_ok')}({var})")
            elif rule.code is None and rule.matcher is not None:
                tests.append(f"{self.constant(rule.matcher, 'match')}({var}) is None")
            self.fail_if(indent, *tests)
            if rule.code is not None and rule.code in CODES:
                # Every casing of every code maps to the code: one lookup tests and normalises
                # (a model holds the code upper-cased already, and is written as it is).
                codes = self.constant(CODES[rule.code], "codes")
                if self.json:
                    self.line(indent, f"{var} = {codes}.get({var})")
                    self.fail_if(indent, f"{var} is None")
                else:
                    self.fail_if(indent, f"{var} not in {codes}")
        elif isinstance(rule, IntegerRule):
            bounds = f"{rule.minimum} <= {var} <= {rule.maximum}"
            self.fail_if(indent, f"{var}.__class__ is not int", f"not {bounds}")
        elif isinstance(rule, BooleanRule):
            self.fail_if(indent, f"{var} is not True and {var} is not False")
        elif isinstance(rule, EnumRule):
            self.enum(rule, var, indent)
        elif isinstance(rule, ArrayRule):
            return self.array(rule, var, indent, on_item)
        else:
            return self.model(rule, var, indent)[0]
        return var

    def enum(self, rule: EnumRule, var: str, indent: int) -> None:
        members = self.constant(rule.members, "members")
        if not self.json:
            # The model's converter made any str its member: only the spec's values pass.
            cls = self.constant(rule.enum_class or str, "enum_class")
            self.fail_if(indent, f"{var}.__class__ is not {cls}", f"{var} not in {members}")
            return
        canonical = self.constant(rule.canonical, "canonical")
        # A str as parsed from JSON, or the enum's member as a caller may put in a dict.
        cls = self.constant(rule.enum_class or str, "enum_class")
        self.fail_if(indent, f"{var}.__class__ is not str and {var}.__class__ is not {cls}")
        # A member is truthy (a non-empty str); another casing goes the longer way.
        self.line(indent, f"{var} = {members}.get({var}) or {canonical}({var})")
        self.fail_if(indent, f"{var} is None")

    @staticmethod
    def length(var: str, minimum: int, maximum: int | None) -> list[str]:
        """The test that ``len(var)`` is out of bounds, if there are any."""
        lower = f"{minimum} <= " if minimum else ""
        upper = f" <= {maximum}" if maximum is not None else ""
        return [f"not {lower}len({var}){upper}"] if lower or upper else []

    def array(self, rule: ArrayRule, var: str, indent: int, on_item: _ItemHook | None) -> str:
        self.fail_if(
            indent,
            f"{var}.__class__ is not tuple and {var}.__class__ is not list",
            *self.length(var, rule.min_items, rule.max_items),
        )
        item = self.fresh("item")
        written = self.fresh("items")
        self.line(indent, f"{written} = []")
        self.line(indent, f"for {item} in {var}:")
        if isinstance(rule.item, ObjectRule):
            data, values = self.model(rule.item, item, indent + 1)
            if on_item is not None:
                on_item(values, indent + 1)
            self.line(indent + 1, f"{written}.append({data})")
        else:
            expression = self.value(rule.item, item, indent + 1)
            self.line(indent + 1, f"{written}.append({expression})")
        return written

    def model(self, rule: ObjectRule, var: str, indent: int) -> tuple[str, dict[str, str]]:
        """Test an object and write its dict; return the dict's name and each field's variable."""
        if self.json:
            self.fail_if(indent, f"{var}.__class__ is not dict")
        else:
            self.fail_if(indent, f"{var}.__class__ is not {self.constant(rule.cls, 'cls')}")
        fields = {field.name: field for field in rule.fields}
        values = {name: self.fresh(name) for name in fields}
        amounts = self.check_amounts and rule.order_amounts
        # The order's sums are kept while its lines are tested.
        hooks = {"order_lines": self.order_sums(values, indent)} if amounts else {}
        data = self.fresh("data")
        literal: list[str] = []
        for name, left_out in rule.layout:
            if not left_out:
                # The converter writes these even when None; every check refuses None.
                self.read(values[name], var, name, indent)
                expression = self.value(fields[name].rule, values[name], indent, hooks.get(name))
                literal.append(f"{name!r}: {expression}")
        self.line(indent, f"{data} = {{{', '.join(literal)}}}")
        for name, left_out in rule.layout:
            if left_out:
                field = fields[name]
                self.read(values[name], var, name, indent)
                inner = indent
                if not field.required:
                    self.line(indent, f"if {values[name]} is not None:")
                    inner += 1
                expression = self.value(field.rule, values[name], inner, hooks.get(name))
                self.line(inner, f"{data}[{name!r}] = {expression}")
        if self.json:
            # Every key read and kept is one key of the dict written: any other key of the input
            # is unknown (refused) or a None (left out, as for a model).
            names = self.constant(rule.names, "names")
            self.fail_if(indent, f"len({data}) != len({var}) and not {names}.issuperset({var})")
        if self.check_amounts and rule.line_amounts:
            _write_line_amounts(self, values, indent)
        if amounts:
            _write_order_amounts(self, values, indent)
        return data, values

    def read(self, target: str, var: str, name: str, indent: int) -> None:
        source = f"{var}.get({name!r})" if self.json else f"{var}.{name}"
        self.line(indent, f"{target} = {source}")

    def order_sums(self, order: dict[str, str], indent: int) -> _ItemHook:
        """Start the sums of the order's arithmetic; the hook adds each line, the end judges."""
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


def _write_line_amounts(writer: _Writer, line: dict[str, str], indent: int) -> None:
    # klarna_async._validation's line arithmetic, for values that passed their own rules:
    # exact ints, or None where optional.
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


def _write_order_amounts(writer: _Writer, order: dict[str, str], indent: int) -> None:
    # klarna_async._validation's order arithmetic, with the sums order_sums' hook added up.
    amount, order_tax = order["order_amount"], order["order_tax_amount"]
    writer.fail_if(indent, f"{amount} != {order['total_sum']}")
    writer.fail_if(
        indent,
        f"{order['has_tax']} and {order_tax} is not None and {order_tax} != {order['tax_sum']}"
        f" and {order_tax} != {order['us_tax_sum']}",
    )


def compile_fast_path(rule: ObjectRule, *, json: bool, check_amounts: bool) -> FastPath:
    """The fast-path function of one rule tree (exposed for tests of trees beyond today's)."""
    writer = _Writer(json=json, check_amounts=check_amounts)
    name = f"fast_{rule.cls.__name__}_{'json' if json else 'model'}"
    name += "" if check_amounts else "_without_amounts"
    writer.line(0, f"def {name}(request):")
    data, _ = writer.model(rule, "request", 1)
    writer.line(1, f"return {data}")
    source = "\n".join(writer.lines) + "\n"
    filename = f"<klarna_async fast path {name}>"
    # In linecache, as cattrs does, so that a traceback through it shows the line.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), writer.namespace)  # noqa: S102
    return cast(FastPath, writer.namespace[name])


def _compile_all(*, json: bool) -> Mapping[bool, Mapping[type[Any], FastPath]]:
    return {
        check_amounts: {
            cls: compile_fast_path(rule, json=json, check_amounts=check_amounts)
            for cls, rule in REQUEST_RULES.items()
        }
        for check_amounts in (True, False)
    }


#: check_amounts -> request class -> the function for a model of exactly that class.
FAST_MODEL: Final = _compile_all(json=False)
#: check_amounts -> request class -> the function for a plain dict of its JSON shape.
FAST_JSON: Final = _compile_all(json=True)
