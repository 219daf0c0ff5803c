"""The spans and metrics of :class:`klarna_async.Telemetry`; imported only when one is made.

One :class:`ClientObserver` per client holds the tracer, the instruments, and what each
endpoint's spans carry (built once per endpoint). One :class:`_Call` per call holds its
``INTERNAL`` span, current for the whole call, so that the attempts' ``CLIENT`` spans, the
pacer's spans and the application's logs of the call hang under it.

Safe by construction: the observer is never given a call's path parameter, URL or body, so no
token can reach a span; it reads the request headers only to add ``traceparent`` when asked, and
of an answer only its status and ``Klarna-Correlation-Id``. Every method the request path calls
catches its own errors and logs their type: telemetry never changes an outcome (rule 6 of
``klarna_async._retry``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from klarna_async._batch import status_of
from klarna_async._errors import ApiError, OutcomeUnknownError, ResponseDecodeError
from klarna_async._version import __version__

if TYPE_CHECKING:
    from contextvars import Token

    import aiohttp
    from opentelemetry.context import Context
    from opentelemetry.metrics import Histogram, Meter
    from opentelemetry.trace import Span
    from yarl import URL

    from klarna_async._request import CallObserver, Endpoint, Send
    from klarna_async._telemetry import Telemetry

__all__ = ["ClientObserver"]

logger = logging.getLogger("klarna_async")

Attributes = dict[str, AttributeValue]
RawResponse = tuple[int, Mapping[str, str], bytes]

#: The instrumentation scope of every span and instrument.
SCOPE = "klarna_async"
#: Klarna's names for the path parameters, as its OpenAPI paths write them (the others, such
#: as ``session_id``, are written as ``Endpoint.what`` names them).
_PLACEHOLDERS = {"customer_token": "customerToken", "authorization_token": "authorizationToken"}
#: The operations that place an order: their outcome is a ChargeStatus.
CHARGES = frozenset({"customer_tokens.create_order", "payments.create_order"})
#: The Order Management writes that move money: their outcome is what a CaptureResult would
#: say (``captured`` / ``refunded`` on success; ``declined``, ``retryable`` or ``unknown``).
MONEY_MOVES = {"orders.capture": "captured", "orders.refund": "refunded"}
_CORRELATION_HEADER = "Klarna-Correlation-Id"
#: The bucket boundaries the stable HTTP conventions advise for http.client.request.duration.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
# The key by which OpenTelemetry's HTTP client instrumentations (aiohttp-client among them) skip
# requests that a higher-level instrumentation traces already; private in the API, but the
# contract those instrumentations check.
_SUPPRESS_HTTP = getattr(otel_context, "_SUPPRESS_HTTP_INSTRUMENTATION_KEY", None)


def url_template(endpoint: Endpoint) -> str:
    """The endpoint's path with its parameter as Klarna's placeholder, never a value."""
    template = endpoint.template
    for what in endpoint.names:  # in order: /orders/{order_id}/captures/{capture_id}
        name = _PLACEHOLDERS.get(what, what)
        template = template.replace("{}", "{" + name + "}", 1)
    return template


def _error_type(error: BaseException) -> str:
    """The exception's fully qualified class name (its type only: never its text)."""
    cls = type(error)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _attempt_error_type(error: BaseException) -> str:
    """``error.type`` of a failed attempt: the status of an answer, the class otherwise (as
    the HTTP conventions say, so that a retry's reason matches its attempt's span)."""
    if isinstance(error, ApiError):
        return str(error.status)
    return _error_type(error)


def _report(what: str, error: Exception) -> None:
    logger.warning(
        "telemetry failed %s (%s); the call goes on without it", what, type(error).__name__
    )


class _Route:
    """What every span and measurement of one endpoint carries, built once per client."""

    __slots__ = (
        "call_attributes",
        "call_name",
        "charge",
        "client_attributes",
        "client_name",
        "duration_attributes",
        "four_way",
        "operation",
        "success",
    )

    def __init__(self, endpoint: Endpoint, owner: ClientObserver) -> None:
        template = url_template(endpoint)
        self.operation = endpoint.operation
        self.charge = endpoint.operation in CHARGES
        self.success = "placed" if self.charge else MONEY_MOVES.get(endpoint.operation, "ok")
        self.four_way = self.charge or endpoint.operation in MONEY_MOVES
        self.call_name = "klarna." + endpoint.operation
        self.call_attributes: Attributes = {
            "klarna.operation": endpoint.operation,
            "klarna.region": owner.region,
            "klarna.environment": owner.environment,
        }
        self.client_name = f"{endpoint.method} {template}"
        self.duration_attributes: Attributes = {
            "http.request.method": endpoint.method,
            "server.address": owner.server_address,
            "server.port": owner.server_port,
            "url.template": template,
        }
        self.client_attributes: Attributes = {
            **self.duration_attributes,
            "url.full": owner.url_base + template,
        }


def _duration_histogram(meter: Meter) -> Histogram:
    name = "http.client.request.duration"
    description = "Duration of HTTP client requests."
    try:
        return meter.create_histogram(
            name,
            unit="s",
            description=description,
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
    except TypeError:  # opentelemetry-api before 1.30 takes no advice
        return meter.create_histogram(name, unit="s", description=description)


class ClientObserver:
    """Watches every call of one client (a ``_request.Observer``)."""

    def __init__(
        self, settings: Telemetry, *, region: str, environment: str, base_url: URL
    ) -> None:
        self.tracer = trace.get_tracer(SCOPE, __version__, settings.tracer_provider)
        meter = metrics.get_meter(SCOPE, __version__, settings.meter_provider)
        self.duration = _duration_histogram(meter)
        self.retries = meter.create_counter(
            "klarna.client.retries",
            unit="{retry}",
            description="Retries of Klarna calls, by the error.type of the attempt retried.",
        )
        self.unknown = meter.create_counter(
            "klarna.client.unknown_outcomes",
            unit="{call}",
            description="Calls that ended with Klarna's action unknown: repeat them with the "
            "same idempotency key.",
        )
        self.record_idempotency_key = settings.record_idempotency_key
        # W3C trace context only, never the global propagator: that one sends baggage too,
        # which is the application's data, not Klarna's.
        self.propagator = TraceContextTextMapPropagator() if settings.propagate_context else None
        self.region = region
        self.environment = environment
        self.server_address = base_url.host or ""
        self.server_port = base_url.port or 0
        # origin() drops any user:password of the base URL.
        self.url_base = str(base_url.origin()) + base_url.raw_path.rstrip("/")
        self._routes: dict[Endpoint, _Route] = {}

    def call(self, endpoint: Endpoint, idempotency_key: str | None) -> CallObserver:
        """Start the call's span and make it current; on any failure, a call without it."""
        span: Span | None = None
        try:
            route = self._routes.get(endpoint)
            if route is None:
                route = self._routes[endpoint] = _Route(endpoint, self)
            attributes = route.call_attributes
            if self.record_idempotency_key and idempotency_key is not None:
                attributes = {**attributes, "klarna.idempotency_key": idempotency_key}
            span = self.tracer.start_span(
                route.call_name, kind=SpanKind.INTERNAL, attributes=attributes
            )
            context = trace.set_span_in_context(span)
            if _SUPPRESS_HTTP is not None:
                context = otel_context.set_value(_SUPPRESS_HTTP, True, context)
            token = otel_context.attach(context)
        except Exception as exc:
            _report("starting a call's span", exc)
            if span is not None:
                try:
                    span.end()
                except Exception as again:
                    _report("ending a call's span", again)
            return _OFF
        return _Call(self, route, span, context, token)


class _Off:
    """A call that telemetry could not start: observed by nobody."""

    def transport(self, send: Send) -> Send:
        return send

    def wait(self, seconds: float, reason: str, error: BaseException | None) -> None:
        pass

    def succeeded(self, result: object) -> None:
        pass

    def failed(self, error: BaseException) -> None:
        pass


_OFF = _Off()


class _Call:
    """One call's span, its attempts and its waits (a ``_request.CallObserver``)."""

    __slots__ = ("_context", "_correlation_id", "_owner", "_route", "_span", "_token", "attempts")

    def __init__(
        self,
        owner: ClientObserver,
        route: _Route,
        span: Span,
        context: Context,
        token: Token[Context],
    ) -> None:
        self._owner = owner
        self._route = route
        self._span = span
        self._context = context
        self._token = token
        self._correlation_id: str | None = None
        self.attempts = 0

    # --- attempts -------------------------------------------------------------------------------

    def transport(self, send: Send) -> Send:
        async def traced(
            session: aiohttp.ClientSession,
            method: str,
            url: URL,
            headers: Mapping[str, str],
            body: bytes | None,
            timeout: float,
        ) -> RawResponse:
            span, headers, started = self._attempt_started(headers)
            try:
                answer = await send(session, method, url, headers, body, timeout)
            except BaseException as error:
                self._attempt_ended(span, started, None, None, error)
                raise
            self._attempt_ended(span, started, answer[0], answer[1], None)
            return answer

        return traced

    def _attempt_started(
        self, headers: Mapping[str, str]
    ) -> tuple[Span | None, Mapping[str, str], float]:
        self.attempts += 1
        span: Span | None = None
        try:
            route = self._route
            attributes = route.client_attributes
            if self.attempts > 1:
                attributes = {**attributes, "http.request.resend_count": self.attempts - 1}
            span = self._owner.tracer.start_span(
                route.client_name,
                context=self._context,
                kind=SpanKind.CLIENT,
                attributes=attributes,
            )
            propagator = self._owner.propagator
            if propagator is not None:
                # Into this request's headers only (a copy): never the session's defaults.
                carrier = dict(headers)
                propagator.inject(carrier, context=trace.set_span_in_context(span))
                headers = carrier
        except Exception as exc:
            _report("starting an attempt's span", exc)
        return span, headers, time.perf_counter()

    def _attempt_ended(
        self,
        span: Span | None,
        started: float,
        status: int | None,
        headers: Mapping[str, str] | None,
        error: BaseException | None,
    ) -> None:
        duration = time.perf_counter() - started
        try:
            outcome: Attributes = {}
            failed = False
            if status is not None:
                outcome["http.response.status_code"] = status
                if status >= 400:
                    outcome["error.type"] = str(status)
                    failed = True
            elif error is not None:
                outcome["error.type"] = _error_type(error)
                failed = True
            self._owner.duration.record(duration, {**self._route.duration_attributes, **outcome})
            # A span that is not recording (sampled out, no SDK) needs no more work.
            if span is not None and span.is_recording():
                correlation_id = headers.get(_CORRELATION_HEADER) if headers is not None else None
                if correlation_id:
                    self._correlation_id = correlation_id
                    outcome["klarna.correlation_id"] = correlation_id
                span.set_attributes(outcome)
                if failed:
                    span.set_status(Status(StatusCode.ERROR))
        except Exception as exc:
            _report("recording an attempt", exc)
        finally:
            if span is not None:
                try:
                    span.end()
                except Exception as exc:
                    _report("ending an attempt's span", exc)

    # --- waits ----------------------------------------------------------------------------------

    def wait(self, seconds: float, reason: str, error: BaseException | None) -> None:
        try:
            attributes: Attributes = {
                "klarna.wait.reason": reason,
                "klarna.wait.seconds": seconds,
            }
            timestamp = None
            if error is not None:
                error_type = _attempt_error_type(error)
                attributes["error.type"] = error_type
                attributes["klarna.attempt"] = self.attempts
                self._owner.retries.add(
                    1, {"klarna.operation": self._route.operation, "error.type": error_type}
                )
            if self._span.is_recording():
                if reason == "client_rate_limit":
                    # Heard of after the pause: dated when it began.
                    timestamp = time.time_ns() - int(seconds * 1e9)
                self._span.add_event("klarna.wait", attributes, timestamp)
        except Exception as exc:
            _report("recording a wait", exc)

    # --- the end --------------------------------------------------------------------------------

    def succeeded(self, result: object) -> None:
        try:
            if not self._span.is_recording():
                return  # (finally: ended all the same)
            attributes: Attributes = {
                "klarna.outcome": self._route.success,
                "klarna.attempts": self.attempts,
            }
            order_id = getattr(result, "order_id", None)
            if isinstance(order_id, str):
                attributes["klarna.order_id"] = order_id
            if self._correlation_id:
                attributes["klarna.correlation_id"] = self._correlation_id
            self._span.set_attributes(attributes)
        except Exception as exc:
            _report("recording a call's result", exc)
        finally:
            self._finish()

    def failed(self, error: BaseException) -> None:
        try:
            route = self._route
            if route.four_way:
                # What the batch runner's ChargeResult (CaptureResult) status says of it.
                outcome = status_of(error).value
            else:
                outcome = "unknown" if isinstance(error, OutcomeUnknownError) else "error"
            if outcome == "unknown":
                self._owner.unknown.add(1, {"klarna.operation": route.operation})
            span = self._span
            if not span.is_recording():
                return  # (finally: ended all the same)
            attributes: Attributes = {
                "klarna.outcome": outcome,
                "klarna.attempts": self.attempts,
                "error.type": _error_type(error),
            }
            cause = error.last_error if isinstance(error, OutcomeUnknownError) else error
            correlation_id = self._correlation_id
            if isinstance(cause, ApiError):
                if cause.error_code:
                    attributes["klarna.error_code"] = cause.error_code
                correlation_id = cause.correlation_id or correlation_id
            elif isinstance(cause, ResponseDecodeError):
                correlation_id = cause.correlation_id or correlation_id
            if correlation_id:
                attributes["klarna.correlation_id"] = correlation_id
            span.set_attributes(attributes)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        except Exception as exc:
            _report("recording a call's error", exc)
        finally:
            self._finish()

    def _finish(self) -> None:
        try:
            self._span.end()
        except Exception as exc:
            _report("ending a call's span", exc)
        # Never raises: the API logs a token it cannot detach.
        otel_context.detach(self._token)
