"""Compact per-key state: every idempotency key the fake has seen, in flat arrays.

A million keys held as Python strings in dicts cost about 150 bytes each before any value is
attached; the fake must remember every key for Klarna's 24-hour window (to replay its answer)
and count its orders for the whole run (the ledger's witness), so it keeps them here instead:

* :class:`KeyTable` numbers each distinct key ``0, 1, 2, ...`` in order of first sight and keeps
  only its 96-bit BLAKE2b digest (12 bytes) plus an open-addressing index of 4-byte entries at
  most two-thirds full. Two distinct keys share a number only if their digests collide: about
  ``n**2 / 2**97``, 6e-18 for a million keys (and 6e-14 for a hundred million).
* Users keep their own values in a :class:`Column` per value, indexed by that number
  (:class:`ByteCounts` here, the idempotency store's columns in :mod:`._idempotency`), and grow
  them lazily.

Columns grow in blocks of 65,536 entries that never move: a plain :class:`array.array` that grows
by reallocation leaves copies behind in the C heap, which over a million keys cost about as much
resident memory again as the arrays themselves.

The key strings themselves are not kept: a table answers "what is this key's number", not "which
keys are there".
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict
from collections.abc import Iterator
from typing import Final, Generic, TypeVar

__all__ = ["ByteCounts", "Column", "KeyTable", "Recent"]

_V = TypeVar("_V")
_N = TypeVar("_N", int, float)

_BLOCK_BITS: Final = 16
_BLOCK: Final = 1 << _BLOCK_BITS
_IN_BLOCK: Final = _BLOCK - 1

_INITIAL_INDEX = 1 << 10


def digest(key: str) -> tuple[int, int]:
    """The key's 96-bit BLAKE2b digest as a 64-bit and a 32-bit part."""
    # surrogatepass: a header value aiohttp decoded with surrogateescape still encodes.
    raw = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=12).digest()
    return int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little")


class Column(Generic[_N]):
    """A growable column of numbers of one :mod:`array` type code, stored in blocks that are
    allocated once and never moved. New entries are 0."""

    __slots__ = ("_blocks", "_length", "_typecode", "_zeros")

    def __init__(self, typecode: str) -> None:
        self._typecode = typecode
        self._zeros = bytes(array(typecode).itemsize * _BLOCK)
        self._blocks: list[array[_N]] = []
        self._length = 0

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, number: int) -> _N:
        return self._blocks[number >> _BLOCK_BITS][number & _IN_BLOCK]

    def __setitem__(self, number: int, value: _N) -> None:
        self._blocks[number >> _BLOCK_BITS][number & _IN_BLOCK] = value

    def grow_to(self, length: int) -> None:
        """Make every number below ``length`` valid."""
        blocks = self._blocks
        while len(blocks) << _BLOCK_BITS < length:
            blocks.append(array(self._typecode, self._zeros))
        if length > self._length:
            self._length = length

    def append(self, value: _N) -> None:
        number = self._length
        self.grow_to(number + 1)
        self[number] = value

    def __iter__(self) -> Iterator[_N]:
        for start in range(0, self._length, _BLOCK):
            yield from self._blocks[start >> _BLOCK_BITS][: self._length - start]

    def nbytes(self) -> int:
        return sum(block.itemsize * len(block) for block in self._blocks)


class KeyTable:
    """Distinct keys numbered in order of first sight: 12 bytes per key plus a 4-byte index
    entry, the index kept at most two-thirds full."""

    __slots__ = ("_hi", "_index", "_lo", "_mask", "generation")

    def __init__(self) -> None:
        self._hi: Column[int] = Column("Q")
        self._lo: Column[int] = Column("I")
        self._index = array("i", bytes(4 * _INITIAL_INDEX))  # 0: empty, else number + 1
        self._mask = _INITIAL_INDEX - 1
        self.generation = 0
        """Incremented by :meth:`clear`, so that users of the numbers know to forget theirs."""

    def __len__(self) -> int:
        return len(self._hi)

    def find(self, key: str) -> int:
        """The key's number, or -1 if it was never added."""
        hi, lo = digest(key)
        index, mask, his, los = self._index, self._mask, self._hi, self._lo
        position = hi & mask
        while True:
            entry = index[position]
            if entry == 0:
                return -1
            number = entry - 1
            if his[number] == hi and los[number] == lo:
                return number
            position = (position + 1) & mask

    def add(self, key: str) -> int:
        """The key's number, numbering it first if it is new."""
        hi, lo = digest(key)
        index, mask, his, los = self._index, self._mask, self._hi, self._lo
        position = hi & mask
        while True:
            entry = index[position]
            if entry == 0:
                break
            number = entry - 1
            if his[number] == hi and los[number] == lo:
                return number
            position = (position + 1) & mask
        number = len(his)
        his.append(hi)
        los.append(lo)
        index[position] = number + 1
        if 3 * len(his) > 2 * (mask + 1):
            self._grow()
        return number

    def _grow(self) -> None:
        size = 2 * (self._mask + 1)
        mask = size - 1
        index = array("i", bytes(4 * size))
        for number, hi in enumerate(self._hi):
            position = hi & mask
            while index[position]:
                position = (position + 1) & mask
            index[position] = number + 1
        self._index, self._mask = index, mask

    def nbytes(self) -> int:
        """Memory held by the table (for the docs' and benchmark's figures)."""
        index = self._index
        return self._hi.nbytes() + self._lo.nbytes() + index.itemsize * len(index)

    def clear(self) -> None:
        self._hi = Column("Q")
        self._lo = Column("I")
        self._index = array("i", bytes(4 * _INITIAL_INDEX))
        self._mask = _INITIAL_INDEX - 1
        self.generation += 1


class ByteCounts:
    """Exact non-negative counts by key number: one byte each, larger ones in a dict."""

    __slots__ = ("_large", "_small")

    def __init__(self) -> None:
        self._small: Column[int] = Column("B")
        self._large: dict[int, int] = {}

    def get(self, number: int) -> int:
        if number < 0 or number >= len(self._small):
            return 0
        value = self._small[number]
        return self._large[number] if value == 255 else value

    def increment(self, number: int) -> int:
        """Add one to the count of ``number``; the new count."""
        small = self._small
        small.grow_to(number + 1)
        value = small[number]
        if value < 254:
            small[number] = value + 1
            return value + 1
        count = (self._large.get(number, 254) if value == 255 else 254) + 1
        small[number] = 255
        self._large[number] = count
        return count

    def nbytes(self) -> int:
        return self._small.nbytes()

    def clear(self) -> None:
        self._small = Column("B")
        self._large.clear()


class Recent(OrderedDict[str, _V]):
    """A dict that forgets its oldest entries beyond ``limit`` (None: never)."""

    def __init__(self, limit: int | None) -> None:
        super().__init__()
        self.limit = limit

    def __setitem__(self, key: str, value: _V) -> None:
        super().__setitem__(key, value)
        if self.limit is not None and len(self) > self.limit:
            self.popitem(last=False)
