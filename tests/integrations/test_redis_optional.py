"""The Redis extra stays optional: nothing imports redis until a RedisRateLimiter is made; the
constructor checks its arguments and never shows a password. (No Redis server needed.)"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest

import klarna_async
from klarna_async import KlarnaClient, RedisRateLimiter
from klarna_async._ratelimit import Pacer
from klarna_async._redis_pacer import redacted_url, url_password
from tests.integrations import redis_support

PASSWORD = "s3cret-Pa55"


@pytest.fixture
def redis_package() -> None:
    if not redis_support.have_package():
        redis_support.unavailable("the redis package is not installed (pip install redis)")


def test_importing_the_package_does_not_import_redis() -> None:
    """`import klarna_async` works without redis installed: it never imports it."""
    code = (
        "import sys, klarna_async; print(sorted(m for m in sys.modules if m.startswith('redis')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "[]" == done.stdout.strip()


def test_without_redis_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Making a limiter without the redis package: an ImportError that says what to install."""
    for name in [m for m in sys.modules if m == "redis" or m.startswith("redis.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ImportError, match=r"pip install 'klarna-async\[redis\]'"):
        RedisRateLimiter("redis://127.0.0.1:6379/0", 10, merchant="M", environment="playground")


def test_it_is_public_and_a_pacer(redis_package: None) -> None:
    """klarna_async.RedisRateLimiter is a Pacer the client takes as its rate_limit."""
    assert "RedisRateLimiter" in klarna_async.__all__
    limiter = RedisRateLimiter("redis://127.0.0.1:1/0", merchant="M", environment="production")
    assert isinstance(limiter, Pacer)
    client = KlarnaClient(username="M", password="p", environment="production", rate_limit=limiter)
    assert client.rate_limiter is limiter
    # By default 90 % of Klarna's documented limit, as the client's own pacer.
    assert 180 == limiter.rate
    assert 45 == RedisRateLimiter("redis://h", merchant="M", environment="playground").rate


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"rate": 0}, "rate"),
        ({"rate": float("nan")}, "rate"),
        ({"rate": float("inf")}, "rate"),
        ({"burst": 0.5}, "burst"),
        ({"expected_processes": 0}, "expected_processes"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": 60}, "timeout"),
        ({"retry_after": 0}, "retry_after"),
        ({"merchant": ""}, "merchant"),
        ({"environment": "staging"}, "staging"),
    ],
)
def test_arguments_are_checked(redis_package: None, options: dict[str, Any], error: str) -> None:
    arguments: dict[str, Any] = {"rate": 10, "merchant": "M", "environment": "playground"}
    with pytest.raises(ValueError, match=error):
        RedisRateLimiter("redis://127.0.0.1:6379/0", **{**arguments, **options})


def test_a_synchronous_client_is_refused(redis_package: None) -> None:
    import redis

    client = redis.Redis()
    try:
        with pytest.raises(TypeError, match=r"redis\.asyncio\.Redis"):
            RedisRateLimiter(client, 10, merchant="M", environment="playground")  # type: ignore[arg-type]
    finally:
        client.close()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:pw@example.com:6380/1", "redis://:***@example.com:6380/1"),
        ("rediss://user:pw@example.com/2?ssl_cert_reqs=none", "rediss://user:***@example.com/2"),
        ("redis://example.com/0?password=pw", "redis://example.com/0"),
        ("redis://user:p%40w@[::1]:7000/0", "redis://user:***@[::1]:7000/0"),
        ("unix://:pw@/run/redis.sock?db=3", "unix://:***@/run/redis.sock"),
        ("redis://example.com:notaport/0", "<unparsable redis URL>"),
    ],
)
def test_urls_are_shown_without_passwords(url: str, shown: str) -> None:
    assert shown == redacted_url(url)


@pytest.mark.parametrize(
    ("url", "password"),
    [
        ("redis://127.0.0.1/0", None),
        ("redis://:pw@h/0", "pw"),
        ("redis://u:p%40w@h/0", "p@w"),
        ("redis://h/0?password=q", "q"),
    ],
)
def test_the_password_to_scrub_is_found(url: str, password: str | None) -> None:
    assert password == url_password(url)


def test_observe_without_an_event_loop_pauses_locally(redis_package: None) -> None:
    """Called with no running loop, the pause stays local and nothing raises."""
    limiter = RedisRateLimiter("redis://127.0.0.1:1/0", 100, merchant="M", environment="playground")
    limiter.observe(429, {"Retry-After": "2"})
    assert limiter._push_task is None
    assert asyncio.run(limiter.acquire(max_wait=1.0)) is None  # no need to ask Redis
    asyncio.run(limiter.aclose())


async def test_repr_never_shows_the_password(redis_package: None) -> None:
    """repr shows where Redis is, never the password, from a URL or from a client."""
    import redis.asyncio

    url = f"redis://user:{PASSWORD}@127.0.0.1:1/2?password={PASSWORD}"
    a = RedisRateLimiter(url, 10, merchant="M", environment="playground")
    assert PASSWORD not in repr(a)
    assert "redis://user:***@127.0.0.1:1/2" in repr(a)
    assert "merchant='M'" in repr(a)
    await a.aclose()
    client = redis.asyncio.Redis(host="127.0.0.1", port=1, db=2, password=PASSWORD)
    try:
        b = RedisRateLimiter(client, 10, merchant="M", environment="playground")
        assert PASSWORD not in repr(b)
        assert "redis://127.0.0.1:1/2" in repr(b)
        await b.aclose()
    finally:
        await client.aclose()


async def test_it_is_an_async_context_manager(redis_package: None) -> None:
    """``async with`` closes it; pauses of nothing are no pauses."""
    async with RedisRateLimiter(
        "redis://127.0.0.1:1/0", merchant="M", environment="playground"
    ) as a:
        a.pause(0)
        a.pause(float("nan"))
        a.pause(-1)
        assert a._push_task is None
        a.pause(2)
        a.pause(1)  # within the longer pause already known: nothing to push
        assert await a.acquire(max_wait=0.5) is None  # local: no need to ask Redis
    assert a._push_task is None


@pytest.mark.parametrize(
    ("options", "shown"),
    [
        ({"unix_socket_path": "/run/redis.sock", "db": 4}, "unix:///run/redis.sock?db=4"),
        ({"host": "10.0.0.5", "port": 6380, "db": 1}, "redis://10.0.0.5:6380/1"),
    ],
)
async def test_a_borrowed_client_is_shown_by_where_it_connects(
    redis_package: None, options: dict[str, Any], shown: str
) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis(password=PASSWORD, **options)
    try:
        limiter = RedisRateLimiter(client, 10, merchant="M", environment="playground")
        assert f"redis={shown} " in repr(limiter)
        assert PASSWORD not in repr(limiter)
    finally:
        await client.aclose()
