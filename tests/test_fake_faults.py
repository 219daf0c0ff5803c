"""Fault injection in the fake Klarna: each fault kind on the wire, scripts, seeded rates."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from klarna_async.testing import FakeKlarna, Fault, FaultInjector
from tests.test_fake_klarna import Answer, Api, klarna_session, order_body, recurring_body

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


# -- the honest adversary: commits the client cannot see ------------------------------------


def charge_records(fake: FakeKlarna, key: str) -> list[Any]:
    return fake.ledger.requests_for_key(key)


async def test_latency_commits_after_the_client_gave_up_and_the_ledger_shows_when(
    api: Api, fake_klarna: FakeKlarna
) -> None:
    token_id = fake_klarna.add_customer_token()
    fake_klarna.faults.script(CHARGE, [(Fault.LATENCY, 0.3)])
    with pytest.raises(asyncio.TimeoutError):
        await api.charge(token_id, key="k-late", client_timeout=0.05)
    [record] = charge_records(fake_klarna, "k-late")
    # The client has given up; Klarna is still working on it.
    assert (record.committed, record.committed_at, record.order_id) == (False, None, None)
    assert fake_klarna.ledger.order_count_for_key("k-late") == 0
    async with asyncio.timeout(5):
        await fake_klarna.wait_idle()
    assert record.committed
    assert record.committed_at is not None
    assert record.committed_at - record.received_at >= 0.25
    assert record.client_gone
    assert record.order_id is not None
    assert fake_klarna.ledger.order_count_for_key("k-late") == 1
    assert fake_klarna.ledger.order(record.order_id).idempotency_key == "k-late"


@contextlib.asynccontextmanager
async def slow_first_attempt(
    api: Api, fake: FakeKlarna, token_id: str, key: str, second: Fault | None = None
) -> AsyncIterator[tuple[asyncio.Task[Answer], Answer]]:
    """A first attempt still being processed (0.25 s), and the answer to a second one sent
    meanwhile. The first is always awaited, so that a failing test leaves no task behind."""
    fake.faults.script(CHARGE, [(Fault.LATENCY, 0.25), second])
    first = asyncio.ensure_future(api.charge(token_id, key=key))
    try:
        for _ in range(1000):  # at most 5 s
            if fake.in_flight(key):
                break
            await asyncio.sleep(0.005)
        assert fake.in_flight(key) == 1
        yield first, await api.charge(token_id, key=key)
    finally:
        await asyncio.gather(first, return_exceptions=True)


@pytest.mark.parametrize("how", ["option", "fault"])
async def test_409_while_the_same_key_is_in_flight(
    api: Api, fake_klarna: FakeKlarna, how: str
) -> None:
    token_id = fake_klarna.add_customer_token()
    second: Fault | None = None
    if how == "option":
        fake_klarna.faults.set_options(in_flight="conflict")
    else:
        second = Fault.IN_FLIGHT_CONFLICT
    async with slow_first_attempt(api, fake_klarna, token_id, "k-409", second) as (
        first,
        conflict,
    ):
        assert conflict.status == 409
        assert conflict.error == (
            "CONFLICT",
            ["A request with this Klarna-Idempotency-Key is already being processed"],
        )
        assert conflict.body["correlation_id"] == conflict.headers["Klarna-Correlation-Id"]
        assert fake_klarna.ledger.order_count_for_key("k-409") == 0  # nothing placed yet
        placed = await first
    assert placed.status == 200
    assert fake_klarna.ledger.order_count_for_key("k-409") == 1
    slow, refused = charge_records(fake_klarna, "k-409")
    assert (slow.committed, slow.order_id) == (True, placed.body["order_id"])
    assert (refused.status, refused.committed, refused.replayed) == (409, False, False)
    # The 409 was not stored under the key: the next attempt replays the order.
    again = await api.charge(token_id, key="k-409")
    assert (again.status, again.body["order_id"]) == (200, placed.body["order_id"])
    assert fake_klarna.ledger.order_count_for_key("k-409") == 1


async def test_in_flight_wait_replays_the_first_answer(api: Api, fake_klarna: FakeKlarna) -> None:
    token_id = fake_klarna.add_customer_token()
    fake_klarna.faults.set_options(in_flight="wait")
    async with slow_first_attempt(api, fake_klarna, token_id, "k-wait") as (first, waited):
        placed = await first
    assert waited.raw == placed.raw
    slow, second = charge_records(fake_klarna, "k-wait")
    assert second.replayed
    assert second.committed_at is not None
    assert slow.committed_at is not None
    assert second.committed_at >= slow.committed_at
    assert fake_klarna.ledger.order_count_for_key("k-wait") == 1


async def test_in_flight_process_lets_the_second_attempt_place_the_order(
    api: Api, fake_klarna: FakeKlarna
) -> None:
    """The default: whichever attempt reaches processing first places the order."""
    token_id = fake_klarna.add_customer_token()
    async with slow_first_attempt(api, fake_klarna, token_id, "k-race") as (first, second):
        assert second.status == 200
        late = await first
    assert late.raw == second.raw
    slow, quick = charge_records(fake_klarna, "k-race")
    assert (quick.order_id, quick.replayed) == (second.body["order_id"], False)
    assert (slow.order_id, slow.replayed, slow.committed) == (None, True, True)
    assert fake_klarna.ledger.order_count_for_key("k-race") == 1


async def test_in_flight_conflict_fault_without_a_flight_is_harmless(
    api: Api, fake_klarna: FakeKlarna
) -> None:
    token_id = fake_klarna.add_customer_token()
    fake_klarna.faults.script(CHARGE, [Fault.IN_FLIGHT_CONFLICT])
    assert (await api.charge(token_id, key="k-alone")).status == 200
    assert fake_klarna.ledger.order_count_for_key("k-alone") == 1


async def test_conflict_fault_is_a_409_that_processes_nothing(
    api: Api, fake_klarna: FakeKlarna
) -> None:
    token_id = fake_klarna.add_customer_token()
    fake_klarna.faults.script(CHARGE, [Fault.CONFLICT])
    answer = await api.charge(token_id, key="k-c")
    assert (answer.status, answer.error[0]) == (409, "CONFLICT")
    assert fake_klarna.ledger.order_count_for_key("k-c") == 0
    [record] = charge_records(fake_klarna, "k-c")
    assert (record.fault, record.committed) == (Fault.CONFLICT, False)
    assert (await api.charge(token_id, key="k-c")).status == 200


# -- gateways answering instead of Klarna ---------------------------------------------------


ENVOY = (
    b"upstream connect error or disconnect/reset before headers. "
    b"reset reason: connection termination"
)
GATEWAY_CASES = [
    (Fault.ENVOY_503, 503, "text/plain", "envoy", False),
    (Fault.ENVOY_503_COMMITTED, 503, "text/plain", "envoy", True),
    (Fault.EMPTY_503, 503, None, None, False),
    (Fault.EMPTY_503_COMMITTED, 503, None, None, True),
    (Fault.HTML_503, 503, "text/html", "nginx", False),
    (Fault.HTML_502_COMMITTED, 502, "text/html", "nginx", True),
    (Fault.HTML_503_COMMITTED, 503, "text/html", "nginx", True),
    (Fault.TIMEOUT_408, 408, "text/html", None, False),
    (Fault.TIMEOUT_408_COMMITTED, 408, "text/html", None, True),
    (Fault.TOO_EARLY_425, 425, "text/html", None, False),
    (Fault.TOO_EARLY_425_COMMITTED, 425, "text/html", None, True),
]


@pytest.mark.parametrize(("fault", "status", "content_type", "server", "committed"), GATEWAY_CASES)
async def test_gateway_answers(
    api: Api,
    fake_klarna: FakeKlarna,
    fault: Fault,
    status: int,
    content_type: str | None,
    server: str | None,
    committed: bool,
) -> None:
    token_id = fake_klarna.add_customer_token()
    fake_klarna.faults.script(CHARGE, [fault])
    answer = await api.charge(token_id, key="k-gw")
    assert answer.status == status
    assert answer.headers.get("Content-Type") == content_type
    assert "Klarna-Correlation-Id" not in answer.headers
    if server is not None:
        assert answer.headers["Server"] == server
    if fault in (Fault.ENVOY_503, Fault.ENVOY_503_COMMITTED):
        assert answer.raw == ENVOY
    elif content_type is None:
        assert answer.raw == b""
        assert answer.headers["Content-Length"] == "0"
    else:
        assert answer.raw.startswith(b"<html>")
        assert f"<h1>{status} ".encode() in answer.raw
    if status == 408:
        assert answer.headers["Connection"] == "close"
    assert fault.processes is committed
    [record] = charge_records(fake_klarna, "k-gw")
    assert (record.fault, record.status, record.committed) == (fault, status, committed)
    assert fake_klarna.ledger.order_count_for_key("k-gw") == int(committed)
    # The same key again: a replay of the committed order, or the first real charge.
    retried = await api.charge(token_id, key="k-gw")
    assert retried.status == 200
    assert retried.body["order_id"] == fake_klarna.ledger.orders_for_key("k-gw")[0].order_id
    assert fake_klarna.ledger.order_count_for_key("k-gw") == 1
    assert charge_records(fake_klarna, "k-gw")[1].replayed is committed


@pytest.mark.parametrize(
    ("fault", "status", "code", "committed"),
    [
        (Fault.HTTP500_NOT_FOUND, 500, "NOT_FOUND", False),
        (Fault.HTTP500_NOT_FOUND_COMMITTED, 500, "NOT_FOUND", True),
        (Fault.HTTP502_BAD_REQUEST, 502, "BAD_REQUEST", False),
        (Fault.HTTP502_BAD_REQUEST_COMMITTED, 502, "BAD_REQUEST", True),
        (Fault.HTTP504_REJECTED, 504, "REJECTED", False),
        (Fault.HTTP504_REJECTED_COMMITTED, 504, "REJECTED", True),
    ],
)
async def test_5xx_with_a_4xx_code(
    api: Api, fake_klarna: FakeKlarna, fault: Fault, status: int, code: str, committed: bool
) -> None:
    token_id = fake_klarna.add_customer_token()
    fake_klarna.faults.script(CHARGE, [fault])
    answer = await api.charge(token_id, key="k-5xx")
    assert (answer.status, answer.error[0]) == (status, code)
    assert answer.content_type == "application/json"
    assert answer.body["correlation_id"] == answer.headers["Klarna-Correlation-Id"]
    [record] = charge_records(fake_klarna, "k-5xx")
    assert (record.status, record.error_code, record.committed) == (status, code, committed)
    assert fake_klarna.ledger.order_count_for_key("k-5xx") == int(committed)
    # The correlation id leads back to the request, whatever the answer said.
    assert fake_klarna.ledger.request_for_correlation_id(answer.body["correlation_id"]) is record


@pytest.mark.parametrize("committed", [False, True])
async def test_302_to_a_page_that_is_not_klarna(fake_klarna: FakeKlarna, committed: bool) -> None:
    token_id = fake_klarna.add_customer_token()
    fault = Fault.REDIRECT_302_COMMITTED if committed else Fault.REDIRECT_302
    fake_klarna.faults.script(CHARGE, [fault, fault])
    path = f"/customer-token/v1/tokens/{token_id}/order"
    headers = {"Klarna-Idempotency-Key": "k-302"}
    async with klarna_session(fake_klarna.url) as http:
        async with http.post(
            path, json=recurring_body(), headers=headers, allow_redirects=False
        ) as answer:
            assert answer.status == 302
            assert answer.headers["Location"] == f"{fake_klarna.url}/_fake/maintenance"
            assert "Klarna-Correlation-Id" not in answer.headers
        # A client that follows it gets a 200 that is not an order.
        async with http.post(path, json=recurring_body(), headers=headers) as followed:
            assert (followed.status, followed.content_type) == (200, "text/html")
            assert b"maintenance" in await followed.read()
    assert fake_klarna.ledger.order_count_for_key("k-302") == int(committed)
    assert [r.committed for r in charge_records(fake_klarna, "k-302")] == [committed] * 2


@pytest.mark.parametrize("kind", ["nan", "inf", "negative", "huge"])
async def test_hostile_rate_limit_headers(api: Api, fake_klarna: FakeKlarna, kind: str) -> None:
    value = {"nan": "nan", "inf": "inf", "negative": "-30", "huge": "1e9"}[kind]
    token_id = fake_klarna.add_customer_token()
    limited, paused = Fault(f"rate_limit_{kind}"), Fault(f"pause_{kind}")
    fake_klarna.faults.script(CHARGE, [limited, paused])
    answer = await api.charge(token_id, key="k-rl")
    assert (answer.status, answer.error[0]) == (429, "TOO_MANY_REQUESTS")
    assert answer.headers["X-Ratelimit-Reset"] == answer.headers["Retry-After"] == value
    assert answer.headers["X-Ratelimit-Remaining"] == "0"
    assert fake_klarna.ledger.order_count_for_key("k-rl") == 0
    answer = await api.charge(token_id, key="k-rl")  # a success that says "stop now"
    assert answer.status == 200
    assert answer.headers["X-Ratelimit-Reset"] == answer.headers["Retry-After"] == value
    assert answer.headers["X-Ratelimit-Remaining"] == "0"
    assert answer.headers["X-Ratelimit-Limit"]
    assert fake_klarna.ledger.order_count_for_key("k-rl") == 1
    assert [r.committed for r in charge_records(fake_klarna, "k-rl")] == [False, True]


async def test_hostile_headers_override_the_fakes_own_rate_limit(fake_klarna_factory: Any) -> None:
    fake = await fake_klarna_factory(rate_limit=100)
    token_id = fake.add_customer_token()
    fake.faults.script(CHARGE, [Fault.PAUSE_NAN])
    async with klarna_session(fake.url) as http:
        answer = await Api(http).charge(token_id)
    assert answer.headers["X-Ratelimit-Limit"] == "100, 100;w=1"
    assert (answer.headers["X-Ratelimit-Remaining"], answer.headers["Retry-After"]) == ("0", "nan")


# -- the order of checks --------------------------------------------------------------------


@pytest.mark.parametrize("how", ["option", "fault"])
async def test_state_first_answers_403_to_a_replay_after_a_cancel(
    api: Api, fake_klarna: FakeKlarna, how: str
) -> None:
    token_id = fake_klarna.add_customer_token()
    placed = await api.charge(token_id, key="k-order")
    assert placed.status == 200
    assert (await api.cancel_token(token_id)).status == 202
    # Klarna documents neither order; the default replays the stored answer first.
    assert (await api.charge(token_id, key="k-order")).raw == placed.raw
    if how == "option":
        fake_klarna.faults.set_options(check_order="state_first")
    else:
        fake_klarna.faults.script(CHARGE, [Fault.STATE_FIRST])
    refused = await api.charge(token_id, key="k-order")
    assert (refused.status, refused.error[0]) == (403, "TOKEN_CANCELED")
    assert fake_klarna.ledger.order_count_for_key("k-order") == 1  # although the order exists
    record = charge_records(fake_klarna, "k-order")[-1]
    assert (record.committed, record.replayed, record.status) == (False, False, 403)
    # The refusal was not stored: with the token active again, the order is replayed.
    fake_klarna.set_token_status(token_id, "ACTIVE")
    assert (await api.charge(token_id, key="k-order")).raw == placed.raw


async def test_state_first_checks_the_body_before_the_replay(
    api: Api, fake_klarna: FakeKlarna
) -> None:
    token_id = fake_klarna.add_customer_token()
    placed = await api.charge(token_id, key="k-body")
    bad = recurring_body(order_amount=0)
    assert (await api.charge(token_id, bad, key="k-body")).raw == placed.raw
    fake_klarna.faults.set_options(check_order="state_first")
    refused = await api.charge(token_id, bad, key="k-body")
    assert (refused.status, refused.error[0]) == (400, "BAD_VALUE")
    suspended = fake_klarna.add_customer_token()
    fake_klarna.suspend_token(suspended)
    answer = await api.charge(suspended, key="k-susp")
    assert (answer.status, answer.error[0]) == (403, "TOKEN_SUSPENDED")
    assert fake_klarna.ledger.order_count_for_key("k-body") == 1


# -- configuration of the new faults --------------------------------------------------------


def test_every_fault_is_documented_and_ratable() -> None:
    from klarna_async.testing import _faults

    table = _faults.__doc__ or ""
    for fault in Fault:
        assert fault.name in table, fault
        assert fault.summary
        assert fault.value in _faults.RATE_NAMES
    injector = FaultInjector(seed=3)
    injector.set_rates(**{fault.value: 1 / len(Fault) for fault in Fault})
    picked = {injector.pick(CHARGE).fault for _ in range(2000)}  # type: ignore[union-attr]
    assert picked == set(Fault)
    with pytest.raises(ValueError, match="unknown rate names"):
        injector.set_rates(envoy_504=0.1)


def test_new_faults_are_reproducible_by_seed() -> None:
    def run(seed: int) -> list[Fault | None]:
        injector = FaultInjector(seed=seed)
        injector.set_rates(envoy_503_committed=0.2, pause_nan=0.2, http504_rejected=0.1)
        picks = [injector.pick(CHARGE) for _ in range(60)]
        return [None if pick is None else pick.fault for pick in picks]

    assert run(11) == run(11)
    assert run(11) != run(12)
    assert set(run(11)) == {
        None,
        Fault.ENVOY_503_COMMITTED,
        Fault.PAUSE_NAN,
        Fault.HTTP504_REJECTED,
    }


def test_old_seeds_draw_the_same_faults() -> None:
    """New faults come after the old ones in the draw, so a recorded soak replays as before."""
    injector = FaultInjector(seed=20261130)
    injector.set_rates(service_unavailable=0.1, drop_after_commit=0.05, latency=0.05, html_502=0.1)
    picks = [injector.pick(CHARGE) for _ in range(50)]
    # Each fault drawn: its request number and the first letter of its name.
    drawn = " ".join(f"{n}{p.fault.value[0]}" for n, p in enumerate(picks) if p is not None)
    # Recorded with the seven faults of the fake's first version.
    assert drawn == "1h 4d 6l 7s 9h 16l 22s 25s 27d 29s 33d 34h 37s 38h 40h 45s 47l 48s 49d"


def test_options_are_checked() -> None:
    injector = FaultInjector()
    assert injector.options == {"in_flight": "process", "check_order": "replay_first"}
    injector.set_options(in_flight="wait", check_order="state_first")
    assert injector.options == {"in_flight": "wait", "check_order": "state_first"}
    injector.clear()  # scripts and rates only
    assert injector.in_flight == "wait"
    injector.reset()
    assert injector.options == {"in_flight": "process", "check_order": "replay_first"}
    with pytest.raises(ValueError, match="in_flight"):
        injector.set_options(in_flight="queue")
    with pytest.raises(ValueError, match="check_order"):
        injector.set_options(check_order="random")


async def test_new_faults_and_options_over_http(api: Api, fake_klarna: FakeKlarna) -> None:
    token_id = fake_klarna.add_customer_token()

    async def post(body: dict[str, Any]) -> tuple[int, Any]:
        async with api.http.post("/_fake/faults", json=body) as response:
            return response.status, await response.json()

    async def show() -> Any:
        async with api.http.get("/_fake/faults") as response:
            return await response.json()

    status, _ = await post(
        {
            "seed": 4,
            "script": {CHARGE: ["envoy_503_committed", ["latency", 0], "pause_huge"]},
            "rates": {"endpoint": "customer_tokens.get", "http500_not_found": 1.0},
            "options": {"in_flight": "conflict", "check_order": "state_first"},
        }
    )
    assert status == 200
    shown = await show()
    assert shown["options"] == {"in_flight": "conflict", "check_order": "state_first"}
    assert shown["pending"] == {CHARGE: 3}
    assert shown["rates"]["customer_tokens.get"]["http500_not_found"] == 1.0
    assert fake_klarna.faults.check_order == "state_first"
    assert (await api.charge(token_id, key="h-1")).status == 503
    assert (await api.charge(token_id, key="h-2")).status == 200
    assert (await api.charge(token_id, key="h-3")).headers["Retry-After"] == "1e9"
    assert (await api.get_token(token_id)).error[0] == "NOT_FOUND"
    assert fake_klarna.ledger.order_count_for_key("h-1") == 1
    injected = {(i["fault"], i["count"]) for i in (await show())["injected"]}
    assert ("envoy_503_committed", 1) in injected

    before = await show()
    for bad in (
        {"options": {"in_flight": "queue"}},
        {"options": {"retry": True}},
        {"options": "conflict"},
        {"script": {CHARGE: ["gateway_503"]}},
        {"script": {CHARGE: [["latency", "soon"]]}},
        {"rates": {"envoy_503": 0.7, "html_503": 0.7}},
        {"clear": True, "rates": {"envoy_503": 2}},  # nothing changes, clear included
        {"retries": 3},
    ):
        assert (await post(bad))[0] == 400, bad
    assert await show() == before
