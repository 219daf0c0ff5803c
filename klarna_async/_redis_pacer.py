"""One rate limit for every process of a merchant: a :class:`Pacer` whose GCRA lives in Redis.

Klarna counts a merchant's requests across all of its traffic, so N processes that each pace
themselves at the limit send N times the limit. :class:`RedisRateLimiter` keeps the GCRA's state
(the theoretical arrival time, TAT, of the next request) in one Redis key per merchant and
environment, updated by one Lua script that runs atomically in Redis: every process and machine
that uses the same key takes its turns from the same sequence. A process asks Redis for a turn,
then sleeps locally until it comes.

What it guarantees, and what it does not:

* While Redis answers, everyone using the key together sends at most ``rate`` requests per second
  (bursts of ``burst``), measured on Redis's clock; a turn arrives a round trip late at worst,
  never early.
* A pause Klarna asks for (429, or ``X-Ratelimit-Remaining`` running low) applies at once in the
  process that saw it and is pushed to Redis in the background, so the other processes take no
  turn before it ends. Turns already handed out before the push lands are still used.
* When Redis refuses the connection, or does not answer within ``timeout`` twice in a row, the
  process paces itself locally at a safe share, ``rate / max(expected_processes, live)``
  (``live``: how many limiters on the key Redis last counted), logs one warning, asks Redis again
  every ``retry_after`` seconds and says so once when Redis answers again; for ``retry_after``
  more seconds it then keeps to the stricter of both paces, while the others come back. It never
  sends unpaced and never raises for Redis's sake. The share is only as safe as
  ``expected_processes`` is true; and while only some processes cannot reach Redis, the others
  still share the whole rate, so together they may send up to one share per cut-off process
  more.

The ``redis`` package (the ``[redis]`` extra) is imported only when a limiter is made.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import math
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from klarna_async._config import DEFAULT_RATE_SHARE, DOCUMENTED_RATE_LIMITS, Environment
from klarna_async._ratelimit import MAX_PAUSE, server_pause

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["RedisRateLimiter"]


class _Unreachable(enum.Enum):
    #: What a turn from Redis is when Redis did not answer.
    TOKEN = 0


_UNREACHABLE = _Unreachable.TOKEN

logger = logging.getLogger("klarna_async")

INSTALL_HINT = "pip install 'klarna-async[redis]'"

#: A limiter that took a turn within this many seconds counts as live (for the outage share).
LIVE_WINDOW = 60.0
#: A limiter tells Redis it is live at most this often, in seconds.
ANNOUNCE_EVERY = 1.0
#: A pause ending within this many seconds of one already pushed to Redis is not pushed again:
#: a spent window answers every request with the same reset, and one push says it for all.
PAUSE_SLACK = 0.05
#: Connections of the pool made from a URL: turns take well under a millisecond each, so a few
#: connections serve any burst of acquirers (who wait for a free one within ``timeout``).
POOL_SIZE = 16
#: Larger waits than this are sent to Redis as this (Lua reads no "inf").
_FOREVER = 1e9

# The GCRA of one merchant's requests, shared by every process. KEYS[1] holds the TAT: the
# time, on Redis's clock in seconds, at which the request after the last granted one may go
# (burst - 1 intervals earlier with a burst). KEYS[2] is a sorted set of live limiters.
# ARGV: interval, burst offset ((burst - 1) * interval), take (1: reserve a turn; 0: only apply
# the pause), max_wait, pause (seconds from now before which nobody may send; 0: none), member
# (this limiter's id to count it live, or ''), live window. Returns {granted 0/1, the wait in
# seconds as text (Lua numbers become integers in replies), live limiters or -1}.
SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local interval = tonumber(ARGV[1])
local offset = tonumber(ARGV[2])
local stored = redis.call('GET', KEYS[1])
local tat = now
if stored then
  stored = tonumber(stored)
  if stored > now then tat = stored end
end
local moved = false
local pause = tonumber(ARGV[5])
if pause > 0 and tat < now + pause + offset then
  tat = now + pause + offset
  moved = true
end
local wait = tat - offset - now
local granted = 0
if ARGV[3] == '1' and wait <= tonumber(ARGV[4]) then
  granted = 1
  tat = tat + interval
  moved = true
end
if moved then
  redis.call('SET', KEYS[1], string.format('%.6f', tat), 'PX',
             math.ceil((tat - now) * 1000) + 1000)
end
local live = -1
if ARGV[6] ~= '' then
  local window = tonumber(ARGV[7])
  redis.call('ZADD', KEYS[2], now, ARGV[6])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
  redis.call('PEXPIRE', KEYS[2], math.ceil(window * 1000))
  live = redis.call('ZCARD', KEYS[2])
end
return {granted, string.format('%.6f', wait), live}
"""
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode(), usedforsecurity=False).hexdigest()


def _import_redis() -> Any:
    try:
        import redis.asyncio
        import redis.asyncio.retry
        import redis.backoff
        import redis.exceptions
    except ImportError as error:
        raise ImportError(f"RedisRateLimiter needs the redis package: {INSTALL_HINT}") from error
    return redis


def redacted_url(url: str) -> str:
    """``url`` without its password or query (which may hold one): safe to log and show."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparsable redis URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    if parts.username:
        netloc = f"{unquote(parts.username)}:***@{netloc}"
    elif parts.password:
        netloc = f":***@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def url_password(url: str) -> str | None:
    """The password a Redis URL carries (in its user info or its query), or None."""
    parts = urlsplit(url)
    password = parts.password or parse_qs(parts.query).get("password", [None])[0]
    return unquote(password) if password else None


def _describe_client(client: object) -> tuple[str, str | None]:
    """Where a given client connects (host, port, db; no password), and its password."""
    pool = getattr(client, "connection_pool", None)
    kwargs: Mapping[str, Any] = getattr(pool, "connection_kwargs", None) or {}
    password = kwargs.get("password")
    db = kwargs.get("db", 0)
    if kwargs.get("path"):
        return f"unix://{kwargs['path']}?db={db}", password
    if kwargs.get("host"):
        return f"redis://{kwargs['host']}:{kwargs.get('port', 6379)}/{db}", password
    return f"<{type(client).__name__}>", password


class RedisRateLimiter:
    """A pacer (the client's ``rate_limit``) shared through Redis by every process of a merchant.

    Give the same limiter settings to every process of a merchant and pass the limiter as the
    client's ``rate_limit``::

        limiter = RedisRateLimiter(
            "redis://redis.internal:6379/0", merchant=USERNAME, environment="production"
        )
        async with limiter, KlarnaClient(
            username=USERNAME, password=PASSWORD, environment="production", rate_limit=limiter
        ) as client:
            ...

    Args:
        url_or_client: a ``redis://``/``rediss://``/``unix://`` URL (the limiter then makes its
            own small connection pool, with ``timeout`` as its socket timeouts and one immediate
            retry on a new connection, and closes it in :meth:`aclose`), or a
            ``redis.asyncio.Redis`` client to borrow (left open; every call on it is still cut
            off after ``timeout``).
        rate: requests per second for the merchant *in all*. By default 90 % of Klarna's
            documented limit in ``environment`` (180/s in production, 45/s in playground).
        merchant: the Klarna API username: everyone with the same merchant, environment and
            ``key_prefix`` shares one limit.
        environment: ``"production"`` or ``"playground"``; the two are limited separately.
        burst: how many requests may go at once after a quiet spell (1: evenly spaced).
        expected_processes: how many processes (on all machines) share the limit. During a
            Redis outage each one paces itself at ``rate / max(expected_processes, live)``,
            where ``live`` is the number of limiters on this key Redis last counted (those
            that took a turn within the last minute). Say how many you run: a share too large
            for the real number only costs 429s during an outage, a share too small only
            throughput.
        timeout: the longest any Redis call may take, in seconds. A turn asks twice before the
            limiter counts Redis as unreachable (a busy event loop can make a quick Redis look
            slow once); a refused connection counts at once. A caller whose ``max_wait`` is
            shorter gets None instead of a verdict on Redis.
        retry_after: during an outage, seconds between attempts to reach Redis again.
        key_prefix: the start of the Redis keys: ``{key_prefix}:{{environment}:{merchant}}``
            holds the GCRA's state (a string, expiring when idle), ``...:live`` the sorted set
            of live limiters.

    It belongs to the event loop it is first used on, like the client. ``repr`` and logs show
    where Redis is, never its password.
    """

    def __init__(
        self,
        url_or_client: str | redis.asyncio.Redis,
        rate: float | None = None,
        *,
        merchant: str,
        environment: Environment | str,
        burst: float = 1.0,
        expected_processes: int = 4,
        timeout: float = 0.2,
        retry_after: float = 2.0,
        key_prefix: str = "klarna_async:pace",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        module = _import_redis()
        self.environment = Environment(environment)
        if rate is None:
            rate = DOCUMENTED_RATE_LIMITS[self.environment] * DEFAULT_RATE_SHARE
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be > 0 requests per second, got {rate!r}")
        if not (burst >= 1 and math.isfinite(burst)):
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        if not expected_processes >= 1:
            raise ValueError(f"expected_processes must be >= 1, got {expected_processes!r}")
        if not (0 < timeout <= 10):
            raise ValueError(f"timeout must be within (0, 10] seconds, got {timeout!r}")
        if not (0 < retry_after <= 300):
            raise ValueError(f"retry_after must be within (0, 300] seconds, got {retry_after!r}")
        if not merchant:
            raise ValueError("merchant must be the Klarna username, a non-empty string")
        self.rate = float(rate)
        self.burst = float(burst)
        self.merchant = merchant
        self.expected_processes = expected_processes
        self.timeout = float(timeout)
        self.retry_after = float(retry_after)
        # The hash tag keeps both keys in one slot of a Redis Cluster.
        self.key = f"{key_prefix}:{{{self.environment.value}:{merchant}}}"
        self._keys = (self.key, self.key + ":live")
        self._interval = 1.0 / self.rate
        self._offset = (self.burst - 1.0) * self._interval
        self._clock = clock
        self._sleep = sleep

        self._redis: Any
        if isinstance(url_or_client, str):
            self._where = redacted_url(url_or_client)
            self._password = url_password(url_or_client)
            pool = module.asyncio.BlockingConnectionPool.from_url(
                url_or_client,
                max_connections=POOL_SIZE,
                timeout=self.timeout,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                # One retry at once, on a new connection: a pooled connection that Redis closed
                # (after a restart) is no outage. Retrying longer is this limiter's business
                # (after retry_after), not each call's.
                retry=module.asyncio.retry.Retry(module.backoff.NoBackoff(), 1),
            )
            self._redis = module.asyncio.Redis.from_pool(pool)
            self._owns_redis = True
        elif isinstance(url_or_client, module.asyncio.Redis | module.asyncio.RedisCluster):
            self._where, self._password = _describe_client(url_or_client)
            self._redis = url_or_client
            self._owns_redis = False
        else:
            raise TypeError(
                "RedisRateLimiter needs a redis:// URL or a redis.asyncio.Redis client, "
                f"not {type(url_or_client).__name__}"
            )
        self._noscript: type[Exception] = module.exceptions.NoScriptError
        self._member = f"{os.getpid()}-{uuid.uuid4().hex}"

        self.waited = 0.0  # seconds spent waiting for turns in all, for reports
        self.outages = 0  # how many times Redis became unreachable
        self.live: int | None = None  # limiters on this key that Redis last counted
        self._announced = -math.inf
        self._paused_until = -math.inf  # local: nobody here sends before this
        self._pushed_until = -math.inf  # the latest pause end pushed to Redis
        self._push_task: asyncio.Task[None] | None = None
        self._pushes = 0
        self._last_turn = -math.inf  # the latest turn Redis gave this process
        # The local GCRA at the outage share (set again when an outage starts, from the live
        # count): in charge while Redis is away, and during the hand-over after it is back
        # (until every other process has had the time to notice).
        self._local_interval = self._interval * expected_processes
        self._local_tat = -math.inf
        self._down_until: float | None = None  # None: Redis answers; else: next attempt at
        self._down_since = 0.0
        self._probing = False
        self._grace_until = -math.inf

    def __repr__(self) -> str:
        mode = "shared" if self._down_until is None else "local (Redis unreachable)"
        return (
            f"<RedisRateLimiter {self.rate:g}/s burst={self.burst:g} merchant={self.merchant!r} "
            f"{self.environment.value} redis={self._where} {mode}>"
        )

    @property
    def shared(self) -> bool:
        """Whether turns currently come from Redis (False: paced locally during an outage)."""
        return self._down_until is None

    @property
    def fallback_rate(self) -> float:
        """The local pace during a Redis outage: ``rate / max(expected_processes, live)``."""
        return self.rate / max(self.expected_processes, self.live or 0)

    # --- the Pacer protocol ---------------------------------------------------------------------

    async def acquire(self, max_wait: float = math.inf) -> float | None:
        """Wait for this request's turn and return the seconds waited; ``None`` at once, taking
        no turn, when the turn is more than ``max_wait`` away (including the trip to Redis)."""
        start = self._clock()
        if self._paused_until - start > max_wait:
            return None
        down = self._down_until
        turn: float | _Unreachable | None = _UNREACHABLE
        if down is None:
            if start < self._grace_until:
                return await self._handover_turn(start, max_wait)
            turn = await self._shared_turn(start, max_wait)
        elif start >= down and not self._probing:
            self._probing = True  # one probe at a time; the others pace locally meanwhile
            try:
                turn = await self._shared_turn(start, max_wait, probe=True)
            finally:
                self._probing = False
        if turn is _UNREACHABLE:
            return await self._local_turn(start, max_wait)
        return turn

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Learn from an answer: a pause Klarna asks for applies here at once and reaches the
        other processes through Redis (pushed in the background). Never raises."""
        try:
            seconds = server_pause(status, headers)
            if seconds is not None:
                self.pause(seconds)
        except Exception:  # observing must never fail a request
            logger.debug("RedisRateLimiter could not read an answer's headers", exc_info=True)

    def pause(self, seconds: float) -> None:
        """Nobody using this key sends for ``seconds`` (at most :data:`MAX_PAUSE`) from now."""
        if not seconds > 0:
            return
        resume = self._clock() + min(seconds, MAX_PAUSE)
        if resume <= self._paused_until:
            return
        self._paused_until = resume
        if resume > self._local_tat:
            self._local_tat = resume
        if self._down_until is None and resume > self._pushed_until + PAUSE_SLACK:
            self._schedule_push()

    # --- lifecycle ------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop the background pause push and close the connection pool made from a URL (a
        borrowed client stays open). Idempotent."""
        task, self._push_task = self._push_task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                if (current := asyncio.current_task()) is not None and current.cancelling():
                    raise
        if self._owns_redis:
            self._owns_redis = False
            await self._redis.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- turns ----------------------------------------------------------------------------------

    async def _shared_turn(
        self, start: float, max_wait: float, *, probe: bool = False
    ) -> float | _Unreachable | None:
        """A turn from Redis: the seconds waited, None (refused), or _UNREACHABLE."""
        reply = await self._ask(start, max_wait, attempts=1 if probe else 2)
        if reply is None or reply is _UNREACHABLE:
            return reply
        granted, wait = reply
        if probe:
            self._reachable()  # the hand-over starts with this turn
        if not granted:
            return None
        return await self._use_turn(start, max_wait, wait, handover=probe)

    async def _handover_turn(self, start: float, max_wait: float) -> float | None:
        """A turn just after an outage: other processes may still pace themselves locally, so
        this one keeps to its local share too until they have had the time to come back.

        Local turn first; then a Redis turn, taken only when it comes within one local interval
        (so each send is counted in Redis when it happens: a Redis turn taken early and used
        late would let this process send on top of the shared pace later). A shared turn
        further away (a pause) is waited for locally, and asked for again.
        """
        while True:
            if await self._local_turn(start, max_wait) is None:
                return None
            reply = await self._ask(start, max_wait, within=self._local_interval, attempts=2)
            if reply is None:
                return None
            if reply is _UNREACHABLE:
                return self._clock() - start  # the local turn just waited for is this one
            granted, wait = reply
            if granted:
                return await self._use_turn(start, max_wait, wait, handover=True)
            now = self._clock()
            if now - start + wait > max_wait:
                return None
            self._local_tat = max(self._local_tat, now + wait)

    async def _use_turn(
        self, start: float, max_wait: float, wait: float, *, handover: bool = False
    ) -> float | None:
        """Sleep until a turn Redis gave (``wait`` seconds after its answer). In the hand-over
        the local pace counts from when the request goes, too."""
        now = self._clock()
        wait = max(wait, 0.0)
        if now - start + wait > max_wait:
            # The reply came too late to use the turn in time: it is lost (one interval of
            # slack for everyone), never used early.
            return None
        self._last_turn = max(self._last_turn, now + wait)
        if handover:
            self._local_tat = max(self._local_tat, now + wait + self._local_interval)
        if wait > 0:
            self.waited += wait
            await self._sleep(wait)
        return now - start + wait

    async def _ask(
        self, start: float, max_wait: float, *, within: float = math.inf, attempts: int
    ) -> tuple[bool, float] | _Unreachable | None:
        """Run the script to take a turn no further than ``within`` or the caller's max_wait:
        (granted, wait), or None when max_wait leaves no time to ask, or _UNREACHABLE."""
        attempt = 0
        while True:
            attempt += 1
            now = self._clock()
            budget = max_wait - (now - start)
            limit = min(self.timeout, budget)
            if limit <= 0:
                return None  # no time left even to ask
            announce = now - self._announced >= ANNOUNCE_EVERY
            if announce:
                self._announced = now  # before the call: concurrent turns need not announce too
            try:
                async with asyncio.timeout(limit):
                    reply = await self._eval(
                        take=True,
                        max_wait=min(budget, within),
                        pause=max(self._paused_until - now, 0.0),
                        announce=announce,
                    )
                granted, wait, live = int(reply[0]) == 1, float(reply[1]), int(reply[2])
            except TimeoutError:
                if limit < self.timeout:
                    # The caller could not wait as long as Redis may take: no verdict on Redis.
                    return None
                if attempt < attempts:
                    # Once more: an event loop busy elsewhere (a process starting up) makes a
                    # quick Redis look slow, and one process pacing alone costs everyone 429s.
                    continue
                reason = f"no answer within {self.timeout:g} s, {attempts} times"
            except Exception as error:  # any failure of Redis means local pacing
                # (A connection Redis had closed was retried at once on a new one already.)
                reason = f"{type(error).__name__}: {error}"
            else:
                if live >= 0:
                    self.live = live
                return granted, wait
            self._unreachable(reason)
            return _UNREACHABLE

    async def _local_turn(self, start: float, max_wait: float) -> float | None:
        """A turn from the local GCRA at the outage share."""
        now = self._clock()
        tat = max(self._local_tat, now, self._paused_until)
        wait = tat - now
        if now - start + wait > max_wait:
            return None
        self._local_tat = tat + self._local_interval
        if wait > 0:
            self.waited += wait
            await self._sleep(wait)
        return now - start + wait

    async def _eval(self, *, take: bool, max_wait: float, pause: float, announce: bool) -> Any:
        """Run the script: by its hash, and by its text when Redis does not have it (yet)."""
        args = (
            f"{self._interval:.9f}",
            f"{self._offset:.9f}",
            "1" if take else "0",
            f"{min(max(max_wait, 0.0), _FOREVER):.6f}",
            f"{min(pause, MAX_PAUSE):.6f}",
            self._member if announce else "",
            f"{LIVE_WINDOW:g}",
        )
        try:
            return await self._redis.evalsha(SCRIPT_SHA, 2, *self._keys, *args)
        except self._noscript:
            # A restarted or flushed Redis forgets scripts; EVAL also caches it again.
            return await self._redis.eval(SCRIPT, 2, *self._keys, *args)

    # --- pauses for everyone --------------------------------------------------------------------

    def _schedule_push(self) -> None:
        if self._push_task is not None and not self._push_task.done():
            return  # the running push sends the latest pause when its call returns
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a synchronous caller): the pause stays local
        self._push_task = loop.create_task(self._push_pauses())

    async def _push_pauses(self) -> None:
        """Move the shared TAT past the latest local pause, until no later one is waiting.

        A push that fails is dropped (the pause still holds here, and the next signal pushes
        again); whether Redis is down is for the turns to find out, not for a push.
        """
        try:
            while self._down_until is None:
                resume = self._paused_until
                seconds = resume - self._clock()
                if seconds <= 0 or resume <= self._pushed_until + PAUSE_SLACK:
                    return
                async with asyncio.timeout(self.timeout):
                    await self._eval(take=False, max_wait=0.0, pause=seconds, announce=False)
                self._pushes += 1
                self._pushed_until = resume
        except Exception as error:  # a push must never raise
            reason = "no answer" if isinstance(error, TimeoutError) else type(error).__name__
            logger.debug("RedisRateLimiter could not share a pause (%s)", reason)

    # --- outage and recovery --------------------------------------------------------------------

    def _unreachable(self, reason: str) -> None:
        now = self._clock()
        first = self._down_until is None
        self._down_until = now + self.retry_after
        self._grace_until = -math.inf
        if not first:
            return
        self.outages += 1
        self._down_since = now
        self._local_interval = 1.0 / self.fallback_rate
        # Start the local pace after every turn Redis already gave this process.
        self._local_tat = max(self._local_tat, self._last_turn + self._local_interval)
        if self._password:
            reason = reason.replace(self._password, "***")
        logger.warning(
            "Redis rate limiter at %s unreachable (%s): pacing merchant %r (%s) locally at "
            "%.3g requests/s, 1/%d of %g/s, until Redis answers again (asking every %g s)",
            self._where,
            reason,
            self.merchant,
            self.environment.value,
            self.fallback_rate,
            max(self.expected_processes, self.live or 0),
            self.rate,
            self.retry_after,
        )

    def _reachable(self) -> None:
        now = self._clock()
        self._down_until = None
        # Others may ask Redis again up to retry_after (plus a timeout) later than this one.
        self._grace_until = now + self.retry_after + self.timeout
        logger.warning(
            "Redis rate limiter at %s answers again after %.1f s: pacing merchant %r (%s) "
            "through Redis again",
            self._where,
            now - self._down_since,
            self.merchant,
            self.environment.value,
        )
