"""The fake Klarna's HTTP side: an :mod:`aiohttp.web` application and :class:`FakeKlarna`.

In-process use (binds 127.0.0.1 on a free port)::

    async with FakeKlarna() as fake:
        client = KlarnaClient(base_url=fake.url, username="test_user", password="test_password")
        ...
        token = fake.authorize(session_id)          # the customer approves in the widget
        assert fake.ledger.orders_total == 1

``fake.app`` is the :class:`aiohttp.web.Application`, for serving it another way (for example with
``aiohttp.test_utils``). :func:`serve_in_thread` runs a fake on its own event loop in a background
thread, for synchronous code or other async frameworks.

Per API request, in this order: routing (an unknown path or method gets aiohttp's plain 404/405
and is not logged), the request is logged in the ledger, HTTP Basic credentials (401
``UNAUTHORIZED``), the optional rate limit (429 ``TOO_MANY_REQUESTS``), fault injection (see
:mod:`._faults`: a fault that does not process answers here), then Klarna's processing: for a
customer-token order with ``Klarna-Idempotency-Key``, the in-flight check (``in_flight``
option), the delay of a latency fault, the checks made before the replay (``check_order``
option), the idempotent replay; then the endpoint itself (see :mod:`._state`). A fault that
processes replaces or amends the answer afterwards.

* Every answer carries a fresh ``Klarna-Correlation-Id`` header (see
  :class:`~._ledger.IdSource`); an error body's ``correlation_id`` is the same value. A replayed
  answer keeps its original id, in body and header.
* With a rate limit, every authenticated answer carries ``X-Ratelimit-Limit``,
  ``X-Ratelimit-Remaining`` and ``X-Ratelimit-Reset`` (Klarna counts per merchant, so a 401 has
  none). Gateway fault answers, "sent by a proxy", carry no Klarna headers at all.
* Request bodies must be JSON objects sent as ``application/json``: another content type is 415
  ``BAD_REQUEST``, unparsable JSON or a non-object 400 ``BAD_REQUEST``.

Test controls over HTTP, under ``/_fake/`` (no credentials needed, never faulted, rate limited or
logged); all take and return JSON, and ``GET /_fake/`` lists them (:data:`CONTROLS`, the one
table both the routes and that list come from).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import socket
import struct
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final

import aiohttp
import orjson
from aiohttp import web

from klarna_async.testing import _gateway as gateway
from klarna_async.testing._clock import FakeClock, isoformat
from klarna_async.testing._faults import (
    CHECK_ORDERS,
    IN_FLIGHT_POLICIES,
    Fault,
    FaultInjector,
    FaultRates,
    Injection,
    check_endpoint,
)
from klarna_async.testing._ledger import Ledger, RequestRecord
from klarna_async.testing._orders import FRAUD_DECISIONS, OmOrder, OrderBook
from klarna_async.testing._state import (
    ApiError,
    AuthorizationDeclined,
    FakeState,
    RateLimiter,
    Reply,
)

__all__ = ["CONTROLS", "FakeKlarna", "serve_in_thread"]

IDEMPOTENCY_HEADER: Final = "Klarna-Idempotency-Key"
CORRELATION_HEADER: Final = "Klarna-Correlation-Id"

CT_ORDER: Final = "customer_tokens.create_order"

# (method, path, endpoint name, has a JSON body)
ROUTES: Final = (
    ("POST", "/payments/v1/sessions", "payments.create_session", True),
    ("GET", "/payments/v1/sessions/{session_id}", "payments.get_session", False),
    ("POST", "/payments/v1/sessions/{session_id}", "payments.update_session", True),
    ("POST", "/payments/v1/authorizations/{token}/order", "payments.create_order", True),
    (
        "POST",
        "/payments/v1/authorizations/{token}/customer-token",
        "payments.create_customer_token",
        True,
    ),
    ("DELETE", "/payments/v1/authorizations/{token}", "payments.cancel_authorization", False),
    ("GET", "/customer-token/v1/tokens/{token}", "customer_tokens.get", False),
    ("POST", "/customer-token/v1/tokens/{token}/order", "customer_tokens.create_order", True),
    ("PATCH", "/customer-token/v1/tokens/{token}/status", "customer_tokens.cancel", True),
    *(
        (method, "/ordermanagement/v1/orders/{order_id}" + path, "orders." + name, has_body)
        for method, path, name, has_body in (
            ("GET", "", "get", False),
            ("POST", "/acknowledge", "acknowledge", False),
            ("PATCH", "/authorization", "update_authorization", True),
            ("POST", "/captures", "capture", True),
            ("GET", "/captures", "list_captures", False),
            ("GET", "/captures/{capture_id}", "get_capture", False),
            ("PATCH", "/captures/{capture_id}/extend-due-date", "extend_due_date", True),
            (
                "GET",
                "/captures/{capture_id}/extend-due-date-options",
                "extend_due_date_options",
                False,
            ),
            (
                "POST",
                "/captures/{capture_id}/shipping-info",
                "add_capture_shipping_info",
                True,
            ),
            ("POST", "/captures/{capture_id}/trigger-send-out", "trigger_send_out", False),
            ("PATCH", "/customer-details", "update_customer_details", True),
            ("POST", "/extend-authorization-time", "extend_authorization_time", False),
            ("PATCH", "/merchant-references", "update_merchant_references", True),
            ("POST", "/refunds", "refund", True),
            ("GET", "/refunds/{refund_id}", "get_refund", False),
            (
                "POST",
                "/release-remaining-authorization",
                "release_remaining_authorization",
                False,
            ),
            ("POST", "/shipping-info", "add_shipping_info", True),
            ("POST", "/cancel", "cancel", False),
        )
    ),
)
#: The writes Klarna deduplicates by ``Klarna-Idempotency-Key`` (the endpoints whose spec
#: declares it): recurring orders and every Order Management POST and PATCH.
KEYED: Final = frozenset(
    {CT_ORDER}
    | {name for method, _, name, _ in ROUTES if name.startswith("orders.") and method != "GET"}
)

_Processor = Callable[[dict[str, str], Any, "str | None", str], Reply]


# Klarna-shaped fault answers: (status, error_code, message).
_KLARNA_FAULTS: Final = {
    Fault.SERVICE_UNAVAILABLE: (
        503,
        "SERVICE_UNAVAILABLE",
        "A temporary internal Klarna error occurred. Try again later.",
    ),
    Fault.CONFLICT: (
        409,
        "CONFLICT",
        "A request with this Klarna-Idempotency-Key is already being processed",
    ),
    Fault.HTTP500_NOT_FOUND: (500, "NOT_FOUND", "Not found"),
    Fault.HTTP502_BAD_REQUEST: (502, "BAD_REQUEST", "Bad request"),
    Fault.HTTP504_REJECTED: (504, "REJECTED", "Rejected"),
    Fault.RATE_LIMIT_NAN: (429, "TOO_MANY_REQUESTS", "Rate limit exceeded"),
    Fault.RATE_LIMIT_INF: (429, "TOO_MANY_REQUESTS", "Rate limit exceeded"),
    Fault.RATE_LIMIT_NEGATIVE: (429, "TOO_MANY_REQUESTS", "Rate limit exceeded"),
    Fault.RATE_LIMIT_HUGE: (429, "TOO_MANY_REQUESTS", "Rate limit exceeded"),
}
_IN_FLIGHT_CONFLICT = _KLARNA_FAULTS[Fault.CONFLICT]
_ORDER_ENDPOINTS: Final = frozenset({CT_ORDER, "payments.create_order"})
#: X-Ratelimit-Limit of a hostile rate-limit answer when the fake has no rate limit of its own.
_DEFAULT_LIMIT_HEADER: Final = "50, 50;w=1"


class _Flight:
    """Requests with one idempotency key that are still being processed."""

    __slots__ = ("count", "done")

    def __init__(self) -> None:
        self.count = 0
        self.done = asyncio.Event()


class _Call:
    """One API request on its way through the fake."""

    __slots__ = ("correlation_id", "extra", "has_body", "key", "name", "raw", "record", "request")

    def __init__(
        self,
        name: str,
        has_body: bool,
        request: web.Request,
        raw: bytes,
        key: str | None,
        correlation_id: str,
        extra: dict[str, str] | None,
        record: RequestRecord,
    ) -> None:
        self.name = name
        self.has_body = has_body
        self.request = request
        self.raw = raw
        self.key = key
        self.correlation_id = correlation_id
        self.extra = extra
        self.record = record

    @property
    def idempotent_key(self) -> str | None:
        """The key, if this request is one Klarna deduplicates by it."""
        return self.key if self.name in KEYED else None


class FakeKlarna:
    """A stateful fake of Klarna's Payments and Customer Token APIs, served over HTTP.

    :param username: / :param password: the HTTP Basic credentials it accepts.
    :param host: / :param port: where :meth:`start` listens (port 0: a free port).
    :param seed: seed of the fault injector's random streams (random if None).
    :param rate_limit: requests per second before 429 (None: no limit, no rate-limit headers).
    :param keep_requests: how many requests the ledger's request log keeps (None: all).
    :param keep_orders: how many orders the ledger keeps in detail, and for how many the
        ``redirect_url`` still leads to the merchant's confirmation page (None: all). Whatever
        the caps, per-order state stays bounded in memory but every count stays exact: orders
        per idempotency key and per token, totals, duplicates (see :mod:`._ledger`), and every
        idempotency key's answer is replayed for Klarna's 24 hours (see :mod:`._idempotency`).
        Memory grows by about 40 bytes per distinct idempotency key beyond the caps.
    :param strict_amounts: enforce Klarna's amount and tax arithmetic on carts.
    :param accept_unknown_tokens: treat any unknown customer token id as an ``ACTIVE`` token
        (created on first use, taking the currency of its first order) instead of 404.
    :param latency_seconds: default delay of :attr:`Fault.LATENCY`.
    :param clock: a :class:`FakeClock` to share (a new one by default).
    """

    def __init__(
        self,
        *,
        username: str = "test_user",
        password: str = "test_password",  # noqa: S107 - a fake's default credential
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = None,
        rate_limit: float | None = None,
        keep_requests: int | None = 50_000,
        keep_orders: int | None = 50_000,
        strict_amounts: bool = True,
        accept_unknown_tokens: bool = False,
        latency_seconds: float = 2.0,
        clock: FakeClock | None = None,
    ) -> None:
        self.username = username
        self.password = password
        self.host = host
        self.port = port
        self.clock = clock if clock is not None else FakeClock()
        self.ledger = Ledger(keep_requests=keep_requests, keep_orders=keep_orders)
        self.faults = FaultInjector(seed, latency_seconds=latency_seconds)
        self.state = FakeState(
            self.clock,
            self.ledger,
            strict_amounts=strict_amounts,
            accept_unknown_tokens=accept_unknown_tokens,
        )
        self.rate_limiter = None if rate_limit is None else RateLimiter(rate_limit, self.clock)
        credentials = f"{username}:{password}".encode()
        self._expected_auth = "Basic " + base64.b64encode(credentials).decode("ascii")
        self._credentials = credentials
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._background: set[asyncio.Task[web.Response]] = set()
        self._in_flight: dict[str, _Flight] = {}
        self._processors: dict[str, _Processor] = {
            "payments.create_session": lambda m, b, k, u: self.state.create_session(b, u),
            "payments.get_session": lambda m, b, k, u: self.state.get_session(m["session_id"]),
            "payments.update_session": (
                lambda m, b, k, u: self.state.update_session(m["session_id"], b)
            ),
            "payments.create_order": lambda m, b, k, u: self.state.create_order(m["token"], b, u),
            "payments.create_customer_token": (
                lambda m, b, k, u: self.state.create_customer_token(m["token"], b, u)
            ),
            "payments.cancel_authorization": (
                lambda m, b, k, u: self.state.cancel_authorization(m["token"])
            ),
            "customer_tokens.get": lambda m, b, k, u: self.state.get_token(m["token"]),
            "customer_tokens.create_order": (
                lambda m, b, k, u: self.state.create_token_order(m["token"], b, k, u)
            ),
            "customer_tokens.cancel": lambda m, b, k, u: self.state.cancel_token(m["token"], b),
        }
        self.orders = OrderBook(self.clock, self.ledger, keep_orders)
        """Order Management's state (see :mod:`._orders`); :meth:`om_order` reads one order."""
        self.state.order_listeners.append(self.orders.add_placed)
        self.notifications: list[dict[str, Any]] = []
        """Every pending-order notification the fake sent: order_id, url, event_type, status
        (the merchant's HTTP status, None if it could not be delivered), error."""
        self._processors.update(self._om_processors(check_only=False))
        self._om_checks = self._om_processors(check_only=True)
        self.app = self._make_app()

    def _om_processors(self, *, check_only: bool) -> dict[str, _Processor]:
        """Order Management's endpoints; with ``check_only`` the checks a server may make
        before its idempotency layer (``check_order="state_first"``), changing nothing."""
        book = self.orders
        c = check_only
        processors: dict[str, _Processor] = {
            "orders.acknowledge": lambda m, b, k, u: book.acknowledge(
                m["order_id"], b, check_only=c
            ),
            "orders.update_authorization": (
                lambda m, b, k, u: book.update_authorization(m["order_id"], b, check_only=c)
            ),
            "orders.capture": lambda m, b, k, u: book.capture(m["order_id"], b, k, u, check_only=c),
            "orders.extend_due_date": (
                lambda m, b, k, u: book.extend_due_date(
                    m["order_id"], m["capture_id"], b, check_only=c
                )
            ),
            "orders.add_capture_shipping_info": (
                lambda m, b, k, u: book.add_capture_shipping_info(
                    m["order_id"], m["capture_id"], b, check_only=c
                )
            ),
            "orders.trigger_send_out": (
                lambda m, b, k, u: book.trigger_send_out(
                    m["order_id"], m["capture_id"], b, check_only=c
                )
            ),
            "orders.update_customer_details": (
                lambda m, b, k, u: book.update_customer_details(m["order_id"], b, check_only=c)
            ),
            "orders.extend_authorization_time": (
                lambda m, b, k, u: book.extend_authorization_time(m["order_id"], b, check_only=c)
            ),
            "orders.update_merchant_references": (
                lambda m, b, k, u: book.update_merchant_references(m["order_id"], b, check_only=c)
            ),
            "orders.refund": lambda m, b, k, u: book.refund(m["order_id"], b, k, u, check_only=c),
            "orders.release_remaining_authorization": (
                lambda m, b, k, u: book.release_remaining_authorization(
                    m["order_id"], b, check_only=c
                )
            ),
            "orders.add_shipping_info": (
                lambda m, b, k, u: book.add_shipping_info(m["order_id"], b, check_only=c)
            ),
            "orders.cancel": lambda m, b, k, u: book.cancel(m["order_id"], b, check_only=c),
        }
        if not check_only:
            processors.update(
                {
                    "orders.get": lambda m, b, k, u: book.get(m["order_id"]),
                    "orders.list_captures": lambda m, b, k, u: book.list_captures(m["order_id"]),
                    "orders.get_capture": (
                        lambda m, b, k, u: book.get_capture(m["order_id"], m["capture_id"])
                    ),
                    "orders.extend_due_date_options": (
                        lambda m, b, k, u: book.extend_due_date_options(
                            m["order_id"], m["capture_id"]
                        )
                    ),
                    "orders.get_refund": (
                        lambda m, b, k, u: book.get_refund(m["order_id"], m["refund_id"])
                    ),
                }
            )
        return processors

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, once started."""
        if self._url is None:
            raise RuntimeError("FakeKlarna is not started; use `async with FakeKlarna() as fake`")
        return self._url

    @property
    def started(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        """Listen on ``host:port`` (a free port if 0) and set :attr:`url`."""
        if self._runner is not None:
            raise RuntimeError("FakeKlarna is already started")
        runner = web.AppRunner(
            self.app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=1.0,
            handler_cancellation=False,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.port = port
        shown = f"[{host}]" if ":" in host else host
        self._url = f"http://{shown}:{port}"

    async def stop(self) -> None:
        """Stop listening; delayed (latency-faulted) processing still pending is cancelled."""
        runner, self._runner = self._runner, None
        self._url = None
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FakeKlarna:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def wait_idle(self) -> None:
        """Wait until no latency-delayed request is still being processed.

        Bound it yourself: ``async with asyncio.timeout(5): await fake.wait_idle()``.
        """
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    def in_flight(self, idempotency_key: str | None = None) -> int:
        """How many customer-token orders are still being processed (delayed by a latency
        fault), in all or with this ``Klarna-Idempotency-Key``."""
        if idempotency_key is None:
            return sum(flight.count for flight in self._in_flight.values())
        flight = self._in_flight.get(idempotency_key)
        return 0 if flight is None else flight.count

    def reset(self) -> None:
        """Forget sessions, tokens, orders, the ledger, faults, clock advances, rate window."""
        self.state.reset()
        self.orders.reset()
        self.notifications.clear()
        self.ledger.clear()
        self.faults.reset()
        self.clock.reset()
        if self.rate_limiter is not None:
            self.rate_limiter.reset()

    # -- test-side controls ---------------------------------------------------------------

    def authorize(
        self,
        session_id: str,
        *,
        outcome: str = "approved",
        billing_address: dict[str, Any] | None = None,
        order_lines: list[dict[str, Any]] | None = None,
        payment_method: str = "invoice",
    ) -> str:
        """Stand in for Klarna's JS ``authorize()``: the customer approves the session.

        Records what was authorized (the session's cart and billing address, or the overrides)
        and returns the authorization token, valid for 60 minutes of fake time.

        :param outcome: ``"approved"`` (orders get fraud_status ``ACCEPTED``), ``"pending"``
            (``PENDING``), ``"rejected"`` (a token is issued, but the order or token call answers
            403 ``REJECTED``) or ``"declined"`` (raises :class:`AuthorizationDeclined`, no token).
        :param payment_method: ``authorized_payment_method.type`` of the resulting order.
        :raises KeyError: the session is unknown or expired.
        :raises ValueError: the session is already complete, or a bad argument.
        """
        return self.state.authorize(
            session_id,
            outcome=outcome,
            billing_address=billing_address,
            order_lines=order_lines,
            payment_method=payment_method,
        )

    def add_customer_token(
        self,
        *,
        purchase_currency: str = "EUR",
        purchase_country: str = "DE",
        payment_method_type: str = "INVOICE",
    ) -> str:
        """A ready ``ACTIVE`` customer token without the session dance; returns its id."""
        return self.state.add_customer_token(
            purchase_currency=purchase_currency,
            purchase_country=purchase_country,
            payment_method_type=payment_method_type,
        )

    def add_order(
        self,
        *,
        amount: int = 10_000,
        currency: str = "EUR",
        country: str = "DE",
        fraud_status: str = "ACCEPTED",
        auto_capture: bool = False,
        order_id: str | None = None,
        notification_url: str | None = None,
        payment_method: str = "invoice",
        order_lines: list[dict[str, Any]] | None = None,
        merchant_reference1: str | None = None,
    ) -> str:
        """An order in Order Management without the checkout dance; returns its id.

        ``order_lines`` default to one physical line of ``amount``. ``fraud_status``
        ``"PENDING"`` waits for :meth:`decide_fraud`. ``order_id`` may be chosen (a batch
        benchmark derives ids instead of holding them).
        """
        if fraud_status not in ("ACCEPTED", "PENDING", "REJECTED"):
            raise ValueError("fraud_status must be ACCEPTED, PENDING or REJECTED")
        checked: object = amount  # a control's JSON may carry anything
        if isinstance(checked, bool) or not isinstance(checked, int) or not 0 < amount <= 2 * 10**8:
            raise ValueError("amount must be an int in 1..200000000")
        if order_lines is None:
            order_lines = [
                {
                    "type": "physical",
                    "name": "Fake item",
                    "quantity": 1,
                    "unit_price": amount,
                    "total_amount": amount,
                    "tax_rate": 0,
                    "total_tax_amount": 0,
                }
            ]
        chosen = order_id if order_id is not None else self.ledger.new_order_id()
        if chosen in self.orders.orders:
            raise ValueError(f"order {chosen!r} exists already")
        self.orders.add_placed(
            {
                "order_id": chosen,
                "amount": amount,
                "currency": currency.upper(),
                "country": country.upper(),
                "order_lines": order_lines,
                "fraud_status": fraud_status,
                "auto_capture": auto_capture,
                "notification": notification_url,
                "payment_method": payment_method,
                "merchant_reference1": merchant_reference1,
                "created_at": self.clock.time(),
            }
        )
        return chosen

    def om_order(self, order_id: str) -> OmOrder:
        """Order Management's state of one order (KeyError if unknown): the witness of
        captures, refunds and status (``.status(fake.clock.time())``, ``.captured``...)."""
        return self.orders.orders[order_id]

    async def decide_fraud(self, order_id: str, decision: str = "accepted") -> int | None:
        """Klarna's review of a pending order ends: ``"accepted"``, ``"rejected"`` or
        ``"stopped"`` (see :mod:`._orders`). Then the fake POSTs Klarna's notification to the
        order's ``merchant_urls.notification`` and returns the merchant's HTTP status (None
        when the order has no notification URL or the POST failed; see
        :attr:`notifications`).
        """
        url, body = self.orders.decide_fraud(order_id, decision)
        event = orjson.loads(body)["event_type"]
        delivery: dict[str, Any] = {
            "order_id": order_id,
            "url": url,
            "event_type": event,
            "status": None,
            "error": None,
        }
        self.notifications.append(delivery)
        if url is None:
            return None
        try:
            timeout = aiohttp.ClientTimeout(total=10)
            async with aiohttp.ClientSession(timeout=timeout) as http:
                headers = {"Content-Type": "application/json", "User-Agent": "FakeKlarna"}
                async with http.post(url, data=body, headers=headers) as answer:
                    await answer.read()
                    delivery["status"] = answer.status
        except (aiohttp.ClientError, TimeoutError) as error:
            delivery["error"] = type(error).__name__
        status: int | None = delivery["status"]
        return status

    def suspend_token(self, token_id: str) -> None:
        """Klarna suspended the token: orders answer 403 ``TOKEN_SUSPENDED``."""
        self.state.set_token_status(token_id, "SUSPENDED")

    def set_token_status(self, token_id: str, status: str) -> None:
        """Set ``ACTIVE``, ``SUSPENDED`` or ``CANCELLED`` directly."""
        self.state.set_token_status(token_id, status)

    def set_payment_method_outcome(self, token_id: str, outcome: str) -> None:
        """What charging the token does from now on.

        ``"ok"`` (fraud_status ACCEPTED), ``"pending"`` (PENDING), ``"failed"`` (403
        ``PAYMENT_METHOD_FAILED``) or ``"unavailable"`` (403 ``UNAVAILABLE_PAYMENT_METHOD``).
        """
        self.state.set_payment_method_outcome(token_id, outcome)

    # -- HTTP -----------------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        for method, path, name, has_body in ROUTES:
            app.router.add_route(method, path, self._api_handler(name, has_body))
        for method, path, handler_name, _ in CONTROLS:
            app.router.add_route(method, path, getattr(self, handler_name))
        return app

    def _api_handler(
        self, name: str, has_body: bool
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await self._handle(name, has_body, request)

        handler.__name__ = name.replace(".", "_")
        return handler

    def _authorized(self, header: str | None) -> bool:
        if header is None:
            return False
        if hmac.compare_digest(header, self._expected_auth):
            return True
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(decoded, self._credentials)

    async def _handle(self, name: str, has_body: bool, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        headers = request.headers
        key = headers.get(IDEMPOTENCY_HEADER)
        record = self.ledger.record_request(
            name,
            request.method,
            request.path,
            {k: v for k, v in headers.items() if k.lower() != "authorization"},
            raw,
            key,
            self.clock.time(),
        )
        correlation_id = self.ledger.ids.correlation_id(record.seq)
        if not self._authorized(headers.get("Authorization")):
            return self._error(
                record,
                401,
                "UNAUTHORIZED",
                "Authentication failed: wrong or missing credentials",
                correlation_id,
                {"WWW-Authenticate": 'Basic realm="Klarna"'},
            )
        extra: dict[str, str] | None = None
        if self.rate_limiter is not None:
            allowed, extra = self.rate_limiter.hit()
            if not allowed:
                return self._error(
                    record, 429, "TOO_MANY_REQUESTS", "Rate limit exceeded", correlation_id, extra
                )
        call = _Call(name, has_body, request, raw, key, correlation_id, extra, record)
        injection = self.faults.pick(name)
        if injection is None:
            if not self._in_flight:  # the hot path: nothing can be in the way
                return self._respond(call, state_first=self._state_first)
            return await self._process(call, None)
        fault = injection.fault
        record.fault = fault
        if not fault.processes:
            return self._answer_unprocessed(call, fault)
        response = await self._process(call, injection)
        return self._answer_processed(call, fault, response)

    @property
    def _state_first(self) -> bool:
        return self.faults.check_order == "state_first"

    # -- Klarna's processing --------------------------------------------------------------

    async def _process(self, call: _Call, injection: Injection | None) -> web.StreamResponse:
        """The in-flight check, a latency fault's delay, then :meth:`_respond`."""
        fault = None if injection is None else injection.fault
        key = call.idempotent_key
        if key is not None and key in self._in_flight:
            policy = "conflict" if fault is Fault.IN_FLIGHT_CONFLICT else self.faults.in_flight
            if policy == "conflict":
                status, code, message = _IN_FLIGHT_CONFLICT
                return self._error(
                    call.record, status, code, message, call.correlation_id, call.extra
                )
            if policy == "wait":
                # Bounded: a flight ends when its delay is over, or when the fake stops.
                while (flight := self._in_flight.get(key)) is not None:
                    await flight.done.wait()
        state_first = self._state_first or fault is Fault.STATE_FIRST
        if fault is not Fault.LATENCY:
            return self._respond(call, state_first=state_first)
        assert injection is not None
        task = asyncio.ensure_future(
            self._delayed(injection.latency_seconds, call, state_first=state_first)
        )
        # In flight from now until the task ends (processed, or cancelled by stop()).
        self._enter_flight(key)
        task.add_done_callback(lambda _: self._leave_flight(key))
        self._background.add(task)
        task.add_done_callback(self._background_done)
        # Shielded: even if this handler is cancelled (client gone, server stopping), the
        # delayed request is still processed; only stop() cancels it.
        return await asyncio.shield(task)

    def _enter_flight(self, key: str | None) -> None:
        if key is None:
            return
        flight = self._in_flight.get(key)
        if flight is None:
            flight = self._in_flight[key] = _Flight()
        flight.count += 1

    def _leave_flight(self, key: str | None) -> None:
        if key is None:
            return
        flight = self._in_flight.get(key)
        if flight is None:  # pragma: no cover - every leave follows its enter
            return
        flight.count -= 1
        if flight.count <= 0:
            del self._in_flight[key]
            flight.done.set()

    def _background_done(self, task: asyncio.Task[web.Response]) -> None:
        self._background.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved, so an unexpected error is not reported twice

    async def _delayed(self, seconds: float, call: _Call, *, state_first: bool) -> web.Response:
        await asyncio.sleep(seconds)
        return self._respond(call, state_first=state_first)

    def _base_url(self, request: web.Request) -> str:
        return self._url or f"{request.scheme}://{request.host}"

    def _respond(self, call: _Call, *, state_first: bool) -> web.Response:
        """Process the request (or replay its stored answer) and build the response."""
        record = call.record
        name = call.name
        key = call.idempotent_key
        transport = call.request.transport
        record.client_gone = transport is None or transport.is_closing()
        payload: Any = None
        if key is not None and state_first:
            # Checks a server may make before its idempotency layer: their errors are not
            # stored under the key, and nothing is committed.
            try:
                if call.has_body:
                    payload = self._parse(call.request, call.raw)
                if name == CT_ORDER:
                    self.state.check_token_order(call.request.match_info["token"], payload)
                else:
                    self._om_checks[name](call.request.match_info, payload, key, "")
            except ApiError as error:
                refusal = _error_body(error.error_code, error.messages, call.correlation_id)
                return self._send(
                    record, error.status, refusal, call.correlation_id, error.error_code, call.extra
                )
        now = self.clock.time()
        record.committed = True
        record.committed_at = now
        if key is not None:
            stored = self.state.idempotency.get(key, now)
            if stored is not None:
                record.replayed = True
                return self._send(
                    record,
                    stored.status,
                    stored.body,
                    stored.correlation_id,
                    stored.error_code,
                    _merged(call.extra, stored.headers),
                )
        status: int
        body: bytes
        error_code: str | None = None
        own_headers: dict[str, str] | None = None
        try:
            if call.has_body and payload is None:
                payload = self._parse(call.request, call.raw)
            reply = self._processors[name](
                call.request.match_info, payload, call.key, self._base_url(call.request)
            )
            status = reply.status
            own_headers = reply.headers
            if reply.payload is None:
                body = b""
            else:
                body = orjson.dumps(reply.payload)
                if status == 200 and name in _ORDER_ENDPOINTS and isinstance(reply.payload, dict):
                    record.order_id = reply.payload.get("order_id")
        except ApiError as error:
            status = error.status
            error_code = error.error_code
            body = _error_body(error.error_code, error.messages, call.correlation_id)
        if key is not None:
            self.state.idempotency.put(
                key, now, status, body, call.correlation_id, error_code, own_headers
            )
        extra = _merged(call.extra, own_headers)
        return self._send(record, status, body, call.correlation_id, error_code, extra)

    # -- fault answers --------------------------------------------------------------------

    def _answer_unprocessed(self, call: _Call, fault: Fault) -> web.StreamResponse:
        """The answer of a fault that does not process the request."""
        if fault is Fault.RESET_BEFORE:
            _abort(call.request, reset=True)
            return web.Response(status=500)  # never reaches the client
        return self._fault_answer(call, fault)

    def _answer_processed(
        self, call: _Call, fault: Fault, response: web.StreamResponse
    ) -> web.StreamResponse:
        """What a processing fault makes of Klarna's answer ``response``."""
        record = call.record
        if fault is Fault.DROP_AFTER_COMMIT:
            record.status = None
            _abort(call.request, reset=False)
            return response  # writing it fails quietly: the transport is closed
        hostile = fault.hostile_value
        if hostile is not None:  # PAUSE_*: Klarna's answer, with a pause nobody can take
            response.headers.update(self._hostile_headers(call, hostile))
            return response
        if fault.value.endswith("_committed"):
            return self._fault_answer(call, Fault(fault.value.removesuffix("_committed")))
        return response  # LATENCY, IN_FLIGHT_CONFLICT, STATE_FIRST: Klarna's answer as is

    def _fault_answer(self, call: _Call, fault: Fault) -> web.StreamResponse:
        """The answer of ``fault`` (an unprocessed kind), recorded on the request."""
        record = call.record
        klarna = _KLARNA_FAULTS.get(fault)
        if klarna is not None:
            status, code, message = klarna
            extra = call.extra
            hostile = fault.hostile_value
            if hostile is not None:
                extra = self._hostile_headers(call, hostile)
            # _error records the status and error code on the request.
            return self._error(record, status, code, message, call.correlation_id, extra)
        response: web.StreamResponse
        if fault in (Fault.HTML_500, Fault.HTML_502, Fault.HTML_503, Fault.HTML_504):
            response = gateway.nginx_page(int(fault.value[-3:]))
        elif fault is Fault.ENVOY_503:
            response = gateway.envoy_reset()
        elif fault is Fault.EMPTY_503:
            response = gateway.empty(503)
        elif fault is Fault.REDIRECT_302:
            response = gateway.redirect(f"{self._base_url(call.request)}/_fake/maintenance")
        elif fault is Fault.TIMEOUT_408:
            response = gateway.haproxy_page(408)
        elif fault is Fault.TOO_EARLY_425:
            response = gateway.haproxy_page(425)
        else:  # pragma: no cover - every fault kind is handled above
            raise AssertionError(f"no answer for {fault}")
        record.status = response.status
        record.error_code = None
        return response

    def _hostile_headers(self, call: _Call, value: str) -> dict[str, str]:
        headers = dict(call.extra or {})
        headers.setdefault("X-Ratelimit-Limit", _DEFAULT_LIMIT_HEADER)
        headers["X-Ratelimit-Remaining"] = "0"
        headers["X-Ratelimit-Reset"] = value
        headers["Retry-After"] = value
        return headers

    @staticmethod
    def _parse(request: web.Request, raw: bytes) -> dict[str, Any]:
        content_type = request.headers.get("Content-Type", "")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            raise ApiError(415, "BAD_REQUEST", "Content-Type must be application/json")
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ApiError(400, "BAD_REQUEST", "Request body is not valid JSON") from None
        if not isinstance(parsed, dict):
            raise ApiError(400, "BAD_REQUEST", "Request body must be a JSON object")
        return parsed

    @staticmethod
    def _send(
        record: RequestRecord,
        status: int,
        body: bytes,
        correlation_id: str,
        error_code: str | None,
        extra: dict[str, str] | None,
    ) -> web.Response:
        record.status = status
        record.error_code = error_code
        record.correlation_id = correlation_id
        headers = {CORRELATION_HEADER: correlation_id}
        if extra:
            headers.update(extra)
        if not body:
            return web.Response(status=status, headers=headers)
        headers["Content-Type"] = "application/json"
        return web.Response(status=status, body=body, headers=headers)

    def _error(
        self,
        record: RequestRecord,
        status: int,
        error_code: str,
        message: str,
        correlation_id: str,
        extra: dict[str, str] | None,
    ) -> web.Response:
        body = _error_body(error_code, [message], correlation_id)
        return self._send(record, status, body, correlation_id, error_code, extra)

    # -- /_fake controls ------------------------------------------------------------------

    async def _control_index(self, request: web.Request) -> web.Response:
        base = self._base_url(request)
        return _json(
            {
                "fake_klarna": base,
                "credentials": "HTTP Basic on the API endpoints (the sandbox prints them); "
                "none on /_fake/",
                "controls": [
                    {"method": method, "path": path, "description": description}
                    for method, path, _, description in CONTROLS
                ],
                "api": [
                    {"method": method, "path": path, "endpoint": name}
                    for method, path, name, _ in ROUTES
                ],
                "faults": [
                    {
                        "name": fault.value,
                        "processes": fault.processes,
                        "description": fault.summary,
                    }
                    for fault in Fault
                ],
                "options": {
                    "in_flight": {"value": self.faults.in_flight, "choices": IN_FLIGHT_POLICIES},
                    "check_order": {"value": self.faults.check_order, "choices": CHECK_ORDERS},
                },
            }
        )

    async def _control_health(self, request: web.Request) -> web.Response:
        return _json({"ok": True})

    async def _control_ledger(self, request: web.Request) -> web.Response:
        include = request.query.get("requests", "") not in ("", "0", "false")
        orders = request.query.get("orders", "1") not in ("", "0", "false")
        return _json(self.ledger.to_json(include_requests=include, include_orders=orders))

    async def _control_ledger_key(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        ledger = self.ledger
        return _json(
            {
                "idempotency_key": key,
                "orders": ledger.order_count_for_key(key),
                "orders_kept": [order.to_json() for order in ledger.orders_for_key(key)],
                "requests": [record.to_json() for record in ledger.requests_for_key(key)],
            }
        )

    async def _control_ledger_keys(self, request: web.Request) -> web.Response:
        body = await _control_body(request)
        keys = body.get("keys")
        if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
            return _json({"error": "keys (a list of strings) is required"}, 400)
        count = self.ledger.order_count_for_key
        return _json({"orders": {key: count(key) for key in keys}})

    async def _control_ledger_request(self, request: web.Request) -> web.Response:
        which = request.match_info["id"]
        try:
            if which.isdigit():
                record = self.ledger.request(int(which))
            else:
                record = self.ledger.request_for_correlation_id(which)
        except KeyError as missing:
            return _json({"error": str(missing.args[0])}, 404)
        return _json(record.to_json())

    async def _control_faults_show(self, request: web.Request) -> web.Response:
        faults = self.faults
        rates = {
            "*" if endpoint is None else endpoint: {
                **rate.nonzero(),
                "latency_seconds": rate.latency_seconds,
            }
            for endpoint, rate in faults._rates.items()
        }
        return _json(
            {
                "seed": faults.seed,
                "options": faults.options,
                "rates": rates,
                "pending": {e: faults.pending(e) for e in faults.ENDPOINTS if faults.pending(e)},
                "injected": [
                    {"endpoint": endpoint, "fault": fault.value, "count": count}
                    for (endpoint, fault), count in sorted(
                        faults.injected.items(), key=lambda item: (item[0][0], item[0][1].value)
                    )
                ],
            }
        )

    async def _control_authorize(self, request: web.Request) -> web.Response:
        body = await _control_body(request)
        session_id = body.get("session_id")
        if not isinstance(session_id, str):
            return _json({"error": "session_id (a string) is required"}, 400)
        try:
            token = self.authorize(
                session_id,
                outcome=str(body.get("outcome", "approved")),
                billing_address=body.get("billing_address"),
                order_lines=body.get("order_lines"),
                payment_method=str(body.get("payment_method", "invoice")),
            )
        except AuthorizationDeclined as declined:
            return _json({"error": str(declined), "declined": True}, 409)
        except KeyError as missing:
            return _json({"error": str(missing.args[0])}, 404)
        except ValueError as bad:
            return _json({"error": str(bad)}, 400)
        return _json({"authorization_token": token})

    async def _control_add_token(self, request: web.Request) -> web.Response:
        body = await _control_body(request)
        try:
            token_id = self.add_customer_token(
                purchase_currency=str(body.get("purchase_currency", "EUR")),
                purchase_country=str(body.get("purchase_country", "DE")),
                payment_method_type=str(body.get("payment_method_type", "INVOICE")),
            )
        except ValueError as bad:
            return _json({"error": str(bad)}, 400)
        return _json({"token_id": token_id})

    async def _control_token_status(self, request: web.Request) -> web.Response:
        return await self._control_token(request, "status", self.set_token_status)

    async def _control_token_outcome(self, request: web.Request) -> web.Response:
        return await self._control_token(request, "outcome", self.set_payment_method_outcome)

    async def _control_token(
        self, request: web.Request, field: str, setter: Callable[[str, str], None]
    ) -> web.Response:
        """Set one field of a token from the body's ``field``; answer the token's new value."""
        body = await _control_body(request)
        token_id = request.match_info["token"]
        try:
            setter(token_id, str(body.get(field)))
        except KeyError as missing:
            return _json({"error": str(missing.args[0])}, 404)
        except ValueError as bad:
            return _json({"error": str(bad)}, 400)
        return _json({"token_id": token_id, field: getattr(self.state.tokens[token_id], field)})

    async def _control_add_order(self, request: web.Request) -> web.Response:
        body = await _control_body(request)
        options = {
            key: body[key]
            for key in (
                "amount",
                "currency",
                "country",
                "fraud_status",
                "auto_capture",
                "order_id",
                "notification_url",
                "payment_method",
                "order_lines",
                "merchant_reference1",
            )
            if key in body
        }
        count = body.get("count", 1)
        prefix = body.get("order_id_prefix")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1_000_000:
            return _json({"error": "count must be an integer in 1..1000000"}, 400)
        if count > 1 and ("order_id" in options or not isinstance(prefix, str)):
            return _json({"error": "several orders need order_id_prefix (not order_id)"}, 400)
        ids: list[str] = []
        try:
            for number in range(count):
                if count > 1:
                    options["order_id"] = f"{prefix}{number}"
                ids.append(self.add_order(**options))
        except (TypeError, ValueError) as bad:
            return _json({"error": str(bad)}, 400)
        return _json({"order_ids": ids[:1000], "count": count})

    async def _control_decide_fraud(self, request: web.Request) -> web.Response:
        body = await _control_body(request)
        decision = body.get("decision", "accepted")
        order_id = request.match_info["order_id"]
        if decision not in FRAUD_DECISIONS:
            return _json({"error": f"decision must be one of {sorted(FRAUD_DECISIONS)}"}, 400)
        try:
            status = await self.decide_fraud(order_id, decision)
        except KeyError as missing:
            return _json({"error": str(missing.args[0])}, 404)
        except ValueError as bad:
            return _json({"error": str(bad)}, 409)
        return _json({"notification": self.notifications[-1], "merchant_status": status})

    async def _control_notifications(self, request: web.Request) -> web.Response:
        return _json({"notifications": self.notifications})

    async def _control_clock(self, request: web.Request) -> web.Response:
        body = await _control_body(request)
        seconds = body.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            return _json({"error": "seconds (a number >= 0) is required"}, 400)
        self.clock.advance(seconds)
        return _json({"now": isoformat(self.clock.time())})

    async def _control_faults(self, request: web.Request) -> web.Response:
        body = await _control_body(request)
        try:
            apply_fault_config(self.faults, body)
        except (TypeError, ValueError, KeyError) as bad:
            return _json({"error": str(bad)}, 400)
        return _json({"seed": self.faults.seed})

    async def _control_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return _json({"ok": True})

    async def _control_redirect(self, request: web.Request) -> web.Response:
        target = self.state.confirmation_target(request.match_info["id"])
        if target is None:
            return web.Response(text="Thank you for your order (fake Klarna).")
        template, session_id = target
        location = template.replace("{order.id}", request.match_info["id"])
        if session_id is not None:
            location = location.replace("{session.id}", session_id)
        raise web.HTTPFound(location)

    async def _control_maintenance(self, request: web.Request) -> web.Response:
        return gateway.maintenance_page()


#: The test controls: (method, path, handler, one-line description). ``GET /_fake/`` lists them.
CONTROLS: Final = (
    ("GET", "/_fake/", "_control_index", "this list: controls, API endpoints, faults, options"),
    ("GET", "/_fake/health", "_control_health", '{"ok": true} once the fake is serving'),
    (
        "GET",
        "/_fake/ledger",
        "_control_ledger",
        "orders (kept), exact counts, customer tokens; ?requests=1 adds the request log, "
        "?orders=0 leaves out the orders",
    ),
    (
        "GET",
        "/_fake/ledger/keys/{key}",
        "_control_ledger_key",
        "one idempotency key: its order count (whole run), kept orders and requests",
    ),
    (
        "POST",
        "/_fake/ledger/keys",
        "_control_ledger_keys",
        '{"keys": [...]} -> {"orders": {key: count}}: order counts of many keys',
    ),
    (
        "GET",
        "/_fake/ledger/requests/{id}",
        "_control_ledger_request",
        "one logged request, by sequence number or Klarna-Correlation-Id (committed? status?)",
    ),
    (
        "POST",
        "/_fake/authorize",
        "_control_authorize",
        'the customer approves a session: {"session_id", "outcome"?, "billing_address"?, '
        '"order_lines"?, "payment_method"?} -> {"authorization_token"}',
    ),
    (
        "POST",
        "/_fake/customer-tokens",
        "_control_add_token",
        'a ready ACTIVE customer token: {"purchase_currency"?, "purchase_country"?, '
        '"payment_method_type"?} -> {"token_id"}',
    ),
    (
        "POST",
        "/_fake/customer-tokens/{token}/status",
        "_control_token_status",
        '{"status": "ACTIVE"|"SUSPENDED"|"CANCELLED"}: set a token\'s status',
    ),
    (
        "POST",
        "/_fake/customer-tokens/{token}/outcome",
        "_control_token_outcome",
        '{"outcome": "ok"|"pending"|"failed"|"unavailable"}: what charging the token does',
    ),
    (
        "POST",
        "/_fake/orders",
        "_control_add_order",
        'an order in Order Management: {"amount"?, "currency"?, "fraud_status"?, '
        '"auto_capture"?, "notification_url"?, "order_id"?, "count"?, "order_id_prefix"?} '
        '-> {"order_ids", "count"} (count > 1: ids are order_id_prefix + 0, 1, ...)',
    ),
    (
        "POST",
        "/_fake/orders/{order_id}/fraud-decision",
        "_control_decide_fraud",
        '{"decision": "accepted"|"rejected"|"stopped"}: a pending order\'s review ends; the '
        "fake POSTs Klarna's notification to its merchant_urls.notification",
    ),
    (
        "GET",
        "/_fake/notifications",
        "_control_notifications",
        "every pending-order notification sent, with the merchant's answer",
    ),
    (
        "POST",
        "/_fake/clock/advance",
        "_control_clock",
        '{"seconds"} -> {"now"}: move the fake clock forward (expire tokens, sessions, keys)',
    ),
    ("GET", "/_fake/faults", "_control_faults_show", "seed, options, rates, scripts, injections"),
    (
        "POST",
        "/_fake/faults",
        "_control_faults",
        '{"seed"?, "clear"?, "rates"?: {"endpoint"?, "<fault>": p, "latency_seconds"?}, '
        '"script"?: {"<endpoint>": ["<fault>"|null|["latency", s], ...]}, "options"?: '
        '{"in_flight"?, "check_order"?}} -> {"seed"}',
    ),
    (
        "POST",
        "/_fake/reset",
        "_control_reset",
        "forget all state, the ledger, faults, options and clock advances",
    ),
    (
        "GET",
        "/_fake/redirect/{id}",
        "_control_redirect",
        "where an order's redirect_url points: 302 to the merchant's confirmation URL",
    ),
    (
        "GET",
        "/_fake/maintenance",
        "_control_maintenance",
        "where the redirect_302 faults point: a 200 HTML page that is not Klarna's",
    ),
)


def apply_fault_config(faults: FaultInjector, config: dict[str, Any]) -> None:
    """Apply a JSON fault configuration (the body of ``POST /_fake/faults``).

    ``{"clear": true}`` drops scripts and rates first; ``"seed"`` reseeds; ``"rates"`` sets
    probabilities (``"endpoint"`` picks one endpoint, the other names are :class:`Fault` values
    or ``latency_seconds``); ``"script"`` queues faults per endpoint (a fault value, ``null`` for
    an untouched request, or ``["<fault>", seconds]``); ``"options"`` sets ``in_flight`` and
    ``check_order``. Everything is checked before anything changes.
    """
    unknown = set(config) - {"clear", "seed", "rates", "script", "options"}
    if unknown:
        raise ValueError(f"unknown fault settings: {sorted(unknown)}")
    seed = config.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError("seed must be an integer or null")
    rates_config = config.get("rates")
    rate_endpoint: str | None = None
    rate_values: dict[str, float] = {}
    if rates_config is not None:
        if not isinstance(rates_config, dict):
            raise TypeError("rates must be an object")
        options = dict(rates_config)
        rate_endpoint = options.pop("endpoint", None)
        if rate_endpoint is not None:
            check_endpoint(rate_endpoint)
        known = {fault.value for fault in Fault} | {"latency_seconds"}
        unknown = set(options) - known
        if unknown:
            raise ValueError(f"unknown rate names: {sorted(unknown)}")
        for value in options.values():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError("rates must be numbers")
        rate_values = {k: float(v) for k, v in options.items()}
    scripts: dict[str, list[Fault | tuple[Fault, float] | None]] = {}
    script = config.get("script")
    if script is not None:
        if not isinstance(script, dict):
            raise TypeError("script must be an object of endpoint -> list of faults")
        for endpoint, items in script.items():
            check_endpoint(endpoint)
            if not isinstance(items, list):
                raise TypeError("each script must be a list")
            parsed: list[Fault | tuple[Fault, float] | None] = []
            for item in items:
                if item is None:
                    parsed.append(None)
                elif isinstance(item, str):
                    parsed.append(Fault(item.lower()))
                elif isinstance(item, list) and len(item) == 2:
                    seconds = item[1]
                    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
                        raise TypeError(f"bad script item {item!r}: seconds must be a number")
                    if not seconds >= 0:
                        raise ValueError(f"bad script item {item!r}: seconds must be >= 0")
                    parsed.append((Fault(str(item[0]).lower()), float(seconds)))
                else:
                    raise ValueError(f"bad script item {item!r}")
            scripts[endpoint] = parsed
    options_config = config.get("options")
    in_flight: str | None = None
    check_order: str | None = None
    if options_config is not None:
        if not isinstance(options_config, dict):
            raise TypeError("options must be an object")
        unknown = set(options_config) - {"in_flight", "check_order"}
        if unknown:
            raise ValueError(f"unknown options: {sorted(unknown)}")
        in_flight = options_config.get("in_flight")
        check_order = options_config.get("check_order")
        if in_flight is not None and in_flight not in IN_FLIGHT_POLICIES:
            raise ValueError(f"in_flight must be one of {IN_FLIGHT_POLICIES}")
        if check_order is not None and check_order not in CHECK_ORDERS:
            raise ValueError(f"check_order must be one of {CHECK_ORDERS}")
    if rates_config is not None:
        FaultRates(**rate_values)  # checks the ranges and the sum before anything changes

    if config.get("clear"):
        faults.clear()
    if "seed" in config:
        faults.reseed(seed)
    if rates_config is not None:
        faults.set_rates(rate_endpoint, **rate_values)
    for endpoint, parsed in scripts.items():
        faults.script(endpoint, parsed)
    faults.set_options(in_flight=in_flight, check_order=check_order)


def _merged(extra: dict[str, str] | None, own: dict[str, str] | None) -> dict[str, str] | None:
    if not own:
        return extra
    return {**extra, **own} if extra else own


def _error_body(error_code: str, messages: list[str], correlation_id: str) -> bytes:
    return orjson.dumps(
        {"error_code": error_code, "error_messages": messages, "correlation_id": correlation_id}
    )


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")


async def _control_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise web.HTTPBadRequest(text="body must be JSON") from None
    if not isinstance(parsed, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return parsed


def _abort(request: web.Request, *, reset: bool) -> None:
    """Close the client connection without an answer (with a TCP RST if ``reset``)."""
    transport = request.transport
    if transport is None:
        return
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()


@contextlib.contextmanager
def serve_in_thread(**options: Any) -> Iterator[FakeKlarna]:
    """Run a :class:`FakeKlarna` on its own event loop in a daemon thread.

    For synchronous tests or other event loops: ``with serve_in_thread() as fake: ...``.
    ``options`` are :class:`FakeKlarna` keyword arguments. Test-side controls (``authorize``,
    ``clock.advance``...) called from your thread are not synchronised with requests the fake is
    processing at that moment; call them between requests.
    """
    ready = threading.Event()
    box: dict[str, Any] = {}

    def main() -> None:
        loop = asyncio.new_event_loop()
        box["loop"] = loop
        try:
            fake = FakeKlarna(**options)
            loop.run_until_complete(fake.start())
            box["fake"] = fake
        except BaseException as error:  # reported to the caller below
            box["error"] = error
            ready.set()
            loop.close()
            return
        stop = asyncio.Event()
        box["stop"] = stop
        ready.set()
        try:
            loop.run_until_complete(stop.wait())
            loop.run_until_complete(fake.stop())
        finally:
            loop.close()

    thread = threading.Thread(target=main, name="fake-klarna", daemon=True)
    thread.start()
    if not ready.wait(30):
        raise TimeoutError("the fake Klarna did not start within 30 s")
    if "error" in box:
        raise box["error"]
    try:
        yield box["fake"]
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(30)
