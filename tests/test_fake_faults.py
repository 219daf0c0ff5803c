"""Fault injection in the fake Klarna: each fault kind on the wire, scripts, seeded rates."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from klarna_async.testing import FakeKlarna, Fault, FaultInjector
from tests.test_fake_klarna import Api, klarna_session, order_body, recurring_body

CHARGE = "customer_tokens.create_order"


@pytest.fixture
async def api(fake_klarna: FakeKlarna) -> AsyncIterator[Api]:
    async with klarna_session(fake_klarna.url) as http:
        yield Api(http)


async def test_service_unavailable_is_a_klarna_503_and_commits_nothing(
    api: Api, fake_klarna: FakeKlarna
) -> None:
    token_id = fake_klarna.add_customer_token()
    fake_klarna.faults.script(CHARGE, [Fault.SERVICE_UNAVAILABLE])
    failed = await api.charge(token_id, key="k-503")
    assert failed.status == 503
    assert failed.error[0] == "SERVICE_UNAVAILABLE"
    assert failed.body["correlation_id"] == failed.headers["Klarna-Correlation-Id"]
    assert fake_klarna.ledger.orders == []
    # The fault was not stored under the key: the retry is processed.
    retried = await api.charge(token_id, key="k-503")
    assert retried.status == 200
    assert len(fake_klarna.ledger.orders_for_key("k-503")) == 1
    first, second = fake_klarna.ledger.requests_for(CHARGE)
    assert (first.fault, first.status, first.committed) == (Fault.SERVICE_UNAVAILABLE, 503, False)
    assert (second.fault, second.status, second.committed) == (None, 200, True)


async def test_reset_before_processing(api: Api, fake_klarna: FakeKlarna) -> None:
    token_id = fake_klarna.add_customer_token()
    fake_klarna.faults.script(CHARGE, [Fault.RESET_BEFORE])
    with pytest.raises(aiohttp.ClientConnectionError):
        await api.charge(token_id, key="k-reset")
    assert fake_klarna.ledger.orders == []
    [record] = fake_klarna.ledger.requests_for(CHARGE)
    assert (record.fault, record.status, record.committed) == (Fault.RESET_BEFORE, None, False)
    assert (await api.charge(token_id, key="k-reset")).status == 200
    assert len(fake_klarna.ledger.orders) == 1


async def test_drop_after_commit_charges_once(api: Api, fake_klarna: FakeKlarna) -> None:
    token_id = fake_klarna.add_customer_token()
    fake_klarna.faults.script(CHARGE, [Fault.DROP_AFTER_COMMIT])
    body = recurring_body(amount=1500)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.charge(token_id, body, key="k-drop")
    # The order exists although the client never saw the answer.
    [order] = fake_klarna.ledger.orders_for_key("k-drop")
    [record] = fake_klarna.ledger.requests_for(CHARGE)
    assert (record.fault, record.status, record.committed) == (
        Fault.DROP_AFTER_COMMIT,
        None,
        True,
    )
    # A retry with the same key gets the stored answer: the same order, no second charge.
    retried = await api.charge(token_id, body, key="k-drop")
    assert retried.status == 200
    assert retried.body["order_id"] == order.order_id
    assert len(fake_klarna.ledger.orders) == 1
    attempts = fake_klarna.ledger.requests_for(CHARGE)
    assert {r.idempotency_key for r in attempts} == {"k-drop"}
    assert {r.body for r in attempts} == {attempts[0].body}


async def test_drop_after_commit_on_a_one_time_order(api: Api, fake_klarna: FakeKlarna) -> None:
    """Why one-time orders must not be retried blindly: the token is used up by the lost order."""
    token = fake_klarna.authorize(await api.new_session())
    fake_klarna.faults.script("payments.create_order", [Fault.DROP_AFTER_COMMIT])
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.create_order(token, order_body())
    assert len(fake_klarna.ledger.orders) == 1
    retried = await api.create_order(token, order_body())
    assert retried.status == 404
    assert len(fake_klarna.ledger.orders) == 1


async def test_latency_trips_the_client_timeout_but_the_order_is_processed(
    api: Api, fake_klarna: FakeKlarna
) -> None:
    token_id = fake_klarna.add_customer_token()
    fake_klarna.faults.script(CHARGE, [(Fault.LATENCY, 0.3)])
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await api.charge(token_id, key="k-slow", client_timeout=0.05)
    assert time.monotonic() - started < 0.25
    assert fake_klarna.ledger.orders == []  # still sleeping
    async with asyncio.timeout(5):
        await fake_klarna.wait_idle()
    [order] = fake_klarna.ledger.orders_for_key("k-slow")
    [record] = fake_klarna.ledger.requests_for(CHARGE)
    assert record.fault is Fault.LATENCY
    assert record.committed
    retried = await api.charge(token_id, key="k-slow")
    assert retried.body["order_id"] == order.order_id
    assert len(fake_klarna.ledger.orders) == 1


async def test_latency_answers_a_patient_client(api: Api, fake_klarna: FakeKlarna) -> None:
    token_id = fake_klarna.add_customer_token()
    fake_klarna.faults.script("customer_tokens.get", [Fault.LATENCY], latency_seconds=0.1)
    started = time.monotonic()
    answer = await api.get_token(token_id)
    assert answer.status == 200
    assert time.monotonic() - started >= 0.1


async def test_stopping_with_a_delayed_request_in_flight_is_bounded() -> None:
    fake = FakeKlarna()
    await fake.start()
    token_id = fake.add_customer_token()
    fake.faults.script(CHARGE, [(Fault.LATENCY, 30.0)])
    async with klarna_session(fake.url) as http:
        pending = asyncio.ensure_future(Api(http).charge(token_id))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await fake.stop()
        assert time.monotonic() - started < 3
        with pytest.raises(aiohttp.ClientError):
            await asyncio.wait_for(pending, 5)
    assert fake.ledger.orders == []


@pytest.mark.parametrize(
    ("fault", "status"), [(Fault.HTML_500, 500), (Fault.HTML_502, 502), (Fault.HTML_504, 504)]
)
async def test_html_error_pages(
    api: Api, fake_klarna: FakeKlarna, fault: Fault, status: int
) -> None:
    token_id = fake_klarna.add_customer_token()
    fake_klarna.faults.script(CHARGE, [fault])
    answer = await api.charge(token_id, key="k-html")
    assert answer.status == status
    assert answer.content_type == "text/html"
    assert answer.raw.startswith(b"<html>")
    assert str(status).encode() in answer.raw
    assert fake_klarna.ledger.orders == []
    assert (await api.charge(token_id, key="k-html")).status == 200


async def test_scripts_run_in_order_then_stop(api: Api, fake_klarna: FakeKlarna) -> None:
    token_id = fake_klarna.add_customer_token()
    fake_klarna.faults.script(
        "customer_tokens.get", [Fault.SERVICE_UNAVAILABLE, None, Fault.HTML_502]
    )
    assert fake_klarna.faults.pending("customer_tokens.get") == 3
    statuses = [(await api.get_token(token_id)).status for _ in range(4)]
    assert statuses == [503, 200, 502, 200]
    assert fake_klarna.faults.injected["customer_tokens.get", Fault.SERVICE_UNAVAILABLE] == 1
    # Scripts are per endpoint.
    assert (await api.charge(token_id)).status == 200


async def fault_sequence(seed: int, requests: int = 60) -> list[Fault | None]:
    async with FakeKlarna(seed=seed) as fake:
        fake.faults.set_rates(service_unavailable=0.3, html_502=0.2)
        token_id = fake.add_customer_token()
        async with klarna_session(fake.url) as http:
            api = Api(http)
            for _ in range(requests):
                await api.get_token(token_id)
        return [record.fault for record in fake.ledger.requests]


async def test_seeded_rates_are_reproducible() -> None:
    first = await fault_sequence(seed=1234)
    assert first == await fault_sequence(seed=1234)
    assert first != await fault_sequence(seed=4321)
    assert first.count(Fault.SERVICE_UNAVAILABLE) > 5
    assert first.count(Fault.HTML_502) > 3
    assert first.count(None) > 15


def test_each_endpoint_has_its_own_stream() -> None:
    """Interleaving requests to other endpoints does not change an endpoint's faults."""
    alone = FaultInjector(seed=7)
    alone.set_rates(service_unavailable=0.5)
    mixed = FaultInjector(seed=7)
    mixed.set_rates(service_unavailable=0.5)
    picks_alone = [alone.pick(CHARGE) for _ in range(50)]
    picks_mixed = []
    for _ in range(50):
        mixed.pick("customer_tokens.get")
        picks_mixed.append(mixed.pick(CHARGE))
    assert picks_alone == picks_mixed


def test_rates_per_endpoint_and_validation() -> None:
    faults = FaultInjector(seed=1)
    faults.set_rates(service_unavailable=1.0)
    faults.set_rates("customer_tokens.get", latency=1.0, latency_seconds=0.5)
    picked = faults.pick(CHARGE)
    assert picked is not None
    assert picked.fault is Fault.SERVICE_UNAVAILABLE
    picked = faults.pick("customer_tokens.get")
    assert picked is not None
    assert (picked.fault, picked.latency_seconds) == (Fault.LATENCY, 0.5)
    assert faults.rates("customer_tokens.get").latency == 1.0
    assert faults.rates("payments.get_session").service_unavailable == 1.0
    faults.set_rates("customer_tokens.get")  # all zero: this endpoint is spared
    assert faults.pick("customer_tokens.get") is None
    faults.clear()
    assert all(faults.pick(endpoint) is None for endpoint in FaultInjector.ENDPOINTS)

    with pytest.raises(ValueError, match="add up"):
        faults.set_rates(service_unavailable=0.7, drop_after_commit=0.7)
    with pytest.raises(ValueError, match="within"):
        faults.set_rates(latency=-0.1)
    with pytest.raises(ValueError, match="unknown endpoint"):
        faults.set_rates("payments.refund", latency=0.1)
    with pytest.raises(ValueError, match="unknown endpoint"):
        faults.script("orders", [Fault.LATENCY])


def test_random_seed_is_reported_and_reseedable() -> None:
    faults = FaultInjector()
    assert isinstance(faults.seed, int)
    faults.set_rates(service_unavailable=0.5)
    first = [faults.pick(CHARGE) for _ in range(20)]
    faults.reseed(faults.seed)
    assert [faults.pick(CHARGE) for _ in range(20)] == first


async def test_faults_over_http_control(api: Api, fake_klarna: FakeKlarna) -> None:
    token_id = fake_klarna.add_customer_token()

    async def configure(body: dict[str, Any]) -> int:
        async with api.http.post("/_fake/faults", json=body) as response:
            return response.status

    assert await configure({"rates": {"service_unavailable": 1.0}}) == 200
    assert (await api.get_token(token_id)).status == 503
    assert await configure({"clear": True, "script": {"customer_tokens.get": [["latency", 0]]}})
    answer = await api.get_token(token_id)
    assert answer.status == 200
    assert fake_klarna.ledger.requests[-1].fault is Fault.LATENCY
    assert await configure({"rates": {"bogus": 1}}) == 400
    assert await configure({"rates": {"latency": "high"}}) == 400
    assert await configure({"seed": "x"}) == 400
    assert await configure({"script": {"customer_tokens.get": [3]}}) == 400


async def test_faults_do_not_apply_to_unauthenticated_requests(fake_klarna: FakeKlarna) -> None:
    fake_klarna.faults.script(CHARGE, [Fault.SERVICE_UNAVAILABLE])
    async with klarna_session(fake_klarna.url, auth=None) as http:
        answer = await Api(http).charge("anything")
    assert answer.status == 401
    assert fake_klarna.faults.pending(CHARGE) == 1


async def test_soak_with_retries_charges_each_key_once(fake_klarna: FakeKlarna) -> None:
    """A small soak: random faults everywhere, naive retries with the same key, exact ledger."""
    fake_klarna.faults.reseed(99)
    fake_klarna.faults.set_rates(
        service_unavailable=0.15,
        drop_after_commit=0.1,
        reset_before=0.05,
        html_504=0.05,
        latency=0.05,
        latency_seconds=0.01,
    )
    token_id = fake_klarna.add_customer_token()
    async with klarna_session(fake_klarna.url) as http:
        api = Api(http)

        async def charge_until_answered(key: str) -> str:
            for _ in range(50):
                try:
                    answer = await api.charge(token_id, recurring_body(), key=key)
                except aiohttp.ClientConnectionError:
                    continue
                if answer.status == 200:
                    order_id: str = answer.body["order_id"]
                    return order_id
            raise AssertionError(f"{key} never succeeded")

        order_ids = await asyncio.gather(*(charge_until_answered(f"soak-{i}") for i in range(40)))
    async with asyncio.timeout(5):
        await fake_klarna.wait_idle()
    assert len(set(order_ids)) == 40
    assert len(fake_klarna.ledger.orders) == 40
    for i, order_id in enumerate(order_ids):
        [order] = fake_klarna.ledger.orders_for_key(f"soak-{i}")
        assert order.order_id == order_id
    assert sum(fake_klarna.faults.injected.values()) > 10
