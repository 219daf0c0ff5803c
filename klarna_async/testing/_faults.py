"""Fault injection for the fake Klarna: what goes wrong, where, and how reproducibly.

The fake is meant to be an honest adversary: it does the ambiguous things a real network and a
real Klarna can do (a commit after the client gave up, a gateway's 503 after the request was
forwarded and processed, 409 while a key is in flight, a 5xx whose body names a 4xx-family code,
nonsense in rate-limit headers), so that tests do not merely confirm the client's assumptions.

A fault is decided per request, after the credentials and the rate limit are checked and before
the request is processed. Two sources, scripts first:

* **Scripts**: the next N requests to one endpoint get these faults, in order::

      fake.faults.script("customer_tokens.create_order",
                         [Fault.SERVICE_UNAVAILABLE, Fault.ENVOY_503_COMMITTED])

  ``None`` in a script means "this request goes through untouched"; ``(Fault.LATENCY, 5.0)``
  sets the delay of one latency fault.
* **Rates**: independent probabilities per request, for one endpoint or (``endpoint=None``) for
  every endpoint without rates of its own; any fault's value is a rate name::

      fake.faults.set_rates(service_unavailable=0.1, drop_after_commit=0.02,
                            envoy_503_committed=0.01, latency=0.01, latency_seconds=2.0)

  Each endpoint draws from its own random stream seeded from ``(seed, endpoint)``, so the n-th
  request to an endpoint gets the same fault in every run with the same seed, however requests to
  *different* endpoints interleave. (Concurrent requests to the *same* endpoint are numbered in
  arrival order.) :attr:`FaultInjector.seed` is always set, a random one if none was given, so a
  failing soak can be replayed.

Over HTTP, ``POST /_fake/faults`` takes the same as JSON (see :func:`._app.apply_fault_config`)::

    {"seed": 7, "rates": {"envoy_503_committed": 0.05}, "script": {"customer_tokens.create_order":
     ["latency", "in_flight_conflict", ["latency", 3.5], null]},
     "options": {"in_flight": "conflict", "check_order": "state_first"}}

Two **options** change how the fake itself behaves, for every request (Klarna documents neither):

* ``in_flight``: what a request gets whose ``Klarna-Idempotency-Key`` is still being processed by
  an earlier request (one delayed by ``LATENCY``): ``"process"`` (the default: it is processed;
  whichever commits first places the order and the other replays it), ``"conflict"`` (409
  ``CONFLICT``, not processed, nothing stored) or ``"wait"`` (it waits for the first to finish,
  then replays its answer).
* ``check_order``: ``"replay_first"`` (the default: a stored answer is replayed before anything
  else is checked) or ``"state_first"`` (the body and the customer token's existence and status
  are checked first, so a replay after the token was cancelled answers 403 ``TOKEN_CANCELED``
  although the order was placed).

Both also exist per request, as the faults ``IN_FLIGHT_CONFLICT`` and ``STATE_FIRST``. The
idempotency checks apply to the endpoints whose spec declares the key: customer-token orders and
every Order Management write (under ``state_first`` an OM write is checked against the order's
state first: a capture replayed after the order was fully captured answers 403
``CAPTURE_NOT_ALLOWED``, although the key did capture).

What each :class:`Fault` does on the wire. "Processed" means the request is processed as usual
(the order is placed, the idempotent answer stored) before the answer below replaces Klarna's;
"not processed" means nothing happened. Klarna-shaped answers carry Klarna's JSON error body and
a ``Klarna-Correlation-Id``; gateway answers carry neither, only a gateway's ``Server`` header.

============================== ===============================================================
SERVICE_UNAVAILABLE            503 with Klarna's error body ``SERVICE_UNAVAILABLE``; not
                               processed.
RESET_BEFORE                   The connection is reset (TCP RST) without an answer; not
                               processed.
DROP_AFTER_COMMIT              Processed, then the connection is closed without a response.
LATENCY                        Sleep ``latency_seconds`` (real time), then process and answer.
                               The key is "in flight" meanwhile (see ``in_flight``). The
                               processing happens, and commits, even if the client has given
                               up: the request's ledger record then says ``client_gone``, and
                               its ``committed_at`` is later than its ``received_at``.
HTML_500                       nginx's HTML 500 page (``text/html``); not processed.
HTML_502                       nginx's HTML 502 page; not processed.
HTML_504                       nginx's HTML 504 page; not processed.
CONFLICT                       409 with Klarna's error body ``CONFLICT`` ("A request with this
                               Klarna-Idempotency-Key is already being processed"); not
                               processed.
IN_FLIGHT_CONFLICT             ``in_flight="conflict"`` for this request only: 409
                               ``CONFLICT`` if its key is in flight, else processed as usual.
STATE_FIRST                    ``check_order="state_first"`` for this request only.
ENVOY_503                      503 ``text/plain`` ``upstream connect error or disconnect/reset
                               before headers. reset reason: connection termination`` with
                               ``Server: envoy``, as Envoy sends; not processed.
ENVOY_503_COMMITTED            The same answer, after the request was processed.
EMPTY_503                      503 with an empty body and no content type; not processed.
EMPTY_503_COMMITTED            The same, processed.
HTML_503                       nginx's HTML 503 page; not processed.
HTML_502_COMMITTED             nginx's HTML 502 page, processed.
HTML_503_COMMITTED             nginx's HTML 503 page, processed.
HTTP500_NOT_FOUND              500 with Klarna's error body ``NOT_FOUND``; not processed.
HTTP500_NOT_FOUND_COMMITTED    The same, processed.
HTTP502_BAD_REQUEST            502 with Klarna's error body ``BAD_REQUEST``; not processed.
HTTP502_BAD_REQUEST_COMMITTED  The same, processed.
HTTP504_REJECTED               504 with Klarna's error body ``REJECTED``; not processed.
HTTP504_REJECTED_COMMITTED     The same, processed.
REDIRECT_302                   nginx's 302 with ``Location: <fake>/_fake/maintenance`` (a 200
                               HTML page, so a client that follows it sees a 200 that is not
                               Klarna's); not processed.
REDIRECT_302_COMMITTED         The same, processed.
TIMEOUT_408                    HAProxy's 408 ``Request Time-out`` page with ``Connection:
                               close``; not processed.
TIMEOUT_408_COMMITTED          The same, processed.
TOO_EARLY_425                  HAProxy's 425 ``Too Early`` page; not processed.
TOO_EARLY_425_COMMITTED        The same, processed.
RATE_LIMIT_NAN                 429 with Klarna's error body ``TOO_MANY_REQUESTS``,
                               ``X-Ratelimit-Remaining: 0`` and both ``X-Ratelimit-Reset`` and
                               ``Retry-After`` set to ``nan``; not processed.
RATE_LIMIT_INF                 The same with ``inf``.
RATE_LIMIT_NEGATIVE            The same with ``-30``.
RATE_LIMIT_HUGE                The same with ``1e9``.
PAUSE_NAN                      Processed and answered as usual (a success, typically), with
                               ``X-Ratelimit-Remaining: 0`` and ``X-Ratelimit-Reset`` and
                               ``Retry-After`` set to ``nan``.
PAUSE_INF                      The same with ``inf``.
PAUSE_NEGATIVE                 The same with ``-30``.
PAUSE_HUGE                     The same with ``1e9``.
============================== ===============================================================
"""

from __future__ import annotations

import enum
import os
import random
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Final

__all__ = [
    "CHECK_ORDERS",
    "ENDPOINTS",
    "IN_FLIGHT_POLICIES",
    "Fault",
    "FaultInjector",
    "FaultRates",
    "Injection",
]

#: Every endpoint name the fake knows, as used by faults, the ledger and the request log.
ENDPOINTS: tuple[str, ...] = (
    "customer_tokens.cancel",
    "customer_tokens.create_order",
    "customer_tokens.get",
    "orders.acknowledge",
    "orders.add_capture_shipping_info",
    "orders.add_shipping_info",
    "orders.cancel",
    "orders.capture",
    "orders.extend_authorization_time",
    "orders.extend_due_date",
    "orders.extend_due_date_options",
    "orders.get",
    "orders.get_capture",
    "orders.get_refund",
    "orders.list_captures",
    "orders.refund",
    "orders.release_remaining_authorization",
    "orders.trigger_send_out",
    "orders.update_authorization",
    "orders.update_customer_details",
    "orders.update_merchant_references",
    "payments.cancel_authorization",
    "payments.create_customer_token",
    "payments.create_order",
    "payments.create_session",
    "payments.get_session",
    "payments.update_session",
)
_ENDPOINT_SET = frozenset(ENDPOINTS)

#: Values of the ``in_flight`` option (see the module docstring).
IN_FLIGHT_POLICIES: Final = ("process", "conflict", "wait")
#: Values of the ``check_order`` option.
CHECK_ORDERS: Final = ("replay_first", "state_first")

#: Header values of the hostile rate-limit faults.
HOSTILE_VALUES: Final = {"nan": "nan", "inf": "inf", "negative": "-30", "huge": "1e9"}


class Fault(enum.Enum):
    """One way a request can go wrong (see the module docstring)."""

    SERVICE_UNAVAILABLE = "service_unavailable"
    RESET_BEFORE = "reset_before"
    DROP_AFTER_COMMIT = "drop_after_commit"
    LATENCY = "latency"
    HTML_500 = "html_500"
    HTML_502 = "html_502"
    HTML_504 = "html_504"
    # Klarna's own ambiguous answers.
    CONFLICT = "conflict"
    IN_FLIGHT_CONFLICT = "in_flight_conflict"
    STATE_FIRST = "state_first"
    # A gateway between the client and Klarna answers instead.
    ENVOY_503 = "envoy_503"
    ENVOY_503_COMMITTED = "envoy_503_committed"
    EMPTY_503 = "empty_503"
    EMPTY_503_COMMITTED = "empty_503_committed"
    HTML_503 = "html_503"
    HTML_502_COMMITTED = "html_502_committed"
    HTML_503_COMMITTED = "html_503_committed"
    # A 5xx whose body names a 4xx-family code.
    HTTP500_NOT_FOUND = "http500_not_found"
    HTTP500_NOT_FOUND_COMMITTED = "http500_not_found_committed"
    HTTP502_BAD_REQUEST = "http502_bad_request"
    HTTP502_BAD_REQUEST_COMMITTED = "http502_bad_request_committed"
    HTTP504_REJECTED = "http504_rejected"
    HTTP504_REJECTED_COMMITTED = "http504_rejected_committed"
    # Statuses a client may not expect.
    REDIRECT_302 = "redirect_302"
    REDIRECT_302_COMMITTED = "redirect_302_committed"
    TIMEOUT_408 = "timeout_408"
    TIMEOUT_408_COMMITTED = "timeout_408_committed"
    TOO_EARLY_425 = "too_early_425"
    TOO_EARLY_425_COMMITTED = "too_early_425_committed"
    # Rate-limit headers that are not numbers a client can sleep on.
    RATE_LIMIT_NAN = "rate_limit_nan"
    RATE_LIMIT_INF = "rate_limit_inf"
    RATE_LIMIT_NEGATIVE = "rate_limit_negative"
    RATE_LIMIT_HUGE = "rate_limit_huge"
    PAUSE_NAN = "pause_nan"
    PAUSE_INF = "pause_inf"
    PAUSE_NEGATIVE = "pause_negative"
    PAUSE_HUGE = "pause_huge"

    @property
    def processes(self) -> bool:
        """Whether the request is still processed (and committed) with this fault."""
        return self in _PROCESSING

    @property
    def summary(self) -> str:
        """One line on what the fault does on the wire."""
        return _SUMMARIES[self]

    @property
    def hostile_value(self) -> str | None:
        """The ``X-Ratelimit-Reset`` / ``Retry-After`` value of a hostile rate-limit fault."""
        prefix, _, kind = self.value.rpartition("_")
        if prefix in ("rate_limit", "pause"):
            return HOSTILE_VALUES[kind]
        return None


_PROCESSING: Final = frozenset(
    {
        Fault.DROP_AFTER_COMMIT,
        Fault.LATENCY,
        Fault.IN_FLIGHT_CONFLICT,
        Fault.STATE_FIRST,
        Fault.PAUSE_NAN,
        Fault.PAUSE_INF,
        Fault.PAUSE_NEGATIVE,
        Fault.PAUSE_HUGE,
        *(fault for fault in Fault if fault.value.endswith("_committed")),
    }
)

_SUMMARIES: Final = {
    Fault.SERVICE_UNAVAILABLE: "503 SERVICE_UNAVAILABLE (Klarna JSON); not processed",
    Fault.RESET_BEFORE: "connection reset (TCP RST) without an answer; not processed",
    Fault.DROP_AFTER_COMMIT: "processed, then the connection is closed without an answer",
    Fault.LATENCY: "sleeps latency_seconds, then processes (commits even if the client left)",
    Fault.HTML_500: "nginx HTML 500 page; not processed",
    Fault.HTML_502: "nginx HTML 502 page; not processed",
    Fault.HTML_504: "nginx HTML 504 page; not processed",
    Fault.CONFLICT: "409 CONFLICT (Klarna JSON, key in use); not processed",
    Fault.IN_FLIGHT_CONFLICT: "409 CONFLICT if the key is still being processed, else processed",
    Fault.STATE_FIRST: "token state and body checked before the idempotent replay",
    Fault.ENVOY_503: "Envoy's text/plain 503 'upstream connect error...'; not processed",
    Fault.ENVOY_503_COMMITTED: "processed, then Envoy's text/plain 503",
    Fault.EMPTY_503: "503 with an empty body; not processed",
    Fault.EMPTY_503_COMMITTED: "processed, then a 503 with an empty body",
    Fault.HTML_503: "nginx HTML 503 page; not processed",
    Fault.HTML_502_COMMITTED: "processed, then an nginx HTML 502 page",
    Fault.HTML_503_COMMITTED: "processed, then an nginx HTML 503 page",
    Fault.HTTP500_NOT_FOUND: "500 with error_code NOT_FOUND (Klarna JSON); not processed",
    Fault.HTTP500_NOT_FOUND_COMMITTED: "processed, then 500 with error_code NOT_FOUND",
    Fault.HTTP502_BAD_REQUEST: "502 with error_code BAD_REQUEST (Klarna JSON); not processed",
    Fault.HTTP502_BAD_REQUEST_COMMITTED: "processed, then 502 with error_code BAD_REQUEST",
    Fault.HTTP504_REJECTED: "504 with error_code REJECTED (Klarna JSON); not processed",
    Fault.HTTP504_REJECTED_COMMITTED: "processed, then 504 with error_code REJECTED",
    Fault.REDIRECT_302: "302 to /_fake/maintenance (a 200 HTML page); not processed",
    Fault.REDIRECT_302_COMMITTED: "processed, then 302 to /_fake/maintenance",
    Fault.TIMEOUT_408: "HAProxy's 408 Request Time-out page, Connection: close; not processed",
    Fault.TIMEOUT_408_COMMITTED: "processed, then HAProxy's 408 page",
    Fault.TOO_EARLY_425: "HAProxy-style 425 Too Early page; not processed",
    Fault.TOO_EARLY_425_COMMITTED: "processed, then a 425 Too Early page",
    Fault.RATE_LIMIT_NAN: "429 TOO_MANY_REQUESTS, X-Ratelimit-Reset and Retry-After: nan",
    Fault.RATE_LIMIT_INF: "429 TOO_MANY_REQUESTS, X-Ratelimit-Reset and Retry-After: inf",
    Fault.RATE_LIMIT_NEGATIVE: "429 TOO_MANY_REQUESTS, X-Ratelimit-Reset and Retry-After: -30",
    Fault.RATE_LIMIT_HUGE: "429 TOO_MANY_REQUESTS, X-Ratelimit-Reset and Retry-After: 1e9",
    Fault.PAUSE_NAN: "processed; X-Ratelimit-Remaining: 0, Reset and Retry-After: nan",
    Fault.PAUSE_INF: "processed; X-Ratelimit-Remaining: 0, Reset and Retry-After: inf",
    Fault.PAUSE_NEGATIVE: "processed; X-Ratelimit-Remaining: 0, Reset and Retry-After: -30",
    Fault.PAUSE_HUGE: "processed; X-Ratelimit-Remaining: 0, Reset and Retry-After: 1e9",
}


@dataclass(frozen=True, slots=True)
class Injection:
    """The fault chosen for one request."""

    fault: Fault
    latency_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class FaultRates:
    """Per-request probabilities of each fault (their sum must not exceed 1)."""

    service_unavailable: float = 0.0
    reset_before: float = 0.0
    drop_after_commit: float = 0.0
    latency: float = 0.0
    html_500: float = 0.0
    html_502: float = 0.0
    html_504: float = 0.0
    latency_seconds: float = 2.0
    conflict: float = 0.0
    in_flight_conflict: float = 0.0
    state_first: float = 0.0
    envoy_503: float = 0.0
    envoy_503_committed: float = 0.0
    empty_503: float = 0.0
    empty_503_committed: float = 0.0
    html_503: float = 0.0
    html_502_committed: float = 0.0
    html_503_committed: float = 0.0
    http500_not_found: float = 0.0
    http500_not_found_committed: float = 0.0
    http502_bad_request: float = 0.0
    http502_bad_request_committed: float = 0.0
    http504_rejected: float = 0.0
    http504_rejected_committed: float = 0.0
    redirect_302: float = 0.0
    redirect_302_committed: float = 0.0
    timeout_408: float = 0.0
    timeout_408_committed: float = 0.0
    too_early_425: float = 0.0
    too_early_425_committed: float = 0.0
    rate_limit_nan: float = 0.0
    rate_limit_inf: float = 0.0
    rate_limit_negative: float = 0.0
    rate_limit_huge: float = 0.0
    pause_nan: float = 0.0
    pause_inf: float = 0.0
    pause_negative: float = 0.0
    pause_huge: float = 0.0
    _draws: tuple[tuple[Fault, float], ...] = field(
        init=False, repr=False, compare=False, default=()
    )

    def __post_init__(self) -> None:
        total = 0.0
        draws: list[tuple[Fault, float]] = []
        for fault in Fault:  # enum order: old seeds draw the same faults as before
            rate = getattr(self, fault.value)
            if isinstance(rate, bool) or not isinstance(rate, int | float):
                raise TypeError(f"{fault.value} rate must be a number, got {rate!r}")
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{fault.value} rate must be within [0, 1], got {rate!r}")
            total += rate
            if rate:
                draws.append((fault, float(rate)))
        if total > 1.0 + 1e-9:
            raise ValueError(f"fault rates add up to {total}, more than 1")
        if not self.latency_seconds >= 0:
            raise ValueError(f"latency_seconds must be >= 0, got {self.latency_seconds!r}")
        object.__setattr__(self, "_draws", tuple(draws))

    @property
    def active(self) -> bool:
        return bool(self._draws)

    def nonzero(self) -> dict[str, float]:
        """The rates that are not 0, by fault value."""
        return {fault.value: rate for fault, rate in self._draws}


#: The names ``set_rates`` and ``POST /_fake/faults`` accept as rates.
RATE_NAMES: Final = frozenset(f.name for f in fields(FaultRates) if not f.name.startswith("_"))

ScriptItem = Fault | tuple[Fault, float] | None


def check_endpoint(endpoint: str) -> str:
    if endpoint not in _ENDPOINT_SET:
        raise ValueError(f"unknown endpoint {endpoint!r}; known: {', '.join(ENDPOINTS)}")
    return endpoint


class FaultInjector:
    """Decides, reproducibly, which requests fail and how; holds the fake's behaviour options."""

    ENDPOINTS: ClassVar[tuple[str, ...]] = ENDPOINTS
    """Every endpoint name (also used by the ledger and the request log)."""

    def __init__(self, seed: int | None = None, *, latency_seconds: float = 2.0) -> None:
        self._default_latency = float(latency_seconds)
        self._scripts: dict[str, deque[Injection | None]] = {}
        self._rates: dict[str | None, FaultRates] = {}
        self._streams: dict[str, random.Random] = {}
        self.injected: Counter[tuple[str, Fault]] = Counter()
        """How many times each (endpoint, fault) was injected."""
        self.seed = self._fresh_seed() if seed is None else int(seed)
        self.in_flight = "process"
        """What a request whose idempotency key is in flight gets (see the module docstring)."""
        self.check_order = "replay_first"
        """``"replay_first"`` or ``"state_first"`` (see the module docstring)."""

    @staticmethod
    def _fresh_seed() -> int:
        return int.from_bytes(os.urandom(4), "big")

    # -- configuration --------------------------------------------------------------------

    def reseed(self, seed: int | None = None) -> None:
        """Restart every random stream from ``seed`` (a fresh random seed if None)."""
        self.seed = self._fresh_seed() if seed is None else int(seed)
        self._streams.clear()

    def set_options(self, *, in_flight: str | None = None, check_order: str | None = None) -> None:
        """Change the fake's behaviour options (None: leave as is)."""
        if in_flight is not None:
            if in_flight not in IN_FLIGHT_POLICIES:
                raise ValueError(f"in_flight must be one of {IN_FLIGHT_POLICIES}: {in_flight!r}")
            self.in_flight = in_flight
        if check_order is not None:
            if check_order not in CHECK_ORDERS:
                raise ValueError(f"check_order must be one of {CHECK_ORDERS}: {check_order!r}")
            self.check_order = check_order

    @property
    def options(self) -> dict[str, str]:
        return {"in_flight": self.in_flight, "check_order": self.check_order}

    def script(
        self,
        endpoint: str,
        faults: Iterable[ScriptItem],
        *,
        latency_seconds: float | None = None,
    ) -> None:
        """Queue faults for the next requests to ``endpoint`` (appended to any queued ones)."""
        check_endpoint(endpoint)
        delay = self._default_latency if latency_seconds is None else float(latency_seconds)
        queue = self._scripts.setdefault(endpoint, deque())
        for item in faults:
            if item is None:
                queue.append(None)
            elif isinstance(item, Fault):
                queue.append(Injection(item, delay if item is Fault.LATENCY else 0.0))
            else:
                fault, seconds = item
                if not seconds >= 0:
                    raise ValueError(f"bad script item {item!r}")
                queue.append(Injection(fault, float(seconds)))

    def set_rates(
        self, endpoint: str | None = None, *, latency_seconds: float | None = None, **rates: float
    ) -> None:
        """Set fault probabilities for ``endpoint``, or for all endpoints if None.

        Each keyword is a fault's value (``service_unavailable=0.1``, ``envoy_503_committed=
        0.01``...). Rates of a specific endpoint replace (do not add to) the all-endpoint rates
        for it. Calling with all rates 0 switches random faults off for that scope.
        """
        if endpoint is not None:
            check_endpoint(endpoint)
        unknown = set(rates) - RATE_NAMES
        if unknown:
            raise ValueError(f"unknown rate names: {sorted(unknown)}; known: {sorted(RATE_NAMES)}")
        delay = self._default_latency if latency_seconds is None else latency_seconds
        options: dict[str, Any] = dict(rates)
        self._rates[endpoint] = FaultRates(**options, latency_seconds=delay)

    def rates(self, endpoint: str | None = None) -> FaultRates:
        """The rates in force for ``endpoint`` (or the all-endpoint rates)."""
        found = self._rates.get(endpoint)
        if found is None and endpoint is not None:
            found = self._rates.get(None)
        return found if found is not None else FaultRates()

    def pending(self, endpoint: str) -> int:
        """How many scripted items are still queued for ``endpoint``."""
        queue = self._scripts.get(check_endpoint(endpoint))
        return len(queue) if queue else 0

    def clear(self, endpoint: str | None = None) -> None:
        """Drop scripts and rates for ``endpoint``, or all of them if None (the seed and the
        options stay)."""
        if endpoint is None:
            self._scripts.clear()
            self._rates.clear()
            return
        check_endpoint(endpoint)
        self._scripts.pop(endpoint, None)
        self._rates.pop(endpoint, None)

    def reset(self) -> None:
        """Clear everything, restart the random streams and the counters, default options."""
        self.clear()
        self._streams.clear()
        self.injected.clear()
        self.in_flight = "process"
        self.check_order = "replay_first"

    # -- decision -------------------------------------------------------------------------

    def pick(self, endpoint: str) -> Injection | None:
        """The fault for the next request to ``endpoint``, or None."""
        queue = self._scripts.get(endpoint)
        if queue:
            chosen = queue.popleft()
            if chosen is not None:
                self.injected[endpoint, chosen.fault] += 1
            return chosen
        if not self._rates:
            return None
        rates = self._rates.get(endpoint)
        if rates is None:
            rates = self._rates.get(None)
        if rates is None or not rates.active:
            return None
        stream = self._streams.get(endpoint)
        if stream is None:
            stream = self._streams[endpoint] = random.Random(f"{self.seed}/{endpoint}")
        draw = stream.random()
        for fault, rate in rates._draws:
            draw -= rate
            if draw < 0:
                self.injected[endpoint, fault] += 1
                delay = rates.latency_seconds if fault is Fault.LATENCY else 0.0
                return Injection(fault, delay)
        return None
