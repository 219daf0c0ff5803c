"""Fixtures for tests of the optional integrations (Redis); see :mod:`.redis_support`."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.integrations import redis_support
from tests.integrations.redis_support import RedisServer


@pytest.fixture(scope="session")
def redis_session() -> Iterator[tuple[str | None, str]]:
    """(the URL of the session's Redis or None, why there is none)."""
    url, server, reason = redis_support.session_url()
    try:
        yield url, reason
    finally:
        if server is not None:
            server.close()


@pytest.fixture
def redis_url(redis_session: tuple[str | None, str]) -> str:
    """A Redis URL on the tests' own database, emptied for this test."""
    url, reason = redis_session
    if url is None:
        redis_support.unavailable(reason)
    redis_support.flush(url)
    return url


@pytest.fixture
def redis_server() -> Iterator[Callable[..., RedisServer]]:
    """``redis_server(password=...)``: a started redis-server of the test's own, to stop and
    start again; all are stopped after the test."""
    servers: list[RedisServer] = []

    def start(*, password: str | None = None) -> RedisServer:
        if not redis_support.have_package():
            redis_support.unavailable("the redis package is not installed (pip install redis)")
        if not redis_support.have_server_binary():
            redis_support.unavailable("redis-server is not on PATH (needed to play an outage)")
        server = RedisServer(password=password)
        servers.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.close()
