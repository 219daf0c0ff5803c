"""``python -m benchmarks [--quick] [--only cpu,sweep,memory,soak,micro,breakdown,capture_many]``.

Runs the suites, keeps their raw results in ``benchmarks/out/results.json`` and writes
``benchmarks/REPORT.md`` with ``benchmarks/report.png``. ``--only`` re-runs some suites and keeps
the others' last results (each section of the report says when it was measured). ``--quick``
uses small sizes and writes into ``benchmarks/out/quick/`` instead, so a development run never
replaces the report of a full one. The suites outside ``DEFAULT`` run only when named in
``--only``: ``breakdown`` (where the client's CPU goes, by ablation), ``fake_scale`` (a million
charges against the in-process fake), ``shared_limit`` and ``distributed`` (several processes,
Redis), ``otel`` (telemetry's cost) and ``versions`` (two versions of the client).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from benchmarks import (
    breakdown,
    capture_many,
    cpu,
    distributed,
    fake_scale,
    memory,
    micro,
    otel,
    report,
    shared_limit,
    soak,
    sweep,
    versions,
)
from benchmarks._common import BENCH_DIR, OUT_DIR, machine

SUITES = (
    "cpu",
    "sweep",
    "memory",
    "soak",
    "micro",
    "breakdown",
    "capture_many",
    "fake_scale",
    "shared_limit",
    "distributed",
    "otel",
    "versions",
)
#: What runs without --only; ``breakdown`` (where the CPU goes, ~3 min) is on request.
DEFAULT = ("cpu", "sweep", "memory", "soak", "micro", "capture_many")

#: (full, quick) arguments of each suite's run().
SIZES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "cpu": ({"charges": 2_500, "rounds": 40}, {"charges": 1_000, "rounds": 6}),
    "sweep": ({"charges": 10_000}, {"charges": 1_000}),
    "memory": ({"sizes": (10_000, 200_000)}, {"sizes": (1_000, 5_000)}),
    "soak": ({"charges": 20_000}, {"charges": 1_000}),
    "micro": ({}, {"quick": True}),
    "breakdown": ({"charges": 10_000, "rounds": 7}, {"charges": 1_000, "rounds": 2}),
    "capture_many": ({"sizes": (1_000, 10_000)}, {"sizes": (200, 1_000)}),
    # On request (--only): a million charges, several processes, Redis, or two versions.
    "fake_scale": ({"charges": 1_000_000}, {"charges": 20_000}),
    "shared_limit": ({}, {"seconds": 2.0}),
    "distributed": ({"charges": 20_000}, {"charges": 2_000, "modes": ("throughput",)}),
    "otel": ({}, {"charges": 500, "rounds": 4}),
    "versions": ({}, {"charges": 500, "rounds": 4}),
}

RUNNERS: dict[str, tuple[Callable[..., dict[str, Any]], Callable[[dict[str, Any]], str]]] = {
    "cpu": (cpu.run, cpu.summary),
    "sweep": (sweep.run, sweep.summary),
    "memory": (memory.run, memory.summary),
    "soak": (soak.run, soak.summary),
    "micro": (micro.run, micro.summary),
    "breakdown": (breakdown.run, breakdown.summary),
    "capture_many": (capture_many.run, capture_many.summary),
    "fake_scale": (fake_scale.run, fake_scale.summary),
    "shared_limit": (shared_limit.run, shared_limit.summary),
    "distributed": (distributed.run, distributed.summary),
    "otel": (otel.run, otel.summary),
    "versions": (versions.run, versions.summary),
}


def _suites(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(SUITES))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown suite(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(SUITES)}"
        )
    return [name for name in SUITES if name in names]


def _load(path: Path) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return loaded


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for development")
    parser.add_argument(
        "--only",
        type=_suites,
        default=list(DEFAULT),
        help=f"comma-separated suites out of {','.join(SUITES)} [{','.join(DEFAULT)}]",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where REPORT.md and report.png go [benchmarks/, or "
        "benchmarks/out/quick/ with --quick]",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: write the report again from the saved results",
    )
    args = parser.parse_args(argv)

    out_dir: Path = args.out or (OUT_DIR / "quick" if args.quick else BENCH_DIR)
    data_dir = OUT_DIR / "quick" if args.quick else OUT_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    results_path = data_dir / "results.json"
    results = _load(results_path)
    results.pop("machine", None)
    here = machine()
    print(
        f"{here['date']}: {here['cpu']}, {here['cores']} cores, {here['python']}, "
        f"aiohttp {here['packages']['aiohttp']}, load {here['loadavg']}",
        flush=True,
    )

    failed = []
    for name in [] if args.report_only else args.only:
        run, summary = RUNNERS[name]
        kwargs = SIZES[name][1 if args.quick else 0]
        print(f"[{name}] running {kwargs or ''}...", flush=True)
        started = time.monotonic()
        try:
            result = run(**kwargs)
        except Exception as exc:  # one broken suite must not lose the others' figures
            failed.append(name)
            print(f"[{name}] FAILED: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            continue
        elapsed = time.monotonic() - started
        results[name] = {
            "run": here["date"],
            "run_loadavg": here["loadavg"],
            "result": result,
            "machine": machine(),
            "quick": args.quick,
            "elapsed_s": elapsed,
        }
        print(f"[{name}] {summary(result)} ({elapsed:.0f} s)", flush=True)
        # Saved after each suite: a later crash keeps what was measured.
        results_path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))

    md, png = report.write(results, out_dir)
    print(f"wrote {os.path.relpath(md)} and {os.path.relpath(png)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
