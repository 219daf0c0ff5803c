"""A near-free HTTP/1.1 peer for the benchmarks: every POST gets the same order JSON.

Run it in its own process, so its CPU time never counts as the client's::

    $ python -m benchmarks.peer --port 0
    peer ready at http://127.0.0.1:40123

It is a bare :class:`asyncio.Protocol`, not a web framework: it finds the end of the head,
reads ``Content-Length`` bytes of body, and writes one prebuilt answer. Keep-alive is the
only connection mode (what aiohttp's pool uses); there is no routing, no auth, no parsing of
the body. ``GET /_peer/stats`` answers ``{"requests": N}`` (POSTs answered so far), so a
benchmark can check that every charge reached the peer. It stops on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

import orjson

__all__ = ["ORDER", "main"]

#: The one answer, as Klarna's Customer Token API shapes a placed recurring order.
ORDER = {
    "order_id": "f3392f8b-6116-4073-ab96-e330819e2c07",
    "fraud_status": "ACCEPTED",
    "redirect_url": "https://credit.klarna.com/v1/sessions/0b1d9815/redirect",
}
_ORDER_BODY = orjson.dumps(ORDER)
_ORDER_ANSWER = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/json\r\n"
    b"Klarna-Correlation-Id: 2f1cb9a6-0a5b-4c0b-9d0a-6c3e2f0b8d11\r\n"
    b"Content-Length: " + str(len(_ORDER_BODY)).encode() + b"\r\n"
    b"\r\n" + _ORDER_BODY
)
_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_MAX_HEAD = 64 * 1024


class _Counter:
    requests = 0
    open: set[asyncio.Transport] = set()


class _Http(asyncio.Protocol):
    __slots__ = ("_buffer", "_transport")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        _Counter.open.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            _Counter.open.discard(self._transport)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        transport = self._transport
        assert transport is not None
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    transport.write(_BAD_REQUEST)
                    transport.close()
                return
            head = bytes(buffer[:end]).lower()
            length = 0
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                try:
                    length = int(head[at + 17 : stop if stop >= 0 else None])
                except ValueError:
                    transport.write(_BAD_REQUEST)
                    transport.close()
                    return
            elif b"\r\ntransfer-encoding:" in head:
                # Never sent by the benchmarks (they send bytes): refuse rather than guess.
                transport.write(_BAD_REQUEST)
                transport.close()
                return
            total = end + 4 + length
            if len(buffer) < total:
                return
            del buffer[:total]
            if head.startswith(b"get /_peer/stats"):
                body = orjson.dumps({"requests": _Counter.requests})
                transport.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                    + body
                )
            else:
                _Counter.requests += 1
                transport.write(_ORDER_ANSWER)


async def _serve(host: str, port: int) -> int:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Http, host, port, backlog=2048)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
    bound = server.sockets[0].getsockname()
    print(f"peer ready at http://{bound[0]}:{bound[1]}", flush=True)
    try:
        await stop.wait()
    finally:
        server.close()
        # Keep-alive connections stay open until closed: close them rather than wait.
        for transport in list(_Counter.open):
            transport.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peer", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on [127.0.0.1]")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free port) [0]")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(_serve(args.host, args.port))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
