"""The ``klarna-async sandbox`` server, run as a real subprocess."""

from __future__ import annotations

import argparse
import asyncio
import base64
import re
import shlex
import shutil
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import orjson
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
    options = ("--fault-503", "0.5", "--fault", "http504_rejected=0.5", "--seed", "1")
    async with sandbox(
        *options, "--check-order", "state_first", "--rate-limit", "1000", "--password", "pw"
    ) as box:
        assert box.startup_seconds < START_BUDGET, box.startup_seconds
        auth = "Basic dGVzdF91c2VyOnB3"  # test_user:pw
        async with klarna_session(box.url, auth) as http:
            answers = [await Api(http).get_token("any") for _ in range(8)]
            assert {(a.status, a.error[0]) for a in answers} == {
                (503, "SERVICE_UNAVAILABLE"),
                (504, "REJECTED"),
            }
            assert answers[0].headers["X-Ratelimit-Limit"] == "1000, 1000;w=1"
            async with http.get("/_fake/health") as response:  # controls are never faulted
                assert response.status == 200
            async with http.get("/_fake/faults") as response:
                assert (await response.json())["options"]["check_order"] == "state_first"
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


# -- finding your way around: --help's curl lines really work ---------------------------------

_PLACEHOLDER = re.compile(r'"(\w+)": "([A-Z][A-Z_]+)"')


def how_to_commands(help_text: str) -> list[tuple[str, dict[str, str]]]:
    """Each documented curl command and what its ``-> {...}`` line names (field: PLACEHOLDER)."""
    commands: list[tuple[str, dict[str, str]]] = []
    current: list[str] | None = None
    for line in help_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("curl "):
            current = [stripped]
        elif current is not None and stripped.startswith("->"):
            commands.append(("\n".join(current), dict(_PLACEHOLDER.findall(stripped))))
            current = None
        elif current is not None:
            current.append(line)
    return commands


async def run_with_curl(command: str) -> tuple[int, bytes]:
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        f"{command} -w '\\n%{{http_code}}'",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(15):
        stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr
    body, _, status = stdout.rpartition(b"\n")
    return int(status), body


async def run_with_aiohttp(command: str) -> tuple[int, bytes]:
    """What curl does with the few options the how-to uses."""
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[0] == "curl"
    method, data, headers, url = None, None, {}, None
    args = iter(argv[1:])
    for arg in args:
        if arg == "-s":
            continue
        if arg == "-X":
            method = next(args)
        elif arg == "-u":
            headers["Authorization"] = "Basic " + base64.b64encode(next(args).encode()).decode()
        elif arg == "-H":
            name, _, value = next(args).partition(":")
            headers[name.strip()] = value.strip()
        elif arg == "-d":
            data = next(args).encode()
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        else:
            assert url is None, f"unexpected argument {arg!r}"
            url = arg
    assert url is not None
    method = method or ("POST" if data is not None else "GET")
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url, data=data, headers=headers) as response,
    ):
        return response.status, await response.read()


async def test_help_shows_curl_lines_that_get_tokens_and_charge() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "klarna_async",
        "sandbox",
        "--help",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(15):
        stdout, _ = await process.communicate()
    help_text = stdout.decode()
    assert process.returncode == 0
    assert "authorization token" in help_text
    assert "customer token" in help_text
    assert "GET /_fake/ lists every control" in help_text
    commands = how_to_commands(help_text)
    assert len(commands) == 9
    runners = [run_with_aiohttp]
    if shutil.which("curl") and shutil.which("bash"):
        runners.insert(0, run_with_curl)
    async with sandbox() as box:
        for run in runners:
            found: dict[str, str] = {}
            for command, names in commands:
                line = command.replace(f"http://127.0.0.1:{DEFAULT_PORT}", box.url)
                for placeholder, value in found.items():
                    line = line.replace(placeholder, value)
                status, body = await run(line)
                assert 200 <= status < 300, (run.__name__, line, status, body)
                answer = orjson.loads(body) if body else {}  # a capture's 201 has none
                for field_name, value in names.items():
                    if value.endswith(("_ID", "_TOKEN")):
                        found[value] = answer[field_name]  # a name later lines use
                    else:
                        assert answer[field_name] == value  # a value shown as is
                if "/_fake/ledger/keys/" in line:
                    assert answer["orders"] == 1, answer  # the documented charge was placed
            assert set(found) == {
                "SESSION_ID",
                "AUTHORIZATION_TOKEN",
                "CUSTOMER_TOKEN",
                "OTHER_CUSTOMER_TOKEN",
                "ORDER_ID",
            }
            async with klarna_session(box.url) as http:
                async with http.get("/_fake/ledger") as response:
                    ledger = await response.json()
                assert ledger["orders_total"] == 1
                assert len(ledger["customer_tokens"]) == 2
                async with http.post("/_fake/reset") as response:  # the faults it scripted too
                    assert response.status == 200
        await check_index_of_controls(box)
        code, _, stderr = await box.stop()
    assert code == 0, stderr


async def check_index_of_controls(box: Sandbox) -> None:
    async with klarna_session(box.url, auth=None) as http, http.get("/_fake/") as response:
        assert response.status == 200
        index = await response.json()
    listed = {(c["method"], c["path"]) for c in index["controls"]}
    assert ("POST", "/_fake/authorize") in listed
    assert ("POST", "/_fake/customer-tokens") in listed
    assert ("GET", "/_fake/") in listed
    assert all(c["description"] and "\n" not in c["description"] for c in index["controls"])
    assert {f["name"] for f in index["faults"]} >= {"envoy_503_committed", "in_flight_conflict"}
    assert index["options"]["in_flight"]["choices"] == ["process", "conflict", "wait"]


def test_new_arguments() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.epilog is not None
    assert "curl" in parser.epilog
    options = parser.parse_args(
        [
            *("--fault", "envoy_503_committed=0.1", "--fault", "PAUSE_NAN=0.2"),
            *("--in-flight", "conflict", "--check-order", "state_first", "--keep-orders", "5"),
        ]
    )
    assert options.fault == [("envoy_503_committed", 0.1), ("pause_nan", 0.2)]
    assert (options.in_flight, options.check_order, options.keep_orders) == (
        "conflict",
        "state_first",
        5,
    )
    defaults = parser.parse_args([])
    assert (defaults.fault, defaults.in_flight, defaults.check_order) == (
        [],
        "process",
        "replay_first",
    )
    for bad in (
        ["--fault", "envoy_504=0.1"],
        ["--fault", "latency_seconds=1"],
        ["--fault", "envoy_503"],
        ["--fault", "envoy_503=2"],
        ["--in-flight", "queue"],
    ):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
    described = argparse.ArgumentParser(description="mine", epilog="also mine")
    add_arguments(described)
    assert (described.description, described.epilog) == ("mine", "also mine")
