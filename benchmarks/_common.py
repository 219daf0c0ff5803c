"""What every suite shares: child processes with bounded waits, the charge inputs, statistics."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import aiohttp

from klarna_async import KlarnaClient, RetryPolicy

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"

USERNAME = "test_user"
PASSWORD = "test_password"
#: The recurring-order path of one customer token (the peer answers any path the same).
TOKEN = "ctok-bench-2f6c1e0a9b8d4c7e"


def bench_client(url: str, concurrency: int, retry: RetryPolicy | None = None) -> KlarnaClient:
    """The client every suite measures: a pool of ``concurrency`` connections to ``url``, no
    client-side pacing (the servers here are local and have no rate limit)."""
    return KlarnaClient(
        username=USERNAME,
        password=PASSWORD,
        base_url=url,
        connection_limit=concurrency,
        rate_limit=None,
        retry=retry,
    )


def raw_session(concurrency: int) -> aiohttp.ClientSession:
    """The raw loops' session: a pool as large as the client's; the headers they send come
    from the client's own, so aiohttp must add none of these."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency),
        skip_auto_headers=("User-Agent", "Content-Type"),
    )


_PEER_READY = re.compile(r"peer ready at (http://\S+)")
_SANDBOX_READY = re.compile(r"fake Klarna ready at (http://\S+)")
#: Environment variables a child must not inherit: a peer under PYTHONDEVMODE (as in ``nox -s
#: tests``) runs asyncio in debug mode and would be many times slower.
_DROP_ENV = ("PYTHONDEVMODE", "PYTHONASYNCIODEBUG", "PYTHONTRACEMALLOC", "PYTHONPROFILEIMPORTTIME")


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV}
    # The children import `benchmarks` and `tests` from the checkout, whatever the cwd.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


@dataclass
class Child:
    """A server running in another process, and where it listens."""

    process: subprocess.Popen[bytes]
    url: str
    ready_line: str


def run_python(args: Sequence[str], *, timeout: float, what: str) -> bytes:
    """``python args...`` in a child with :func:`child_env`; its stdout, or a RuntimeError that
    ends with the end of its output. subprocess.run kills and reaps it when the timeout
    expires."""
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, *args],
        capture_output=True,
        timeout=timeout,
        env=child_env(),
        cwd=ROOT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{what} failed ({done.returncode}):\n"
            f"{done.stdout.decode(errors='replace')[-3000:]}"
            f"{done.stderr.decode(errors='replace')[-2000:]}"
        )
    return done.stdout


def stop_process(process: subprocess.Popen[bytes], *, grace: float = 5.0) -> None:
    """SIGTERM, a bounded wait, then SIGKILL and another bounded wait."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(grace)


def _read(file: IO[bytes]) -> str:
    # pread: the child shares the file offset, so never move it.
    return os.pread(file.fileno(), 1 << 20, 0).decode("utf-8", "replace")


@contextlib.contextmanager
def _serve(
    args: Sequence[str], ready: re.Pattern[str], name: str, start_timeout: float
) -> Iterator[Child]:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=child_env(),
            cwd=ROOT,
        )
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                match = ready.search(_read(out))
                if match:
                    break
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with status {process.returncode} before it was ready: "
                        f"{_read(err)[-2000:]}"
                    )
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} not ready within {start_timeout} s")
                time.sleep(0.02)
            yield Child(process, match.group(1), match.group(0))
        finally:
            stop_process(process)


def peer(start_timeout: float = 15.0) -> contextlib.AbstractContextManager[Child]:
    """The near-free peer (:mod:`benchmarks.peer`) in a subprocess."""
    return _serve(["-m", "benchmarks.peer", "--port", "0"], _PEER_READY, "peer", start_timeout)


def sandbox(*options: str, start_timeout: float = 20.0) -> contextlib.AbstractContextManager[Child]:
    """The fake Klarna's sandbox in a subprocess (any unknown customer token is active)."""
    args = ["-m", "klarna_async.testing._sandbox", "--port", "0", "--accept-unknown-tokens"]
    return _serve([*args, *options], _SANDBOX_READY, "sandbox", start_timeout)


# --- statistics ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


# --- the machine --------------------------------------------------------------------------------


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "loadavg": _load(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "packages": {
            name: _version(name)
            for name in ("klarna-async", "aiohttp", "orjson", "attrs", "cattrs", "yarl")
        },
    }
