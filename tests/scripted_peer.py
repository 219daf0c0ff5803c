"""A scripted Klarna peer for the outcome-truth tests: it answers each request from a script,
and keeps its own ledger of the orders it *committed*.

Unlike the fake Klarna, it has no opinions: every step says what happens to the order (committed
or not, now or later) and what goes back on the wire (a status, any body, any content type, a
dropped connection, a malformed HTTP answer). So the tests do not merely confirm the client's own
assumptions about which answers mean "nothing processed". Its ledger, not the client's word, is
the witness: ``peer.orders[key]`` is how many orders a key (or an authorization token) placed.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import orjson
from aiohttp import web


@dataclass
class Step:
    """What one request gets.

    ``commit``: the order is placed (once per key: a repeat of a committed key replays it).
    ``after``: seconds before committing and answering (the client may have given up).
    ``status``/``body``/``content_type``/``headers``: the answer; ``status=None`` answers the
    order (200) when committed. ``drop``: close the connection instead of answering.
    ``malformed``: answer with bytes that are not HTTP.
    """

    status: int | None = None
    commit: bool = False
    body: bytes | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    after: float = 0.0
    drop: bool = False
    malformed: bool = False


def klarna_error(status: int, code: str, commit: bool = False, **headers: str) -> Step:
    body = orjson.dumps({"error_code": code, "error_messages": [code], "correlation_id": "c"})
    return Step(status=status, commit=commit, body=body, headers=headers)


ORDER = Step(commit=True)


@dataclass
class ScriptedPeer:
    script: deque[Step] = field(default_factory=deque)
    #: Orders committed, per idempotency key (or authorization token for one-time orders).
    orders: Counter[str] = field(default_factory=Counter)
    order_ids: dict[str, str] = field(default_factory=dict)
    #: (method, path, key header) per request, in arrival order.
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    authorization: list[str | None] = field(default_factory=list)
    url: str = ""

    def then(self, *steps: Step) -> ScriptedPeer:
        self.script.extend(steps)
        return self

    def _commit(self, who: str) -> str:
        if who not in self.order_ids:
            self.orders[who] += 1
            self.order_ids[who] = str(uuid.uuid4())
        return self.order_ids[who]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        key = request.headers.get("Klarna-Idempotency-Key")
        self.requests.append((request.method, request.path, key))
        self.authorization.append(request.headers.get("Authorization"))
        step = self.script.popleft() if self.script else ORDER
        # Who the order belongs to: the key, else the authorization token in the path.
        who = key or request.path.split("/")[4]
        if step.after:
            await asyncio.sleep(step.after)
        order_id = self._commit(who) if step.commit else None
        if step.drop:
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        status = step.status if step.status is not None else 200
        body = step.body
        if body is None and status == 200 and order_id is not None:
            body = orjson.dumps({"order_id": order_id, "fraud_status": "ACCEPTED"})
        return web.Response(
            status=status,
            body=body or b"",
            headers={**step.headers, **({"Content-Type": step.content_type} if body else {})},
        )


@contextlib.asynccontextmanager
async def scripted_peer(*steps: Step) -> AsyncIterator[ScriptedPeer]:
    peer = ScriptedPeer().then(*steps)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", peer.handle)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    peer.url = f"http://{host}:{port}"
    try:
        yield peer
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def malformed_peer(answer: bytes) -> AsyncIterator[str]:
    """A server that answers every request with ``answer`` (raw bytes, not valid HTTP)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.close()
        await server.wait_closed()
