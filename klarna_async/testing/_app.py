"""The fake Klarna's HTTP side: an :mod:`aiohttp.web` application and :class:`FakeKlarna`.

In-process use (binds 127.0.0.1 on a free port)::

    async with FakeKlarna() as fake:
        client = KlarnaClient(base_url=fake.url, username="test_user", password="test_password")
        ...
        token = fake.authorize(session_id)          # the customer approves in the widget
        assert len(fake.ledger.orders) == 1

``fake.app`` is the :class:`aiohttp.web.Application`, for serving it another way (for example with
``aiohttp.test_utils``). :func:`serve_in_thread` runs a fake on its own event loop in a background
thread, for synchronous code or other async frameworks.

Per API request, in this order: routing (an unknown path or method gets aiohttp's plain 404/405
and is not logged), the request is logged in the ledger, HTTP Basic credentials (401
``UNAUTHORIZED``), the optional rate limit (429 ``TOO_MANY_REQUESTS``), fault injection (see
:mod:`._faults`), the idempotent replay (customer-token orders with ``Klarna-Idempotency-Key``),
then processing (see :mod:`._state`).

* Every answer carries a fresh ``Klarna-Correlation-Id`` header; an error body's
  ``correlation_id`` is the same value. A replayed answer keeps its original id, in body and header.
* With a rate limit, every authenticated answer carries ``X-Ratelimit-Limit``,
  ``X-Ratelimit-Remaining`` and ``X-Ratelimit-Reset`` (Klarna counts per merchant, so a 401 has
  none). HTML fault pages, "sent by a proxy", carry no Klarna headers at all.
* Request bodies must be JSON objects sent as ``application/json``: another content type is 415
  ``BAD_REQUEST``, unparsable JSON or a non-object 400 ``BAD_REQUEST``.

Test controls over HTTP, under ``/_fake/`` (no credentials needed, never faulted, rate limited or
logged); all take and return JSON:

===========================================  ====================================================
``GET  /_fake/health``                       ``{"ok": true}``
``GET  /_fake/ledger``                       orders, customer tokens, request counts
                                             (``?requests=1`` adds the request log)
``POST /_fake/authorize``                    ``{"session_id", "outcome"?, "billing_address"?,
                                             "order_lines"?, "payment_method"?}`` ->
                                             ``{"authorization_token"}``; declined: 409,
                                             unknown session: 404
``POST /_fake/customer-tokens``              ``{"purchase_currency"?, "purchase_country"?,
                                             "payment_method_type"?}`` -> ``{"token_id"}``
``POST /_fake/customer-tokens/{id}/status``  ``{"status": "ACTIVE"|"SUSPENDED"|"CANCELLED"}``
``POST /_fake/customer-tokens/{id}/outcome`` ``{"outcome": "ok"|"pending"|"failed"|
                                             "unavailable"}``
``POST /_fake/clock/advance``                ``{"seconds"}`` -> ``{"now"}``
``POST /_fake/faults``                       ``{"seed"?, "clear"?, "rates"?: {"endpoint"?,
                                             "<fault>": p, "latency_seconds"?}, "script"?:
                                             {"<endpoint>": ["<fault>" | null | ["latency", s],
                                             ...]}}`` -> ``{"seed"}`` (``<fault>``: a
                                             :class:`Fault` value, e.g. ``"drop_after_commit"``)
``POST /_fake/reset``                        forget all state, the ledger, faults and clock
                                             advances
``GET  /_fake/redirect/{id}``                where ``redirect_url`` points: 302 to the
                                             merchant's confirmation URL
===========================================  ====================================================
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
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final

import orjson
from aiohttp import web

from klarna_async.testing._clock import FakeClock, isoformat
from klarna_async.testing._faults import Fault, FaultInjector, Injection, check_endpoint
from klarna_async.testing._ledger import Ledger, RequestRecord
from klarna_async.testing._state import (
    ApiError,
    AuthorizationDeclined,
    FakeState,
    RateLimiter,
    Reply,
)

__all__ = ["FakeKlarna", "serve_in_thread"]

IDEMPOTENCY_HEADER: Final = "Klarna-Idempotency-Key"
CORRELATION_HEADER: Final = "Klarna-Correlation-Id"

_HTML_STATUS: Final = {Fault.HTML_500: 500, Fault.HTML_502: 502, Fault.HTML_504: 504}
_HTML_REASON: Final = {500: "Internal Server Error", 502: "Bad Gateway", 504: "Gateway Timeout"}

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
)

_Processor = Callable[[dict[str, str], Any, "str | None", str], Reply]


def _html_page(status: int) -> str:
    reason = _HTML_REASON[status]
    return (
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )


class FakeKlarna:
    """A stateful fake of Klarna's Payments and Customer Token APIs, served over HTTP.

    :param username: / :param password: the HTTP Basic credentials it accepts.
    :param host: / :param port: where :meth:`start` listens (port 0: a free port).
    :param seed: seed of the fault injector's random streams (random if None).
    :param rate_limit: requests per second before 429 (None: no limit, no rate-limit headers).
    :param keep_requests: how many requests the ledger's request log keeps (None: all).
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
        self.ledger = Ledger(keep_requests=keep_requests)
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
        self._background: set[asyncio.Task[web.StreamResponse]] = set()
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
        self.app = self._make_app()

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

    def reset(self) -> None:
        """Forget sessions, tokens, orders, the ledger, faults, clock advances, rate window."""
        self.state.reset()
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
        app.router.add_get("/_fake/health", self._control_health)
        app.router.add_get("/_fake/ledger", self._control_ledger)
        app.router.add_post("/_fake/authorize", self._control_authorize)
        app.router.add_post("/_fake/customer-tokens", self._control_add_token)
        app.router.add_post("/_fake/customer-tokens/{token}/status", self._control_token_status)
        app.router.add_post("/_fake/customer-tokens/{token}/outcome", self._control_token_outcome)
        app.router.add_post("/_fake/clock/advance", self._control_clock)
        app.router.add_post("/_fake/faults", self._control_faults)
        app.router.add_post("/_fake/reset", self._control_reset)
        app.router.add_get("/_fake/redirect/{id}", self._control_redirect)
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
        correlation_id = str(uuid.uuid4())
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
        injection = self.faults.pick(name)
        if injection is None:
            return self._respond(name, has_body, request, raw, key, correlation_id, extra, record)
        return await self._inject(
            injection, name, has_body, request, raw, key, correlation_id, extra, record
        )

    async def _inject(
        self,
        injection: Injection,
        name: str,
        has_body: bool,
        request: web.Request,
        raw: bytes,
        key: str | None,
        correlation_id: str,
        extra: dict[str, str] | None,
        record: RequestRecord,
    ) -> web.StreamResponse:
        fault = injection.fault
        record.fault = fault
        if fault is Fault.SERVICE_UNAVAILABLE:
            return self._error(
                record,
                503,
                "SERVICE_UNAVAILABLE",
                "A temporary internal Klarna error occurred. Try again later.",
                correlation_id,
                extra,
            )
        if fault is Fault.RESET_BEFORE:
            _abort(request, reset=True)
            return web.Response(status=500)  # never reaches the client
        if fault is Fault.DROP_AFTER_COMMIT:
            response = self._respond(
                name, has_body, request, raw, key, correlation_id, extra, record
            )
            record.status = None
            _abort(request, reset=False)
            return response  # writing it fails quietly: the transport is closed
        if fault is Fault.LATENCY:
            task = asyncio.ensure_future(
                self._delayed(
                    injection.latency_seconds,
                    name,
                    has_body,
                    request,
                    raw,
                    key,
                    correlation_id,
                    extra,
                    record,
                )
            )
            self._background.add(task)
            task.add_done_callback(self._background_done)
            # Shielded: even if this handler is cancelled (client gone, server stopping), the
            # delayed request is still processed.
            return await asyncio.shield(task)
        status = _HTML_STATUS[fault]
        record.status = status
        return web.Response(
            status=status,
            text=_html_page(status),
            content_type="text/html",
            headers={"Server": "nginx"},
        )

    def _background_done(self, task: asyncio.Task[web.StreamResponse]) -> None:
        self._background.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved, so an unexpected error is not reported twice

    async def _delayed(
        self,
        seconds: float,
        name: str,
        has_body: bool,
        request: web.Request,
        raw: bytes,
        key: str | None,
        correlation_id: str,
        extra: dict[str, str] | None,
        record: RequestRecord,
    ) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return self._respond(name, has_body, request, raw, key, correlation_id, extra, record)

    def _base_url(self, request: web.Request) -> str:
        return self._url or f"{request.scheme}://{request.host}"

    def _respond(
        self,
        name: str,
        has_body: bool,
        request: web.Request,
        raw: bytes,
        key: str | None,
        correlation_id: str,
        extra: dict[str, str] | None,
        record: RequestRecord,
    ) -> web.Response:
        """Process the request (or replay its stored answer) and build the response."""
        record.committed = True
        idempotent = key is not None and name == "customer_tokens.create_order"
        if idempotent:
            assert key is not None
            stored = self.state.idempotency.get(key, self.clock.time())
            if stored is not None:
                record.replayed = True
                return self._send(
                    record,
                    stored.status,
                    stored.body,
                    stored.correlation_id,
                    stored.error_code,
                    extra,
                )
        status: int
        body: bytes
        error_code: str | None = None
        try:
            payload: Any = None
            if has_body:
                payload = self._parse(request, raw)
            reply = self._processors[name](
                request.match_info, payload, key, self._base_url(request)
            )
            status = reply.status
            body = b"" if reply.payload is None else orjson.dumps(reply.payload)
        except ApiError as error:
            status = error.status
            error_code = error.error_code
            body = _error_body(error.error_code, error.messages, correlation_id)
        if idempotent:
            assert key is not None
            self.state.idempotency.put(
                key, self.clock.time(), status, body, correlation_id, error_code
            )
        return self._send(record, status, body, correlation_id, error_code, extra)

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

    async def _control_health(self, request: web.Request) -> web.Response:
        return _json({"ok": True})

    async def _control_ledger(self, request: web.Request) -> web.Response:
        include = request.query.get("requests", "") not in ("", "0", "false")
        return _json(self.ledger.to_json(include_requests=include))

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


def apply_fault_config(faults: FaultInjector, config: dict[str, Any]) -> None:
    """Apply a JSON fault configuration (the body of ``POST /_fake/faults``)."""
    if config.get("clear"):
        faults.clear()
    if "seed" in config:
        seed = config["seed"]
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError("seed must be an integer or null")
        faults.reseed(seed)
    rates = config.get("rates")
    if rates is not None:
        if not isinstance(rates, dict):
            raise TypeError("rates must be an object")
        options = dict(rates)
        endpoint = options.pop("endpoint", None)
        known = {fault.value for fault in Fault} | {"latency_seconds"}
        unknown = set(options) - known
        if unknown:
            raise ValueError(f"unknown rate names: {sorted(unknown)}")
        for value in options.values():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError("rates must be numbers")
        faults.set_rates(endpoint, **{k: float(v) for k, v in options.items()})
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
                    parsed.append((Fault(str(item[0]).lower()), float(item[1])))
                else:
                    raise ValueError(f"bad script item {item!r}")
            faults.script(endpoint, parsed)


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
