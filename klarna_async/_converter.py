"""The one cattrs converter of klarna_async: models to JSON bytes and JSON back to models.

Built once, at import, from ``cattrs.preconf.orjson``. cattrs generates and caches one
un/structure function per class on first use, so the hot path (one recurring charge: a
``TokenOrderRequest`` out, an ``Order`` back) runs generated code only.

Choices, each for a reason:

* ``None`` fields are left out of request JSON (``omit_if_default``; every optional field
  defaults to ``None``), so we never send a value the caller did not choose.
* Unknown response fields are ignored: Klarna may add fields at any time.
* Unknown *request* keys are an error (:func:`structure_request`): a misspelt field in a payment
  request must not be dropped silently.
* Scalars are strict: ``1`` is not a string, ``"1"`` and ``1.0`` are not integers, ``1`` is not a
  boolean. The stock hooks would call ``str()`` / ``int()`` and hide a broken answer.
* Enums are open (see ``klarna_async._models.enums``): a value Klarna adds later decodes.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final, TypeVar

import attrs
import cattrs
import orjson
from cattrs.cols import homogenous_tuple_structure_factory
from cattrs.gen import make_dict_structure_fn
from cattrs.preconf.orjson import make_converter

from klarna_async._errors import RequestValidationError, Violation
from klarna_async._models.common import AuthorizedPaymentMethod, Order
from klarna_async._models.customer_tokens import TokenOrderRequest
from klarna_async._models.enums import AuthorizedPaymentMethodType, OpenStrEnum

__all__ = [
    "DecodeProblems",
    "decode",
    "field_layout",
    "loads",
    "structure_request",
    "to_dict",
    "to_json",
]

T = TypeVar("T")


class DecodeProblems(Exception):
    """A parsed answer does not fit its model.

    ``problems`` holds one ``"$.path: what is wrong"`` line per problem.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class _WrongType(TypeError):
    """A JSON value of the wrong kind; the message is already fit for a human."""


_JSON_TYPE_NAMES: Final = {
    dict: "object",
    list: "array",
    tuple: "array",
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def _json_type(value: object) -> str:
    return _JSON_TYPE_NAMES.get(type(value)) or type(value).__name__


# --- strict scalar hooks ------------------------------------------------------------------------


def _structure_str(value: Any, _: Any) -> str:
    if isinstance(value, str):
        return value
    raise _WrongType(f"expected a string, got {_json_type(value)}")


def _structure_int(value: Any, _: Any) -> int:
    # bool is an int subclass: True must not become a quantity of 1.
    if isinstance(value, int) and value.__class__ is not bool:
        return value
    raise _WrongType(f"expected an integer, got {_json_type(value)}")


def _structure_bool(value: Any, _: Any) -> bool:
    if value is True or value is False:
        return value
    raise _WrongType(f"expected a boolean, got {_json_type(value)}")


def _structure_datetime(value: Any, _: Any) -> datetime:
    if not isinstance(value, str):
        raise _WrongType(f"expected a date-time string, got {_json_type(value)}")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise _WrongType(f"expected an ISO 8601 date-time, got {value!r}") from None


def _structure_open_enum(value: Any, cls: type[OpenStrEnum]) -> OpenStrEnum:
    if not isinstance(value, str):
        raise _WrongType(f"expected a string, got {_json_type(value)}")
    # The member map first: Enum.__call__ is slow, and documented values are the common case.
    member = cls._value2member_map_.get(value)
    return cls(value) if member is None else typing.cast(OpenStrEnum, member)


def _is_homogeneous_tuple(t: Any) -> bool:
    args = typing.get_args(t)
    return typing.get_origin(t) is tuple and len(args) == 2 and args[1] is Ellipsis


def _is_optional(t: Any) -> bool:
    args = typing.get_args(t)
    is_union = isinstance(t, types.UnionType) or typing.get_origin(t) is typing.Union
    return is_union and len(args) == 2 and type(None) in args


def _strip_optional(hint: Any) -> Any:
    if _is_optional(hint):
        return next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return hint


def _is_model(t: Any) -> bool:
    return isinstance(t, type) and attrs.has(t) and t is not AuthorizedPaymentMethod


def _make_converter() -> cattrs.Converter:
    converter = make_converter(omit_if_default=True)

    # Simple types first: the generated class hooks resolve and cache these when they are built.
    # These are singledispatch hooks, so the one for OpenStrEnum (a str subclass) must exist for
    # the enums not to be caught by the one for str.
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(bool, _structure_bool)
    converter.register_structure_hook(OpenStrEnum, _structure_open_enum)
    converter.register_structure_hook(datetime, _structure_datetime)

    def optional_factory(t: Any) -> Callable[[Any, Any], Any]:
        # The stock hook looks the inner type's hook up on every call; look it up once.
        inner_type = _strip_optional(t)
        inner = converter.get_structure_hook(inner_type)

        def structure_optional(value: Any, _: Any) -> Any:
            return None if value is None else inner(value, inner_type)

        return structure_optional

    converter.register_structure_hook_factory(_is_optional, optional_factory)

    def tuple_factory(t: Any) -> Callable[[Any, Any], Any]:
        # The stock hook turns any iterable into a tuple: "abc" would become ("a", "b", "c").
        inner = homogenous_tuple_structure_factory(t, converter)

        def structure_tuple(value: Any, _: Any) -> Any:
            if isinstance(value, (list, tuple)):
                return inner(value, t)
            raise _WrongType(f"expected an array, got {_json_type(value)}")

        return structure_tuple

    converter.register_structure_hook_factory(_is_homogeneous_tuple, tuple_factory)

    def model_factory(cls: type[Any]) -> Callable[[Any, Any], Any]:
        inner = make_dict_structure_fn(cls, converter)

        def structure_model(value: Any, _: Any) -> Any:
            # Without this a string would fail once per field, with Python's words.
            if isinstance(value, Mapping):
                return inner(value, cls)
            raise _WrongType(f"expected an object, got {_json_type(value)}")

        return structure_model

    converter.register_structure_hook_factory(_is_model, model_factory)

    payment_method_object = make_dict_structure_fn(AuthorizedPaymentMethod, converter)

    def structure_payment_method(value: Any, _: Any) -> AuthorizedPaymentMethod:
        # The spec sends an object; Klarna's examples send the bare type, e.g. "invoice".
        if isinstance(value, str):
            return AuthorizedPaymentMethod(type=AuthorizedPaymentMethodType(value))
        if isinstance(value, Mapping):
            return payment_method_object(value, AuthorizedPaymentMethod)
        raise _WrongType(f"expected an object or a string, got {_json_type(value)}")

    converter.register_structure_hook(AuthorizedPaymentMethod, structure_payment_method)
    return converter


_converter: Final = _make_converter()
# The two hooks of a recurring charge, generated now rather than inside the first charge; every
# other class gets its hooks on first use.
_converter.get_unstructure_hook(TokenOrderRequest)
_converter.get_structure_hook(Order)


# --- out: models to the wire --------------------------------------------------------------------


def to_dict(obj: attrs.AttrsInstance) -> dict[str, Any]:
    """The JSON-ready dict of a model: ``None`` fields left out, enums as their (str) values."""
    result: dict[str, Any] = _converter.unstructure(obj)
    return result


def to_json(obj: attrs.AttrsInstance) -> bytes:
    """The request body for a model: compact UTF-8 JSON, ``None`` fields left out."""
    return orjson.dumps(_converter.unstructure(obj))


def field_layout(cls: type[Any]) -> list[tuple[str, bool]]:
    """How :func:`to_dict` writes a model of ``cls``: ``(field name, left out when None)`` pairs,
    in the order of the keys it writes.

    This is what cattrs' generated function does with ``omit_if_default``: a dict literal of the
    fields without a default, in class order, then each field with a default, in class order,
    unless the value equals the default. Every default of the models is ``None``, so for a valid
    value "equals the default" is "is ``None``". ``klarna_async._fast_path`` builds request dicts
    by this layout on its fast path; the tests prove the bytes equal :func:`to_json`'s.
    """
    fields = attrs.fields(cls)
    for field in fields:
        if field.default is not attrs.NOTHING and field.default is not None:
            raise ValueError(f"{cls.__name__}.{field.name}: a default other than None")
    written = [(f.name, False) for f in fields if f.default is attrs.NOTHING]
    return written + [(f.name, True) for f in fields if f.default is not attrs.NOTHING]


# --- in: the wire to models ---------------------------------------------------------------------


def loads(body: bytes) -> Any:
    """Parse a response body; :class:`DecodeProblems` if it is not JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise DecodeProblems([f"not JSON: {exc}"]) from None


def decode(data: Any, cls: type[T]) -> T:
    """A parsed response as its model; :class:`DecodeProblems` lists every mismatch.

    Unknown fields are ignored and unknown enum values decode to pseudo-members.
    """
    try:
        return _converter.structure(data, cls)
    except Exception as exc:
        raise DecodeProblems(_problem_lines(exc)) from exc


def structure_request(data: Mapping[str, Any], cls: type[T]) -> T:
    """A plain mapping of the request's JSON shape as the request model.

    Raises :class:`RequestValidationError` listing every problem (missing field, wrong type,
    unknown key) with its JSON path. Spec rules such as lengths and amounts are checked by
    ``klarna_async._validation``, not here.
    """
    if not isinstance(typing.cast(object, data), Mapping):
        problem = Violation("$", f"expected an object, got {_json_type(data)}")
        raise RequestValidationError([problem], model=cls.__name__)
    violations: list[Violation] = []
    _find_unknown_keys(data, cls, "$", violations)
    try:
        result = _converter.structure(data, cls)
    except Exception as exc:
        violations.extend(_violations(exc))
    if violations:
        raise RequestValidationError(violations, model=cls.__name__)
    return result


# --- error paths ------------------------------------------------------------------------------


def _format_exception(exc: BaseException, type_: type | None) -> str:
    if isinstance(exc, _WrongType):
        return str(exc)
    return cattrs.v.format_exception(exc, type_)


def _violations(exc: BaseException) -> list[Violation]:
    found = []
    for line in cattrs.transform_error(exc, "$", _format_exception):
        message, _, path = line.rpartition(" @ ")
        found.append(Violation(path, message))
    return found


def _problem_lines(exc: BaseException) -> list[str]:
    return [str(violation) for violation in _violations(exc)]


@attrs.frozen
class _Shape:
    """The field names of a model and which of them hold models (``many`` for tuples)."""

    names: frozenset[str]
    children: Mapping[str, tuple[type[Any], bool]]


_SHAPES: dict[type[Any], _Shape] = {}


def _shape(cls: type[Any]) -> _Shape:
    shape = _SHAPES.get(cls)
    if shape is None:
        shape = _SHAPES[cls] = _make_shape(cls)
    return shape


def _make_shape(cls: type[Any]) -> _Shape:
    hints = typing.get_type_hints(cls)
    children: dict[str, tuple[type[Any], bool]] = {}
    for field in attrs.fields(cls):
        target = _strip_optional(hints[field.name])
        many = _is_homogeneous_tuple(target)
        if many:
            target = typing.get_args(target)[0]
        if isinstance(target, type) and attrs.has(target):
            children[field.name] = (target, many)
    return _Shape(frozenset(f.name for f in attrs.fields(cls)), children)


def _find_unknown_keys(
    data: Mapping[Any, Any], cls: type[Any], path: str, out: list[Violation]
) -> None:
    shape = _shape(cls)
    for key, value in data.items():
        if key not in shape.names:
            where = f"{path}.{key}" if isinstance(key, str) else f"{path}[{key!r}]"
            message = f"unknown field for {cls.__name__}"
            close = difflib.get_close_matches(str(key), shape.names, n=1)
            if close:
                message += f" (did you mean {close[0]!r}?)"
            out.append(Violation(where, message))
            continue
        child = shape.children.get(key)
        if child is None:
            continue
        child_cls, many = child
        if many and isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                if isinstance(item, Mapping):
                    _find_unknown_keys(item, child_cls, f"{path}.{key}[{index}]", out)
        elif isinstance(value, Mapping):
            _find_unknown_keys(value, child_cls, f"{path}.{key}", out)
