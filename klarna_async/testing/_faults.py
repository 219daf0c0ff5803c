"""Fault injection for the fake Klarna: what goes wrong, where, and how reproducibly.

A fault is decided per request, after the credentials and the rate limit are checked and before
the request is processed. Two sources, scripts first:

* **Scripts**: the next N requests to one endpoint get these faults, in order::

      fake.faults.script("customer_tokens.create_order",
                         [Fault.SERVICE_UNAVAILABLE, Fault.DROP_AFTER_COMMIT])

  ``None`` in a script means "this request goes through untouched"; ``(Fault.LATENCY, 5.0)``
  sets the delay of one latency fault.
* **Rates**: independent probabilities per request, for one endpoint or (``endpoint=None``) for
  every endpoint without rates of its own::

      fake.faults.set_rates(service_unavailable=0.1, drop_after_commit=0.02,
                            latency=0.01, latency_seconds=2.0)

  Each endpoint draws from its own random stream seeded from ``(seed, endpoint)``, so the n-th
  request to an endpoint gets the same fault in every run with the same seed, however requests to
  *different* endpoints interleave. (Concurrent requests to the *same* endpoint are numbered in
  arrival order.) :attr:`FaultInjector.seed` is always set, a random one if none was given, so a
  failing soak can be replayed.

What each :class:`Fault` does on the wire:

==================== ===========================================================================
SERVICE_UNAVAILABLE  503 with Klarna's error body ``SERVICE_UNAVAILABLE``; nothing processed.
RESET_BEFORE         The connection is reset (TCP RST) without an answer; nothing processed.
DROP_AFTER_COMMIT    The request is processed and committed (the order exists, the idempotent
                     answer is stored), then the connection is closed without any response.
LATENCY              Sleep ``latency_seconds`` (real time), then process and answer normally.
                     The processing happens even if the client has given up meanwhile.
HTML_500/502/504     An HTML error page with ``Content-Type: text/html`` (as a proxy or load
                     balancer would send); nothing processed.
==================== ===========================================================================
"""

from __future__ import annotations

import enum
import os
import random
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

__all__ = ["ENDPOINTS", "Fault", "FaultInjector", "FaultRates", "Injection"]

#: Every endpoint name the fake knows, as used by faults, the ledger and the request log.
ENDPOINTS: tuple[str, ...] = (
    "customer_tokens.cancel",
    "customer_tokens.create_order",
    "customer_tokens.get",
    "payments.cancel_authorization",
    "payments.create_customer_token",
    "payments.create_order",
    "payments.create_session",
    "payments.get_session",
    "payments.update_session",
)
_ENDPOINT_SET = frozenset(ENDPOINTS)


class Fault(enum.Enum):
    """One way a request can go wrong (see the module docstring)."""

    SERVICE_UNAVAILABLE = "service_unavailable"
    RESET_BEFORE = "reset_before"
    DROP_AFTER_COMMIT = "drop_after_commit"
    LATENCY = "latency"
    HTML_500 = "html_500"
    HTML_502 = "html_502"
    HTML_504 = "html_504"

    @property
    def processes(self) -> bool:
        """Whether the request is still processed (and committed) with this fault."""
        return self in (Fault.DROP_AFTER_COMMIT, Fault.LATENCY)


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

    def __post_init__(self) -> None:
        total = 0.0
        for fault in Fault:
            rate = getattr(self, fault.value)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{fault.value} rate must be within [0, 1], got {rate!r}")
            total += rate
        if total > 1.0 + 1e-9:
            raise ValueError(f"fault rates add up to {total}, more than 1")
        if not self.latency_seconds >= 0:
            raise ValueError(f"latency_seconds must be >= 0, got {self.latency_seconds!r}")

    @property
    def active(self) -> bool:
        return any(getattr(self, fault.value) for fault in Fault)


ScriptItem = Fault | tuple[Fault, float] | None


def check_endpoint(endpoint: str) -> str:
    if endpoint not in _ENDPOINT_SET:
        raise ValueError(f"unknown endpoint {endpoint!r}; known: {', '.join(ENDPOINTS)}")
    return endpoint


class FaultInjector:
    """Decides, reproducibly, which requests fail and how."""

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

    @staticmethod
    def _fresh_seed() -> int:
        return int.from_bytes(os.urandom(4), "big")

    # -- configuration --------------------------------------------------------------------

    def reseed(self, seed: int | None = None) -> None:
        """Restart every random stream from ``seed`` (a fresh random seed if None)."""
        self.seed = self._fresh_seed() if seed is None else int(seed)
        self._streams.clear()

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
        self,
        endpoint: str | None = None,
        *,
        service_unavailable: float = 0.0,
        reset_before: float = 0.0,
        drop_after_commit: float = 0.0,
        latency: float = 0.0,
        html_500: float = 0.0,
        html_502: float = 0.0,
        html_504: float = 0.0,
        latency_seconds: float | None = None,
    ) -> None:
        """Set fault probabilities for ``endpoint``, or for all endpoints if None.

        Rates of a specific endpoint replace (do not add to) the all-endpoint rates for it.
        Calling with all rates 0 switches random faults off for that scope.
        """
        if endpoint is not None:
            check_endpoint(endpoint)
        rates = FaultRates(
            service_unavailable=service_unavailable,
            reset_before=reset_before,
            drop_after_commit=drop_after_commit,
            latency=latency,
            html_500=html_500,
            html_502=html_502,
            html_504=html_504,
            latency_seconds=self._default_latency if latency_seconds is None else latency_seconds,
        )
        self._rates[endpoint] = rates

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
        """Drop scripts and rates for ``endpoint``, or everything if None (the seed stays)."""
        if endpoint is None:
            self._scripts.clear()
            self._rates.clear()
            return
        check_endpoint(endpoint)
        self._scripts.pop(endpoint, None)
        self._rates.pop(endpoint, None)

    def reset(self) -> None:
        """Clear everything, restart the random streams and the counters."""
        self.clear()
        self._streams.clear()
        self.injected.clear()

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
        rates = self._rates.get(endpoint) or self._rates.get(None)
        if rates is None or not rates.active:
            return None
        stream = self._streams.get(endpoint)
        if stream is None:
            stream = self._streams[endpoint] = random.Random(f"{self.seed}/{endpoint}")
        draw = stream.random()
        for fault in Fault:
            draw -= getattr(rates, fault.value)
            if draw < 0:
                self.injected[endpoint, fault] += 1
                delay = rates.latency_seconds if fault is Fault.LATENCY else 0.0
                return Injection(fault, delay)
        return None
