"""Where the tests' Redis comes from, and a redis-server a test can stop and start.

The Redis tests talk to a real server over TCP:

1. ``KLARNA_TEST_REDIS_URL`` when set (database 13 unless the URL names one);
2. else a ``redis-server`` the test session starts on a free loopback port, when the binary is on
   PATH (``--save "" --appendonly no``: it writes nothing to disk; stopped at the session's end);
3. else those tests skip, saying why. With ``KLARNA_REQUIRE_REDIS=1`` (CI) a missing Redis is an
   error instead.

The tests flush only their own database, never the whole server.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import NoReturn
from urllib.parse import parse_qs, urlsplit, urlunsplit

import pytest

URL_VARIABLE = "KLARNA_TEST_REDIS_URL"
REQUIRE_VARIABLE = "KLARNA_REQUIRE_REDIS"
#: The database the tests use on a server that is not theirs.
TEST_DB = 13
START_TIMEOUT = 5.0


def required() -> bool:
    """Whether a missing Redis fails the run (CI) instead of skipping its tests."""
    return os.environ.get(REQUIRE_VARIABLE, "") == "1"


def unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it when Redis is required."""
    if required():
        pytest.fail(f"Redis is required ({REQUIRE_VARIABLE}=1) but {reason}", pytrace=False)
    pytest.skip(f"no Redis: {reason}")


def have_package() -> bool:
    try:
        import redis  # noqa: F401
    except ImportError:
        return False
    return True


def have_server_binary() -> bool:
    return shutil.which("redis-server") is not None


def with_test_db(url: str) -> str:
    """``url`` with database :data:`TEST_DB` unless it names a database already."""
    parts = urlsplit(url)
    if parts.path.strip("/") or "db" in parse_qs(parts.query) or parts.scheme == "unix":
        return url
    return urlunsplit((parts.scheme, parts.netloc, f"/{TEST_DB}", parts.query, ""))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ping(url: str, timeout: float = 1.0) -> str | None:
    """None when Redis at ``url`` answers PING, else what went wrong (no password in it)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        client.ping()
    except redis.RedisError as error:
        return type(error).__name__
    finally:
        client.close()
    return None


def flush(url: str) -> None:
    """Empty the one database ``url`` names."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.flushdb()
    finally:
        client.close()


class RedisServer:
    """A ``redis-server`` of our own on loopback that writes nothing to disk; it can be stopped
    and started again on the same port (to play an outage)."""

    def __init__(self, *, password: str | None = None, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not on PATH")
        self.binary = binary
        self.password = password
        self.port = port or free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="klarna-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._dir.name,
            "--loglevel",
            "warning",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        # The child keeps its own copy of the log's descriptor.
        with Path(self._dir.name, "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT
        problem = ping(self.url(), timeout=0.5)
        while problem is not None:
            if self.process.poll() is not None:
                text = Path(self._dir.name, "redis.log").read_text(errors="replace")
                raise RuntimeError(f"redis-server exited ({self.process.returncode}): {text}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"redis-server not answering within {START_TIMEOUT} s")
            time.sleep(0.01)
            problem = ping(self.url(), timeout=0.5)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()


def session_url() -> tuple[str | None, RedisServer | None, str]:
    """The URL the session's tests use, the server started for it (or None), and when there is
    no Redis, why."""
    if not have_package():
        return None, None, "the redis package is not installed (pip install redis)"
    url = os.environ.get(URL_VARIABLE)
    if url:
        url = with_test_db(url)
        problem = ping(url)
        if problem is not None:
            return None, None, f"{URL_VARIABLE} does not answer PING ({problem})"
        return url, None, ""
    if not have_server_binary():
        return None, None, f"{URL_VARIABLE} is not set and redis-server is not on PATH"
    server = RedisServer()
    try:
        server.start()
    except (OSError, RuntimeError) as error:
        server.close()
        return None, None, f"redis-server did not start: {error}"
    return server.url(TEST_DB), server, ""
