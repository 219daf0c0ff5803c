"""Klarna Customer Token API v1: read, charge (recurring orders) and cancel customer tokens.

A charge always carries a ``Klarna-Idempotency-Key``, chosen once per call and sent unchanged,
with the same body bytes, on every attempt: Klarna acts once per key within 24 hours, so retries
and re-runs cannot charge twice. Customer tokens are bearer-like secrets: logs show them masked.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from klarna_async._batch import Charge, ChargeResult, run_charges
from klarna_async._client import Endpoint
from klarna_async._models import CustomerToken, Order, TokenOrderRequest
from klarna_async._retry import RetryPolicy, Safety
from klarna_async._validation import prepare

if TYPE_CHECKING:
    from klarna_async._client import KlarnaClient

__all__ = ["CustomerTokens", "derive_idempotency_key"]

_TOKENS = "/customer-token/v1/tokens/{}"
GET = Endpoint("customer_tokens.get", "GET", _TOKENS, Safety.READ, "customer_token")
CREATE_ORDER = Endpoint(
    "customer_tokens.create_order",
    "POST",
    _TOKENS + "/order",
    Safety.IDEMPOTENCY_KEY,
    "customer_token",
)
# Cancelling twice cancels once; no key is declared for it.
CANCEL = Endpoint(
    "customer_tokens.cancel", "PATCH", _TOKENS + "/status", Safety.HARMLESS, "customer_token"
)
_CANCEL_BODY = b'{"status":"CANCELLED"}'


def derive_idempotency_key(namespace: uuid.UUID | str, *parts: str | int) -> str:
    """A deterministic ``Klarna-Idempotency-Key`` (UUIDv5) from stable business identifiers.

    Klarna advises UUIDv5 keys. Derive the key of a charge from what makes it unique, e.g.
    ``derive_idempotency_key("acme-subscriptions", subscription_id, "2026-11")``: running the
    same batch again (after a crash) then sends the same keys, and Klarna answers with the
    orders already placed instead of charging again. ``namespace`` is a UUID or any string
    naming your application (hashed into a UUID).
    """
    if not parts:
        raise ValueError("derive_idempotency_key needs at least one business identifier")
    if not isinstance(namespace, uuid.UUID):
        namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"klarna_async:{namespace}")
    # \x1f (unit separator) cannot appear by accident, so ("a", "bc") != ("ab", "c").
    name = "\x1f".join(str(part) for part in parts)
    return str(uuid.uuid5(namespace, name))


class CustomerTokens:
    """``client.customer_tokens``: the Customer Token API (``/customer-token/v1``)."""

    def __init__(self, client: KlarnaClient) -> None:
        self._client = client

    async def get(self, customer_token: str, *, retry: RetryPolicy | None = None) -> CustomerToken:
        """Read a token's status (active, suspended, cancelled) and payment method."""
        return await self._client._fetch(GET, customer_token, CustomerToken, retry=retry)

    async def create_order(
        self,
        customer_token: str,
        request: TokenOrderRequest | Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> Order:
        """Charge a customer token: a recurring order.

        ``idempotency_key`` identifies this charge to Klarna; without one, a fresh UUID4 is made
        for this call (safe for its retries, but not across runs: prefer
        :func:`derive_idempotency_key` for batches). On :class:`OutcomeUnknownError`, call
        again with ``error.idempotency_key`` to learn what happened without charging twice.
        """
        body, key = self._charge_body(request, idempotency_key)
        order, _ = await self._client._request(
            CREATE_ORDER, customer_token, body=body, model=Order, retry=retry, idempotency_key=key
        )
        assert order is not None  # decode_success returns a model or raises
        return order

    def charge_many(
        self,
        charges: Iterable[Charge] | AsyncIterable[Charge],
        *,
        concurrency: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> AsyncIterator[ChargeResult]:
        """Charge many tokens concurrently; yield a :class:`ChargeResult` as each finishes.

        ``charges`` is consumed lazily (a generator of a million charges runs in flat memory).
        ``concurrency`` defaults to the client's ``connection_limit`` and may not exceed it: a
        charge waiting for a pooled connection would spend its timeout unsent. Cancelling the
        consumer cancels the charges in flight; to stop early with ``break`` and be sure they
        are cancelled before the next line, iterate under ``contextlib.aclosing``::

            async with aclosing(client.customer_tokens.charge_many(charges)) as results:
                async for result in results:
                    ...
        """
        limit = self._client.connection_limit
        if concurrency is None:
            concurrency = limit
        if not 1 <= concurrency <= limit:
            raise ValueError(
                f"concurrency must be between 1 and the client's connection_limit ({limit})"
            )

        async def charge_one(charge: Charge, policy: RetryPolicy | None) -> tuple[Order, int]:
            return await self._charge(
                charge.customer_token, charge.request, charge.idempotency_key, policy
            )

        return run_charges(charge_one, charges, concurrency=concurrency, retry=retry)

    def _charge_body(
        self, request: TokenOrderRequest | Mapping[str, Any], idempotency_key: str | None
    ) -> tuple[bytes, str]:
        """The body and key of a charge: made once, before the first attempt."""
        if idempotency_key is None:
            idempotency_key = str(uuid.uuid4())
        elif not idempotency_key.strip():
            raise ValueError("idempotency_key must be a non-empty string")
        _, body = prepare(request, TokenOrderRequest, check_amounts=self._client.check_amounts)
        return body, idempotency_key

    async def _charge(
        self,
        customer_token: str,
        request: TokenOrderRequest | Mapping[str, Any],
        idempotency_key: str | None,
        retry: RetryPolicy | None,
    ) -> tuple[Order, int]:
        """:meth:`create_order`, with the number of attempts it took (for charge_many)."""
        body, key = self._charge_body(request, idempotency_key)
        order, attempts = await self._client._request(
            CREATE_ORDER, customer_token, body=body, model=Order, retry=retry, idempotency_key=key
        )
        assert order is not None  # decode_success returns a model or raises
        return order, attempts

    async def cancel(self, customer_token: str, *, retry: RetryPolicy | None = None) -> None:
        """Cancel a token for good (Klarna answers 202 and processes it asynchronously)."""
        await self._client._request(
            CANCEL, customer_token, body=_CANCEL_BODY, model=None, retry=retry
        )
