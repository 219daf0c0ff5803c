"""The one request path: an :class:`Endpoint` declares an operation, a :class:`Requester` sends it.

Every call of every resource goes ``Requester.request`` -> ``Retrier.run`` -> :func:`_attempt`
-> ``_transport.send``: the body and the idempotency key are made once, before the first
attempt, and every attempt sends the same bytes and key. The requester also owns the lifecycle
of the connection pool, because closing must know which calls are in flight: ``close()`` lets
them finish (bounded), then cuts off the rest, which end as "unknown" when they may have
acted, never as "not charged".

Telemetry (``klarna_async._telemetry``, above this layer) is handed down as an
:class:`Observer`; without it, ``Requester.observer`` is None and a call pays two ``is None``
checks for it.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import hashlib
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Protocol, TypeAlias, TypeVar, overload
from urllib.parse import quote

import aiohttp
from yarl import URL

from klarna_async._errors import ClientClosedError
from klarna_async._responses import api_error, decode_success
from klarna_async._retry import (
    AttemptEvent,
    InFlight,
    Retrier,
    RetryBudget,
    RetryPolicy,
    Safety,
    mask_token,
)
from klarna_async._transport import RawResponse
from klarna_async._transport import send as send_once

if TYPE_CHECKING:
    from klarna_async._ratelimit import Pacer

__all__ = [
    "CallObserver",
    "Endpoint",
    "Observer",
    "Reader",
    "Requester",
    "Send",
    "check_idempotency_key",
    "path_param",
]

T = TypeVar("T")
logger = logging.getLogger("klarna_async")

#: Reads a success answer some other way than as a JSON model: ``(status, headers, body)`` in,
#: a result out, or ``ResponseDecodeError`` (e.g. a capture's id from its ``Capture-Id`` header).
Reader: TypeAlias = Callable[[int, Mapping[str, str], bytes], T]
#: One HTTP attempt, as ``_transport.send``: ``(session, method, url, headers, body, timeout)``.
Send: TypeAlias = Callable[
    [aiohttp.ClientSession, str, URL, Mapping[str, str], bytes | None, float],
    Awaitable[RawResponse],
]


class Endpoint:
    """One Klarna operation: its name, method and path, and what repeating it can do.

    ``template`` has one ``{}`` per path parameter, named ``what`` in errors: a name for one
    parameter (the call then passes a ``str``), a tuple of names for several (Order
    Management's ``/orders/{}/captures/{}``: the call passes a tuple of as many ``str``).
    ``secret`` says whether the parameters are tokens that logs may show only masked.
    """

    __slots__ = (
        "_parts",
        "method",
        "names",
        "operation",
        "prefix",
        "safety",
        "secret",
        "single",
        "suffix",
        "template",
        "what",
    )

    def __init__(
        self,
        operation: str,
        method: str,
        template: str,
        safety: Safety,
        what: str | tuple[str, ...] | None = None,
        secret: bool = True,
    ) -> None:
        self.operation = operation
        self.method = method
        self.safety = safety
        self.what = what
        self.secret = secret
        self.template = template
        self.names: tuple[str, ...] = (what,) if isinstance(what, str) else (what or ())
        self._parts = template.split("{}")
        if len(self._parts) != len(self.names) + 1:
            raise ValueError(f"{template!r} needs one {{}} per parameter name of {what!r}")
        #: One path parameter: the path is ``prefix + param + suffix`` (joined by the request
        #: path itself for a token that needs no encoding).
        self.single = len(self.names) == 1
        self.prefix, _, self.suffix = template.partition("{}")

    def __repr__(self) -> str:
        return f"<Endpoint {self.operation} {self.method} {self.template}>"

    def path(self, param: str | tuple[str, ...] | None) -> str:
        if self.what is None:
            return self.prefix
        if self.single:
            return self.prefix + path_param(param, self.names[0]) + self.suffix
        if not isinstance(param, tuple) or len(param) != len(self.names):
            raise ValueError(f"{self.operation} needs {', '.join(self.names)}")
        parts = self._parts
        pieces = [parts[0]]
        for value, name, after in zip(param, self.names, parts[1:], strict=True):
            pieces.append(path_param(value, name))
            pieces.append(after)
        return "".join(pieces)

    def describe(self, param: str | tuple[str, ...] | None) -> str:
        if param is None:
            return self.operation
        values = (param,) if isinstance(param, str) else param
        shown = " ".join(mask_token(value) if self.secret else value for value in values)
        return f"{self.operation} {shown}"


_UNRESERVED = re.compile(r"[A-Za-z0-9_~-]+")


def path_param(value: object, what: str) -> str:
    """A path segment made safe: non-empty, no traversal, percent-encoded."""
    if value.__class__ is str and _UNRESERVED.fullmatch(value):
        return value  # tokens are UUIDs: nothing to encode
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string")
    if value.strip(".") == "":
        raise ValueError(f"{what} cannot be {value!r}: it would leave its place in the path")
    return quote(value, safe="")


# Printable ASCII, no space at either end, at most 255 characters: what an HTTP header carries
# unchanged (aiohttp silently drops a lone surrogate, and CR/LF would split the header).
_KEY = re.compile(r"[!-~](?:[ -~]{0,253}[!-~])?")


def check_idempotency_key(key: object) -> str:
    """``key`` if it can be sent as a ``Klarna-Idempotency-Key`` unchanged, else TypeError or
    ValueError (before anything is sent)."""
    if not isinstance(key, str):
        raise TypeError(f"idempotency_key must be a str, got {type(key).__name__}")
    if _KEY.fullmatch(key) is None:
        raise ValueError(
            "idempotency_key must be 1 to 255 printable ASCII characters, without spaces at "
            "either end (a UUID is best)"
        )
    return key


class CallObserver(Protocol):
    """What watches one call for telemetry. Its methods never raise (rule 6 of ``_retry``): a
    failure inside telemetry is logged and the call goes on as if it were off."""

    def transport(self, send: Send) -> Send:
        """``send`` as this call's attempts use it (each attempt observed)."""
        ...

    def wait(self, seconds: float, reason: str, error: BaseException | None) -> None:
        """A wait of the call (``Retrier.run``'s ``on_wait``)."""
        ...

    def succeeded(self, result: object) -> None:
        """The call returned ``result``."""
        ...

    def failed(self, error: BaseException) -> None:
        """The call ended in ``error`` (raised to the caller right after)."""
        ...


class Observer(Protocol):
    """What watches every call of one client (its telemetry). It is never given the path
    parameter or the URL: tokens cannot reach it."""

    def call(self, endpoint: Endpoint, idempotency_key: str | None) -> CallObserver:
        """A call of ``endpoint`` begins; never raises."""
        ...


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Requester:
    """What every call of one client shares: the pool, the headers, the retrier, the pacer.

    ``headers`` are sent with every request: as the defaults of the session we make, or with
    each request on a borrowed session (which may carry anything).
    """

    def __init__(
        self,
        *,
        base_url: URL,
        headers: Mapping[str, str],
        session: aiohttp.ClientSession | None,
        connection_limit: int,
        policy: RetryPolicy,
        budget: RetryBudget | None,
        on_attempt: Callable[[AttemptEvent], None] | None,
        pacer: Pacer | None,
        check_amounts: bool,
        observer: Observer | None = None,
    ) -> None:
        self.base = base_url
        self._base_path = base_url.raw_path.rstrip("/")
        self.headers = headers
        self.connection_limit = connection_limit
        self.policy = policy
        # The calls in flight, kept by the retry loop, so that close() can wait for them and
        # cut off the rest.
        self.in_flight = InFlight()
        self.retrier = Retrier(budget, on_attempt, in_flight=self.in_flight)
        self.pacer = pacer
        self.check_amounts = check_amounts
        self.observer = observer
        self._borrowed = session
        self._request_headers: Mapping[str, str] = headers if session is not None else {}
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state = _State.UNOPENED

    @property
    def state(self) -> str:
        return self._state.value

    @property
    def closing(self) -> bool:
        """True from the moment ``close()`` begins: no new call is accepted."""
        return self._state in (_State.CLOSING, _State.CLOSED)

    # --- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._state in (_State.CLOSING, _State.CLOSED):
            raise ClientClosedError("this KlarnaClient is closed; make a new one")
        if self._state is _State.OPEN:
            return
        self._loop = asyncio.get_running_loop()
        borrowed = self._borrowed
        if borrowed is not None:
            if borrowed.closed:
                raise RuntimeError("the aiohttp session given to KlarnaClient is closed")
            # Settings of a borrowed session that would change what we send or read.
            if borrowed._base_url is not None:  # no public accessor
                raise ValueError("the aiohttp session given to KlarnaClient must have no base_url")
            if borrowed.auth is not None:
                raise ValueError(
                    "the aiohttp session given to KlarnaClient must have no auth: the client "
                    "sends its own Authorization header"
                )
            self._session = borrowed
        else:
            self._session = aiohttp.ClientSession(
                headers=self.headers,
                connector=aiohttp.TCPConnector(
                    limit=self.connection_limit,
                    limit_per_host=self.connection_limit,
                    ttl_dns_cache=300,
                    keepalive_timeout=30,
                ),
                raise_for_status=False,
            )
        self._state = _State.OPEN

    async def close(self, timeout: float | None = None) -> None:
        """Let calls in flight finish within ``timeout`` seconds (default: until their own
        deadlines), cut off the rest, then close the pool (not a borrowed session)."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSING
        in_flight = self.in_flight
        me = asyncio.current_task()
        others = [task for task in in_flight.calls if task is not me]
        if others:
            if timeout is None:
                timeout = max(in_flight.calls[task] for task in others) - self.retrier.clock()
            if not await in_flight.settle(timeout, besides=me):
                still = [task for task in in_flight.calls if task is not me and not task.done()]
                # Closed first: a call cut off must not start another attempt.
                in_flight.close()
                logger.warning(
                    "KlarnaClient closing: cutting off %d calls still in flight; each ends as "
                    "OutcomeUnknownError if it may have acted",
                    len(still),
                )
                for task in still:
                    in_flight.cut.add(task)
                    task.cancel()
                # Each cut-off call ends at once (the retry loop takes the cancellation back).
                await in_flight.settle(5.0, besides=me)
        in_flight.close()
        self._state = _State.CLOSED
        session, self._session = self._session, None
        if session is not None and self._borrowed is None:
            await session.close()

    def _ready_session(self) -> aiohttp.ClientSession:
        if self._state is not _State.OPEN or self._session is None:
            if self._state in (_State.CLOSING, _State.CLOSED):
                raise ClientClosedError("this KlarnaClient is closed; make a new one")
            raise RuntimeError(
                "KlarnaClient is not open: use `async with KlarnaClient(...) as client:` "
                "or `await client.open()` first"
            )
        if asyncio.get_running_loop() is not self._loop:
            raise RuntimeError(
                "KlarnaClient was opened on another event loop; open one client per loop "
                "(e.g. in your app's lifespan, or per test)"
            )
        return self._session

    # --- one call -------------------------------------------------------------------------------

    @overload
    def request(
        self,
        endpoint: Endpoint,
        param: str | tuple[str, ...] | None,
        *,
        body: bytes | None,
        model: type[T] | Reader[T],
        retry: RetryPolicy | None = None,
        idempotency_key: str | None = None,
        after_unknown: bool = False,
    ) -> Awaitable[tuple[T, int]]: ...

    @overload
    def request(
        self,
        endpoint: Endpoint,
        param: str | tuple[str, ...] | None,
        *,
        body: bytes | None,
        model: None,
        retry: RetryPolicy | None = None,
        idempotency_key: str | None = None,
        after_unknown: bool = False,
    ) -> Awaitable[tuple[None, int]]: ...

    def request(
        self,
        endpoint: Endpoint,
        param: str | tuple[str, ...] | None,
        *,
        body: bytes | None,
        model: type[T] | Reader[T] | None,
        retry: RetryPolicy | None = None,
        idempotency_key: str | None = None,
        after_unknown: bool = False,
    ) -> Awaitable[tuple[T | None, int]]:
        """One call of ``endpoint``, to await: its result (None when ``model`` is None) and the
        number of attempts sent. ``body`` goes out unchanged on every attempt.

        Everything checked before anything is sent is checked here, before it returns: the
        client is open on this loop, the path parameter and the idempotency key are valid
        (``ValueError``, ``TypeError``, ``ClientClosedError``, ``RuntimeError``). So a caller
        that must tell "never sent" apart (a batch) calls it, then awaits what it returns. An
        operation with :attr:`Safety.IDEMPOTENCY_KEY` always sends a key: the caller's, or a
        UUID4 made once for this call. ``model`` is the class a 2xx JSON body decodes to, a
        :data:`Reader`, or None for an answer without a body.

        Not a coroutine itself: what it returns is ``Retrier.run``'s own, so a call's await
        chain is as short as it can be.
        """
        session = self._session
        if (
            session is None
            or self._state is not _State.OPEN
            or (asyncio.get_running_loop() is not self._loop)
        ):
            session = self._ready_session()  # raises the error that says what is wrong
        safety = endpoint.safety
        memory_key: str | None = None
        headers = self._request_headers
        if safety is Safety.IDEMPOTENCY_KEY:
            if idempotency_key is None:
                idempotency_key = str(uuid.uuid4())
            elif idempotency_key.__class__ is not str or _KEY.fullmatch(idempotency_key) is None:
                check_idempotency_key(idempotency_key)  # raises the error that says why
            memory_key = idempotency_key
            headers = {**headers, "Klarna-Idempotency-Key": idempotency_key}
        elif idempotency_key is not None:
            raise ValueError(f"{endpoint.operation} takes no idempotency key")
        elif safety is Safety.SINGLE_USE_TOKEN and isinstance(param, str):
            # Remembered by a hash: the memory must not keep usable tokens.
            memory_key = "token:" + hashlib.blake2b(param.encode(), digest_size=16).hexdigest()
        # Percent-encoded already (path_param): yarl need not quote it again. A token that needs
        # no encoding (a UUID: nearly every call) is joined here, without two more calls.
        if endpoint.single and isinstance(param, str) and _UNRESERVED.fullmatch(param):
            path = endpoint.prefix + param + endpoint.suffix
        else:
            path = endpoint.path(param)
        url = self.base.with_path(self._base_path + path, encoded=True)
        pacer = self.pacer
        transmit: Send = send_once
        trace: CallObserver | None = None
        if self.observer is not None:
            # Telemetry sees the call from here to its end (see _traced).
            trace = self.observer.call(endpoint, idempotency_key)
            transmit = trace.transport(send_once)
        running = self.retrier.run(
            endpoint,
            param,
            retry or self.policy,
            idempotency_key,
            functools.partial(transmit, session, endpoint.method, url, headers, body),
            functools.partial(_read, model, pacer),
            memory_key,
            after_unknown,
            pacer,
            trace.wait if trace is not None else None,
        )
        return running if trace is None else _traced(running, trace)


async def _traced(running: Awaitable[tuple[T, int]], trace: CallObserver) -> tuple[T, int]:
    """A call under telemetry: its end, success or error, is reported once."""
    try:
        outcome = await running
    except BaseException as error:
        trace.failed(error)
        raise
    trace.succeeded(outcome[0])
    return outcome


def _read(model: type[T] | Reader[T] | None, pacer: Pacer | None, answer: RawResponse) -> T | None:
    """One attempt's answer as its result (None when ``model`` is None) or its typed error."""
    status, headers, payload = answer
    if pacer is not None:
        _observe(pacer, status, headers)
    if 200 <= status < 300:
        if model is None:
            return None
        if isinstance(model, type):
            return decode_success(status, headers, payload, model)
        return model(status, headers, payload)
    raise api_error(status, headers, payload)


def _observe(pacer: Pacer, status: int, headers: Mapping[str, str]) -> None:
    try:
        pacer.observe(status, headers)
    except Exception as exc:  # a pacer must never change an outcome
        logger.warning("rate limiter's observe() raised %s; ignored", type(exc).__name__)
