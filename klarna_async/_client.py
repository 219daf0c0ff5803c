"""KlarnaClient: configuration, the connection pool's lifecycle, and the resources wired in."""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import re
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Self, TypeVar
from urllib.parse import quote

import aiohttp
import attrs
from yarl import URL

from klarna_async._config import (
    DEFAULT_RATE_SHARE,
    DOCUMENTED_RATE_LIMITS,
    Credentials,
    Environment,
    Region,
    base_url_for,
    user_agent,
)
from klarna_async._errors import KlarnaError
from klarna_async._ratelimit import Pacer, RateLimiter
from klarna_async._responses import api_error, decode_success
from klarna_async._retry import (
    AttemptEvent,
    Retrier,
    RetryBudget,
    RetryPolicy,
    Safety,
    log_cancelled,
    mask_token,
)
from klarna_async._transport import RawResponse, send

if TYPE_CHECKING:
    from klarna_async._resources.customer_tokens import CustomerTokens
    from klarna_async._resources.payments import Payments

__all__ = ["KlarnaClient"]

T = TypeVar("T")
logger = logging.getLogger("klarna_async")


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


class _Default(enum.Enum):
    #: "Whatever the client decides", distinct from an explicit None (= off).
    TOKEN = 0


DEFAULT = _Default.TOKEN


class KlarnaClient:
    """An async client for Klarna's Payments and Customer Token APIs.

    Open it once (``async with`` or :meth:`open`) and share it: it holds one aiohttp connection
    pool, the retry budget and the rate limiter for every call. It belongs to the event loop it
    was opened on.

    Args:
        username, password: HTTP Basic credentials (see :class:`Credentials`).
        region: ``"eu"``, ``"na"`` or ``"oc"``.
        environment: ``"playground"`` (the default: no live money by accident) or
            ``"production"``.
        base_url: another server, such as ``klarna_async.testing.FakeKlarna().url``.
        session: an ``aiohttp.ClientSession`` to borrow instead of making one; the client then
            leaves it open on close.
        connection_limit: the size of the connection pool the client makes.
        retry: the :class:`RetryPolicy` of every call (each method takes ``retry=`` too).
        timeout, deadline: shortcuts for the policy's ``attempt_timeout`` and ``deadline``.
        retry_budget: the client-wide :class:`RetryBudget`; ``None`` turns rationing off.
        rate_limit: requests per second the client sends at most, paced client-side. By default
            90 % of Klarna's documented limit for order operations in that environment (180/s
            in production, 45/s in playground) against Klarna, none against a ``base_url``.
            ``None`` turns pacing off. Any :class:`Pacer` (e.g. one shared by several processes
            through Redis) instead of a number paces with it.
        check_amounts: check the amount arithmetic (line totals, order sums) before sending.
        on_attempt: called after every HTTP attempt with an :class:`AttemptEvent` (metrics).
        user_agent_extra: appended to the User-Agent, e.g. ``"Platform/my-shop_2.1"``.
    """

    def __init__(
        self,
        *,
        username: str,
        password: str,
        region: Region | str = Region.EU,
        environment: Environment | str = Environment.PLAYGROUND,
        base_url: str | None = None,
        session: aiohttp.ClientSession | None = None,
        connection_limit: int = 100,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
        retry_budget: RetryBudget | _Default | None = DEFAULT,
        rate_limit: float | Pacer | _Default | None = DEFAULT,
        check_amounts: bool = True,
        on_attempt: Callable[[AttemptEvent], None] | None = None,
        user_agent_extra: str | None = None,
    ) -> None:
        self._credentials = Credentials(username, password)
        self.region = Region(region)
        self.environment = Environment(environment)
        self.base_url = (base_url or base_url_for(self.region, self.environment)).rstrip("/")
        # Each call's URL is this one with its path swapped in: yarl then neither parses nor
        # quotes it again (every customer token makes a new URL string, so yarl's own cache of
        # parsed strings misses; parsing costs three times as much).
        self._base = URL(self.base_url)
        if not self._base.absolute or self._base.query_string or self._base.fragment:
            raise ValueError(
                f"base_url must be an absolute URL without query or fragment: {base_url!r}"
            )
        self._base_path = self._base.raw_path.rstrip("/")
        if connection_limit < 1:
            raise ValueError("connection_limit must be >= 1")
        self.connection_limit = connection_limit
        policy = retry or RetryPolicy()
        if timeout is not None:
            policy = attrs.evolve(policy, attempt_timeout=timeout)
        if deadline is not None:
            policy = attrs.evolve(policy, deadline=deadline)
        self.retry_policy = policy
        self.retry_budget = RetryBudget() if retry_budget is DEFAULT else retry_budget
        if rate_limit is DEFAULT:
            rate_limit = (
                None if base_url else DOCUMENTED_RATE_LIMITS[self.environment] * DEFAULT_RATE_SHARE
            )
        self.rate_limiter: Pacer | None
        if rate_limit is None or isinstance(rate_limit, Pacer):
            self.rate_limiter = rate_limit
        else:
            self.rate_limiter = RateLimiter(rate_limit)
        self.check_amounts = check_amounts
        self._retrier = Retrier(self.retry_budget, on_attempt)
        # Built once: every request of this client sends these same headers.
        self._headers: Mapping[str, str] = {
            "Authorization": self._credentials.authorization_header(),
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": user_agent(user_agent_extra),
        }
        self._borrowed = session
        # What each request passes: our own session carries the headers as its defaults; a
        # borrowed one may carry anything, so every request then brings all of ours.
        self._request_headers: Mapping[str, str] = self._headers if session is not None else {}
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state = _State.UNOPENED

        from klarna_async._resources.customer_tokens import CustomerTokens
        from klarna_async._resources.payments import Payments

        self.payments: Payments = Payments(self)
        self.customer_tokens: CustomerTokens = CustomerTokens(self)

    def __repr__(self) -> str:
        return (
            f"<KlarnaClient {self._state.value} {self.base_url} "
            f"username={self._credentials.username!r}>"
        )

    # --- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> Self:
        """Make the connection pool (or adopt the borrowed session) on the running loop."""
        if self._state is _State.CLOSED:
            raise RuntimeError("this KlarnaClient is closed; make a new one")
        if self._state is _State.OPEN:
            return self
        self._loop = asyncio.get_running_loop()
        if self._borrowed is not None:
            if self._borrowed.closed:
                raise RuntimeError("the aiohttp session given to KlarnaClient is closed")
            self._session = self._borrowed
        else:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                connector=aiohttp.TCPConnector(
                    limit=self.connection_limit,
                    limit_per_host=self.connection_limit,
                    ttl_dns_cache=300,
                    keepalive_timeout=30,
                ),
                raise_for_status=False,
            )
        self._state = _State.OPEN
        return self

    async def aclose(self) -> None:
        """Close the pool (not a borrowed session). Idempotent."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        session, self._session = self._session, None
        if session is not None and self._borrowed is None:
            await session.close()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def closed(self) -> bool:
        return self._state is _State.CLOSED

    def _ready_session(self) -> aiohttp.ClientSession:
        if self._state is not _State.OPEN or self._session is None:
            if self._state is _State.CLOSED:
                raise RuntimeError("this KlarnaClient is closed; make a new one")
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

    async def _request(
        self,
        endpoint: Endpoint,
        param: str | None,
        *,
        body: bytes | None,
        model: type[T] | None,
        retry: RetryPolicy | None,
        idempotency_key: str | None = None,
    ) -> tuple[T | None, int]:
        """Send one operation with retries; the decoded model (None for 202/204) and attempts.

        ``body`` and the headers are made once: every attempt sends the same bytes and key.
        """
        session = self._session
        if (
            session is None
            or self._state is not _State.OPEN
            or (asyncio.get_running_loop() is not self._loop)
        ):
            session = self._ready_session()  # raises the error that says what is wrong
        # Percent-encoded already (path_param): yarl need not quote it again.
        url = self._base.with_path(self._base_path + endpoint.path(param), encoded=True)
        headers = self._request_headers
        if idempotency_key is not None:
            headers = {**headers, "Klarna-Idempotency-Key": idempotency_key}
        limiter = self.rate_limiter
        debug = logger.isEnabledFor(logging.DEBUG)
        policy = retry or self.retry_policy
        retrier = self._retrier
        # The first attempt runs here, without the retry machinery: a call that succeeds at
        # once (nearly all of them) pays for none of it. Anything else is handed over to the
        # retrier with its outcome.
        started = retrier.begin()
        timeout = min(policy.attempt_timeout, policy.deadline)
        try:
            if limiter is None and not debug:
                # Nothing to pace or log: send from here, one coroutine frame fewer.
                result: T | None = _outcome(
                    await send(session, endpoint.method, url, headers, body, timeout), model, None
                )
            else:
                result = await _attempt(
                    session, endpoint, param, url, headers, body, model, limiter, debug, timeout
                )
        except KlarnaError as error:
            first = (started, started, error)
        except asyncio.CancelledError:
            log_cancelled(endpoint.describe(param), 1, endpoint.safety, idempotency_key)
            raise
        else:
            if retrier.on_attempt is not None:
                retrier.emit(
                    endpoint.operation,
                    1,
                    policy,
                    "ok",
                    None,
                    retrier.clock() - started,
                    None,
                    idempotency_key,
                    None,
                )
            return result, 1

        # Made only now: a closure here would turn every local above into a cell variable,
        # which every call would pay for.
        attempt = functools.partial(
            _attempt, session, endpoint, param, url, headers, body, model, limiter, debug
        )
        return await retrier.run(
            operation=endpoint.operation,
            target=endpoint.describe(param),
            safety=endpoint.safety,
            policy=policy,
            idempotency_key=idempotency_key,
            attempt=attempt,
            first=first,
        )

    async def _fetch(
        self,
        endpoint: Endpoint,
        param: str | None,
        model: type[T],
        *,
        body: bytes | None = None,
        retry: RetryPolicy | None = None,
    ) -> T:
        """:meth:`_request` for an operation that answers with a body."""
        result, _ = await self._request(endpoint, param, body=body, model=model, retry=retry)
        assert result is not None  # decode_success returns a model or raises
        return result


async def _attempt(
    session: aiohttp.ClientSession,
    endpoint: Endpoint,
    param: str | None,
    url: URL,
    headers: Mapping[str, str],
    body: bytes | None,
    model: type[T] | None,
    limiter: Pacer | None,
    debug: bool,
    timeout: float,
) -> T | None:
    """One HTTP attempt of a call: pace, send, and read the answer as a result or error."""
    if limiter is not None:
        await limiter.acquire(timeout)
    if debug:
        logger.debug("%s %s (timeout %.3g s)", endpoint.describe(param), endpoint.method, timeout)
    raw = await send(session, endpoint.method, url, headers, body, timeout)
    return _outcome(raw, model, limiter)


def _outcome(raw: RawResponse, model: type[T] | None, limiter: Pacer | None) -> T | None:
    """One attempt's answer as its result (None for 202/204) or its typed error."""
    status, headers, body = raw
    if limiter is not None:
        limiter.observe(status, headers)
    if 200 <= status < 300:
        return None if model is None else decode_success(status, headers, body, model)
    raise api_error(status, headers, body)


class Endpoint:
    """One Klarna operation: its name, method and path, and what repeating it can do.

    ``template`` has one ``{}`` for the path parameter, named ``what`` in errors. ``secret``
    says whether that parameter is a token that logs may show only masked.
    """

    __slots__ = ("_prefix", "_suffix", "method", "operation", "safety", "secret", "what")

    def __init__(
        self,
        operation: str,
        method: str,
        template: str,
        safety: Safety,
        what: str | None = None,
        secret: bool = True,
    ) -> None:
        self.operation = operation
        self.method = method
        self.safety = safety
        self.what = what
        self.secret = secret
        # Split once: joining three strings per call is cheaper than str.format.
        self._prefix, _, self._suffix = template.partition("{}")

    def __repr__(self) -> str:
        return f"<Endpoint {self.operation} {self.method} {self._prefix}{{}}{self._suffix}>"

    def path(self, param: str | None) -> str:
        if self.what is None:
            return self._prefix
        return self._prefix + path_param(param, self.what) + self._suffix

    def describe(self, param: str | None) -> str:
        if param is None:
            return self.operation
        return f"{self.operation} {mask_token(param) if self.secret else param}"


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
