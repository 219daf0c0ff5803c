"""The fake stays bounded in memory per order, and its witness counts stay exact."""

from __future__ import annotations

import gc
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from klarna_async.testing import FakeKlarna, Ledger, OrderRecord
from klarna_async.testing._idempotency import IdempotencyStore, token_order_body
from klarna_async.testing._keys import ByteCounts, KeyTable, Recent
from klarna_async.testing._ledger import IdSource
from tests.test_fake_klarna import HOUR, Api, klarna_session, recurring_body


@pytest.fixture
async def small() -> AsyncIterator[FakeKlarna]:
    async with FakeKlarna(keep_orders=10, keep_requests=20) as fake:
        yield fake


async def test_detail_is_capped_but_counts_stay_exact(small: FakeKlarna) -> None:
    tokens = [small.add_customer_token() for _ in range(3)]
    confirmation = {"confirmation": "https://shop.example/done/{order.id}"}
    async with klarna_session(small.url) as http:
        api = Api(http)
        answers = [
            await api.charge(
                tokens[i % 3],
                recurring_body(amount=100 + i, merchant_urls=confirmation),
                key=f"k-{i}",
            )
            for i in range(40)
        ]
        assert {answer.status for answer in answers} == {200}
        ledger = small.ledger
        assert 9 <= len(ledger.orders) <= 10
        assert ledger.orders[-1].idempotency_key == "k-39"
        assert ledger.orders_total == 40
        assert ledger.keys_with_orders == 40
        assert ledger.duplicate_orders == 0
        assert [ledger.order_count_for_key(f"k-{i}") for i in range(40)] == [1] * 40
        assert ledger.order_count_for_key("k-40") == 0
        assert [ledger.order_count_for_token(t) for t in tokens] == [14, 13, 13]
        assert ledger.total_charged == {"EUR": sum(100 + i for i in range(40))}
        # Detail of the oldest orders is gone, and its lookups with it.
        assert ledger.orders_for_key("k-0") == []
        first_id = answers[0].body["order_id"]
        with pytest.raises(KeyError):
            ledger.order(first_id)
        assert len(ledger.orders_for_token(tokens[0])) < 14
        assert len(ledger.requests) == 20
        with pytest.raises(KeyError, match="not in the log"):
            ledger.request(1)
        assert ledger.request(ledger.requests[-1].seq) is ledger.requests[-1]

        # The key's answer is still replayed byte for byte: no second order.
        replay = await api.charge(tokens[0], recurring_body(amount=100), key="k-0")
        assert (replay.raw, replay.headers["Klarna-Correlation-Id"]) == (
            answers[0].raw,
            answers[0].headers["Klarna-Correlation-Id"],
        )
        assert ledger.order_count_for_key("k-0") == 1

        # The redirect of a forgotten order is a plain page; a recent one still redirects.
        async with http.get(answers[0].body["redirect_url"], allow_redirects=False) as old:
            assert old.status == 200
        async with http.get(answers[-1].body["redirect_url"], allow_redirects=False) as new:
            assert new.status == 302

        # After Klarna's 24 hours the key charges again: counted as a duplicate.
        small.clock.advance(24 * HOUR + 1)
        again = await api.charge(tokens[0], recurring_body(amount=100), key="k-0")
        assert again.body["order_id"] != first_id
        assert (ledger.order_count_for_key("k-0"), ledger.duplicate_orders) == (2, 1)
        assert ledger.keys_with_orders == 40
        assert ledger.order_count_for_token(tokens[0]) == 15

        async with http.get("/_fake/ledger", params={"orders": "0"}) as response:
            summary = await response.json()
        assert "orders" not in summary
        assert summary["orders_total"] == 41
        assert summary["duplicate_orders"] == 1
        assert summary["order_counts_by_token"][tokens[0]] == 15
        async with http.post("/_fake/ledger/keys", json={"keys": ["k-0", "k-1", "nope"]}) as r:
            assert await r.json() == {"orders": {"k-0": 2, "k-1": 1, "nope": 0}}
        async with http.get("/_fake/ledger/keys/k-0") as response:
            one = await response.json()
        assert one["orders"] == 2
        assert [order["order_id"] for order in one["orders_kept"]] == [again.body["order_id"]]
        assert [request["replayed"] for request in one["requests"]] == [True, False]


async def test_ledger_request_lookups_over_http(small: FakeKlarna) -> None:
    token_id = small.add_customer_token()
    async with klarna_session(small.url) as http:
        answer = await Api(http).charge(token_id, key="k-look")
        correlation_id = answer.headers["Klarna-Correlation-Id"]
        record = small.ledger.request_for_correlation_id(correlation_id)
        async with http.get(f"/_fake/ledger/requests/{correlation_id}") as response:
            by_id = await response.json()
        async with http.get(f"/_fake/ledger/requests/{record.seq}") as response:
            by_seq = await response.json()
        assert by_id == by_seq
        assert (by_id["committed"], by_id["order_id"]) == (True, answer.body["order_id"])
        for missing in ("999999", str(uuid.uuid4())):
            async with http.get(f"/_fake/ledger/requests/{missing}") as response:
                assert response.status == 404
        async with http.post("/_fake/ledger/keys", json={"keys": "k-look"}) as response:
            assert response.status == 400


def test_key_table_numbers_keys_in_order_and_grows() -> None:
    table = KeyTable()
    keys = [str(uuid.UUID(int=i)) for i in range(5000)]
    assert [table.add(key) for key in keys] == list(range(5000))
    assert [table.add(key) for key in keys[:10]] == list(range(10))  # known keys keep theirs
    assert [table.find(key) for key in keys] == list(range(5000))
    assert table.find("never-seen") == -1
    assert len(table) == 5000
    # A block of 65,536 digests (8 + 4 bytes each), an index at most two-thirds full.
    assert table.nbytes() == (8 + 4) * 65536 + 4 * 8192
    generation = table.generation
    table.clear()
    assert (len(table), table.find(keys[0]), table.generation) == (0, -1, generation + 1)
    assert table.add("\udcff lone surrogate") == 0  # any header aiohttp decodes is a key


def test_byte_counts_are_exact_past_a_byte() -> None:
    counts = ByteCounts()
    assert counts.get(7) == counts.get(-1) == 0
    for _ in range(600):
        counts.increment(7)
    assert counts.increment(3) == 1
    assert (counts.get(7), counts.get(3), counts.get(5)) == (600, 1, 0)
    counts.clear()
    assert counts.get(7) == 0


def test_recent_forgets_the_oldest() -> None:
    recent: Recent[int] = Recent(2)
    for i in range(4):
        recent[f"k{i}"] = i
    assert dict(recent) == {"k2": 2, "k3": 3}
    unbounded: Recent[int] = Recent(None)
    for i in range(4):
        unbounded[f"k{i}"] = i
    assert len(unbounded) == 4


def test_ids_are_uuid4_shaped_and_read_back() -> None:
    ids, other = IdSource(), IdSource()
    order_id = ids.order_id(123456)
    parsed = uuid.UUID(order_id)
    assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
    assert str(parsed) == order_id
    assert ids.order_number(order_id) == 123456
    assert ids.request_seq(ids.correlation_id(42)) == 42
    assert ids.order_number(ids.correlation_id(42)) is None  # another prefix
    assert other.order_number(order_id) is None
    assert ids.order_number(str(uuid.uuid4())) is None
    assert ids.order_number("not an id") is None
    with pytest.raises(ValueError, match="out of range"):
        ids.order_id(1 << 48)


def _store() -> tuple[IdempotencyStore, IdSource]:
    ids = IdSource()
    return IdempotencyStore(keys=KeyTable(), ids=ids, keep_other=2), ids


def test_store_rebuilds_compact_answers_byte_for_byte() -> None:
    store, ids = _store()
    for n, (fraud, method) in enumerate(
        [("ACCEPTED", "invoice"), ("PENDING", None), ("ACCEPTED", "pay_by_card")]
    ):
        body = token_order_body(ids.order_id(n), fraud, "http://127.0.0.1:1", method)
        store.put(f"k{n}", 0.0, 200, body, ids.correlation_id(10 + n), None)
        stored = store.get(f"k{n}", 1.0)
        assert stored is not None
        assert (stored.status, stored.body, stored.error_code) == (200, body, None)
        assert stored.correlation_id == ids.correlation_id(10 + n)
        assert stored.expires_at == store.ttl
    assert store._whole == {}  # all three compact
    assert len(store) == 3
    assert store.get("k0", store.ttl) is None  # expired
    assert len(store) == 2


@pytest.mark.parametrize(
    "change",
    [
        lambda b: {**b, "extra": 1},
        lambda b: {**b, "fraud_status": "REJECTED"},
        lambda b: {**b, "authorized_payment_method": {"type": "crypto"}},
        lambda b: {**b, "order_id": str(uuid.uuid4())},
    ],
)
def test_store_keeps_other_answers_whole(change: Any) -> None:
    store, ids = _store()
    original = orjson.loads(token_order_body(ids.order_id(1), "ACCEPTED", "http://x", None))
    body = orjson.dumps(change(original))
    store.put("k", 0.0, 200, body, ids.correlation_id(1), None)
    stored = store.get("k", 0.0)
    assert stored is not None
    assert stored.body == body
    assert list(store._whole) == [store.keys.find("k")]


def test_store_forgets_the_oldest_whole_answers_and_follows_its_table() -> None:
    store, ids = _store()
    for n in range(3):
        store.put(f"e{n}", 0.0, 403, b'{"error_code": "X"}', ids.correlation_id(n), "X")
    assert store.get("e0", 0.0) is None  # keep_other=2: forgotten early
    assert [store.get(f"e{n}", 0.0) is not None for n in (1, 2)] == [True, True]
    assert len(store) == 2
    store.put("e1", 1.0, 200, b"{}", str(uuid.uuid4()), None)  # a second put replaces
    replaced = store.get("e1", 1.0)
    assert replaced is not None
    assert replaced.status == 200
    store.keys.clear()  # a ledger.clear() forgets the numbers: the store forgets its answers
    assert len(store) == 0
    assert store.get("e2", 0.0) is None
    with pytest.raises(ValueError, match="keep_other"):
        IdempotencyStore(keep_other=0)


def test_per_key_state_is_flat_arrays_not_python_objects() -> None:
    """Past the detail caps, a charge leaves no Python object behind: its key's count and stored
    answer live in preallocated array blocks (a dict entry and a string per key would show up
    here as two or more allocated blocks per key). fake_scale measures the bytes."""
    ledger = Ledger(keep_requests=0, keep_orders=0)
    store = IdempotencyStore(keys=ledger.keys, ids=ledger.ids)
    base = "http://127.0.0.1:8765"

    def charge(n: int) -> None:
        key = f"{uuid.UUID(int=n)}"
        order_id = ledger.new_order_id()
        order = OrderRecord(order_id, "recurring", 9, 0, "EUR", "ACCEPTED", True, 0.0)
        order.idempotency_key = key
        order.customer_token = "tok"
        ledger.add_order(order)
        body = token_order_body(order_id, "ACCEPTED", base, "invoice")
        store.put(key, 0.0, 200, body, ledger.ids.correlation_id(n), None)

    for n in range(2_000):  # the first blocks, caches
        charge(n)
    gc.collect()
    blocks = sys.getallocatedblocks()
    for n in range(2_000, 12_000):
        charge(n)
    gc.collect()
    assert sys.getallocatedblocks() - blocks < 500  # fewer than 0.05 objects per key
    assert ledger.order_count_for_key(f"{uuid.UUID(int=0)}") == 1
    assert ledger.order_count_for_token("tok") == 12_000
    stored = store.get(f"{uuid.UUID(int=11_999)}", 1.0)
    assert stored is not None
    assert store._whole == {}


def test_order_record_keeps_its_cart_compact() -> None:
    lines = [{"name": "Plan", "quantity": 1}]
    record = OrderRecord("o", "recurring", 1, 0, "EUR", "ACCEPTED", False, 0.0, order_lines=lines)
    assert record.order_lines == lines
    record.order_lines[0]["name"] = "changed"  # a copy
    assert record.order_lines == lines
    assert "Plan" not in repr(record)
    assert repr(record).startswith("OrderRecord(order_id='o'")


async def test_reprs_show_no_token_or_personal_data(small: FakeKlarna) -> None:
    token_id = small.add_customer_token()
    async with klarna_session(small.url) as http:
        await Api(http).charge(token_id, recurring_body(reference="Erika Mustermann"), key="k-r")
    shown = " ".join(
        repr(item)
        for item in (
            small.ledger.requests[-1],
            small.ledger.token(token_id),
            small.ledger.orders[-1],
        )
    )
    assert token_id not in shown
    assert token_id[-4:] in shown  # enough to tell two apart
    assert "Mustermann" not in shown
    assert "Authorization" not in shown
    assert "k-r" in shown
