"""KlarnaClient: the configuration, the lifecycle, and the resources wired to one request path.

The client is the top of the library's layers (below it: the resources, the batch runner, the
request path, retries, transport); see ``klarna_async/__init__.py`` for the map.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Self

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
from klarna_async._ratelimit import Pacer, RateLimiter
from klarna_async._request import Requester
from klarna_async._resources.customer_tokens import CustomerTokens
from klarna_async._resources.orders import Orders
from klarna_async._resources.payments import Payments
from klarna_async._retry import AttemptEvent, RetryBudget, RetryPolicy
from klarna_async._telemetry import Telemetry

__all__ = ["KlarnaClient"]


class _Default(enum.Enum):
    #: "Whatever the client decides", distinct from an explicit None (= off).
    TOKEN = 0


DEFAULT = _Default.TOKEN


class KlarnaClient:
    """An async client for Klarna's Payments, Customer Token and Order Management APIs.

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
        telemetry: OpenTelemetry spans and metrics (:class:`Telemetry`, the ``otel`` extra);
            ``None`` (the default): none, and nothing of OpenTelemetry is imported.
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
        telemetry: Telemetry | None = None,
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
        # Built once: every request of this client sends these same headers.
        headers: Mapping[str, str] = {
            "Authorization": self._credentials.authorization_header(),
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": user_agent(user_agent_extra),
        }
        self._requester = Requester(
            base_url=self._base,
            headers=headers,
            session=session,
            connection_limit=connection_limit,
            policy=policy,
            budget=self.retry_budget,
            on_attempt=on_attempt,
            pacer=self.rate_limiter,
            check_amounts=check_amounts,
            observer=None
            if telemetry is None
            else telemetry._observer(
                region=self.region, environment=self.environment, base_url=self._base
            ),
        )
        self._payments = Payments(self._requester)
        self._customer_tokens = CustomerTokens(self._requester)
        self._orders = Orders(self._requester)

    @property
    def payments(self) -> Payments:
        """The Klarna Payments API (:class:`Payments`): sessions, one-time orders on an
        authorization token, customer tokens (``create_customer_token``)."""
        return self._payments

    @property
    def customer_tokens(self) -> CustomerTokens:
        """The Customer Token API (:class:`CustomerTokens`): read and cancel tokens, charge
        them (recurring orders with an idempotency key), ``charge_many`` for batches."""
        return self._customer_tokens

    @property
    def orders(self) -> Orders:
        """The Order Management API (:class:`Orders`): read an order, capture, refund, cancel,
        release and extend it, update it, ``capture_many`` for the fulfilment batch, and
        ``verify_notification`` for a pending order's fraud decision."""
        return self._orders

    def __repr__(self) -> str:
        return (
            f"<KlarnaClient {self._requester.state} {self.base_url} "
            f"username={self._credentials.username!r}>"
        )

    # --- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> Self:
        """Make the connection pool (or adopt the borrowed session) on the running loop."""
        await self._requester.open()
        return self

    async def aclose(self, timeout: float | None = None) -> None:
        """Close the client. Idempotent.

        New calls are refused at once (:class:`ClientClosedError`). Calls in flight may finish
        within ``timeout`` seconds (default: until their own deadlines); calls still running
        then are cut off and end as :class:`OutcomeUnknownError` when an attempt may have
        acted, never as "not charged". Then the pool is closed (a borrowed session is left
        open).
        """
        await self._requester.close(timeout)

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
        """True once :meth:`aclose` has begun."""
        return self._requester.closing
