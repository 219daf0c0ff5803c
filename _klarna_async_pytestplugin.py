"""pytest fixtures for the fake Klarna (registered automatically as the ``klarna_async`` plugin).

A top-level module of its own, beside the ``klarna_async`` package (as Hypothesis does with
``_hypothesis_pytestplugin``): pytest imports every installed plugin on every run, and importing
anything inside ``klarna_async`` would import the whole client (aiohttp, cattrs, orjson) into
test runs that never use a fixture. This module imports only pytest and the standard library;
``klarna_async`` is imported when a fixture is used.

* ``fake_klarna``: a started :class:`~klarna_async.testing.FakeKlarna` with default options
  (``fake.url``, username ``test_user``, password ``test_password``), fresh for each test.
* ``fake_klarna_factory``: ``await fake_klarna_factory(rate_limit=5, seed=1)`` starts more fakes
  with options; all are stopped after the test.

With pytest-asyncio active (auto *or* strict mode) these are async fixtures running on the test's
event loop; use them from ``async def`` tests. Their loop scope is pytest-asyncio's default for
fixtures (``asyncio_default_fixture_loop_scope``), so a test running on a wider-scoped loop should
start its own ``FakeKlarna`` instead. Without pytest-asyncio (or with ``-p no:asyncio``) the fake
runs on a background thread (:func:`~klarna_async.testing.serve_in_thread`) and the factory is a
plain function: the fixtures then work from synchronous tests and from any other async plugin.

It never fails a pytest run by itself.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from klarna_async.testing._app import FakeKlarna

__all__ = ["pytest_configure"]

_PLUGIN_NAME = "klarna_async.testing.fixtures"
_ASYNCIO_PLUGIN_NAMES = ("asyncio", "pytest_asyncio", "pytest_asyncio.plugin")


def _async_fixtures() -> types.ModuleType:
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def fake_klarna() -> AsyncIterator[FakeKlarna]:
        """A started FakeKlarna on the test's event loop."""
        from klarna_async.testing._app import FakeKlarna

        async with FakeKlarna() as fake:
            yield fake

    @pytest_asyncio.fixture
    async def fake_klarna_factory() -> AsyncIterator[Callable[..., Any]]:
        """``await fake_klarna_factory(**options)`` -> a started FakeKlarna."""
        from klarna_async.testing._app import FakeKlarna

        started: list[FakeKlarna] = []

        async def factory(**options: Any) -> FakeKlarna:
            fake = FakeKlarna(**options)
            await fake.start()
            started.append(fake)
            return fake

        try:
            yield factory
        finally:
            for fake in reversed(started):
                await fake.stop()

    module = types.ModuleType(_PLUGIN_NAME)
    module.fake_klarna = fake_klarna  # type: ignore[attr-defined]
    module.fake_klarna_factory = fake_klarna_factory  # type: ignore[attr-defined]
    return module


def _threaded_fixtures() -> types.ModuleType:
    @pytest.fixture
    def fake_klarna() -> Iterator[FakeKlarna]:
        """A started FakeKlarna served from a background thread."""
        from klarna_async.testing._app import serve_in_thread

        with serve_in_thread() as fake:
            yield fake

    @pytest.fixture
    def fake_klarna_factory() -> Iterator[Callable[..., FakeKlarna]]:
        """``fake_klarna_factory(**options)`` -> a started, thread-served FakeKlarna."""
        from klarna_async.testing._app import serve_in_thread

        with contextlib.ExitStack() as stack:

            def factory(**options: Any) -> FakeKlarna:
                return stack.enter_context(serve_in_thread(**options))

            yield factory

    module = types.ModuleType(_PLUGIN_NAME)
    module.fake_klarna = fake_klarna  # type: ignore[attr-defined]
    module.fake_klarna_factory = fake_klarna_factory  # type: ignore[attr-defined]
    return module


def pytest_configure(config: pytest.Config) -> None:
    manager = config.pluginmanager
    if manager.has_plugin(_PLUGIN_NAME):
        return
    fixtures: types.ModuleType | None = None
    if any(manager.has_plugin(name) for name in _ASYNCIO_PLUGIN_NAMES):
        with contextlib.suppress(ImportError):
            fixtures = _async_fixtures()
    if fixtures is None:
        fixtures = _threaded_fixtures()
    manager.register(fixtures, _PLUGIN_NAME)
