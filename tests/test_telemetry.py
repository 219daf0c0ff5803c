"""OpenTelemetry (``KlarnaClient(telemetry=Telemetry(...))``): spans, events and metrics as the
SDK's in-memory exporter and reader receive them, against the fake Klarna and scripted peers.

What is checked: one INTERNAL span per call and one CLIENT span per HTTP attempt, with their
names, kinds, parents and attributes; resend counts; wait events; the three instruments; that no
token, credential or personal data reaches any span, event or metric of a faulted run; that no
trace context goes to Klarna unless asked; that broken telemetry never changes an outcome; and
that without the extra nothing of OpenTelemetry is imported.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import logging
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from opentelemetry import baggage, metrics, trace
from opentelemetry import context as otel_context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import NonRecordingSpan, SpanKind, StatusCode

import klarna_async._resources.customer_tokens as customer_tokens_module
import klarna_async._resources.payments as payments_module
from klarna_async import (
    Intent,
    KlarnaClient,
    KlarnaError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    RetryPolicy,
    ServiceUnavailableError,
    Telemetry,
    TokenCanceledError,
    TransportError,
)
from klarna_async._request import Endpoint
from klarna_async._telemetry._otel import DURATION_BUCKETS, url_template
from klarna_async.testing import FakeKlarna, Fault
from tests import samples
from tests._spec import load_spec
from tests.scripted_peer import ORDER, klarna_error, scripted_peer
from tests.test_retry import FakeTime, api, retrier, run, script

ROOT = Path(__file__).resolve().parent.parent
#: Whether this opentelemetry-api takes bucket advice for histograms (1.30 and later).
ADVICE = (
    "explicit_bucket_boundaries_advisory"
    in inspect.signature(metrics.Meter.create_histogram).parameters
)
CT_ORDER = "customer_tokens.create_order"
ORDER_TEMPLATE = "/customer-token/v1/tokens/{customerToken}/order"
QUICK = RetryPolicy(
    max_attempts=3, initial_delay=0.0, max_delay=0.0, deadline=5, attempt_timeout=1.0
)


class Otel:
    """An SDK tracer and meter provider, each reading into memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(shutdown_on_exit=False)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader], shutdown_on_exit=False)

    def telemetry(self, **options: Any) -> Telemetry:
        return Telemetry(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **options
        )

    def spans(self, kind: SpanKind | None = None) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if kind is None or s.kind is kind]

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def metrics(self) -> dict[str, Any]:
        data = self.reader.get_metrics_data()
        return {
            metric.name: metric
            for resource in (data.resource_metrics if data is not None else ())
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }


@pytest.fixture
def otel() -> Iterator[Otel]:
    providers = Otel()
    yield providers
    providers.tracer_provider.shutdown()
    providers.meter_provider.shutdown()


@pytest.fixture
async def fake() -> AsyncIterator[FakeKlarna]:
    async with FakeKlarna(seed=1, latency_seconds=0.5) as f:
        yield f


def client_for(url: str, **options: Any) -> KlarnaClient:
    settings: dict[str, Any] = {"retry": QUICK, "rate_limit": None}
    settings.update(options)
    return KlarnaClient(username="test_user", password="test_password", base_url=url, **settings)


def by_name(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    (span,) = [s for s in spans if s.name == name]
    return span


def attempts_of(otel: Otel, call: ReadableSpan) -> list[ReadableSpan]:
    """The CLIENT spans whose parent is ``call``, in order."""
    assert call.context is not None
    children = [
        s
        for s in otel.spans(SpanKind.CLIENT)
        if s.parent is not None and s.parent.span_id == call.context.span_id
    ]
    return sorted(children, key=lambda s: s.start_time or 0)


class TestCallSpans:
    async def test_a_call_with_retries_makes_one_internal_span_and_a_client_span_per_attempt(
        self, fake: FakeKlarna, otel: Otel
    ):
        """503, connection reset, then the order: one INTERNAL span (placed, 3 attempts, the
        order id and the last correlation id) over three CLIENT spans in the same trace, with
        resend counts 1 and 2 on the second and third."""
        token = fake.add_customer_token()
        fake.faults.script(CT_ORDER, [Fault.SERVICE_UNAVAILABLE, Fault.RESET_BEFORE])
        async with client_for(fake.url, telemetry=otel.telemetry()) as client:
            order = await client.customer_tokens.create_order(
                token, samples.token_order(), idempotency_key="charge-1"
            )

        (call,) = otel.spans(SpanKind.INTERNAL)
        assert "klarna.customer_tokens.create_order" == call.name
        assert StatusCode.UNSET == call.status.status_code
        first, second, third = attempts_of(otel, call)
        assert 3 == len(otel.spans(SpanKind.CLIENT))
        assert call.context is not None
        assert {call.context.trace_id} == {s.context.trace_id for s in (first, second, third)}  # type: ignore[union-attr]
        assert call.parent is None
        assert {
            "klarna.operation": CT_ORDER,
            "klarna.region": "eu",
            "klarna.environment": "playground",
            "klarna.outcome": "placed",
            "klarna.attempts": 3,
            "klarna.order_id": order.order_id,
            "klarna.correlation_id": third.attributes["klarna.correlation_id"],  # type: ignore[index]
        } == dict(call.attributes or {})

        assert [f"POST {ORDER_TEMPLATE}"] * 3 == [s.name for s in (first, second, third)]
        assert [None, 1, 2] == [
            (s.attributes or {}).get("http.request.resend_count") for s in (first, second, third)
        ]
        assert [503, None, 200] == [
            (s.attributes or {}).get("http.response.status_code") for s in (first, second, third)
        ]
        assert ["503", "klarna_async.TransportError", None] == [
            (s.attributes or {}).get("error.type") for s in (first, second, third)
        ]
        assert [StatusCode.ERROR, StatusCode.ERROR, StatusCode.UNSET] == [
            s.status.status_code for s in (first, second, third)
        ]

    async def test_the_client_span_carries_the_http_conventions_and_nothing_else(
        self, fake: FakeKlarna, otel: Otel
    ):
        """Exactly the stable HTTP client attributes (and Klarna's correlation id); url.full is
        the template on the base URL."""
        token = fake.add_customer_token()
        async with client_for(fake.url, telemetry=otel.telemetry()) as client:
            await client.customer_tokens.create_order(token, samples.token_order())
        (attempt,) = otel.spans(SpanKind.CLIENT)
        port = int(fake.url.rsplit(":", 1)[1])
        correlation_id = fake.ledger.requests[-1].correlation_id
        assert {
            "http.request.method": "POST",
            "url.template": ORDER_TEMPLATE,
            "url.full": fake.url + ORDER_TEMPLATE,
            "server.address": "127.0.0.1",
            "server.port": port,
            "http.response.status_code": 200,
            "klarna.correlation_id": correlation_id,
        } == dict(attempt.attributes or {})

    async def test_the_call_span_is_a_child_of_the_applications_span_and_leaves_it_current(
        self, fake: FakeKlarna, otel: Otel
    ):
        """Inside the application's span the call nests under it; after the call (a success
        and a failure alike) the application's span is current again."""
        token = fake.add_customer_token()
        tracer = otel.tracer_provider.get_tracer("app")
        async with client_for(fake.url, telemetry=otel.telemetry()) as client:
            with tracer.start_as_current_span("handle request") as mine:
                await client.customer_tokens.get(token)
                assert mine is trace.get_current_span()
                with pytest.raises(NotFoundError):
                    await client.customer_tokens.get("no-such-token-000000")
                assert mine is trace.get_current_span()
            await client.customer_tokens.get(token)
            assert trace.INVALID_SPAN is trace.get_current_span()
        app = by_name(otel.spans(), "handle request")
        calls = otel.spans(SpanKind.INTERNAL)
        assert 4 == len(calls)  # the app's own span is INTERNAL too
        nested = [c for c in calls if c.parent is not None]
        assert 2 == len(nested)
        assert {app.context.span_id} == {c.parent.span_id for c in nested}  # type: ignore[union-attr]

    async def test_a_declined_charge(self, fake: FakeKlarna, otel: Otel):
        """A cancelled token: outcome declined, Klarna's code, error.type, status Error; its
        CLIENT span has error.type 403 and status Error."""
        token = fake.add_customer_token()
        fake.set_token_status(token, "CANCELLED")
        async with client_for(fake.url, telemetry=otel.telemetry()) as client:
            with pytest.raises(TokenCanceledError) as caught:
                await client.customer_tokens.create_order(token, samples.token_order())
        (call,) = otel.spans(SpanKind.INTERNAL)
        attributes = dict(call.attributes or {})
        assert "declined" == attributes["klarna.outcome"]
        assert "TOKEN_CANCELED" == attributes["klarna.error_code"]
        assert "klarna_async.TokenCanceledError" == attributes["error.type"]
        assert caught.value.correlation_id == attributes["klarna.correlation_id"]
        assert 1 == attributes["klarna.attempts"]
        assert (StatusCode.ERROR, "TokenCanceledError") == (
            call.status.status_code,
            call.status.description,
        )
        (attempt,) = attempts_of(otel, call)
        assert ("403", StatusCode.ERROR) == (
            (attempt.attributes or {})["error.type"],
            attempt.status.status_code,
        )
        assert [] == otel.points("klarna.client.unknown_outcomes")

    async def test_a_charge_whose_answer_is_lost_is_unknown_and_counted(
        self, fake: FakeKlarna, otel: Otel
    ):
        """Committed, answer dropped, three times: outcome unknown, one unknown outcome counted
        for the operation, the key not recorded."""
        token = fake.add_customer_token()
        fake.faults.script(CT_ORDER, [Fault.DROP_AFTER_COMMIT] * 3)
        async with client_for(fake.url, telemetry=otel.telemetry()) as client:
            with pytest.raises(OutcomeUnknownError):
                await client.customer_tokens.create_order(
                    token, samples.token_order(), idempotency_key="lost-1"
                )
        (call,) = otel.spans(SpanKind.INTERNAL)
        attributes = dict(call.attributes or {})
        assert ("unknown", 3, "klarna_async.OutcomeUnknownError") == (
            attributes["klarna.outcome"],
            attributes["klarna.attempts"],
            attributes["error.type"],
        )
        assert "klarna.idempotency_key" not in attributes
        (point,) = otel.points("klarna.client.unknown_outcomes")
        assert (1, {"klarna.operation": CT_ORDER}) == (point.value, dict(point.attributes))

    async def test_a_charge_refused_before_processing_is_retryable(
        self, fake: FakeKlarna, otel: Otel
    ):
        """Klarna's 503 on every attempt proves nothing was charged: outcome retryable (as
        ChargeResult.status would say), Klarna's code on the span."""
        token = fake.add_customer_token()
        fake.faults.script(CT_ORDER, [Fault.SERVICE_UNAVAILABLE] * 3)
        async with client_for(fake.url, telemetry=otel.telemetry()) as client:
            with pytest.raises(ServiceUnavailableError):
                await client.customer_tokens.create_order(token, samples.token_order())
        (call,) = otel.spans(SpanKind.INTERNAL)
        assert ("retryable", "SERVICE_UNAVAILABLE", 3) == (
            (call.attributes or {})["klarna.outcome"],
            (call.attributes or {})["klarna.error_code"],
            (call.attributes or {})["klarna.attempts"],
        )

    async def test_calls_that_are_not_charges_say_ok_error_or_unknown(
        self, fake: FakeKlarna, otel: Otel
    ):
        """A read that works is ok, one that fails is error; a write that is not a charge and
        may have acted is unknown; only charges say placed."""
        token = fake.add_customer_token()
        async with client_for(fake.url, telemetry=otel.telemetry()) as client:
            await client.customer_tokens.get(token)
            with pytest.raises(NotFoundError):
                await client.customer_tokens.get("no-such-token-000000")
            fake.faults.script("customer_tokens.cancel", [Fault.DROP_AFTER_COMMIT] * 3)
            with pytest.raises(OutcomeUnknownError):
                await client.customer_tokens.cancel(token)
        calls = otel.spans(SpanKind.INTERNAL)
        outcomes = [(s.name, (s.attributes or {})["klarna.outcome"]) for s in calls]
        assert [
            ("klarna.customer_tokens.get", "ok"),
            ("klarna.customer_tokens.get", "error"),
            ("klarna.customer_tokens.cancel", "unknown"),
        ] == outcomes
        assert "NOT_FOUND" == (calls[1].attributes or {})["klarna.error_code"]
        assert "klarna.order_id" not in (calls[0].attributes or {})

    async def test_the_idempotency_key_only_when_asked(self, fake: FakeKlarna, otel: Otel):
        """record_idempotency_key=True puts the key on the call span, never on an attempt."""
        token = fake.add_customer_token()
        async with client_for(fake.url, telemetry=otel.telemetry()) as client:
            await client.customer_tokens.create_order(
                token, samples.token_order(), idempotency_key="quiet-key"
            )
        async with client_for(
            fake.url, telemetry=otel.telemetry(record_idempotency_key=True)
        ) as client:
            await client.customer_tokens.create_order(
                token, samples.token_order(), idempotency_key="told-key"
            )
        quiet, told = otel.spans(SpanKind.INTERNAL)
        assert "klarna.idempotency_key" not in (quiet.attributes or {})
        assert "told-key" == (told.attributes or {})["klarna.idempotency_key"]
        for attempt in otel.spans(SpanKind.CLIENT):
            assert "told-key" not in (attempt.attributes or {}).values()

    async def test_a_cancelled_call_ends_its_span_and_restores_the_context(
        self, fake: FakeKlarna, otel: Otel
    ):
        """The caller gives up during a slow attempt: both spans end (the attempt with
        error.type CancelledError), and nothing of the call stays current."""
        token = fake.add_customer_token()
        fake.faults.script(CT_ORDER, [(Fault.LATENCY, 2.0)])
        async with client_for(fake.url, telemetry=otel.telemetry()) as client:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await client.customer_tokens.create_order(token, samples.token_order())
            assert trace.INVALID_SPAN is trace.get_current_span()
        (call,) = otel.spans(SpanKind.INTERNAL)
        (attempt,) = attempts_of(otel, call)
        assert "unknown" == (call.attributes or {})["klarna.outcome"]
        assert "asyncio.exceptions.CancelledError" == (attempt.attributes or {})["error.type"]

    def test_url_template_of_every_endpoint_is_a_path_of_klarnas_spec(self):
        """url.template is the path as Klarna's OpenAPI documents write it, for every
        endpoint the client declares."""
        endpoints = [
            value
            for module in (payments_module, customer_tokens_module)
            for value in vars(module).values()
            if isinstance(value, Endpoint)
        ]
        assert len(endpoints) >= 9
        for endpoint in endpoints:
            template = url_template(endpoint)
            spec = "payments" if template.startswith("/payments/") else "customer_token"
            paths = load_spec(spec)["paths"]
            assert template in paths, (endpoint, template)
            assert endpoint.method.lower() in paths[template], (endpoint, template)
            assert "{}" not in template


class TestWaits:
    async def test_backoff_waits_are_events_on_the_call_and_retries_are_counted_by_reason(
        self, fake: FakeKlarna, otel: Otel
    ):
        """Each retry is a klarna.wait event (backoff, its seconds, the error.type retried, the
        attempt) and one count of klarna.client.retries by that error.type."""
        token = fake.add_customer_token()
        fake.faults.script(CT_ORDER, [Fault.SERVICE_UNAVAILABLE, Fault.HTML_502])
        policy = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.01, deadline=5)
        async with client_for(fake.url, telemetry=otel.telemetry(), retry=policy) as client:
            await client.customer_tokens.create_order(token, samples.token_order())
        (call,) = otel.spans(SpanKind.INTERNAL)
        events = [(e.name, dict(e.attributes or {})) for e in call.events]
        assert ["klarna.wait", "klarna.wait"] == [name for name, _ in events]
        assert [("backoff", "503", 1), ("backoff", "502", 2)] == [
            (a["klarna.wait.reason"], a["error.type"], a["klarna.attempt"]) for _, a in events
        ]
        for _, attributes in events:
            assert 0.0 <= attributes["klarna.wait.seconds"] <= 0.01
        counted = {
            point.attributes["error.type"]: (point.value, point.attributes["klarna.operation"])
            for point in otel.points("klarna.client.retries")
        }
        assert {"503": (1, CT_ORDER), "502": (1, CT_ORDER)} == counted

    async def test_a_wait_for_klarnas_rate_limit_reset(self, otel: Otel):
        """A 429 with X-Ratelimit-Reset: the wait event says server_rate_limit."""
        limited = klarna_error(429, "TOO_MANY_REQUESTS", **{"X-Ratelimit-Reset": "0"})
        async with (
            scripted_peer(limited, ORDER) as peer,
            client_for(peer.url, telemetry=otel.telemetry()) as client,
        ):
            await client.customer_tokens.create_order("ctok-0123456789", samples.token_order())
        (call,) = otel.spans(SpanKind.INTERNAL)
        (event,) = call.events
        assert ("server_rate_limit", "429") == (
            (event.attributes or {})["klarna.wait.reason"],
            (event.attributes or {})["error.type"],
        )
        (point,) = otel.points("klarna.client.retries")
        assert "429" == point.attributes["error.type"]

    async def test_the_rate_limiters_pause_is_an_event_dated_when_it_began(
        self, fake: FakeKlarna, otel: Otel
    ):
        """A pacer that held the attempt back 0.25 s: a client_rate_limit event with those
        seconds, dated 0.25 s before it was heard of; no retry counted. A pacer that did not
        wait makes no event."""

        class Pacer:
            def __init__(self, waits: list[float]) -> None:
                self.waits = waits

            async def acquire(self, max_wait: float) -> float | None:
                return self.waits.pop(0)

            def observe(self, status: int, headers: Any) -> None:
                pass

        token = fake.add_customer_token()
        async with client_for(
            fake.url, telemetry=otel.telemetry(), rate_limit=Pacer([0.25, 0.0])
        ) as client:
            await client.customer_tokens.get(token)
            await client.customer_tokens.get(token)
        held, free = otel.spans(SpanKind.INTERNAL)
        (event,) = held.events
        assert {"klarna.wait.reason": "client_rate_limit", "klarna.wait.seconds": 0.25} == dict(
            event.attributes or {}
        )
        (attempt,) = attempts_of(otel, held)
        assert attempt.start_time is not None
        assert 0.2e9 < attempt.start_time - event.timestamp < 1e9
        assert () == tuple(free.events)
        assert [] == otel.points("klarna.client.retries")

    async def test_retrier_tells_on_wait_of_each_wait_and_its_reason(self):
        """Retrier.run's hook: backoff, server_rate_limit (with the error) and the pacer's
        wait (without one); nothing when the pacer did not wait or when no hook is given."""
        time = FakeTime()
        heard: list[tuple[float, str, object]] = []

        def on_wait(seconds: float, reason: str, error: BaseException | None) -> None:
            heard.append((seconds, reason, error))

        lost = TransportError("reset")
        limited = api(RateLimitedError, 429, "TOO_MANY_REQUESTS", X_Ratelimit_Reset="2")

        class Pacer:
            def __init__(self) -> None:
                self.waits = [0.5, 0.0, 0.0]

            async def acquire(self, max_wait: float) -> float | None:
                return self.waits.pop(0)

            def observe(self, status: int, headers: Any) -> None:
                pass

        await run(
            retrier(time),
            script([lost, limited, "ok"]),
            policy=RetryPolicy(initial_delay=0.1, max_delay=0.1),
            pacer=Pacer(),
            on_wait=on_wait,
        )
        assert [(0.5, "client_rate_limit", None)] == heard[:1]
        (_, backoff, error_1), (after_429, server, error_2) = heard[1:]
        assert (backoff, error_1) == ("backoff", lost)
        assert (server, error_2) == ("server_rate_limit", limited)
        assert 2.0 <= after_429 <= 2.1
        assert time.sleeps == [heard[1][0], after_429]
        # Without a hook the same run is the same run.
        await run(retrier(FakeTime()), script([lost, "ok"]))


class TestMetrics:
    async def test_request_duration_per_attempt_with_the_conventions_attributes(
        self, fake: FakeKlarna, otel: Otel
    ):
        """http.client.request.duration: seconds, the advised buckets (where the API takes
        advice), one measurement per attempt by method, server, template and status or
        error.type; never url.full."""
        token = fake.add_customer_token()
        fake.faults.script(CT_ORDER, [Fault.SERVICE_UNAVAILABLE, Fault.RESET_BEFORE])
        async with client_for(fake.url, telemetry=otel.telemetry()) as client:
            await client.customer_tokens.create_order(token, samples.token_order())
        metric = otel.metrics()["http.client.request.duration"]
        assert "s" == metric.unit
        port = int(fake.url.rsplit(":", 1)[1])
        common = {
            "http.request.method": "POST",
            "server.address": "127.0.0.1",
            "server.port": port,
            "url.template": ORDER_TEMPLATE,
        }
        points = {
            (p.attributes.get("http.response.status_code"), p.attributes.get("error.type")): p
            for p in metric.data.data_points
        }
        assert {(503, "503"), (None, "klarna_async.TransportError"), (200, None)} == set(points)
        for point in points.values():
            assert 1 == point.count
            assert 0 < point.sum < 1.0
            if ADVICE:  # opentelemetry-api >= 1.30; before, the SDK's default buckets
                assert list(DURATION_BUCKETS) == list(point.explicit_bounds)
            assert common == {k: v for k, v in point.attributes.items() if k in common}
            assert "url.full" not in point.attributes

    async def test_sampled_out_calls_still_count(self, fake: FakeKlarna, otel: Otel):
        """With a sampler that records nothing, no span is exported but every attempt is
        measured and an unknown outcome counted."""
        token = fake.add_customer_token()
        fake.faults.script(CT_ORDER, [Fault.DROP_AFTER_COMMIT] * 3)
        sampled_out = TracerProvider(sampler=ALWAYS_OFF, shutdown_on_exit=False)
        telemetry = Telemetry(tracer_provider=sampled_out, meter_provider=otel.meter_provider)
        async with client_for(fake.url, telemetry=telemetry) as client:
            with pytest.raises(OutcomeUnknownError):
                await client.customer_tokens.create_order(token, samples.token_order())
        assert [] == otel.spans()
        (unknown,) = otel.points("klarna.client.unknown_outcomes")
        assert 1 == unknown.value
        assert 3 == sum(p.count for p in otel.points("http.client.request.duration"))
        assert 2 == sum(p.value for p in otel.points("klarna.client.retries"))

    async def test_without_advice_support_the_histogram_is_still_made(self, fake: FakeKlarna):
        """An API before 1.30 takes no explicit_bucket_boundaries_advisory: made without."""
        made: list[dict[str, Any]] = []

        class Instrument:
            def record(self, *args: Any, **kwargs: Any) -> None:
                pass

            def add(self, *args: Any, **kwargs: Any) -> None:
                pass

        class Meter:
            def create_histogram(self, name: str, unit: str = "", description: str = ""):
                made.append({"name": name, "unit": unit})
                return Instrument()

            def create_counter(self, *args: Any, **kwargs: Any) -> Instrument:
                return Instrument()

        class Provider:
            def get_meter(self, *args: Any, **kwargs: Any) -> Meter:
                return Meter()

        token = fake.add_customer_token()
        telemetry = Telemetry(meter_provider=Provider())  # type: ignore[arg-type]
        async with client_for(fake.url, telemetry=telemetry) as client:
            await client.customer_tokens.get(token)
        assert [{"name": "http.client.request.duration", "unit": "s"}] == made


def _strings(otel: Otel) -> list[str]:
    """Every string telemetry wrote: span names, attribute values, event names and attribute
    values, status descriptions, metric point attributes (keys and values)."""
    found: list[str] = []

    def values(attributes: Any) -> None:
        for key, value in dict(attributes or {}).items():
            found.append(key)
            found.extend(str(v) for v in (value if isinstance(value, tuple) else (value,)))

    for span in otel.spans():
        found.append(span.name)
        values(span.attributes)
        if span.status.description:
            found.append(span.status.description)
        for event in span.events:
            found.append(event.name)
            values(event.attributes)
    for metric in otel.metrics().values():
        for point in metric.data.data_points:
            values(point.attributes)
    return found


class TestPrivacy:
    async def test_no_token_credential_or_personal_data_anywhere_after_a_faulted_run(
        self, fake: FakeKlarna, otel: Otel
    ):
        """Every endpoint, under random 503s, resets, lost answers and gateway pages, plus a
        charge whose answer is lost for good: no customer or authorization token (nor its
        tail), credential, Authorization value, idempotency key or customer detail in any
        span, event or metric."""
        policy = RetryPolicy(max_attempts=3, initial_delay=0.0, max_delay=0.0, deadline=5)
        keys: list[str] = []
        async with client_for(fake.url, telemetry=otel.telemetry(), retry=policy) as client:
            # Sessions and authorizations first, without faults.
            buy = await client.payments.create_session(samples.session_request(Intent.BUY))
            await client.payments.update_session(
                buy.session_id, samples.session_request(Intent.BUY)
            )
            await client.payments.get_session(buy.session_id)
            authorizations = [fake.authorize(buy.session_id)]
            for intent in (Intent.BUY, Intent.TOKENIZE, Intent.BUY):
                created = await client.payments.create_session(
                    samples.session_request(intent, subscription=intent is Intent.TOKENIZE)
                )
                authorizations.append(fake.authorize(created.session_id))
            tokens = [fake.add_customer_token() for _ in range(8)]

            fake.faults.set_rates(
                service_unavailable=0.15,
                reset_before=0.1,
                drop_after_commit=0.1,
                html_502=0.05,
                html_504=0.05,
            )

            async def attempt(call: Any) -> None:
                with contextlib.suppress(KlarnaError):
                    await call

            await attempt(client.payments.create_order(authorizations[0], samples.one_time_order()))
            created_token = None
            with contextlib.suppress(KlarnaError):
                created_token = await client.payments.create_customer_token(
                    authorizations[2], samples.customer_token_request()
                )
            await attempt(client.payments.cancel_authorization(authorizations[3]))
            for i, token in enumerate(tokens):
                key = f"charge-key-{i:04d}"
                keys.append(key)
                await attempt(
                    client.customer_tokens.create_order(
                        token, samples.token_order(), idempotency_key=key
                    )
                )
                await attempt(client.customer_tokens.get(token))
            await attempt(client.customer_tokens.cancel(tokens[-1]))
            # A charge whose answer is lost on every attempt: unknown.
            fake.faults.script(CT_ORDER, [Fault.DROP_AFTER_COMMIT] * 3)
            keys.append("charge-key-lost")
            with pytest.raises(OutcomeUnknownError):
                await client.customer_tokens.create_order(
                    tokens[0], samples.token_order(), idempotency_key="charge-key-lost"
                )

        secrets = [*tokens, *authorizations, *keys, fake.username, fake.password]
        if created_token is not None:
            secrets.append(created_token.token_id)
        secrets += [s[-8:] for s in [*tokens, *authorizations]]  # not even masked
        basic = base64.b64encode(f"{fake.username}:{fake.password}".encode()).decode()
        secrets += [basic, "Basic "]
        address = samples.US_ADDRESS
        secrets += [
            str(value)
            for value in (
                address.given_name,
                address.family_name,
                address.email,
                address.street_address,
                address.street_address2,
                address.postal_code,
                address.phone,
                address.city,
            )
        ]
        written = _strings(otel)
        assert len(written) > 200
        leaks = sorted({s for s in secrets for w in written if s and s in w})
        assert [] == leaks

        # The run was what it says: faults, retries, waits and an unknown outcome happened.
        outcomes = {(s.attributes or {}).get("klarna.outcome") for s in otel.spans()}
        assert {"placed", "unknown", "ok"} <= outcomes
        assert any("http.request.resend_count" in (s.attributes or {}) for s in otel.spans())
        assert any(s.events for s in otel.spans(SpanKind.INTERNAL))
        routes = {s.name for s in otel.spans(SpanKind.CLIENT)}  # method and template
        assert 9 == len(routes), routes

    async def test_no_trace_context_goes_to_klarna_by_default(self, fake: FakeKlarna, otel: Otel):
        """With telemetry on (and off), inside an application's span and with baggage set, no
        request carries traceparent, tracestate or baggage."""
        token = fake.add_customer_token()
        tracer = otel.tracer_provider.get_tracer("app")
        with tracer.start_as_current_span("app"):
            attached = otel_context.attach(baggage.set_baggage("user", "u-1"))
            try:
                for telemetry in (otel.telemetry(), None):
                    async with client_for(fake.url, telemetry=telemetry) as client:
                        await client.customer_tokens.get(token)
            finally:
                otel_context.detach(attached)
        assert 2 == len(fake.ledger.requests)
        for request in fake.ledger.requests:
            names = {name.lower() for name in request.headers}
            assert not names & {"traceparent", "tracestate", "baggage"}, names

    async def test_trace_context_when_asked_names_each_attempt_and_sends_no_baggage(
        self, fake: FakeKlarna, otel: Otel
    ):
        """propagate_context=True: each request carries the traceparent of its own attempt's
        span; never baggage; the client's shared headers stay untouched."""
        token = fake.add_customer_token()
        fake.faults.script(CT_ORDER, [Fault.SERVICE_UNAVAILABLE])
        attached = otel_context.attach(baggage.set_baggage("user", "u-1"))
        try:
            async with client_for(
                fake.url, telemetry=otel.telemetry(propagate_context=True)
            ) as client:
                await client.customer_tokens.create_order(token, samples.token_order())
                shared = dict(client._requester._request_headers)
        finally:
            otel_context.detach(attached)
        sent = [r.headers for r in fake.ledger.requests]
        expected = [
            f"00-{s.context.trace_id:032x}-{s.context.span_id:016x}-{s.context.trace_flags:02x}"  # type: ignore[union-attr]
            for s in sorted(otel.spans(SpanKind.CLIENT), key=lambda s: s.start_time or 0)
        ]
        assert expected == [headers.get("traceparent") for headers in sent]
        for headers in sent:
            assert "baggage" not in {name.lower() for name in headers}
        assert {} == shared

    async def test_stock_aiohttp_instrumentation_is_told_to_stand_aside(
        self, fake: FakeKlarna, otel: Otel
    ):
        """During Klarna's requests the context says "suppress HTTP instrumentation", which
        OpenTelemetry's aiohttp-client instrumentation obeys (it would write the full URL with
        its token and inject trace context); not so with telemetry off."""
        seen: list[object] = []

        async def on_request_start(*_: Any) -> None:
            seen.append(otel_context.get_value(otel_context._SUPPRESS_HTTP_INSTRUMENTATION_KEY))

        config = aiohttp.TraceConfig()
        config.on_request_start.append(on_request_start)
        token = fake.add_customer_token()
        async with aiohttp.ClientSession(trace_configs=[config]) as session:
            for telemetry in (otel.telemetry(), None):
                async with client_for(fake.url, telemetry=telemetry, session=session) as client:
                    await client.customer_tokens.get(token)
        assert [True, None] == seen


class _BrokenSpan(NonRecordingSpan):
    def __init__(self, broken: str) -> None:
        super().__init__(trace.INVALID_SPAN_CONTEXT)
        self.broken = broken

    def _maybe(self, what: str) -> None:
        if self.broken == what:
            raise RuntimeError(f"span.{what} broke")

    def set_attributes(self, attributes: Any) -> None:
        self._maybe("set_attributes")

    def set_status(self, *args: Any, **kwargs: Any) -> None:
        self._maybe("set_status")

    def add_event(self, *args: Any, **kwargs: Any) -> None:
        self._maybe("add_event")

    def end(self, end_time: int | None = None) -> None:
        self._maybe("end")

    def get_span_context(self) -> Any:
        self._maybe("get_span_context")
        return super().get_span_context()

    def is_recording(self) -> bool:
        self._maybe("is_recording")
        return True


class _BrokenTracer(trace.Tracer):
    def __init__(self, broken: str) -> None:
        self.broken = broken

    def start_span(self, name: str, context: Any = None, kind: Any = SpanKind.INTERNAL, **_: Any):
        if self.broken == "start_span" or (
            self.broken == "start_client" and kind is SpanKind.CLIENT
        ):
            raise RuntimeError("start_span broke")
        return _BrokenSpan(self.broken)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


class _BrokenTracerProvider(trace.TracerProvider):
    def __init__(self, broken: str) -> None:
        self.broken = broken

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return _BrokenTracer(self.broken)


class _BrokenInstrument:
    def record(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("histogram broke")

    def add(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("counter broke")


class _BrokenMeterProvider:
    def get_meter(self, *args: Any, **kwargs: Any) -> Any:
        class Meter:
            def create_histogram(self, *args: Any, **kwargs: Any) -> _BrokenInstrument:
                return _BrokenInstrument()

            create_counter = create_histogram

        return Meter()


class _RaisingExporter(SpanExporter):
    def export(self, spans: Any) -> Any:
        raise RuntimeError("exporter broke")


BROKEN_PARTS = [
    "start_span",
    "start_client",
    "set_attributes",
    "set_status",
    "add_event",
    "end",
    "get_span_context",
    "is_recording",
    "instruments",
    "exporter",
]


class TestNeverChangesAnOutcome:
    @pytest.mark.parametrize("broken", BROKEN_PARTS)
    async def test_broken_telemetry_leaves_every_outcome_as_it_is(
        self, fake: FakeKlarna, broken: str, caplog: pytest.LogCaptureFixture
    ):
        """With any part of the tracer, the spans, the instruments or the exporter raising:
        a charge retried to success is placed once, a lost one is unknown, a cancelled token
        declined, a read read; nothing of the calls stays current."""
        if broken == "instruments":
            telemetry = Telemetry(meter_provider=_BrokenMeterProvider())  # type: ignore[arg-type]
        elif broken == "exporter":
            provider = TracerProvider(shutdown_on_exit=False)
            provider.add_span_processor(SimpleSpanProcessor(_RaisingExporter()))
            telemetry = Telemetry(tracer_provider=provider)
        else:
            telemetry = Telemetry(
                tracer_provider=_BrokenTracerProvider(broken), propagate_context=True
            )
        token, cancelled = fake.add_customer_token(), fake.add_customer_token()
        fake.set_token_status(cancelled, "CANCELLED")
        policy = RetryPolicy(max_attempts=3, initial_delay=0.001, max_delay=0.001, deadline=5)
        caplog.set_level(logging.WARNING, logger="klarna_async")
        async with client_for(fake.url, telemetry=telemetry, retry=policy) as client:
            fake.faults.script(CT_ORDER, [Fault.SERVICE_UNAVAILABLE, Fault.RESET_BEFORE])
            placed = await client.customer_tokens.create_order(
                token, samples.token_order(), idempotency_key="k-placed"
            )
            fake.faults.script(CT_ORDER, [Fault.DROP_AFTER_COMMIT] * 3)
            with pytest.raises(OutcomeUnknownError):
                await client.customer_tokens.create_order(
                    token, samples.token_order(), idempotency_key="k-lost"
                )
            with pytest.raises(TokenCanceledError):
                await client.customer_tokens.create_order(cancelled, samples.token_order())
            assert "ACTIVE" == (await client.customer_tokens.get(token)).status
            assert trace.INVALID_SPAN is trace.get_current_span()
        assert [placed.order_id] == [o.order_id for o in fake.ledger.orders_for_key("k-placed")]
        assert 1 == len(fake.ledger.orders_for_key("k-lost"))
        if broken != "exporter":  # the SDK's processor reports its exporter's errors itself
            assert "telemetry failed" in caplog.text
        ours = [r.getMessage() for r in caplog.records if r.name == "klarna_async"]
        assert not [m for m in ours if "broke" in m]  # the type only: its text may hold anything


def _python(code: str, *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


class TestWithoutTheExtra:
    def test_import_and_a_client_without_telemetry_import_nothing_of_opentelemetry(self):
        """With OpenTelemetry installed, `import klarna_async` and a client without telemetry
        leave it unimported."""
        result = _python(
            """
            import sys
            import klarna_async
            client = klarna_async.KlarnaClient(username="u", password="p")
            assert client._requester.observer is None
            print(sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry"))
            """
        )
        assert 0 == result.returncode, result.stderr
        assert "[]" == result.stdout.strip()

    def test_without_opentelemetry_the_client_works_and_telemetry_names_the_extra(self):
        """OpenTelemetry blocked from import: klarna_async imports and makes clients, and
        Telemetry() raises an ImportError that names the extra to install."""
        result = _python(
            """
            import sys

            class Block:
                def find_spec(self, name, path=None, target=None):
                    if name.split(".")[0] == "opentelemetry":
                        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                    return None

            sys.meta_path.insert(0, Block())
            import klarna_async
            klarna_async.KlarnaClient(username="u", password="p", telemetry=None)
            try:
                klarna_async.Telemetry()
            except ImportError as error:
                print(error)
            else:
                raise SystemExit("no ImportError")
            print(sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry"))
            """
        )
        assert 0 == result.returncode, result.stderr
        message, modules = result.stdout.strip().splitlines()
        assert "pip install 'klarna-async[otel]'" in message
        assert "[]" == modules

    def test_telemetry_uses_the_global_providers_also_when_set_after_the_client(self):
        """Telemetry() with no providers: spans go to the global tracer provider, set here
        after the client was made (a separate process: the global can be set only once)."""
        result = _python(
            """
            import asyncio
            from opentelemetry import trace
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import SimpleSpanProcessor
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
                InMemorySpanExporter,
            )
            from klarna_async import KlarnaClient, Telemetry
            from klarna_async.testing import FakeKlarna

            async def main():
                async with FakeKlarna() as fake:
                    client = KlarnaClient(
                        username=fake.username, password=fake.password, base_url=fake.url,
                        rate_limit=None, telemetry=Telemetry(),
                    )
                    exporter = InMemorySpanExporter()
                    provider = TracerProvider(shutdown_on_exit=False)
                    provider.add_span_processor(SimpleSpanProcessor(exporter))
                    trace.set_tracer_provider(provider)
                    async with client:
                        await client.customer_tokens.get(fake.add_customer_token())
                    print(sorted(s.name for s in exporter.get_finished_spans()))

            asyncio.run(main())
            """
        )
        assert 0 == result.returncode, result.stderr
        expected = "['GET /customer-token/v1/tokens/{customerToken}', 'klarna.customer_tokens.get']"
        assert expected == result.stdout.strip()


def test_telemetry_repr_and_defaults():
    """Off by default for the key and the trace context; the repr shows the settings."""
    telemetry = Telemetry()
    assert (None, None, False, False) == (
        telemetry.tracer_provider,
        telemetry.meter_provider,
        telemetry.record_idempotency_key,
        telemetry.propagate_context,
    )
    assert "propagate_context=False" in repr(telemetry)
    assert client_for("http://127.0.0.1:9")._requester.observer is None


@pytest.mark.skipif(sys.platform == "win32", reason="the benchmark's peer needs POSIX signals")
def test_the_benchmark_runs():
    """benchmarks.otel at a tiny size (so it cannot rot): every arm measured, every SDK span
    exported; the "before" arm wherever git can rebuild the package before telemetry."""
    from benchmarks import otel as otel_benchmark

    result = otel_benchmark.run(charges=20, rounds=1, concurrency=4, warmup=8, path_factor=2)
    for mode in ("wire", "path"):
        section = result[mode]
        arms = set(section["median"])
        assert {"off", "noop", "sdk"} <= arms
        assert ("before" in arms) == (result["before_revision"] is not None)
        for figures in section["median"].values():
            assert 0 < figures["cpu_us"] < 1e6
        assert section["sdk_spans_made"] == section["sdk_spans_exported"]
    assert "klarna_async_before" not in sys.modules
    assert "noop vs off" in otel_benchmark.summary(result)
