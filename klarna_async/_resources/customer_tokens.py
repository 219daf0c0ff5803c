"""Klarna Customer Token API v1: read, charge (recurring orders) and cancel customer tokens.

A charge always carries a ``Klarna-Idempotency-Key``, chosen once per call and sent unchanged,
with the same body bytes, on every attempt: Klarna acts once per key within 24 hours, so retries
and re-runs cannot charge twice. Customer tokens are bearer-like secrets: logs show them masked.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Iterable, Mapping
from typing import Any

from klarna_async._batch import Charge, ChargeResult, charge_result, run_writes
from klarna_async._models import CustomerToken, Order, TokenOrderRequest
from klarna_async._request import Endpoint, Requester
from klarna_async._retry import RetryPolicy, Safety
from klarna_async._validation import encode_request

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

    def __init__(self, requester: Requester) -> None:
        self._requester = requester

    async def get(self, customer_token: str, *, retry: RetryPolicy | None = None) -> CustomerToken:
        """Read a token's status (active, suspended, cancelled) and payment method."""
        token, _ = await self._requester.request(
            GET, customer_token, body=None, model=CustomerToken, retry=retry
        )
        return token

    async def create_order(
        self,
        customer_token: str,
        request: TokenOrderRequest | Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        after_unknown: bool = False,
        retry: RetryPolicy | None = None,
    ) -> Order:
        """Charge a customer token: a recurring order.

        ``idempotency_key`` identifies this charge to Klarna; without one, a fresh UUID4 is made
        for this call (safe for its retries, but not across runs: prefer
        :func:`derive_idempotency_key` for batches). On :class:`OutcomeUnknownError`, call
        again with ``error.idempotency_key`` to learn what happened without charging twice:
        only a success settles it. This client remembers the keys it reported unknown for 24
        hours; pass ``after_unknown=True`` when the first call was made elsewhere (another
        process, before a restart), so that a refusal is not taken for "not charged".
        """
        body = encode_request(
            request, TokenOrderRequest, check_amounts=self._requester.check_amounts
        )
        order, _ = await self._requester.request(
            CREATE_ORDER,
            customer_token,
            body=body,
            model=Order,
            retry=retry,
            idempotency_key=idempotency_key,
            after_unknown=after_unknown,
        )
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
        charge waiting for a pooled connection would spend its timeout unsent. When the client
        closes, no further charge is pulled. Cancelling the consumer cancels the charges in
        flight; to stop early with ``break`` and be sure they are cancelled before the next
        line, iterate under ``contextlib.aclosing``::

            async with aclosing(client.customer_tokens.charge_many(charges)) as results:
                async for result in results:
                    ...
        """
        requester = self._requester

        def send(charge: Charge) -> Awaitable[tuple[Order, int]]:
            # Before anything is sent: a bad request, token or key raises, the charge's result.
            body = encode_request(
                charge.request, TokenOrderRequest, check_amounts=requester.check_amounts
            )
            return requester.request(
                CREATE_ORDER,
                charge.customer_token,
                body=body,
                model=Order,
                retry=retry,
                idempotency_key=charge.idempotency_key,
                after_unknown=charge.after_unknown,
            )

        return run_writes(
            send,
            charge_result,
            charges,
            concurrency=concurrency,
            limit=requester.connection_limit,
            stopped=lambda: requester.closing,
        )

    async def cancel(self, customer_token: str, *, retry: RetryPolicy | None = None) -> None:
        """Cancel a token for good (Klarna answers 202 and processes it asynchronously)."""
        await self._requester.request(
            CANCEL, customer_token, body=_CANCEL_BODY, model=None, retry=retry
        )
