"""Runs :mod:`benchmarks.test_micro` under pytest-benchmark in a subprocess and keeps its stats."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import orjson

from benchmarks._common import BENCH_DIR, run_python


def run(*, quick: bool = False, timeout: float = 600) -> dict[str, Any]:
    """pytest-benchmark's min/median/mean per micro-benchmark, in microseconds."""
    with tempfile.TemporaryDirectory() as tmp:
        json_path = Path(tmp) / "micro.json"
        command = [
            "-m",
            "pytest",
            str(BENCH_DIR / "test_micro.py"),
            "-c",
            str(BENCH_DIR / "pytest.ini"),
            "-q",
            "--benchmark-only",
            f"--benchmark-json={json_path}",
        ]
        if quick:
            command += ["--benchmark-max-time=0.05", "--benchmark-min-rounds=3"]
        run_python(command, timeout=timeout, what="micro-benchmarks")
        data = orjson.loads(json_path.read_bytes())
    rows = []
    for bench in data["benchmarks"]:
        stats = bench["stats"]
        rows.append(
            {
                "name": bench["name"].removeprefix("test_"),
                "min_us": stats["min"] * 1e6,
                "median_us": stats["median"] * 1e6,
                "mean_us": stats["mean"] * 1e6,
                "rounds": stats["rounds"],
            }
        )
    rows.sort(key=lambda row: row["median_us"])
    return {"quick": quick, "benchmarks": rows}


def summary(result: dict[str, Any]) -> str:
    return "micro: " + ", ".join(
        f"{row['name']} {row['median_us']:.2f} µs" for row in result["benchmarks"]
    )
