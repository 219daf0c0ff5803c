"""KlarnaClient against aioresponses: each endpoint's method, path, headers and body (checked
against Klarna's specs), retries on the wire, and the client's lifecycle."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aioresponses import aioresponses
from yarl import URL

from klarna_async import (
    ApiError,
    ConnectError,
    CustomerTokenCreated,
    FraudStatus,
    Intent,
    KlarnaClient,
    NotFoundError,
    Order,
    OutcomeUnknownError,
    RequestTimeoutError,
    RequestValidationError,
    ResponseDecodeError,
    RetryPolicy,
    ServiceUnavailableError,
    Session,
    SessionCreated,
    TokenStatus,
    TransportError,
    derive_idempotency_key,
)
from tests import samples
from tests._spec import OPERATIONS, validate_request_body

BASE = "https://api.playground.klarna.com"
TOKEN = "0b1d9815-165e-42e2-8867-35bc03789e00"
AUTH = "b4bd3423-24e3"
ORDER = {
    "order_id": "a89ec121-1276-419d-882a-c343d58fd1bc",
    "fraud_status": "ACCEPTED",
    "redirect_url": "https://payments.klarna.com/redirect/x",
}
FAST = RetryPolicy(max_attempts=3, initial_delay=0.0, max_delay=0.0, deadline=5)


@pytest.fixture
async def client() -> AsyncIterator[KlarnaClient]:
    async with KlarnaClient(
        username="K123456_abcdef", password="s3cr3t-shared", retry=FAST, rate_limit=None
    ) as c:
        yield c


@pytest.fixture
def mocked() -> Any:
    with aioresponses() as m:
        yield m


def sent(m: Any, method: str, path: str) -> list[Any]:
    return m.requests.get((method, URL(BASE + path)), [])


def body_of(call: Any) -> Any:
    data = call.kwargs["data"]
    return None if data is None else orjson.loads(data)


def check_against_spec(operation: str, call: Any) -> None:
    spec, method, template = OPERATIONS[operation]
    validate_request_body(spec, method, template, body_of(call))


class TestEndpoints:
    async def test_create_session(self, client: KlarnaClient, mocked: Any):
        """POST /payments/v1/sessions with a spec-valid body; the answer is a SessionCreated."""
        mocked.post(
            BASE + "/payments/v1/sessions",
            payload={
                "session_id": "s1",
                "client_token": "ct",
                "payment_method_categories": [{"identifier": "klarna", "name": "Pay with Klarna"}],
            },
        )
        created = await client.payments.create_session(samples.session_request(Intent.TOKENIZE))
        assert isinstance(created, SessionCreated)
        assert ("s1", "ct") == (created.session_id, created.client_token)
        (call,) = sent(mocked, "POST", "/payments/v1/sessions")
        check_against_spec("payments.create_session", call)
        assert "tokenize" == body_of(call)["intent"]

    async def test_get_and_update_session(self, client: KlarnaClient, mocked: Any):
        """GET reads a session; POST updates it (204, no body)."""
        mocked.get(
            BASE + "/payments/v1/sessions/s1",
            payload={
                "status": "incomplete",
                "purchase_country": "US",
                "purchase_currency": "USD",
                "order_amount": 10,
                "order_lines": [],
                "intent": "buy",
                "expires_at": "2026-12-02T00:00:00Z",
            },
        )
        mocked.post(BASE + "/payments/v1/sessions/s1", status=204)
        session = await client.payments.get_session("s1")
        assert isinstance(session, Session)
        await client.payments.update_session("s1", samples.session_request())
        (call,) = sent(mocked, "POST", "/payments/v1/sessions/s1")
        check_against_spec("payments.update_session", call)
        (get,) = sent(mocked, "GET", "/payments/v1/sessions/s1")
        assert get.kwargs["data"] is None

    async def test_one_time_order(self, client: KlarnaClient, mocked: Any):
        """POST .../authorizations/{token}/order with the seed's order; no idempotency key."""
        mocked.post(
            f"{BASE}/payments/v1/authorizations/{AUTH}/order",
            payload={**ORDER, "authorized_payment_method": "invoice"},
        )
        order = await client.payments.create_order(AUTH, samples.one_time_order())
        assert isinstance(order, Order)
        assert FraudStatus.ACCEPTED == order.fraud_status
        (call,) = sent(mocked, "POST", f"/payments/v1/authorizations/{AUTH}/order")
        check_against_spec("payments.create_order", call)
        assert "Klarna-Idempotency-Key" not in call.kwargs["headers"]

    async def test_customer_token(self, client: KlarnaClient, mocked: Any):
        """POST .../customer-token with intended_use SUBSCRIPTION and a currency (the spec)."""
        mocked.post(
            f"{BASE}/payments/v1/authorizations/{AUTH}/customer-token",
            payload={"token_id": TOKEN, "redirect_url": "https://credit.klarna.com/x"},
        )
        created = await client.payments.create_customer_token(
            AUTH, samples.customer_token_request()
        )
        assert isinstance(created, CustomerTokenCreated)
        assert TOKEN == created.token_id
        (call,) = sent(mocked, "POST", f"/payments/v1/authorizations/{AUTH}/customer-token")
        check_against_spec("payments.create_customer_token", call)
        assert "SUBSCRIPTION" == body_of(call)["intended_use"]

    async def test_cancel_authorization(self, client: KlarnaClient, mocked: Any):
        """DELETE .../authorizations/{token}: 204."""
        mocked.delete(f"{BASE}/payments/v1/authorizations/{AUTH}", status=204)
        assert await client.payments.cancel_authorization(AUTH) is None
        assert 1 == len(sent(mocked, "DELETE", f"/payments/v1/authorizations/{AUTH}"))

    async def test_read_and_cancel_customer_token(self, client: KlarnaClient, mocked: Any):
        """GET a token; PATCH its status to CANCELLED (202)."""
        mocked.get(
            f"{BASE}/customer-token/v1/tokens/{TOKEN}",
            payload={"status": "ACTIVE", "payment_method_type": "INVOICE"},
        )
        mocked.patch(f"{BASE}/customer-token/v1/tokens/{TOKEN}/status", status=202)
        token = await client.customer_tokens.get(TOKEN)
        assert TokenStatus.ACTIVE == token.status
        await client.customer_tokens.cancel(TOKEN)
        (call,) = sent(mocked, "PATCH", f"/customer-token/v1/tokens/{TOKEN}/status")
        check_against_spec("customer_tokens.cancel", call)
        assert {"status": "CANCELLED"} == body_of(call)

    async def test_recurring_order_sends_a_fresh_uuid4_key(self, client: KlarnaClient, mocked: Any):
        """Without a key, one UUID4 is made for the call and sent as Klarna-Idempotency-Key."""
        mocked.post(f"{BASE}/customer-token/v1/tokens/{TOKEN}/order", payload=ORDER)
        await client.customer_tokens.create_order(TOKEN, samples.token_order())
        (call,) = sent(mocked, "POST", f"/customer-token/v1/tokens/{TOKEN}/order")
        check_against_spec("customer_tokens.create_order", call)
        key = call.kwargs["headers"]["Klarna-Idempotency-Key"]
        assert 4 == uuid.UUID(key).version

    async def test_mapping_input_is_structured_and_validated_the_same(
        self, client: KlarnaClient, mocked: Any
    ):
        """A plain mapping of the JSON shape goes out as the same bytes as the model."""
        mocked.post(f"{BASE}/customer-token/v1/tokens/{TOKEN}/order", payload=ORDER, repeat=True)
        from klarna_async._converter import to_dict

        model = samples.token_order()
        await client.customer_tokens.create_order(TOKEN, model, idempotency_key="k1")
        await client.customer_tokens.create_order(TOKEN, to_dict(model), idempotency_key="k2")
        first, second = sent(mocked, "POST", f"/customer-token/v1/tokens/{TOKEN}/order")
        assert first.kwargs["data"] == second.kwargs["data"]

    async def test_path_parameters_are_escaped(self, client: KlarnaClient, mocked: Any):
        """A token cannot walk the path: it is one percent-encoded segment."""
        mocked.get(re.compile(r".*"), payload={"status": "ACTIVE", "payment_method_type": "X"})
        await client.customer_tokens.get("../../payments/v1/sessions")
        ((_, url),) = mocked.requests.keys()
        assert url.raw_path == "/customer-token/v1/tokens/..%2F..%2Fpayments%2Fv1%2Fsessions"

    @pytest.mark.parametrize("bad", ["", "   ", ".", ".."])
    async def test_empty_path_parameters_are_refused(self, client: KlarnaClient, bad: str):
        """An empty token is a bug in the caller, refused before sending."""
        with pytest.raises(ValueError, match="customer_token"):
            await client.customer_tokens.get(bad)


class TestHeaders:
    async def test_headers_on_the_wire(self):
        """Basic auth, JSON content type, Klarna's User-Agent convention and the key, as the
        server receives them from the client's own pool."""
        from klarna_async.testing import FakeKlarna

        async with FakeKlarna() as fake:
            token = fake.add_customer_token()
            async with KlarnaClient(
                username=fake.username, password=fake.password, base_url=fake.url
            ) as c:
                await c.customer_tokens.create_order(
                    token, samples.token_order(), idempotency_key="key-1"
                )
            (request,) = fake.ledger.requests
        assert 200 == request.status  # the fake checks Basic credentials: 401 otherwise
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert "application/json" == headers["content-type"]
        assert "key-1" == headers["klarna-idempotency-key"]
        assert re.fullmatch(
            r"Library/klarna_async_\S+ Language/Python_3\.\d+\.\d+ OS/\S+_\S+",
            headers["user-agent"],
        )

    async def test_headers_with_a_borrowed_session(self, mocked: Any):
        """A borrowed session knows nothing of ours: every request brings all our headers."""
        mocked.post(f"{BASE}/customer-token/v1/tokens/{TOKEN}/order", payload=ORDER)
        async with (
            aiohttp.ClientSession() as session,
            KlarnaClient(username="K123456_abcdef", password="s3cr3t-shared", session=session) as c,
        ):
            await c.customer_tokens.create_order(
                TOKEN, samples.token_order(), idempotency_key="key-1"
            )
        (call,) = sent(mocked, "POST", f"/customer-token/v1/tokens/{TOKEN}/order")
        headers = call.kwargs["headers"]
        expected_auth = "Basic " + base64.b64encode(b"K123456_abcdef:s3cr3t-shared").decode()
        assert expected_auth == headers["Authorization"]
        assert "application/json" == headers["Content-Type"]
        assert "key-1" == headers["Klarna-Idempotency-Key"]
        assert headers["User-Agent"].startswith("Library/klarna_async_")

    def test_secrets_stay_out_of_repr(self):
        """Neither the password nor the Authorization value shows in the client's repr."""
        c = KlarnaClient(username="K123456_abcdef", password="s3cr3t-shared")
        text = repr(c) + repr(c._credentials)
        assert "s3cr3t" not in text
        assert base64.b64encode(b"K123456_abcdef:s3cr3t-shared").decode() not in text

    def test_base_urls(self):
        """Region and environment pick Klarna's documented hosts; base_url overrides them."""
        assert (
            "https://api-na.klarna.com"
            == KlarnaClient(
                username="u", password="p", region="na", environment="production"
            ).base_url
        )
        assert (
            "https://api-oc.playground.klarna.com"
            == KlarnaClient(username="u", password="p", region="oc").base_url
        )
        assert (
            "http://127.0.0.1:9"
            == KlarnaClient(username="u", password="p", base_url="http://127.0.0.1:9/").base_url
        )

    async def test_base_url_with_a_path_keeps_it(self, mocked: Any):
        """A base_url behind a path prefix (a proxy, say) keeps the prefix on every call."""
        mocked.get(
            "http://proxy.test/klarna/customer-token/v1/tokens/t-1",
            payload={"status": "ACTIVE", "payment_method_type": "CARD"},
        )
        async with KlarnaClient(
            username="u", password="p", base_url="http://proxy.test/klarna/", retry=FAST
        ) as c:
            token = await c.customer_tokens.get("t-1")
        assert "ACTIVE" == token.status

    @pytest.mark.parametrize("base_url", ["/no/host", "http://h.test/?q=1", "http://h.test/#f"])
    def test_base_url_must_be_absolute_without_query(self, base_url: str):
        """A base_url that cannot prefix a path is refused when the client is made."""
        with pytest.raises(ValueError, match="base_url"):
            KlarnaClient(username="u", password="p", base_url=base_url)

    def test_bad_configuration(self):
        """Unknown regions, empty credentials and an empty pool are refused at once."""
        with pytest.raises(ValueError, match="mars"):
            KlarnaClient(username="u", password="p", region="mars")
        with pytest.raises(ValueError, match="non-empty"):
            KlarnaClient(username="", password="p")
        with pytest.raises(ValueError, match="connection_limit"):
            KlarnaClient(username="u", password="p", connection_limit=0)


class TestRetriesOnTheWire:
    async def test_same_key_and_bytes_on_every_attempt(self, client: KlarnaClient, mocked: Any):
        """503, 503, then 200: three attempts with the same key and the same body bytes."""
        url = f"{BASE}/customer-token/v1/tokens/{TOKEN}/order"
        unavailable = {
            "error_code": "SERVICE_UNAVAILABLE",
            "error_messages": ["later"],
            "correlation_id": "c",
        }
        mocked.post(url, status=503, payload=unavailable)
        mocked.post(url, status=503, payload=unavailable)
        mocked.post(url, payload=ORDER)
        order = await client.customer_tokens.create_order(TOKEN, samples.token_order())
        assert ORDER["order_id"] == order.order_id
        calls = sent(mocked, "POST", f"/customer-token/v1/tokens/{TOKEN}/order")
        assert 3 == len(calls)
        assert 1 == len({c.kwargs["headers"]["Klarna-Idempotency-Key"] for c in calls})
        assert 1 == len({c.kwargs["data"] for c in calls})

    @pytest.mark.parametrize("status", [400, 401, 403, 404])
    async def test_no_retry_on_client_errors(self, client: KlarnaClient, mocked: Any, status: int):
        """A 4xx answer is final: exactly one attempt."""
        url = f"{BASE}/customer-token/v1/tokens/{TOKEN}/order"
        mocked.post(url, status=status, payload={"error_code": "X"}, repeat=True)
        with pytest.raises(ApiError) as caught:
            await client.customer_tokens.create_order(TOKEN, samples.token_order())
        assert status == caught.value.status
        assert 1 == len(sent(mocked, "POST", f"/customer-token/v1/tokens/{TOKEN}/order"))

    async def test_409_on_a_keyed_charge_is_retried_and_never_failed(
        self, client: KlarnaClient, mocked: Any
    ):
        """409 to a keyed charge may mean the key is still in flight: repeated with the same
        key; if it never clears, the outcome is unknown, not 'not charged'."""
        url = f"{BASE}/customer-token/v1/tokens/{TOKEN}/order"
        mocked.post(url, status=409, payload={"error_code": "CONFLICT"}, repeat=True)
        with pytest.raises(OutcomeUnknownError):
            await client.customer_tokens.create_order(TOKEN, samples.token_order())
        assert 3 == len(sent(mocked, "POST", f"/customer-token/v1/tokens/{TOKEN}/order"))

    async def test_409_on_a_one_time_order_is_klarnas_answer(
        self, client: KlarnaClient, mocked: Any
    ):
        """Without a key, 409 is the spec's 'does not match the session': final."""
        url = f"{BASE}/payments/v1/authorizations/{AUTH}/order"
        mocked.post(url, status=409, payload={"error_code": "BAD_VALUE"}, repeat=True)
        with pytest.raises(ApiError) as caught:
            await client.payments.create_order(AUTH, samples.one_time_order())
        assert 409 == caught.value.status
        assert 1 == len(sent(mocked, "POST", f"/payments/v1/authorizations/{AUTH}/order"))

    async def test_connection_refused_then_success(self, client: KlarnaClient, mocked: Any):
        """A refused connection is retried (nothing was sent)."""
        url = f"{BASE}/customer-token/v1/tokens/{TOKEN}"
        mocked.get(
            url,
            exception=aiohttp.ClientConnectorError(
                connection_key=None, os_error=ConnectionRefusedError(111, "Connection refused")
            ),
        )  # type: ignore[arg-type]
        mocked.get(url, payload={"status": "ACTIVE", "payment_method_type": "CARD"})
        assert TokenStatus.ACTIVE == (await client.customer_tokens.get(TOKEN)).status

    async def test_a_connect_timeout_was_never_sent(self, client: KlarnaClient, mocked: Any):
        """A timeout while connecting is 'not sent': a charge that only ever met it is not
        charged (the timeout, not OutcomeUnknownError), and it was retried."""
        url = f"{BASE}/customer-token/v1/tokens/{TOKEN}/order"
        mocked.post(url, exception=aiohttp.ConnectionTimeoutError(), repeat=True)
        with pytest.raises(RequestTimeoutError) as caught:
            await client.customer_tokens.create_order(TOKEN, samples.token_order())
        assert not caught.value.maybe_sent
        assert 3 == caught.value.attempts

    async def test_a_read_timeout_may_have_been_sent(self, client: KlarnaClient, mocked: Any):
        """A timeout after connecting may come after Klarna acted: unknown."""
        url = f"{BASE}/customer-token/v1/tokens/{TOKEN}/order"
        mocked.post(url, exception=aiohttp.SocketTimeoutError(), repeat=True)
        with pytest.raises(OutcomeUnknownError):
            await client.customer_tokens.create_order(TOKEN, samples.token_order())

    async def test_one_time_order_lost_answer_then_not_found(
        self, client: KlarnaClient, mocked: Any
    ):
        """Answer lost, then the single-use token is gone: OutcomeUnknownError, not NotFound."""
        url = f"{BASE}/payments/v1/authorizations/{AUTH}/order"
        mocked.post(url, exception=aiohttp.ServerDisconnectedError())
        mocked.post(
            url,
            status=404,
            payload={"error_code": "NOT_FOUND", "error_messages": ["Invalid authorization token"]},
        )
        with pytest.raises(OutcomeUnknownError) as caught:
            await client.payments.create_order(AUTH, samples.one_time_order())
        assert not isinstance(caught.value, NotFoundError)
        assert 2 == caught.value.attempts
        assert isinstance(caught.value.last_error, NotFoundError)

    async def test_unreadable_success_on_a_write_is_outcome_unknown(
        self, client: KlarnaClient, mocked: Any
    ):
        """A 200 that is no order (an HTML page): Klarna may have charged, so the caller gets
        OutcomeUnknownError with the key, never a plain decode error or a silent success."""
        mocked.post(
            f"{BASE}/customer-token/v1/tokens/{TOKEN}/order",
            status=200,
            body="<html>ok</html>",
            content_type="text/html",
            repeat=True,
        )
        with pytest.raises(OutcomeUnknownError) as caught:
            await client.customer_tokens.create_order(
                TOKEN, samples.token_order(), idempotency_key="k-html"
            )
        assert "k-html" == caught.value.idempotency_key
        assert isinstance(caught.value.last_error, ResponseDecodeError)
        assert 1 == caught.value.attempts

    async def test_unreadable_success_on_a_read_is_a_decode_error(
        self, client: KlarnaClient, mocked: Any
    ):
        """A read's odd answer is a ResponseDecodeError listing what is wrong, not a KeyError."""
        mocked.get(f"{BASE}/customer-token/v1/tokens/{TOKEN}", payload={"status": "ACTIVE"})
        with pytest.raises(ResponseDecodeError) as caught:
            await client.customer_tokens.get(TOKEN)
        assert any("payment_method_type" in p for p in caught.value.problems)

    async def test_per_call_policy_override(self, client: KlarnaClient, mocked: Any):
        """retry= on a call replaces the client's policy for that call."""
        url = f"{BASE}/customer-token/v1/tokens/{TOKEN}"
        mocked.get(url, status=503, payload={"error_code": "SERVICE_UNAVAILABLE"}, repeat=True)
        with pytest.raises(ServiceUnavailableError) as caught:
            await client.customer_tokens.get(TOKEN, retry=RetryPolicy.no_retries())
        assert 1 == caught.value.attempts

    async def test_transport_errors_carry_no_chain(self, client: KlarnaClient, mocked: Any):
        """aiohttp's error (its request_info holds the Authorization header and the URL with
        the token) is neither the __cause__ nor the __context__ of ours."""
        url = f"{BASE}/customer-token/v1/tokens/{TOKEN}"
        mocked.get(url, exception=aiohttp.ClientPayloadError("truncated"), repeat=True)
        with pytest.raises(TransportError) as caught:
            await client.customer_tokens.get(TOKEN)
        assert caught.value.__cause__ is None
        assert caught.value.__context__ is None
        assert "ClientPayloadError" in str(caught.value)

    async def test_no_secret_or_token_in_logs(self, client: KlarnaClient, mocked: Any, caplog):
        """At DEBUG, through retries and failure: no password, no auth header, no full token."""
        url = f"{BASE}/customer-token/v1/tokens/{TOKEN}/order"
        mocked.post(url, exception=aiohttp.ServerDisconnectedError(), repeat=True)
        with caplog.at_level(logging.DEBUG), pytest.raises(OutcomeUnknownError) as caught:
            await client.customer_tokens.create_order(TOKEN, samples.token_order())
        text = caplog.text + str(caught.value) + repr(caught.value)
        assert "retrying" in text
        for secret in ("s3cr3t", "Basic ", TOKEN, "john@doe.com"):
            assert secret not in text
        assert "****9e00" in caplog.text


class TestValidationBeforeSending:
    async def test_nothing_is_sent(self, client: KlarnaClient, mocked: Any):
        """A bad request raises RequestValidationError listing every problem; no request."""
        bad = {
            "purchase_currency": "EURO",
            "order_amount": 0,
            "order_tax_amount": 0,
            "order_lines": [],
        }
        with pytest.raises(RequestValidationError) as caught:
            await client.customer_tokens.create_order(TOKEN, bad)
        paths = {v.path for v in caught.value.violations}
        assert {"$.purchase_currency", "$.order_amount", "$.order_lines"} <= paths
        assert not mocked.requests


class TestLifecycle:
    async def test_use_before_open(self):
        """A call on an unopened client says how to open it."""
        c = KlarnaClient(username="u", password="p")
        with pytest.raises(RuntimeError, match="async with"):
            await c.customer_tokens.get(TOKEN)

    async def test_use_after_close(self):
        """A closed client refuses calls and cannot be reopened."""
        async with KlarnaClient(username="u", password="p") as c:
            pass
        assert c.closed
        with pytest.raises(RuntimeError, match="closed"):
            await c.customer_tokens.get(TOKEN)
        with pytest.raises(RuntimeError, match="closed"):
            await c.open()
        await c.aclose()  # idempotent

    async def test_open_twice_is_harmless(self):
        """open() on an open client returns it unchanged."""
        async with KlarnaClient(username="u", password="p") as c:
            assert c is await c.open()

    def test_other_event_loop(self):
        """A client opened on one loop refuses to work on another."""
        c = KlarnaClient(username="u", password="p")
        asyncio.run(c.open())

        async def use() -> None:
            await c.customer_tokens.get(TOKEN)

        with pytest.raises(RuntimeError, match="another event loop"):
            asyncio.run(use())
        asyncio.run(c._requester._session.close())  # type: ignore[union-attr]

    async def test_borrowed_session_stays_open(self, mocked: Any):
        """A session the caller passes in is used and left open on close."""
        mocked.get(
            f"{BASE}/customer-token/v1/tokens/{TOKEN}",
            payload={"status": "ACTIVE", "payment_method_type": "INVOICE"},
        )
        async with aiohttp.ClientSession() as session:
            async with KlarnaClient(
                username="u", password="p", session=session, rate_limit=None
            ) as c:
                await c.customer_tokens.get(TOKEN)
            assert not session.closed

    async def test_closed_borrowed_session_is_refused(self):
        """Borrowing a closed session fails clearly at open."""
        session = aiohttp.ClientSession()
        await session.close()
        with pytest.raises(RuntimeError, match="closed"):
            await KlarnaClient(username="u", password="p", session=session).open()

    async def test_connect_error_to_nowhere(self):
        """A real refused connection on loopback becomes ConnectError after retries."""
        async with KlarnaClient(
            username="u", password="p", base_url="http://127.0.0.1:9", retry=FAST
        ) as c:
            with pytest.raises(ConnectError) as caught:
                await c.customer_tokens.get(TOKEN)
        assert 3 == caught.value.attempts


class TestIdempotencyKeys:
    def test_derived_keys_are_stable_uuid5(self):
        """The same business identifiers give the same UUIDv5; others give another."""
        a = derive_idempotency_key("acme", "sub-1", "2026-11")
        assert a == derive_idempotency_key("acme", "sub-1", "2026-11")
        assert a != derive_idempotency_key("acme", "sub-1", "2026-12")
        assert a != derive_idempotency_key("acme", "sub-12026", "-11")
        assert 5 == uuid.UUID(a).version
        ns = uuid.uuid4()
        assert derive_idempotency_key(ns, 1) == derive_idempotency_key(ns, "1")

    def test_needs_identifiers(self):
        """A key from nothing but a namespace would collide across charges."""
        with pytest.raises(ValueError, match="business identifier"):
            derive_idempotency_key("acme")

    async def test_empty_key_refused(self, client: KlarnaClient):
        """An empty idempotency key is refused before sending."""
        with pytest.raises(ValueError, match="idempotency_key"):
            await client.customer_tokens.create_order(
                TOKEN, samples.token_order(), idempotency_key=" "
            )
