"""One HTTP attempt over aiohttp: bytes out; status, headers and bytes in.

This is the only module that knows aiohttp's exceptions. It turns them into our
:class:`TransportError` family and decides one thing the retry layer depends on: whether the
request may have reached Klarna (``maybe_sent``). Only a connection that could not be opened is
certainly unsent; everything after that is assumed to have arrived.

aiohttp's exceptions carry the request's URL (which holds customer and authorization tokens) and
``request_info.headers`` (which holds the ``Authorization`` header). So our errors are raised
*after* the ``except`` block, never ``from`` aiohttp's: they have no ``__cause__`` and no
``__context__``, and their text names aiohttp's exception by its type only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TypeAlias

import aiohttp
from yarl import URL

from klarna_async._errors import (
    ClientClosedError,
    ConnectError,
    RequestTimeoutError,
    TransportError,
)

__all__ = ["RawResponse", "send"]


#: An answer as ``(status, headers, body)``.
RawResponse: TypeAlias = tuple[int, Mapping[str, str], bytes]


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: URL,
    headers: Mapping[str, str],
    body: bytes | None,
    timeout: float,
) -> RawResponse:
    """Make one request and read the whole answer within ``timeout`` seconds."""
    if session.closed:
        # A borrowed session its owner closed, or ours closed by KlarnaClient.aclose().
        raise ClientClosedError("the aiohttp session is closed; this attempt was not sent")
    error: TransportError
    try:
        async with session.request(
            method,
            url,
            data=body,
            headers=headers,
            # At least a millisecond: a total of 0 would mean no timeout at all to aiohttp.
            timeout=aiohttp.ClientTimeout(total=max(timeout, 0.001)),
            allow_redirects=False,
            # Ours, whatever a borrowed session says: a Klarna error is an answer to read, not
            # an exception that would pass for a transport fault (and be retried).
            raise_for_status=False,
        ) as response:
            payload = await response.read()
            return response.status, response.headers, payload
    except aiohttp.ConnectionTimeoutError:
        error = RequestTimeoutError(f"could not connect within {timeout:.3g} s", maybe_sent=False)
    except aiohttp.ClientConnectorError as exc:
        # Refused, DNS, TLS handshake: the request was never written. strerror names the cause
        # ("Connection refused") without the URL.
        error = ConnectError(f"could not connect: {exc.os_error.strerror or type(exc).__name__}")
    except (TimeoutError, aiohttp.SocketTimeoutError):
        error = RequestTimeoutError(f"no complete answer within {timeout:.3g} s")
    except aiohttp.ServerDisconnectedError:
        error = TransportError("the server closed the connection before answering")
    except (aiohttp.ClientError, ConnectionError, asyncio.IncompleteReadError) as exc:
        error = TransportError(f"connection failed: {type(exc).__name__}")
    raise error
