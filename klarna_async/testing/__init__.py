"""``klarna_async.testing``: a stateful fake Klarna that speaks HTTP, for tests and demos.

The fake implements Klarna's Payments API v1 (sessions, one-time orders, customer-token creation,
cancelling authorizations) and Customer Token API v1 (read, charge, cancel) with real state,
documented errors, HTTP Basic auth, ``Klarna-Idempotency-Key`` replay, an optional rate limit,
reproducible fault injection and a ledger of everything that happened. It knows only HTTP and
Klarna's specs: it imports nothing from the client in ``klarna_async``.

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
  ``python -m klarna_async.testing._sandbox``), controlled over HTTP under ``/_fake/``.

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
    from klarna_async.testing._state import AuthorizationDeclined

__all__ = [
    "AuthorizationDeclined",
    "FakeClock",
    "FakeKlarna",
    "Fault",
    "FaultInjector",
    "FaultRates",
    "Ledger",
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
