"""The vocabulary of the constraint table: what a JSON Schema property of Klarna's specs says.

Only what the request schemas use is here, so that the generator fails on anything new rather
than dropping it. Every value mirrors a JSON Schema keyword: ``String(max_length=99)`` is
``{"type": "string", "maxLength": 99}``.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

__all__ = ["Array", "Boolean", "Integer", "Kind", "Object", "Schema", "String"]


@attrs.frozen
class String:
    """``type: string``. ``pattern`` is an ECMA regex searched in the value (JSON Schema's rule);
    ``enum`` lists the allowed values; ``format`` is informational (``date``, ``date-time``)."""

    min_length: int = 0
    max_length: int | None = None
    pattern: str | None = None
    enum: tuple[str, ...] | None = None
    format: str | None = None


@attrs.frozen
class Integer:
    """``type: integer``; ``format`` ``int64`` or ``int32`` bounds it further."""

    minimum: int | None = None
    maximum: int | None = None
    format: str | None = None


@attrs.frozen
class Boolean:
    """``type: boolean``."""


@attrs.frozen
class Object:
    """A ``$ref`` to another schema of the table, by its key (``"payments.address"``)."""

    schema: str


@attrs.frozen
class Array:
    """``type: array`` of ``items``."""

    items: Kind
    min_items: int = 0
    max_items: int | None = None


Kind = String | Integer | Boolean | Object | Array


@attrs.frozen
class Schema:
    """An object schema: its writable ``properties`` in the spec's order, which are ``required``,
    and the names of its ``readOnly`` properties (never sent, so not in ``properties``)."""

    properties: Mapping[str, Kind]
    required: tuple[str, ...] = ()
    read_only: tuple[str, ...] = ()
