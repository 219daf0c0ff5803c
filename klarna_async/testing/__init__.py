"""``klarna_async.testing``: a stateful fake Klarna that speaks HTTP, for tests and demos.

The fake implements Klarna's Payments API v1 (sessions, one-time orders, customer-token creation,
cancelling authorizations), Customer Token API v1 (read, charge, cancel) and Order Management
API v1 (every order placed appears there; captures, refunds, cancel, release, extend, updates,
pending orders decided by :meth:`FakeKlarna.decide_fraud`, which POSTs Klarna's notification; see
:mod:`._orders`) with real state,
documented errors, HTTP Basic auth, ``Klarna-Idempotency-Key`` replay, an optional rate limit,
reproducible fault injection and a ledger of everything that happened. It knows only HTTP and
Klarna's specs: it imports nothing from the client in ``klarna_async``.

It is an honest adversary: besides clean failures it does the ambiguous things a real network
and a real Klarna can do (a commit after the client gave up, a gateway's 503 after the order was
placed, 409 while a key is still being processed, a 5xx naming a 4xx-family code, ``nan`` in
``Retry-After``; see :mod:`._faults`), and the ledger says what really happened: how many orders
an idempotency key placed (:meth:`Ledger.order_count_for_key`), whether a request was committed
(:attr:`RequestRecord.committed`).

It stays bounded in memory over millions of charges: the ledger keeps the most recent
``keep_orders`` orders and ``keep_requests`` requests (50,000 each) in detail, while its
counts (per key, per token, totals, duplicates) stay exact for the whole run, and idempotent
answers are replayed for Klarna's 24 hours from about 40 bytes per key (see :mod:`._ledger` and
:mod:`._idempotency`). ``benchmarks/fake_scale.py`` measures it.

Three ways to run it:

* **In-process**::

      from klarna_async.testing import FakeKlarna

      async with FakeKlarna() as fake:           # 127.0.0.1, a free port
          ...  # point the client at fake.url with username "test_user", password "test_password"
          token = fake.authorize(session_id)      # the customer approves in Klarna's widget
          fake.clock.advance(61 * 60)             # ... and the authorization token expires

  ``fake.app`` is the :class:`aiohttp.web.Application`; :func:`serve_in_thread` runs a fake on a
  background thread for synchronous code.
* **pytest**: installing ``klarna-async`` registers a plugin with the fixtures ``fake_klarna`` (a
  started :class:`FakeKlarna`) and ``fake_klarna_factory`` (``await factory(rate_limit=5)``);
  they are async fixtures under pytest-asyncio (auto or strict mode) and thread-backed otherwise.
* **Sandbox** process: ``klarna-async sandbox --port 8765 --seed 1 --fault-503 0.1`` (or
  ``python -m klarna_async.testing._sandbox``), controlled over HTTP under ``/_fake/``
  (``GET /_fake/`` lists the controls; ``--help`` shows curl lines for tokens and a charge).

See :mod:`klarna_async.testing._state` for the modelled behaviour, :mod:`._faults` for faults,
:mod:`._ledger` for the ledger and :mod:`._app` for the control endpoints.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from klarna_async.testing._app import FakeKlarna, serve_in_thread
    from klarna_async.testing._clock import FakeClock
    from klarna_async.testing._faults import Fault, FaultInjector, FaultRates
    from klarna_async.testing._ledger import Ledger, OrderRecord, RequestRecord, TokenRecord
    from klarna_async.testing._orders import OmOrder
    from klarna_async.testing._state import AuthorizationDeclined

__all__ = [
    "AuthorizationDeclined",
    "FakeClock",
    "FakeKlarna",
    "Fault",
    "FaultInjector",
    "FaultRates",
    "Ledger",
    "OmOrder",
    "OrderRecord",
    "RequestRecord",
    "TokenRecord",
    "serve_in_thread",
]

# Loaded on first use, so that the pytest plugin (imported by every pytest run in an environment
# where klarna-async is installed) does not import aiohttp until a fixture needs it.
_HOMES = {
    "AuthorizationDeclined": "_state",
    "FakeClock": "_clock",
    "FakeKlarna": "_app",
    "Fault": "_faults",
    "FaultInjector": "_faults",
    "FaultRates": "_faults",
    "Ledger": "_ledger",
    "OmOrder": "_orders",
    "OrderRecord": "_ledger",
    "RequestRecord": "_ledger",
    "TokenRecord": "_ledger",
    "serve_in_thread": "_app",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
