"""OpenTelemetry for the client, off unless asked: :class:`Telemetry` is how a user asks.

This module imports nothing of OpenTelemetry until a :class:`Telemetry` is made; the spans and
metrics themselves live in :mod:`klarna_async._telemetry._otel`. It sits just below the client
(which builds the client's observer from its configuration) and above the request path (which is
handed that observer as an object, typed by ``_request.Observer``, and never imports it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider
    from yarl import URL

    from klarna_async._config import Environment, Region
    from klarna_async._request import Observer

__all__ = ["Telemetry"]

_MISSING = (
    "klarna_async.Telemetry needs the OpenTelemetry API (opentelemetry-api >= 1.30): "
    "pip install 'klarna-async[otel]'"
)


class Telemetry:
    """OpenTelemetry traces and metrics for a :class:`KlarnaClient`; pass it as ``telemetry=``.

    Off by default: without it the client imports nothing of OpenTelemetry and its calls pay
    nothing for it. It needs the ``otel`` extra (``pip install 'klarna-async[otel]'``, which is
    ``opentelemetry-api`` only); an ``ImportError`` naming the extra is raised here when that is
    missing. Install and configure an SDK (``opentelemetry-sdk``) in the application, as usual::

        client = KlarnaClient(..., telemetry=Telemetry())  # the global providers

    What is recorded:

    * one ``INTERNAL`` span per call that reaches Klarna, ``klarna.<operation>`` (e.g.
      ``klarna.customer_tokens.create_order``), with ``klarna.operation``, ``klarna.region``,
      ``klarna.environment``, ``klarna.outcome`` (a charge, i.e. an order placed by
      ``customer_tokens.create_order`` or ``payments.create_order``: ``placed``, ``declined``,
      ``retryable`` or ``unknown``, as a :class:`ChargeResult` would say; a capture or refund
      (``orders.capture``, ``orders.refund``): ``captured`` / ``refunded``, else ``declined``,
      ``retryable`` or ``unknown``, as a :class:`CaptureResult` would say; any other call:
      ``ok``, ``error``, or ``unknown`` when it may have acted), ``klarna.attempts``, and when
      known ``klarna.error_code``, ``klarna.correlation_id``, ``klarna.order_id`` and
      ``error.type``; waits before a retry (``backoff``, ``server_rate_limit``) and the rate
      limiter's pauses (``client_rate_limit``) are ``klarna.wait`` events on it, with
      ``klarna.wait.seconds`` and ``klarna.wait.reason``. Calls refused before anything is sent
      (invalid input, a closed client) make no span.
    * one ``CLIENT`` span per HTTP attempt, named ``{method} {url.template}``, as OpenTelemetry's
      stable HTTP client conventions say: ``http.request.method``, ``url.template`` (Klarna's
      path template, e.g. ``/customer-token/v1/tokens/{customerToken}/order``), ``url.full``
      (that template on the client's base URL: never a token), ``server.address``,
      ``server.port``, ``http.response.status_code``, ``error.type``,
      ``http.request.resend_count`` from the second attempt on, and ``klarna.correlation_id``;
      status Error on 4xx, 5xx and failures without an answer.
    * metrics: ``http.client.request.duration`` (histogram, seconds, one per attempt, by
      method, status, server, ``url.template`` and ``error.type``), ``klarna.client.retries``
      (by operation and the ``error.type`` retried) and ``klarna.client.unknown_outcomes`` (by
      operation: calls to repeat with the same idempotency key). The histogram asks for the
      conventions' buckets (5 ms to 10 s); an ``opentelemetry-api`` before 1.30 cannot ask, and
      the SDK then uses its default buckets, meant for milliseconds: add a ``View`` there.

    Never recorded: tokens (customer or authorization: the telemetry is never given the path
    parameter), credentials or the ``Authorization`` header, request or answer bodies, personal
    data, exception messages. Klarna's requests made inside a call also suppress OpenTelemetry's
    stock aiohttp instrumentation, which would write full URLs (tokens) and inject trace context.

    Cost (``python -m benchmarks.otel``): none when off; a few µs of CPU per call with the API
    and no SDK; with the Python SDK recording every trace, about as much CPU again as the charge
    itself costs the client (two spans and a histogram measurement). A sampler that records a
    share of traces (``ParentBased(TraceIdRatioBased(0.01))``) saves more than half of that;
    the metrics are measured for every call whatever the sampler says.

    Args:
        tracer_provider: where spans go; ``None``: the global provider
            (``opentelemetry.trace.set_tracer_provider``), also when it is set later.
        meter_provider: where metrics go; ``None``: the global provider.
        record_idempotency_key: put ``klarna.idempotency_key`` on each call's span. Off by
            default: a key derived from business identifiers can say more than it should.
        propagate_context: send the W3C ``traceparent`` (and ``tracestate``) of each attempt's
            span to Klarna with that request. Off by default: Klarna asks integrators to send
            only the headers it needs and names tracing headers among those to avoid. Baggage is
            never sent.
    """

    __slots__ = ("meter_provider", "propagate_context", "record_idempotency_key", "tracer_provider")

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        record_idempotency_key: bool = False,
        propagate_context: bool = False,
    ) -> None:
        _check()  # fail here, where the user asked for it, with the extra's name
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.record_idempotency_key = record_idempotency_key
        self.propagate_context = propagate_context

    def __repr__(self) -> str:
        return (
            f"Telemetry(tracer_provider={self.tracer_provider!r}, "
            f"meter_provider={self.meter_provider!r}, "
            f"record_idempotency_key={self.record_idempotency_key!r}, "
            f"propagate_context={self.propagate_context!r})"
        )

    def _observer(self, *, region: Region, environment: Environment, base_url: URL) -> Observer:
        """The observer of one client's calls (called by ``KlarnaClient``)."""
        from klarna_async._telemetry._otel import ClientObserver

        return ClientObserver(
            self, region=region.value, environment=environment.value, base_url=base_url
        )


def _check() -> None:
    try:
        import klarna_async._telemetry._otel  # noqa: F401 - imports opentelemetry
    except ImportError as exc:
        if (exc.name or "").startswith("opentelemetry"):
            raise ImportError(_MISSING, name=exc.name) from exc
        raise
