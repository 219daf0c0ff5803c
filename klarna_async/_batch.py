"""Many recurring charges at once: ``client.customer_tokens.charge_many``.

A fixed set of workers pulls charges from the caller's (async) iterable only when one is free,
so a generator of a million charges runs in flat memory; results go out through a small queue
as they finish, so a slow consumer slows the workers instead of piling results up. One charge's
failure is that charge's result, never the batch's end. Retries, the retry budget and the rate
limiter are the client's, shared by every worker.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import attrs

from klarna_async._errors import KlarnaError, OutcomeUnknownError
from klarna_async._models import Order, TokenOrderRequest
from klarna_async._retry import RetryPolicy, mask_token

__all__ = ["Charge", "ChargeResult", "ChargeStatus", "run_charges"]

logger = logging.getLogger("klarna_async")


@attrs.frozen(kw_only=True, repr=False)
class Charge:
    """One recurring charge: whom to charge, for what, and the key that makes it happen once.

    Derive ``idempotency_key`` from stable business identifiers
    (:func:`derive_idempotency_key`), so that running the batch again re-sends the same keys.
    ``charge_id`` is yours (a subscription and period, an invoice number) and comes back on the
    result.
    """

    customer_token: str
    request: TokenOrderRequest | Mapping[str, Any]
    idempotency_key: str
    charge_id: str | None = None

    def __repr__(self) -> str:
        # The token is a bearer secret and the request may hold an address: keep both out.
        return (
            f"Charge(charge_id={self.charge_id!r}, customer_token="
            f"{mask_token(self.customer_token)!r}, idempotency_key={self.idempotency_key!r})"
        )


class ChargeStatus(enum.StrEnum):
    """What a charge came to."""

    #: Klarna placed the order (``fraud_status`` may still be ``PENDING``).
    PLACED = "placed"
    #: Klarna did not charge: a definite answer or an error from before any processing.
    FAILED = "failed"
    #: Klarna may or may not have charged: repeat with the same key to find out.
    UNKNOWN = "unknown"


@attrs.frozen(kw_only=True)
class ChargeResult:
    """The outcome of one :class:`Charge`: the order, or the error; attempts and time taken."""

    charge: Charge
    order: Order | None = None
    error: Exception | None = None
    attempts: int = 0
    elapsed: float = 0.0

    @property
    def status(self) -> ChargeStatus:
        if self.order is not None:
            return ChargeStatus.PLACED
        if isinstance(self.error, OutcomeUnknownError):
            return ChargeStatus.UNKNOWN
        return ChargeStatus.FAILED

    @property
    def ok(self) -> bool:
        return self.order is not None


ChargeFn = Callable[[Charge, RetryPolicy | None], Awaitable[tuple[Order, int]]]


async def run_charges(
    charge_one: ChargeFn,
    charges: Iterable[Charge] | AsyncIterable[Charge],
    *,
    concurrency: int,
    retry: RetryPolicy | None = None,
) -> AsyncIterator[ChargeResult]:
    """Yield a :class:`ChargeResult` for every charge, in the order they finish."""
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    source = _pull(charges)
    results: asyncio.Queue[ChargeResult | _Done] = asyncio.Queue(maxsize=concurrency)
    source_error: list[BaseException] = []

    async def worker() -> None:
        while True:
            try:
                charge = await source()
            except StopAsyncIteration:
                break
            except Exception as exc:  # the caller's iterable broke: stop pulling
                source_error.append(exc)
                break
            await results.put(await _settle(charge_one, charge, retry))
        await results.put(_DONE)

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    running = concurrency
    try:
        while running:
            item = await results.get()
            if item is _DONE:
                running -= 1
                continue
            assert isinstance(item, ChargeResult)
            yield item
        if source_error:
            raise source_error[0]
    finally:
        # The consumer stopped early or was cancelled: stop every charge still in flight.
        pending = [w for w in workers if not w.done()]
        for w in pending:
            w.cancel()
        if pending:
            logger.warning(
                "charge_many stopped with %d charges in flight; their outcome is unknown "
                "until repeated with the same idempotency keys",
                len(pending),
            )
            await asyncio.gather(*pending, return_exceptions=True)


class _Done:
    pass


_DONE = _Done()


async def _settle(charge_one: ChargeFn, charge: Charge, retry: RetryPolicy | None) -> ChargeResult:
    started = time.monotonic()
    try:
        order, attempts = await charge_one(charge, retry)
    except KlarnaError as error:
        return ChargeResult(
            charge=charge, error=error, attempts=error.attempts, elapsed=time.monotonic() - started
        )
    except Exception as error:
        # Bad input for this one charge (an empty token, a wrong model) is its result; so is
        # anything unforeseen, which must not silently stop a worker and stall the batch.
        return ChargeResult(charge=charge, error=error, elapsed=time.monotonic() - started)
    return ChargeResult(
        charge=charge, order=order, attempts=attempts, elapsed=time.monotonic() - started
    )


def _pull(charges: Iterable[Charge] | AsyncIterable[Charge]) -> Callable[[], Awaitable[Charge]]:
    """One awaitable 'next charge' for all workers, over a sync or an async iterable."""
    if isinstance(charges, AsyncIterable):
        iterator = aiter(charges)
        lock = asyncio.Lock()

        async def next_async() -> Charge:
            # An async generator cannot be advanced by two workers at once.
            async with lock:
                return await anext(iterator)

        return next_async
    sync_iterator = iter(charges)

    async def next_sync() -> Charge:
        try:
            return next(sync_iterator)
        except StopIteration:
            raise StopAsyncIteration from None

    return next_sync
