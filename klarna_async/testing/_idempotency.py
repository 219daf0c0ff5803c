"""The fake Klarna's memory of answers by ``Klarna-Idempotency-Key``, compact enough for millions.

Klarna replays the first answer given under a key for 24 hours; the fake does the same, so it
must remember every key of the last 24 hours of (fake) time, which over a million-charge run is a
million keys. Stored naively (the key string, the answer's bytes, its correlation id) that is
about 600 bytes a key. Here:

* The key is a number in the ledger's :class:`~._keys.KeyTable` (16 bytes and an index entry).
* A **successful recurring charge** (the answer nearly every key gets) is rebuilt on replay from
  18 bytes in flat arrays: its expiry, the numbers of its order id and correlation id (both from
  the ledger's :class:`~._ledger.IdSource`), its fraud status, payment method type and base URL.
  The rebuilt body is compared with the original when it is stored, so a compact answer replays
  byte for byte; an answer that does not rebuild exactly is stored whole instead.
* **Any other answer** (errors, which Klarna replays too) is stored whole, for the most recent
  ``keep_other`` keys (default 50,000; None: all). An older one is forgotten early, as if its
  24 hours had passed: a later request with its key is processed afresh.

Expired answers are forgotten when next looked up (their 18 bytes stay until :meth:`clear`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

from klarna_async.testing._keys import Column, KeyTable
from klarna_async.testing._ledger import IdSource

__all__ = ["IDEMPOTENCY_TTL", "IdempotencyStore", "StoredAnswer"]

IDEMPOTENCY_TTL: Final = 24 * 60 * 60.0

_NONE: Final = 0
_COMPACT: Final = 1
_WHOLE: Final = 2
_FRAUD: Final = ("ACCEPTED", "PENDING")
# ``authorized_payment_method.type`` values of the Customer Token spec (index + 1; 0: absent).
_METHODS: Final = (
    "invoice",
    "fixed_amount",
    "pix",
    "base_account",
    "deferred_interest",
    "direct_debit",
    "direct_bank_transfer",
    "b2b_invoice",
    "card",
    "slice_it_by_card",
    "pay_later_by_card",
    "fixed_sum_credit",
    "pay_by_card",
)
_MAX_BASES: Final = 255
_NUMBER_LIMIT: Final = 1 << 32  # what an array("I") entry holds


@dataclass(slots=True)
class StoredAnswer:
    """An answer kept for idempotent replay."""

    expires_at: float
    status: int
    body: bytes
    correlation_id: str
    error_code: str | None
    #: Headers that are part of the answer (Order Management's ``Capture-Id``, ``Location``).
    headers: dict[str, str] | None = None


def token_order_body(order_id: str, fraud_status: str, base_url: str, method: str | None) -> bytes:
    """A recurring charge's 200 body, built as :mod:`._state` builds it."""
    payload: dict[str, Any] = {
        "order_id": order_id,
        "fraud_status": fraud_status,
        "redirect_url": f"{base_url}/_fake/redirect/{order_id}",
    }
    if method is not None:
        payload["authorized_payment_method"] = {"type": method}
    return orjson.dumps(payload)


class IdempotencyStore:
    """Answers by ``Klarna-Idempotency-Key``, forgotten ``ttl`` seconds after they were stored.

    :param keys: the key table to number keys in (shared with the ledger to save memory; a new
        one if None). When it is cleared, this store forgets everything too.
    :param ids: the id source of the fake's order and correlation ids; without it every answer is
        stored whole.
    :param keep_other: how many answers that are not compact (see the module) are kept.
    """

    def __init__(
        self,
        ttl: float = IDEMPOTENCY_TTL,
        *,
        keys: KeyTable | None = None,
        ids: IdSource | None = None,
        keep_other: int | None = 50_000,
    ) -> None:
        if keep_other is not None and keep_other < 1:
            raise ValueError("keep_other must be >= 1 or None")
        self.ttl = ttl
        self.keys = keys if keys is not None else KeyTable()
        self.ids = ids
        self.keep_other = keep_other
        self._generation = self.keys.generation
        self._live = 0
        self._bases: list[str] = []
        self._expires: Column[float] = Column("d")
        self._order: Column[int] = Column("I")
        self._correlation: Column[int] = Column("I")
        # kind (bits 0-1), fraud status (bit 2), method (bits 3-6), base URL (bits 7-14)
        self._meta: Column[int] = Column("H")
        self._whole: dict[int, StoredAnswer] = {}

    def __len__(self) -> int:
        """Answers stored and not yet found expired."""
        self._sync()
        return self._live

    def _sync(self) -> None:
        if self._generation != self.keys.generation:  # the shared key table was cleared
            self.clear()
            self._generation = self.keys.generation

    def _forget(self, number: int) -> None:
        self._meta[number] = _NONE
        self._whole.pop(number, None)
        self._live -= 1

    def get(self, key: str, now: float) -> StoredAnswer | None:
        self._sync()
        number = self.keys.find(key)
        if number < 0 or number >= len(self._meta):
            return None
        meta = self._meta[number]
        kind = meta & 3
        if kind == _NONE:
            return None
        expires_at = self._expires[number]
        if expires_at <= now:
            self._forget(number)
            return None
        if kind == _WHOLE:
            return self._whole[number]
        assert self.ids is not None  # compact answers are only stored with an id source
        order_id = self.ids.order_id(self._order[number])
        method_index = (meta >> 3) & 15
        body = token_order_body(
            order_id,
            _FRAUD[(meta >> 2) & 1],
            self._bases[meta >> 7],
            _METHODS[method_index - 1] if method_index else None,
        )
        correlation_id = self.ids.correlation_id(self._correlation[number])
        return StoredAnswer(expires_at, 200, body, correlation_id, None)

    def put(
        self,
        key: str,
        now: float,
        status: int,
        body: bytes,
        correlation_id: str,
        error_code: str | None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._sync()
        number = self.keys.add(key)
        if number >= len(self._meta):
            for column in (self._expires, self._order, self._correlation, self._meta):
                column.grow_to(number + 1)
        if self._meta[number] != _NONE:
            self._forget(number)
        self._live += 1
        expires_at = now + self.ttl
        self._expires[number] = expires_at
        compact = None if headers else self._compact(status, body, correlation_id, error_code)
        if compact is not None:
            self._order[number], self._correlation[number], self._meta[number] = compact
            return
        self._meta[number] = _WHOLE
        # A copy of exactly the right size: orjson's output keeps a 4 KiB buffer per object.
        exact = bytes(memoryview(body))
        self._whole[number] = StoredAnswer(
            expires_at, status, exact, correlation_id, error_code, headers
        )
        if self.keep_other is not None and len(self._whole) > self.keep_other:
            oldest = next(iter(self._whole))
            self._forget(oldest)

    def _compact(
        self, status: int, body: bytes, correlation_id: str, error_code: str | None
    ) -> tuple[int, int, int] | None:
        """(order number, correlation number, meta) if the answer rebuilds exactly, else None."""
        ids = self.ids
        if ids is None or status != 200 or error_code is not None:
            return None
        correlation = ids.request_seq(correlation_id)
        if correlation is None or correlation >= _NUMBER_LIMIT:
            return None
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(payload, dict):
            return None
        order_id = payload.get("order_id")
        fraud = payload.get("fraud_status")
        redirect = payload.get("redirect_url")
        if not (isinstance(order_id, str) and isinstance(redirect, str) and fraud in _FRAUD):
            return None
        order = ids.order_number(order_id)
        suffix = f"/_fake/redirect/{order_id}"
        if order is None or order >= _NUMBER_LIMIT or not redirect.endswith(suffix):
            return None
        base = redirect[: -len(suffix)]
        method: str | None = None
        paid_with = payload.get("authorized_payment_method")
        if paid_with is not None:
            method = paid_with.get("type") if isinstance(paid_with, dict) else None
            if method not in _METHODS:
                return None
        if base not in self._bases:
            if len(self._bases) >= _MAX_BASES:
                return None
            self._bases.append(base)
        if token_order_body(order_id, fraud, base, method) != body:
            return None
        method_index = 0 if method is None else _METHODS.index(method) + 1
        meta = _COMPACT | (_FRAUD.index(fraud) << 2) | (method_index << 3)
        return order, correlation, meta | (self._bases.index(base) << 7)

    def nbytes(self) -> int:
        """Memory of the compact columns (the key table and whole answers not included)."""
        columns = (self._expires, self._order, self._correlation, self._meta)
        return sum(column.nbytes() for column in columns)

    def clear(self) -> None:
        self._live = 0
        self._bases.clear()
        self._expires = Column("d")
        self._order = Column("I")
        self._correlation = Column("I")
        self._meta = Column("H")
        self._whole.clear()
