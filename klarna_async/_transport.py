"""One HTTP attempt over aiohttp: bytes out; status, headers and bytes in.

This is the only module that knows aiohttp's exceptions. It turns them into our
:class:`TransportError` family and decides one thing the retry layer depends on: whether the
request may have reached Klarna (``maybe_sent``). Only a connection that could not be opened is
certainly unsent; everything after that is assumed to have arrived.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TypeAlias

import aiohttp
from yarl import URL

from klarna_async._errors import ConnectError, RequestTimeoutError, TransportError

__all__ = ["RawResponse", "send"]


#: An answer as ``(status, headers, body)``: a plain tuple, because a NamedTuple's constructor
#: is Python code that every request would pay for.
RawResponse: TypeAlias = tuple[int, Mapping[str, str], bytes]


_TIMEOUTS: dict[float, aiohttp.ClientTimeout] = {}


def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    # Most attempts use their policy's own attempt timeout: one object each, not one per
    # request. Retries use what is left of a deadline, a new value each time, so the cache is
    # emptied when it fills (the policies' values come straight back).
    found = _TIMEOUTS.get(seconds)
    if found is None:
        if len(_TIMEOUTS) >= 64:
            _TIMEOUTS.clear()
        # At least a millisecond: a total of 0 would mean no timeout at all to aiohttp.
        found = _TIMEOUTS[seconds] = aiohttp.ClientTimeout(total=max(seconds, 0.001))
    return found


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: URL,
    headers: Mapping[str, str],
    body: bytes | None,
    timeout: float,
) -> RawResponse:
    """Make one request and read the whole answer within ``timeout`` seconds."""
    try:
        async with session.request(
            method,
            url,
            data=body,
            headers=headers,
            timeout=_timeout(timeout),
            allow_redirects=False,
        ) as response:
            payload = await response.read()
            return response.status, response.headers, payload
    except aiohttp.ConnectionTimeoutError as exc:
        raise RequestTimeoutError(
            f"could not connect within {timeout:.3g} s", maybe_sent=False
        ) from exc
    except aiohttp.ClientConnectorError as exc:
        # Refused, DNS, TLS handshake: the request was never written.
        raise ConnectError(f"could not connect: {exc.os_error.strerror or exc}") from exc
    except (TimeoutError, aiohttp.SocketTimeoutError) as exc:
        raise RequestTimeoutError(f"no complete answer within {timeout:.3g} s") from exc
    except aiohttp.ServerDisconnectedError as exc:
        raise TransportError("the server closed the connection before answering") from exc
    except aiohttp.ClientError as exc:
        # The type name only: some aiohttp errors print the URL, which holds customer tokens.
        raise TransportError(f"connection failed: {type(exc).__name__}") from exc
    except (ConnectionError, asyncio.IncompleteReadError) as exc:  # pragma: no cover - belt
        raise TransportError(f"connection failed: {type(exc).__name__}") from exc
