"""Pending orders: Klarna's fraud-decision notification parsed, checked by reading the order back,
and the two service recipes (FastAPI, aiohttp.web) run end to end: the fake decides a pending
order and POSTs the notification to the running app, which reads the order back from the fake.

The recipes in ``tests/recipes`` are the README's (proposed) code, executed as written and type
checked with ``mypy --strict`` as a user's CI would.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
import pytest
from aiohttp import web

from klarna_async import (
    FraudEvent,
    FraudNotification,
    Intent,
    InvalidNotificationError,
    KlarnaClient,
    MerchantUrls,
    NoSuchOrderError,
    OrderManagementOrder,
    parse_notification,
)
from klarna_async.testing import FakeKlarna
from tests import samples

RECIPES = Path(__file__).parent / "recipes"
SECRET = "s3cr3t-4f9a2c"


# --- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"order_id": "o-1", "event_type": "FRAUD_RISK_ACCEPTED", "event_id": "x"}',
        '{"order_id": "o-1", "event_type": "FRAUD_RISK_ACCEPTED"}',
        {"order_id": "o-1", "event_type": "FRAUD_RISK_ACCEPTED"},
    ],
)
def test_a_notification_parses_from_bytes_text_or_json(body: Any) -> None:
    parsed = parse_notification(body)
    assert FraudNotification(order_id="o-1", event_type=FraudEvent.FRAUD_RISK_ACCEPTED) == parsed
    assert parsed.event_type is FraudEvent.FRAUD_RISK_ACCEPTED


def test_an_event_klarna_adds_later_still_parses() -> None:
    parsed = parse_notification(b'{"order_id": "o-1", "event_type": "FRAUD_RISK_SOMETHING"}')
    assert "FRAUD_RISK_SOMETHING" == parsed.event_type
    assert not parsed.event_type.known


@pytest.mark.parametrize(
    ("body", "problems"),
    [
        (b"not json", ["$: not JSON"]),
        (b"[1]", ["$: expected a JSON object"]),
        (b"{}", [
            "$.order_id: expected a non-empty string", "$.event_type: expected a non-empty string",
        ]),
        (b'{"order_id": 7, "event_type": ""}', [
            "$.order_id: expected a non-empty string", "$.event_type: expected a non-empty string",
        ]),
        (b'{"order_id": "o", "event_type": "X", "pad": "' + b"x" * 70_000 + b'"}',
         ["$: larger than 65536 bytes"]),
    ],
)  # fmt: skip
def test_anything_else_is_one_typed_error_listing_every_problem(
    body: bytes, problems: list[str]
) -> None:
    with pytest.raises(InvalidNotificationError) as caught:
        parse_notification(body)
    assert problems == list(caught.value.problems)
    assert isinstance(caught.value, ValueError)
    assert "x" * 20 not in str(caught.value)  # the untrusted body is never repeated


async def test_verify_reads_the_order_back(fake_klarna: FakeKlarna) -> None:
    """The decision is the order's, read through Order Management: a notification that claims
    more than the order says is not confirmed and decides nothing."""
    pending = fake_klarna.add_order(fraud_status="PENDING")
    claim = {"order_id": pending, "event_type": "FRAUD_RISK_ACCEPTED"}
    async with client(fake_klarna) as klarna:
        decision = await klarna.orders.verify_notification(orjson.dumps(claim))
        assert decision.order.order_id == pending
        assert (False, False, True, False) == (
            decision.accepted,
            decision.rejected,
            decision.pending,
            decision.confirmed,
        )
        assert 1 == len(fake_klarna.ledger.requests_for("orders.get"))

        await fake_klarna.decide_fraud(pending, "accepted")  # no URL: nothing posted
        decision = await klarna.orders.verify_notification(claim)
        assert (True, True, True) == (decision.accepted, decision.capturable, decision.confirmed)

        stopped = fake_klarna.add_order()
        await fake_klarna.decide_fraud(stopped, "stopped")
        note = FraudNotification(order_id=stopped, event_type="FRAUD_RISK_STOPPED")
        decision = await klarna.orders.verify_notification(note)
        assert (False, True, True) == (decision.accepted, decision.rejected, decision.confirmed)

        with pytest.raises(NoSuchOrderError):
            await klarna.orders.verify_notification(dict(claim, order_id="forged"))
        with pytest.raises(InvalidNotificationError):
            await klarna.orders.verify_notification(b"{}")
    assert [None, None] == [n["status"] for n in fake_klarna.notifications]


# --- the recipes, end to end --------------------------------------------------------------------


def client(fake: FakeKlarna) -> KlarnaClient:
    return KlarnaClient(username=fake.username, password=fake.password, base_url=fake.url)


def load(name: str, monkeypatch: pytest.MonkeyPatch, fake: FakeKlarna) -> dict[str, Any]:
    monkeypatch.setenv("KLARNA_USERNAME", fake.username)
    monkeypatch.setenv("KLARNA_PASSWORD", fake.password)
    monkeypatch.setenv("KLARNA_BASE_URL", fake.url)
    monkeypatch.setenv("KLARNA_NOTIFY_SECRET", SECRET)
    path = RECIPES / f"{name}.py"
    namespace: dict[str, Any] = {"__name__": f"recipe_{name}"}
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), namespace)  # noqa: S102
    return namespace


class Fulfilment:
    """Stands in for the recipe's ship() and stop(): records what the app decided."""

    def __init__(self, namespace: dict[str, Any]) -> None:
        self.shipped: list[OrderManagementOrder] = []
        self.stopped: list[OrderManagementOrder] = []

        async def ship(order: OrderManagementOrder) -> None:
            self.shipped.append(order)

        async def stop(order: OrderManagementOrder) -> None:
            self.stopped.append(order)

        namespace["ship"], namespace["stop"] = ship, stop


async def run_story(fake: FakeKlarna, app_url: str, fulfilment: Fulfilment) -> None:
    """A pending one-time order accepted, one rejected, a forged claim, a wrong secret, junk."""
    notify = f"{app_url}/klarna/pending/{SECRET}"
    async with client(fake) as klarna:
        session = await klarna.payments.create_session(samples.session_request(Intent.BUY))
        token = fake.authorize(session.session_id, outcome="pending")
        urls = MerchantUrls(confirmation="https://shop.example/thanks", notification=notify)
        placed = await klarna.payments.create_order(
            token, samples.one_time_order(merchant_urls=urls)
        )
    assert "PENDING" == placed.fraud_status
    assert "PENDING" == fake.om_order(placed.order_id).fraud_status

    reads = len(fake.ledger.requests_for("orders.get"))
    assert 200 == await fake.decide_fraud(placed.order_id, "accepted")
    # The app read the order back from the fake before shipping it.
    assert reads + 1 == len(fake.ledger.requests_for("orders.get"))
    assert [placed.order_id] == [order.order_id for order in fulfilment.shipped]
    assert "ACCEPTED" == fulfilment.shipped[0].fraud_status
    assert not fulfilment.stopped

    rejected = fake.add_order(fraud_status="PENDING", notification_url=notify)
    assert 200 == await fake.decide_fraud(rejected, "rejected")
    assert [rejected] == [order.order_id for order in fulfilment.stopped]

    async with aiohttp.ClientSession() as http:

        async def post(url: str, body: bytes) -> tuple[int, Any]:
            async with http.post(url, data=body) as answer:
                return answer.status, await answer.read()

        # Forged: claims "accepted" for an order Klarna still reviews; the order says pending.
        waiting = fake.add_order(fraud_status="PENDING", notification_url=notify)
        claim = orjson.dumps({"order_id": waiting, "event_type": "FRAUD_RISK_ACCEPTED"})
        status, body = await post(notify, claim)
        assert (200, False) == (status, orjson.loads(body)["accepted"])
        # Delivered again (Klarna may): read back again, shipped again; ship() is idempotent.
        again = orjson.dumps({"order_id": placed.order_id, "event_type": "FRAUD_RISK_ACCEPTED"})
        status, body = await post(notify, again)
        assert (200, True) == (status, orjson.loads(body)["accepted"])
        gets = len(fake.ledger.requests_for("orders.get"))
        assert 404 == (await post(f"{app_url}/klarna/pending/wrong", claim))[0]
        assert 400 == (await post(notify, b"<html>"))[0]
        assert (
            404 == (await post(notify, orjson.dumps({**orjson.loads(claim), "order_id": "x"})))[0]
        )
        # Neither the wrong secret nor the junk made the app ask Klarna anything.
        assert gets + 1 == len(fake.ledger.requests_for("orders.get"))
    assert [placed.order_id] * 2 == [order.order_id for order in fulfilment.shipped]
    assert [rejected] == [order.order_id for order in fulfilment.stopped]
    assert [200, 200] == [n["status"] for n in fake.notifications]


@pytest.fixture
async def fake() -> AsyncIterator[FakeKlarna]:
    async with FakeKlarna() as fake:
        yield fake


async def test_fastapi_recipe_end_to_end(fake: FakeKlarna, monkeypatch: pytest.MonkeyPatch):
    namespace = load("pending_fastapi", monkeypatch, fake)
    app = namespace["app"]
    fulfilment = Fulfilment(namespace)
    async with app.router.lifespan_context(app), serve_asgi(app) as url:
        await run_story(fake, url, fulfilment)
    assert app.state.klarna.closed


async def test_aiohttp_recipe_end_to_end(fake: FakeKlarna, monkeypatch: pytest.MonkeyPatch):
    namespace = load("pending_aiohttp", monkeypatch, fake)
    app = namespace["make_app"]()
    fulfilment = Fulfilment(namespace)
    async with serve(app) as url:
        await run_story(fake, url, fulfilment)
    assert app[namespace["KLARNA"]].closed


def test_the_recipes_pass_mypy_strict(tmp_path: Path) -> None:
    """As the README's blocks are checked: each recipe alone, mypy --strict."""
    files = [str(path) for path in sorted(RECIPES.glob("pending_*.py"))]
    assert 2 == len(files)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
         "--cache-dir", str(Path(__file__).parent.parent / ".mypy_cache"), *files],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert 0 == done.returncode, done.stdout + done.stderr


# --- serving an app on loopback ------------------------------------------------------------------


class serve:
    """An aiohttp.web application on 127.0.0.1 (a free port), its startup and cleanup run."""

    def __init__(self, app: web.Application) -> None:
        self.runner = web.AppRunner(app, handle_signals=False, access_log=None)

    async def __aenter__(self) -> str:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        return f"http://{host}:{port}"

    async def __aexit__(self, *exc_info: object) -> None:
        await self.runner.cleanup()


class serve_asgi:
    """An ASGI app (FastAPI) behind a loopback HTTP listener: every request is handed to the
    app through httpx's ASGI transport (no ASGI server is a test dependency)."""

    def __init__(self, app: Any) -> None:
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app")
        front = web.Application()
        front.router.add_route("*", "/{tail:.*}", self.forward)
        self.front = serve(front)

    async def forward(self, request: web.Request) -> web.Response:
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        answer = await self.http.request(
            request.method, request.path_qs, content=await request.read(), headers=headers
        )
        kind = answer.headers.get("content-type", "application/octet-stream")
        return web.Response(
            status=answer.status_code, body=answer.content, content_type=kind.split(";")[0]
        )

    async def __aenter__(self) -> str:
        return await self.front.__aenter__()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.front.__aexit__(*exc_info)
        await self.http.aclose()
