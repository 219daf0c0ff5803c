"""The ``klarna-async sandbox`` server, run as a real subprocess."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

from klarna_async.testing._sandbox import DEFAULT_PORT, add_arguments
from tests.test_fake_klarna import Api, klarna_session, order_body

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

READY = re.compile(r"ready at (http://\S+)")
START_BUDGET = 2.0


@dataclass
class Sandbox:
    process: asyncio.subprocess.Process
    url: str
    ready_line: str
    startup_seconds: float

    async def stop(self, signum: int = signal.SIGINT) -> tuple[int, str, str]:
        self.process.send_signal(signum)
        async with asyncio.timeout(10):
            stdout, stderr = await self.process.communicate()
        assert self.process.returncode is not None
        return self.process.returncode, stdout.decode(), stderr.decode()


@asynccontextmanager
async def sandbox(*options: str) -> AsyncIterator[Sandbox]:
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "klarna_async.testing._sandbox",
        "--port",
        "0",
        *options,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(15):
            line = (await process.stdout.readline()).decode()
        elapsed = time.monotonic() - started
        match = READY.search(line)
        assert match, f"no ready line: {line!r}"
        yield Sandbox(process, match.group(1), line, elapsed)
    finally:
        if process.returncode is None:
            process.kill()
            async with asyncio.timeout(10):
                await process.wait()


async def test_sandbox_serves_and_stops_cleanly_on_sigint() -> None:
    async with sandbox("--seed", "7") as box:
        assert box.startup_seconds < START_BUDGET, box.startup_seconds
        assert "username=test_user password=test_password seed=7" in box.ready_line
        async with klarna_session(box.url) as http:
            api = Api(http)
            session_id = await api.new_session()
            async with http.post("/_fake/authorize", json={"session_id": session_id}) as response:
                assert response.status == 200
                token = (await response.json())["authorization_token"]
            assert (await api.create_order(token, order_body())).status == 200
            async with http.post("/_fake/customer-tokens", json={}) as response:
                token_id = (await response.json())["token_id"]
            assert (await api.charge(token_id, key="sandbox-1")).status == 200
            async with http.post("/_fake/clock/advance", json={"seconds": 60}) as response:
                assert response.status == 200
            async with http.get("/_fake/ledger") as response:
                ledger = await response.json()
        assert [order["kind"] for order in ledger["orders"]] == ["one-time", "recurring"]
        assert ledger["request_counts"]["payments.create_order"] == 1
        code, stdout, stderr = await box.stop(signal.SIGINT)
    assert code == 0, stderr
    assert "Traceback" not in stderr + stdout
    assert "stopped" in stdout


async def test_sandbox_faults_rate_limit_and_sigterm() -> None:
    async with sandbox("--fault-503", "1", "--rate-limit", "1000", "--password", "pw") as box:
        assert box.startup_seconds < START_BUDGET, box.startup_seconds
        auth = "Basic dGVzdF91c2VyOnB3"  # test_user:pw
        async with klarna_session(box.url, auth) as http:
            answer = await Api(http).get_token("any")
            assert answer.status == 503
            assert answer.error[0] == "SERVICE_UNAVAILABLE"
            assert answer.headers["X-Ratelimit-Limit"] == "1000, 1000;w=1"
            async with http.get("/_fake/health") as response:  # controls are never faulted
                assert response.status == 200
        code, stdout, stderr = await box.stop(signal.SIGTERM)
    assert code == 0, stderr
    assert "Traceback" not in stderr + stdout


async def test_sandbox_reports_a_busy_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "klarna_async.testing._sandbox",
            "--port",
            str(port),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(15):
            _, stderr = await process.communicate()
    assert process.returncode == 1
    assert "cannot listen" in stderr.decode()
    assert "Traceback" not in stderr.decode()


def test_arguments() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    defaults = parser.parse_args([])
    assert (defaults.host, defaults.port, defaults.seed) == ("127.0.0.1", DEFAULT_PORT, None)
    assert (defaults.username, defaults.password, defaults.rate_limit) == (
        "test_user",
        "test_password",
        None,
    )
    argv = [
        *("--port", "0", "--seed", "3", "--rate-limit", "5"),
        *("--fault-503", "0.1", "--fault-drop", "0.02", "--fault-latency", "0.01"),
        *("--latency-seconds", "2", "--fault-reset", "0.0", "--fault-html", "0.3"),
        "--accept-unknown-tokens",
    ]
    options = parser.parse_args(argv)
    assert (options.fault_503, options.fault_drop, options.fault_html) == (0.1, 0.02, 0.3)
    assert (options.rate_limit, options.latency_seconds, options.seed) == (5.0, 2.0, 3)
    assert options.accept_unknown_tokens
    assert not defaults.accept_unknown_tokens
    for bad in (["--fault-503", "1.5"], ["--rate-limit", "0"], ["--latency-seconds", "x"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
