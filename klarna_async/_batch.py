"""Many idempotent writes at once: one lazy, bounded runner, and what each charge came to.

:func:`run_writes` is the one runner behind ``charge_many`` and ``capture_many`` (any batch of
keyed writes): it sends each item and says what it came to by the outcome rules. Below it,
:func:`run_batch` keeps a fixed set of workers that pull items from the caller's (async)
iterable only when one is free, so a generator of a million items runs in flat memory; results
go out through a small queue as they finish, so a slow consumer slows the workers instead of
piling results up. Neither knows Klarna's resources: the resource hands in a ``send`` function
(its endpoint and body) and names the result. Retries, the retry budget and the pacer are the
client's, shared by every worker.

:class:`ChargeResult` says what happened to one charge *and what to do next*
(:class:`ChargeStatus`): placed; declined by Klarna; not charged and safe to send again; or
unknown, to be repeated with the same idempotency key within 24 hours. "Not charged" is said
only with proof (see ``klarna_async._retry``'s outcome rules).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol, TypeVar

import attrs

from klarna_async._errors import (
    ClientClosedError,
    DeadlineExceededError,
    KlarnaError,
    OutcomeUnknownError,
    RequestValidationError,
    UnauthorizedError,
)
from klarna_async._models import CaptureRequest, Order, TokenOrderRequest
from klarna_async._retry import classify, mask_token

__all__ = [
    "CaptureJob",
    "CaptureResult",
    "CaptureStatus",
    "Charge",
    "ChargeResult",
    "ChargeStatus",
    "capture_result",
    "charge_result",
    "run_batch",
    "run_writes",
    "status_of",
]

logger = logging.getLogger("klarna_async")

I = TypeVar("I")  # noqa: E741 - an item, as in the typing docs
R = TypeVar("R")
V = TypeVar("V")


class Keyed(Protocol):
    """An item of a batch of keyed writes (:class:`Charge`, :class:`CaptureJob`)."""

    @property
    def after_unknown(self) -> bool: ...


W = TypeVar("W", bound=Keyed)


@attrs.frozen(kw_only=True, repr=False)
class Charge:
    """One recurring charge: whom to charge, for what, and the key that makes it happen once.

    Derive ``idempotency_key`` from stable business identifiers
    (:func:`derive_idempotency_key`), so that running the batch again re-sends the same keys.
    ``charge_id`` is yours (a subscription and period, an invoice number) and comes back on the
    result. ``after_unknown`` says that an earlier run reported this charge unknown: then only
    Klarna's success answer settles it (a refusal cannot prove the earlier attempt did nothing).
    """

    customer_token: str
    request: TokenOrderRequest | Mapping[str, Any]
    idempotency_key: str
    charge_id: str | None = None
    after_unknown: bool = False

    def __repr__(self) -> str:
        # The token is a bearer secret and the request may hold an address: keep both out.
        return (
            f"Charge(charge_id={self.charge_id!r}, customer_token="
            f"{mask_token(self.customer_token)!r}, idempotency_key={self.idempotency_key!r})"
        )


class ChargeStatus(enum.StrEnum):
    """What a charge came to, and so what to do next."""

    #: Klarna placed the order (``fraud_status`` may still be ``PENDING``). Done.
    PLACED = "placed"
    #: Klarna answered definitely and did not charge (``TOKEN_CANCELED``,
    #: ``PAYMENT_METHOD_FAILED``, ``BAD_VALUE``...). Do not repeat blindly: fix the cause, or
    #: decide to try again later (dunning).
    DECLINED = "declined"
    #: Not charged, and safe to send again as it is, with the same key: never sent (bad input,
    #: a closed client, the deadline), or answered only before processing (503, 429), or the
    #: retry budget ran out, or the credentials or configuration are wrong (401, no connection).
    RETRYABLE = "retryable"
    #: Klarna may or may not have charged. Repeat with the same idempotency key within 24 hours
    #: (``after_unknown=True`` if this process did not see the first attempt): only Klarna's
    #: success answer settles it.
    UNKNOWN = "unknown"


def status_of(error: BaseException) -> ChargeStatus:
    """The :class:`ChargeStatus` of a write that ended in ``error`` after it was handed to the
    request path (an error raised before anything was sent is :attr:`ChargeStatus.RETRYABLE`
    by construction, see :func:`run_batch`'s callers)."""
    if isinstance(error, OutcomeUnknownError):
        return ChargeStatus.UNKNOWN
    if isinstance(
        error,
        (RequestValidationError, ClientClosedError, DeadlineExceededError, UnauthorizedError),
    ):
        return ChargeStatus.RETRYABLE
    if not isinstance(error, KlarnaError):
        return ChargeStatus.UNKNOWN  # unforeseen: no proof either way
    decision = classify(error)
    if decision.maybe_acted:
        return ChargeStatus.UNKNOWN
    return ChargeStatus.RETRYABLE if decision.retry else ChargeStatus.DECLINED


@attrs.frozen(kw_only=True)
class ChargeResult:
    """The outcome of one :class:`Charge`: its status, the order or the error, attempts, time.

    ``status`` says what to do next (see :class:`ChargeStatus`); ``order`` is set exactly when
    it is :attr:`~ChargeStatus.PLACED`.
    """

    charge: Charge
    status: ChargeStatus
    order: Order | None = None
    error: Exception | None = None
    attempts: int = 0
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        """True when Klarna placed the order."""
        return self.status is ChargeStatus.PLACED

    @property
    def error_code(self) -> str | None:
        """Klarna's ``error_code`` of the last answer, if there was one."""
        return _error_code(self.error)


@attrs.frozen(kw_only=True, repr=False)
class CaptureJob:
    """One capture of a batch (:meth:`Orders.capture_many`): which order, how much, and the key
    that makes it happen once.

    Derive ``idempotency_key`` from what makes the capture unique
    (``derive_idempotency_key("acme-fulfilment", order_id, shipment_id)``), so that running the
    nightly job again after a crash sends the same keys and Klarna answers with the captures
    already made instead of capturing twice. ``job_id`` is yours (a shipment id) and comes back
    on the result. ``after_unknown`` says an earlier run reported this capture unknown.
    """

    order_id: str
    request: CaptureRequest | Mapping[str, Any]
    idempotency_key: str
    job_id: str | None = None
    after_unknown: bool = False

    def __repr__(self) -> str:
        # The request may carry shipping details (tracking numbers): kept out.
        return (
            f"CaptureJob(job_id={self.job_id!r}, order_id={self.order_id!r}, "
            f"idempotency_key={self.idempotency_key!r})"
        )


class CaptureStatus(enum.StrEnum):
    """What a capture came to, and so what to do next: :class:`ChargeStatus`'s four outcomes,
    with the same rules (``DECLINED``, ``RETRYABLE`` and ``UNKNOWN`` are the same values)."""

    #: Klarna captured the amount (``capture_id`` says which capture). Done.
    CAPTURED = "captured"
    #: Klarna refused definitely and captured nothing (``CAPTURE_NOT_ALLOWED``: more than the
    #: remaining authorized amount, an order cancelled, expired or pending review;
    #: ``NO_SUCH_ORDER``...). Do not repeat blindly: look at the order.
    DECLINED = "declined"
    #: Not captured, and safe to send again as it is, with the same key (never sent, 503/429
    #: only, the retry budget spent, wrong credentials).
    RETRYABLE = "retryable"
    #: Klarna may or may not have captured. Repeat with the same idempotency key within 24
    #: hours (``after_unknown=True`` in another process): only a success settles it.
    UNKNOWN = "unknown"


#: A write's outcome named for a capture: the same four outcomes, "placed" being "captured".
_CAPTURE_STATUS = {
    ChargeStatus.PLACED: CaptureStatus.CAPTURED,
    ChargeStatus.DECLINED: CaptureStatus.DECLINED,
    ChargeStatus.RETRYABLE: CaptureStatus.RETRYABLE,
    ChargeStatus.UNKNOWN: CaptureStatus.UNKNOWN,
}


@attrs.frozen(kw_only=True)
class CaptureResult:
    """The outcome of one :class:`CaptureJob`: its status, the capture id or the error.

    ``capture_id`` is set exactly when ``status`` is :attr:`~CaptureStatus.CAPTURED`.
    """

    job: CaptureJob
    status: CaptureStatus
    capture_id: str | None = None
    error: Exception | None = None
    attempts: int = 0
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        """True when Klarna captured the amount."""
        return self.status is CaptureStatus.CAPTURED

    @property
    def error_code(self) -> str | None:
        """Klarna's ``error_code`` of the last answer, if there was one."""
        return _error_code(self.error)


def _error_code(error: BaseException | None) -> str | None:
    if isinstance(error, OutcomeUnknownError):
        error = error.last_error
    return getattr(error, "error_code", None)


def charge_result(
    charge: Charge,
    status: ChargeStatus,
    order: Order | None,
    error: Exception | None,
    attempts: int,
    elapsed: float,
) -> ChargeResult:
    """A charge's result, as :func:`run_writes` makes it."""
    return ChargeResult(
        charge=charge, status=status, order=order, error=error, attempts=attempts, elapsed=elapsed
    )


def capture_result(
    job: CaptureJob,
    status: ChargeStatus,
    capture_id: str | None,
    error: Exception | None,
    attempts: int,
    elapsed: float,
) -> CaptureResult:
    """A capture's result, as :func:`run_writes` makes it."""
    return CaptureResult(
        job=job,
        status=_CAPTURE_STATUS[status],
        capture_id=capture_id,
        error=error,
        attempts=attempts,
        elapsed=elapsed,
    )


def run_writes(
    send: Callable[[W], Awaitable[tuple[V, int]]],
    result: Callable[[W, ChargeStatus, V | None, Exception | None, int, float], R],
    items: Iterable[W] | AsyncIterable[W],
    *,
    concurrency: int | None,
    limit: int,
    stopped: Callable[[], bool],
) -> AsyncIterator[R]:
    """Send every keyed write of ``items`` (:func:`run_batch`); yield what each came to.

    ``send(item)`` checks everything it can and raises before anything is sent, or returns the
    request path's awaitable (the value and the attempts). ``result`` names the outcome for the
    item's kind. ``concurrency`` defaults to ``limit`` (the client's ``connection_limit``) and may
    not exceed it: an item waiting for a pooled connection would spend its timeout unsent.
    """
    if concurrency is None:
        concurrency = limit
    if not 1 <= concurrency <= limit:
        raise ValueError(
            f"concurrency must be between 1 and the client's connection_limit ({limit})"
        )

    async def work(item: W) -> R:
        started = time.monotonic()
        try:
            running = send(item)
        except Exception as error:
            # Not sent now: safe to send again, unless an earlier run may have acted on it (a
            # re-drive stays unknown until Klarna's success settles it).
            status = ChargeStatus.UNKNOWN if item.after_unknown else ChargeStatus.RETRYABLE
            return result(item, status, None, error, 0, time.monotonic() - started)
        try:
            value, attempts = await running
        except Exception as error:  # the request path said what it knows
            attempts = getattr(error, "attempts", 0)
            return result(item, status_of(error), None, error, attempts, time.monotonic() - started)
        return result(item, ChargeStatus.PLACED, value, None, attempts, time.monotonic() - started)

    return run_batch(work, items, concurrency=concurrency, stopped=stopped)


async def run_batch(
    work: Callable[[I], Awaitable[R]],
    items: Iterable[I] | AsyncIterable[I],
    *,
    concurrency: int,
    stopped: Callable[[], bool] = lambda: False,
) -> AsyncIterator[R]:
    """Yield ``await work(item)`` for every item, in the order they finish.

    ``work`` must not raise: it turns an item into its result, errors included. At most
    ``concurrency`` items are in flight; items are pulled only when a worker is free. When
    ``stopped()`` turns true (the client is closing), workers pull no more items; what they
    already pulled finishes and is yielded.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    source = _pull(items)
    results: asyncio.Queue[R | _Done] = asyncio.Queue(maxsize=concurrency)
    source_error: list[BaseException] = []

    async def worker() -> None:
        while not stopped():
            try:
                item = await source()
            except StopAsyncIteration:
                break
            except Exception as exc:  # the caller's iterable broke: stop pulling
                source_error.append(exc)
                break
            await results.put(await work(item))
        await results.put(_DONE)

    workers = [
        asyncio.create_task(worker(), name="klarna_async batch worker") for _ in range(concurrency)
    ]
    running = concurrency
    try:
        while running:
            item = await results.get()
            if isinstance(item, _Done):
                running -= 1
                continue
            yield item
        if source_error:
            raise source_error[0]
    finally:
        # The consumer stopped early or was cancelled: stop every item still in flight.
        pending = [w for w in workers if not w.done()]
        for w in pending:
            w.cancel()
        if pending:
            logger.warning(
                "a batch stopped with %d workers busy; their items' outcome is unknown until "
                "repeated with the same idempotency keys",
                len(pending),
            )
            await asyncio.gather(*pending, return_exceptions=True)


class _Done:
    pass


_DONE = _Done()


def _pull(items: Iterable[I] | AsyncIterable[I]) -> Callable[[], Awaitable[I]]:
    """One awaitable 'next item' for all workers, over a sync or an async iterable."""
    if isinstance(items, AsyncIterable):
        iterator = aiter(items)
        lock = asyncio.Lock()

        async def next_async() -> I:
            # An async generator cannot be advanced by two workers at once.
            async with lock:
                return await anext(iterator)

        return next_async
    sync_iterator = iter(items)

    async def next_sync() -> I:
        try:
            return next(sync_iterator)
        except StopIteration:
            pass
        raise StopAsyncIteration

    return next_sync
