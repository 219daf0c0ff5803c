"""Klarna Order Management API v1: read, capture, refund, cancel, release, extend and update
orders (``/ordermanagement/v1/orders/...``).

Every write (each POST and PATCH, as the OM spec declares) sends a ``Klarna-Idempotency-Key``:
the caller's, or a UUID4 made once per call, with the same key and body bytes on every attempt.
Klarna executes a key once within 24 hours and answers every repeat as it answered the first
("two captures with the same key register once"; D-RETRY), so retries cannot capture or refund
twice, and the outcome model of ``klarna_async._retry`` applies: once an attempt may have acted,
a write ends in success or :class:`OutcomeUnknownError`, never in "not done". Klarna asks not to
poll ``get`` to learn whether a write happened: repeat it with its key instead.

Order ids and capture ids are not secrets (they are what support asks for): logs show them.
"""

from __future__ import annotations

import typing
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

from klarna_async._batch import (
    CaptureJob,
    CaptureResult,
    capture_result,
    run_writes,
)
from klarna_async._errors import ResponseDecodeError
from klarna_async._models import (
    Capture,
    CaptureRequest,
    CustomerDetailsUpdate,
    ExtendDueDateOptions,
    ExtendDueDateRequest,
    MerchantReferencesUpdate,
    OrderManagementOrder,
    Refund,
    RefundRequest,
    ShippingInfoUpdate,
    UpdateAuthorizationRequest,
)
from klarna_async._notifications import FraudDecision, FraudNotification, parse_notification
from klarna_async._request import Endpoint, Requester
from klarna_async._responses import decode_success
from klarna_async._retry import RetryPolicy, Safety
from klarna_async._validation import encode_request

__all__ = ["Orders", "read_new_id"]

_ORDER = "/ordermanagement/v1/orders/{}"
_CAPTURE = _ORDER + "/captures/{}"
_ORDER_ID = "order_id"
_CAPTURE_IDS = ("order_id", "capture_id")
_KEYED = Safety.IDEMPOTENCY_KEY


def _write(operation: str, method: str, template: str, what: Any = _ORDER_ID) -> Endpoint:
    return Endpoint(f"orders.{operation}", method, template, _KEYED, what, secret=False)


def _read(operation: str, template: str, what: Any = _ORDER_ID) -> Endpoint:
    return Endpoint(f"orders.{operation}", "GET", template, Safety.READ, what, secret=False)


GET = _read("get", _ORDER)
ACKNOWLEDGE = _write("acknowledge", "POST", _ORDER + "/acknowledge")
UPDATE_AUTHORIZATION = _write("update_authorization", "PATCH", _ORDER + "/authorization")
CAPTURE = _write("capture", "POST", _ORDER + "/captures")
LIST_CAPTURES = _read("list_captures", _ORDER + "/captures")
GET_CAPTURE = _read("get_capture", _CAPTURE, _CAPTURE_IDS)
EXTEND_DUE_DATE = _write("extend_due_date", "PATCH", _CAPTURE + "/extend-due-date", _CAPTURE_IDS)
EXTEND_DUE_DATE_OPTIONS = _read(
    "extend_due_date_options", _CAPTURE + "/extend-due-date-options", _CAPTURE_IDS
)
ADD_CAPTURE_SHIPPING_INFO = _write(
    "add_capture_shipping_info", "POST", _CAPTURE + "/shipping-info", _CAPTURE_IDS
)
TRIGGER_SEND_OUT = _write("trigger_send_out", "POST", _CAPTURE + "/trigger-send-out", _CAPTURE_IDS)
UPDATE_CUSTOMER_DETAILS = _write("update_customer_details", "PATCH", _ORDER + "/customer-details")
EXTEND_AUTHORIZATION_TIME = _write(
    "extend_authorization_time", "POST", _ORDER + "/extend-authorization-time"
)
UPDATE_MERCHANT_REFERENCES = _write(
    "update_merchant_references", "PATCH", _ORDER + "/merchant-references"
)
REFUND = _write("refund", "POST", _ORDER + "/refunds")
GET_REFUND = _read("get_refund", _ORDER + "/refunds/{}", ("order_id", "refund_id"))
RELEASE_REMAINING_AUTHORIZATION = _write(
    "release_remaining_authorization", "POST", _ORDER + "/release-remaining-authorization"
)
ADD_SHIPPING_INFO = _write("add_shipping_info", "POST", _ORDER + "/shipping-info")
CANCEL = _write("cancel", "POST", _ORDER + "/cancel")


def read_new_id(header: str) -> Callable[[int, Mapping[str, str], bytes], str]:
    """A :data:`~klarna_async._request.Reader` of a 201 that names what it created in a header
    (``Capture-Id``, ``Refund-Id``) or, failing that, as the last segment of ``Location``.

    Klarna acted when it answers 201, so an answer without an id is a
    :class:`ResponseDecodeError` (an unknown outcome for the write), never a success without one.
    """

    def read(status: int, headers: Mapping[str, str], body: bytes) -> str:
        found = (headers.get(header) or "").strip()
        if not found:
            location = (headers.get("Location") or "").split("?", 1)[0].rstrip("/")
            found = location.rpartition("/")[2].strip() if location else ""
        if not found or not found.isprintable():
            raise ResponseDecodeError(
                f"HTTP {status} answer names no new id (neither {header} nor Location)",
                status=status,
                headers=headers,
                body=body,
            )
        return found

    return read


_CAPTURE_ID = read_new_id("Capture-Id")
_REFUND_ID = read_new_id("Refund-Id")
_CAPTURES: Any = tuple[Capture, ...]


def _read_captures(status: int, headers: Mapping[str, str], body: bytes) -> tuple[Capture, ...]:
    # A JSON array, which decode_success reads like any model (its type is no class, hence Any).
    return typing.cast(tuple[Capture, ...], decode_success(status, headers, body, _CAPTURES))


class Orders:
    """``client.orders``: Klarna's Order Management API (``/ordermanagement/v1``).

    Reads (``get``, ``list_captures``, ``get_capture``, ``get_refund``,
    ``extend_due_date_options``) are retried freely. Every write takes ``idempotency_key``
    (default: a UUID4 for this call; derive one with :func:`derive_idempotency_key` when the
    same business action may be sent again later, by a re-run or another process) and
    ``after_unknown`` (True when an earlier call with that key ended unknown in another
    process: then only Klarna's success answer settles it). A request body is the attrs model or
    a plain mapping of its JSON shape, validated before anything is sent.
    """

    def __init__(self, requester: Requester) -> None:
        self._requester = requester

    def _body(self, request: Any, cls: type[Any]) -> bytes:
        return encode_request(request, cls, check_amounts=self._requester.check_amounts)

    async def _keyed(
        self,
        endpoint: Endpoint,
        param: str | tuple[str, ...],
        body: bytes | None,
        idempotency_key: str | None,
        after_unknown: bool,
        retry: RetryPolicy | None,
    ) -> None:
        await self._requester.request(
            endpoint,
            param,
            body=body,
            model=None,
            retry=retry,
            idempotency_key=idempotency_key,
            after_unknown=after_unknown,
        )

    # --- the order ------------------------------------------------------------------------------

    async def get(self, order_id: str, *, retry: RetryPolicy | None = None) -> OrderManagementOrder:
        """The order as Klarna holds it now: status, amounts, lines, captures, refunds, expiry.

        Raises :class:`NoSuchOrderError` for an unknown order.
        """
        order, _ = await self._requester.request(
            GET, order_id, body=None, model=OrderManagementOrder, retry=retry
        )
        return order

    async def acknowledge(
        self,
        order_id: str,
        *,
        idempotency_key: str | None = None,
        after_unknown: bool = False,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Acknowledge an order (Klarna Checkout orders: "the merchant has received it")."""
        await self._keyed(ACKNOWLEDGE, order_id, None, idempotency_key, after_unknown, retry)

    async def update_authorization(
        self,
        order_id: str,
        request: UpdateAuthorizationRequest | Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        after_unknown: bool = False,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Change the order amount (and lines) of an order not fully captured.

        Raises :class:`NotAllowedError` when the new amount is below what is captured or the
        order is no longer open (Klarna may also refuse an increase after a credit check).
        """
        body = self._body(request, UpdateAuthorizationRequest)
        await self._keyed(
            UPDATE_AUTHORIZATION, order_id, body, idempotency_key, after_unknown, retry
        )

    async def extend_authorization_time(
        self,
        order_id: str,
        *,
        idempotency_key: str | None = None,
        after_unknown: bool = False,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Push the order's ``expires_at`` to the merchant's expiry days (default 28) from today,
        at most 180 days after the order was created.

        A repeat on the same day gives the same date. Raises :class:`NotAllowedError` once the
        authorization expired, or for a cancelled, closed or fully captured order.
        """
        await self._keyed(
            EXTEND_AUTHORIZATION_TIME, order_id, None, idempotency_key, after_unknown, retry
        )

    async def update_merchant_references(
        self,
        order_id: str,
        request: MerchantReferencesUpdate | Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        after_unknown: bool = False,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Set ``merchant_reference1`` / ``merchant_reference2`` (not on a cancelled order)."""
        body = self._body(request, MerchantReferencesUpdate)
        await self._keyed(
            UPDATE_MERCHANT_REFERENCES, order_id, body, idempotency_key, after_unknown, retry
        )

    async def update_customer_details(
        self,
        order_id: str,
        request: CustomerDetailsUpdate | Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        after_unknown: bool = False,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Change the order's shipping address.

        Raises :class:`NotAllowedError` when the order's state forbids it and
        :class:`InvalidAddressError` (422) for an address Klarna cannot accept.
        """
        body = self._body(request, CustomerDetailsUpdate)
        await self._keyed(
            UPDATE_CUSTOMER_DETAILS, order_id, body, idempotency_key, after_unknown, retry
        )

    async def add_shipping_info(
        self,
        order_id: str,
        request: ShippingInfoUpdate | Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        after_unknown: bool = False,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Add shipping information (carrier, tracking) to the order."""
        body = self._body(request, ShippingInfoUpdate)
        await self._keyed(ADD_SHIPPING_INFO, order_id, body, idempotency_key, after_unknown, retry)

    async def cancel(
        self,
        order_id: str,
        *,
        idempotency_key: str | None = None,
        after_unknown: bool = False,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Cancel an order that has no captures: the whole authorization is released.

        Raises :class:`CancelNotAllowedError` once anything is captured (refund it and
        :meth:`release_remaining_authorization` instead) or the order is closed.
        """
        await self._keyed(CANCEL, order_id, None, idempotency_key, after_unknown, retry)

    async def release_remaining_authorization(
        self,
        order_id: str,
        *,
        idempotency_key: str | None = None,
        after_unknown: bool = False,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Release what is authorized and not captured; the order is then closed.

        Raises :class:`NotAllowedError` for an order without captures (cancel it instead), a
        fully captured one, or a cancelled one.
        """
        await self._keyed(
            RELEASE_REMAINING_AUTHORIZATION, order_id, None, idempotency_key, after_unknown, retry
        )

    # --- captures -------------------------------------------------------------------------------

    async def capture(
        self,
        order_id: str,
        request: CaptureRequest | Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        after_unknown: bool = False,
        retry: RetryPolicy | None = None,
    ) -> str:
        """Capture ``captured_amount`` of the order; the new capture's id.

        Several captures per order are allowed, up to the remaining authorized amount. Raises
        :class:`CaptureNotAllowedError` when Klarna refuses (too much, an order cancelled,
        expired, closed or pending review: nothing captured), :class:`NoSuchOrderError`, or
        :class:`OutcomeUnknownError` when it may have captured: then call again with
        ``error.idempotency_key`` (within 24 hours): Klarna answers with the capture it made,
        or makes it once.
        """
        body = self._body(request, CaptureRequest)
        capture_id, _ = await self._requester.request(
            CAPTURE,
            order_id,
            body=body,
            model=_CAPTURE_ID,
            retry=retry,
            idempotency_key=idempotency_key,
            after_unknown=after_unknown,
        )
        return capture_id

    def capture_many(
        self,
        jobs: Iterable[CaptureJob] | AsyncIterable[CaptureJob],
        *,
        concurrency: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> AsyncIterator[CaptureResult]:
        """Capture many orders concurrently (the nightly fulfilment job); yield a
        :class:`CaptureResult` as each finishes.

        The same lazy, bounded runner as ``customer_tokens.charge_many``: ``jobs`` is consumed
        only as workers free up (a generator of a million captures runs in flat memory),
        ``concurrency`` defaults to and may not exceed the client's ``connection_limit``, no
        further job is pulled once the client closes, and cancelling the consumer cancels the
        captures in flight (iterate under ``contextlib.aclosing`` to stop early). Each job's
        ``idempotency_key`` is sent on every attempt: derive it from the order and shipment, so
        that a re-run captures nothing twice.
        """
        requester = self._requester
        encode = self._body

        def send(job: CaptureJob) -> Awaitable[tuple[str, int]]:
            # Before anything is sent: a bad request, order id or key raises, the job's result.
            return requester.request(
                CAPTURE,
                job.order_id,
                body=encode(job.request, CaptureRequest),
                model=_CAPTURE_ID,
                retry=retry,
                idempotency_key=job.idempotency_key,
                after_unknown=job.after_unknown,
            )

        return run_writes(
            send,
            capture_result,
            jobs,
            concurrency=concurrency,
            limit=requester.connection_limit,
            stopped=lambda: requester.closing,
        )

    async def list_captures(
        self, order_id: str, *, retry: RetryPolicy | None = None
    ) -> tuple[Capture, ...]:
        """Every capture of the order."""
        captures, _ = await self._requester.request(
            LIST_CAPTURES, order_id, body=None, model=_read_captures, retry=retry
        )
        return captures

    async def get_capture(
        self, order_id: str, capture_id: str, *, retry: RetryPolicy | None = None
    ) -> Capture:
        """One capture; :class:`NoSuchCaptureError` (or :class:`NoSuchOrderError`) if unknown."""
        capture, _ = await self._requester.request(
            GET_CAPTURE, (order_id, capture_id), body=None, model=Capture, retry=retry
        )
        return capture

    async def add_capture_shipping_info(
        self,
        order_id: str,
        capture_id: str,
        request: ShippingInfoUpdate | Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        after_unknown: bool = False,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Add shipping information (carrier, tracking) to one capture."""
        body = self._body(request, ShippingInfoUpdate)
        await self._keyed(
            ADD_CAPTURE_SHIPPING_INFO,
            (order_id, capture_id),
            body,
            idempotency_key,
            after_unknown,
            retry,
        )

    async def trigger_send_out(
        self,
        order_id: str,
        capture_id: str,
        *,
        idempotency_key: str | None = None,
        after_unknown: bool = False,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Have Klarna send the customer the capture's invoice (or payment details) again."""
        await self._keyed(
            TRIGGER_SEND_OUT, (order_id, capture_id), None, idempotency_key, after_unknown, retry
        )

    async def extend_due_date_options(
        self, order_id: str, capture_id: str, *, retry: RetryPolicy | None = None
    ) -> ExtendDueDateOptions:
        """The due-date extensions a capture allows, and what each costs the merchant."""
        options, _ = await self._requester.request(
            EXTEND_DUE_DATE_OPTIONS,
            (order_id, capture_id),
            body=None,
            model=ExtendDueDateOptions,
            retry=retry,
        )
        return options

    async def extend_due_date(
        self,
        order_id: str,
        capture_id: str,
        number_of_days: int,
        *,
        idempotency_key: str | None = None,
        after_unknown: bool = False,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Extend a capture's due date by ``number_of_days``, one of
        :meth:`extend_due_date_options`; :class:`NotAllowedError` otherwise."""
        body = self._body({"number_of_days": number_of_days}, ExtendDueDateRequest)
        await self._keyed(
            EXTEND_DUE_DATE, (order_id, capture_id), body, idempotency_key, after_unknown, retry
        )

    # --- refunds --------------------------------------------------------------------------------

    async def refund(
        self,
        order_id: str,
        request: RefundRequest | Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        after_unknown: bool = False,
        retry: RetryPolicy | None = None,
    ) -> str:
        """Refund ``refunded_amount`` of what was captured; the new refund's id.

        Raises :class:`RefundNotAllowedError` for more than was captured and not yet refunded
        (nothing refunded), or :class:`OutcomeUnknownError` when it may have refunded: repeat
        with ``error.idempotency_key`` within 24 hours.
        """
        body = self._body(request, RefundRequest)
        refund_id, _ = await self._requester.request(
            REFUND,
            order_id,
            body=body,
            model=_REFUND_ID,
            retry=retry,
            idempotency_key=idempotency_key,
            after_unknown=after_unknown,
        )
        return refund_id

    async def get_refund(
        self, order_id: str, refund_id: str, *, retry: RetryPolicy | None = None
    ) -> Refund:
        """One refund (an order's refunds are also listed in :meth:`get`)."""
        refund, _ = await self._requester.request(
            GET_REFUND, (order_id, refund_id), body=None, model=Refund, retry=retry
        )
        return refund

    # --- pending orders -------------------------------------------------------------------------

    async def verify_notification(
        self,
        notification: FraudNotification | bytes | str | Mapping[str, Any],
        *,
        retry: RetryPolicy | None = None,
    ) -> FraudDecision:
        """Check Klarna's (unsigned) pending-order notification by reading the order back.

        ``notification`` is the POSTed body (bytes, text or parsed JSON) or a parsed
        :class:`FraudNotification`. Raises :class:`InvalidNotificationError` for a body that
        is not Klarna's notification and :class:`NoSuchOrderError` for an order this merchant
        does not have (a forged notification); otherwise the :class:`FraudDecision`, whose
        ``accepted`` / ``rejected`` / ``pending`` say what the order says.
        """
        if not isinstance(notification, FraudNotification):
            notification = parse_notification(notification)
        order = await self.get(notification.order_id, retry=retry)
        return FraudDecision(notification=notification, order=order)
