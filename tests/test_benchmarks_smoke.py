"""Every benchmark in ``benchmarks/`` runs at a tiny size, so none of them can rot.

Sane numbers only: nothing here asserts a timing. Servers run in subprocesses that the
benchmarks stop with bounded waits (SIGTERM, then SIGKILL); the tests check that none is left.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import benchmarks.test_micro as micro_benchmarks
from benchmarks import (
    _common,
    breakdown,
    capture_many,
    cpu,
    fake_scale,
    memory,
    report,
    soak,
    sweep,
)
from benchmarks.__main__ import _suites
from klarna_async import RetryPolicy

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and pread")

#: Each suite at a tiny size, run once per module when a test first asks for it (so that the
#: report test renders every section whatever order the tests run in, or alone).
_TINY: dict[str, Callable[[], dict[str, Any]]] = {
    "cpu": lambda: cpu.run(charges=50, rounds=1, concurrency=8, warmup=10),
    "sweep": lambda: sweep.run(charges=50, levels=(1, 8)),
    "memory": lambda: memory.run(sizes=(100, 200), concurrency=8, warmup=20),
    # Faults turned up and one retry only, so that unknown outcomes and repeat passes happen
    # even in a small batch; a short latency keeps the test quick.
    "soak": lambda: soak.run(
        charges=100,
        concurrency=8,
        faults={
            "service_unavailable": 0.2,
            "drop_after_commit": 0.1,
            "latency": 0.03,
            "envoy_503_committed": 0.05,
            "http500_not_found_committed": 0.03,
        },
        latency_seconds=0.3,
        policy=RetryPolicy(
            max_attempts=2, initial_delay=0.01, max_delay=0.02, deadline=5, attempt_timeout=0.2
        ),
    ),
    "breakdown": lambda: breakdown.run(charges=30, rounds=1, concurrency=4),
    "capture_many": lambda: capture_many.run(sizes=(20, 40), concurrency=4),
    "micro": lambda: {
        "quick": True,
        "benchmarks": [
            {"name": "validate", "min_us": 4.0, "median_us": 5.0, "mean_us": 6.0, "rounds": 3}
        ],
    },
}
_MEASURED: dict[str, dict[str, Any]] = {}


def measured(name: str) -> dict[str, Any]:
    """The tiny run of suite ``name`` (made on first use)."""
    if name not in _MEASURED:
        _MEASURED[name] = _TINY[name]()
    return _MEASURED[name]


@pytest.fixture(autouse=True)
def _no_child_left(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Record every server process a benchmark starts; after the test, all must have exited."""
    started: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def recording_popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        process: subprocess.Popen[bytes] = real_popen(*args, **kwargs)
        started.append(process)
        return process

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    try:
        yield
    finally:
        alive = [p for p in started if p.poll() is None]
        for process in alive:  # a failed test must not leak servers either
            process.kill()
            process.wait(5)
    assert not alive, f"{len(alive)} benchmark server(s) still running"


def _finite_positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def _section(result: dict[str, Any]) -> dict[str, Any]:
    here = _common.machine()
    return {"run": here["date"], "result": result, "machine": here, "quick": True, "elapsed_s": 0.0}


def test_peer_stops_on_sigterm() -> None:
    with _common.peer() as child:
        assert child.url.startswith("http://127.0.0.1:")
        process = child.process
    assert process.returncode == 0


def test_cpu() -> None:
    result = measured("cpu")
    assert result["peer_answered"] == 50 * len(cpu.ARMS)
    for arm in cpu.ARMS:
        assert _finite_positive(result["median"][arm]["cpu_us"])
        assert _finite_positive(result["median"][arm]["charges_per_s"])
    assert _finite_positive(result["ratio"])
    assert _finite_positive(result["ratio_of_medians"])
    assert "ratio" in cpu.summary(result)
    assert _finite_positive(result["mapping_vs_model"])


def test_sweep() -> None:
    result = measured("sweep")
    assert [row["concurrency"] for row in result["levels"]] == [1, 8]
    for row in result["levels"]:
        assert (row["placed"], row["failed"]) == (50, 0)
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["max_ms"]
        assert _finite_positive(row["charges_per_s"])
        assert _finite_positive(row["cpu_us"])
    assert "c=8" in sweep.summary(result)


def test_memory() -> None:
    result = measured("memory")
    small, large = result["runs"]
    assert (small["charges"], small["placed"]) == (100, 100)
    assert (large["charges"], large["placed"]) == (200, 200)
    for row in (small, large):
        assert row["tracemalloc_peak_bytes"] > 0
        assert row["rss_high_water_bytes"] >= row["rss_before_bytes"] > 0
    assert "growth" in memory.summary(result)


def test_soak() -> None:
    result = measured("soak")
    faulty, clean = result["faulty"], result["clean"]
    assert clean["final"] == {"placed": 100, "declined": 0, "retryable": 0, "unknown": 0}
    assert (clean["duplicates"], clean["unaccounted"]) == (0, 0)
    # With faults on: never "not charged" for a charge the ledger shows placed, never twice.
    assert (faulty["wrongly_failed"], faulty["duplicates"]) == (0, 0)
    assert sum(faulty["final"].values()) == 100
    assert faulty["passes"][0]["charges"] == 100
    assert faulty["requests"] >= 100
    assert sum(faulty["faults_injected"].values()) > 0
    # The ledger's verdict is the point of the soak: no charge may be placed twice.
    assert faulty["duplicates"] == 0
    assert faulty["ledger_orders"] <= 100
    assert _finite_positive(result["throughput_ratio"])
    assert "duplicates 0" in soak.summary(result)


def test_breakdown() -> None:
    result = measured("breakdown")
    assert set(result["median_us"]) == set(breakdown.ARMS)
    for name in breakdown.ARMS:
        assert _finite_positive(result["median_us"][name])
        assert math.isfinite(result["cost_us"][name])
    assert "flat" in breakdown.summary(result)


def test_fake_scale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The command line, as documented: JSON on stdout and in --out, exit status 0.
    out = tmp_path / "scale.json"
    argv = ["--charges", "300", "--concurrency", "4", "--tokens", "7", "--out", str(out)]
    assert fake_scale.main(argv) == 0
    result = orjson.loads(out.read_bytes())
    assert result == orjson.loads(capsys.readouterr().out)
    assert result["problems"] == []
    points = result["checkpoints"]
    assert [point["charges"] for point in points] == list(range(30, 301, 30))
    for point in points:
        assert _finite_positive(point["rate_per_s"])
        assert _finite_positive(point["cpu_us_per_charge"])
        assert point["peak_rss_bytes"] >= point["rss_bytes"] > 0
        assert point["fake_key_state_bytes"] > 0
    assert result["checks"]["answered_200"] == 300
    assert result["checks"]["ledger_orders_total"] == 300
    assert result["checks"]["orders_by_token_sum"] == 300
    assert result["tokens"] == 7
    assert "growth" in fake_scale.summary(result)
    with pytest.raises(SystemExit):
        fake_scale.main(["--charges", "5"])


class _Once:
    """Stands in for pytest-benchmark's fixture: calls the function once."""

    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)


def test_micro_benchmarks_run() -> None:
    tests = [getattr(micro_benchmarks, n) for n in dir(micro_benchmarks) if n.startswith("test_")]
    assert len(tests) >= 6
    for test in tests:
        test(_Once())


def test_report(tmp_path: Path) -> None:
    """Renders every section from tiny runs, and says how to fill a section that is missing."""
    results = {name: _section(measured(name)) for name in report.DEFAULT_SECTIONS}
    text = report.markdown(results, "report.png")
    assert text.startswith("# klarna_async benchmarks")
    assert _common.machine()["cpu"] in text
    for name in report.DEFAULT_SECTIONS:
        assert f"--only {name}" not in text
    missing = report.markdown({k: v for k, v in results.items() if k != "soak"}, "report.png")
    assert "--only soak" in missing
    pytest.importorskip("matplotlib")
    md, png = report.write(results, tmp_path)
    assert md.read_text(encoding="utf-8") == text
    assert png.read_bytes().startswith(b"\x89PNG")


def test_suite_option() -> None:
    assert _suites("soak, cpu") == ["cpu", "soak"]
    with pytest.raises(Exception, match="unknown suite"):
        _suites("cpu,gpu")
