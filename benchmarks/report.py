"""REPORT.md and its chart from the results of ``python -m benchmarks``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks._common import percentile

MiB = 1024 * 1024


def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**NOT met**"


def _when(section: dict[str, Any], machine: dict[str, Any]) -> str:
    notes = [f"run of {section.get('run', section['machine']['date'])}"]
    if section.get("quick"):
        notes.append("quick sizes")
    notes.append(f"took {section['elapsed_s']:.0f} s")
    return f"_({', '.join(notes)})_"


def _runs(results: dict[str, Any]) -> list[str]:
    runs: dict[str, list[str]] = {}
    loads: dict[str, Any] = {}
    for name, section in results.items():
        run = section.get("run", section["machine"]["date"])
        runs.setdefault(run, []).append(name)
        # The load when the run started; results saved before run_loadavg existed have the
        # load when their suite finished.
        loads.setdefault(run, section.get("run_loadavg", section["machine"].get("loadavg")))
    lines = []
    for run in sorted(runs):
        load = loads[run]
        shown = ", ".join(map(str, load)) if load else "unknown"
        lines.append(f"  - {run}: {', '.join(runs[run])} (load average 1/5/15 min: {shown})")
    return lines


def _machine(results: dict[str, Any], machine: dict[str, Any]) -> list[str]:
    packages = ", ".join(f"{name} {version}" for name, version in machine["packages"].items())
    return [
        "## Machine",
        "",
        f"- CPU: {machine['cpu']}, {machine['cores']} cores ({machine['usable_cores']} usable); "
        "shared with other work, so figures are medians of interleaved rounds where it matters",
        f"- {machine['python']} on {machine['platform']}",
        f"- Packages: {packages}",
        "- Runs (UTC):" if results else "- Runs: none yet",
        *_runs(results),
        "",
    ]


def _cpu(section: dict[str, Any], machine: dict[str, Any]) -> list[str]:
    r = section["result"]
    m = r["median"]
    lines = [
        "## 1. Client CPU per recurring charge",
        "",
        _when(section, machine),
        "",
        f"{r['rounds']} rounds x {r['charges']:,} charges per arm, arms alternating in a rotating "
        f"order, concurrency {r['concurrency']} over a pool of {r['connection_limit']} "
        f"connections on both sides, after {r['warmup']:,} warm-up charges per arm. CPU is "
        "this process's `time.process_time()` around each round; the peer "
        "(`benchmarks/peer.py`) runs in another process and is not counted. Many short rounds "
        "rather than a few long ones: a burst of noise from the machine's other tenants then "
        "spoils a few rounds of every arm, not one arm's figure.",
        "",
        "| arm | what one charge does | CPU µs/charge (median) | middle half of rounds | "
        "charges/s |",
        "|---|---|---:|---|---:|",
    ]
    what = {
        "raw": "build the body dict (its own `merchant_reference1`), `orjson.dumps`, "
        "`session.post(...)` with headers built once plus the key, read, `orjson.loads`",
        "full": "build the `TokenOrderRequest` (same values), "
        "`create_order(token, request, idempotency_key=k)`",
        "full_mapping": "build the body dict as raw does, "
        "`create_order(token, mapping, idempotency_key=k)` (the README's FastAPI path)",
        "raw_fixed_body": "as raw, one body dict made beforehand for every charge",
        "full_prebuilt": "as full, one request object made beforehand for every charge",
    }
    for name in r["median"]:
        values = [row["cpu_us"] for row in r["per_round"][name]]
        spread = f"{percentile(values, 25):.1f} to {percentile(values, 75):.1f}"
        lines.append(
            f"| {name} | {what.get(name, name)} | {m[name]['cpu_us']:.1f} | {spread} | "
            f"{m[name]['charges_per_s']:,.0f} |"
        )
    lines += [
        "",
        f"- **Full stack / raw: {r['ratio']:.3f}**, the median of the {r['rounds']} per-round "
        "ratios (each round of `full` against the round of `raw` run next to it, so the "
        f"machine's drift cancels; the ratio of the two medians is {r['ratio_of_medians']:.3f}); "
        f"target ≤ {r['target_ratio']}: {_verdict(r['ratio'] <= r['target_ratio'])}. Both arms "
        "build every charge's body, as a batch does.",
        f"- **Mapping path / raw: {r['ratio_mapping']:.3f}** (of medians "
        f"{r['ratio_mapping_of_medians']:.3f}); target ≤ {r['target_ratio']}: "
        f"{_verdict(r['ratio_mapping'] <= r['target_ratio'])}. **Mapping / model: "
        f"{r['mapping_vs_model']:.3f}**: a charge given as a mapping costs "
        f"{'no more than' if r['mapping_vs_model'] <= 1.03 else 'more than'} one given as a "
        "model (target: within 3 %).",
        "- Against the raw loop sending one prebuilt body dict (how this benchmark measured "
        f"before 2026-11-30): {r['ratio_vs_fixed_body']:.3f} (of medians "
        f"{r['ratio_vs_fixed_body_of_medians']:.3f}).",
        f"- With one body for all on both sides: {r['ratio_prebuilt']:.3f} (of medians "
        f"{r['ratio_prebuilt_of_medians']:.3f}). Building a `TokenOrderRequest` (frozen attrs "
        f"objects) costs about {m['full']['cpu_us'] - m['full_prebuilt']['cpu_us']:.1f} µs a "
        f"charge; building the raw dict about "
        f"{m['raw']['cpu_us'] - m['raw_fixed_body']['cpu_us']:.1f} µs.",
        f"- Our layers cost {m['full']['cpu_us'] - m['raw']['cpu_us']:.1f} µs per charge "
        "beyond raw aiohttp. The peer answered every charge "
        f"({r['peer_answered']:,} measured POSTs).",
        "",
    ]
    return lines


def _sweep(section: dict[str, Any], machine: dict[str, Any]) -> list[str]:
    r = section["result"]
    lines = [
        "## 2. Throughput and latency by concurrency",
        "",
        _when(section, machine),
        "",
        f"{r['charges']:,} charges per level through `charge_many(..., concurrency=c)` with "
        "`connection_limit=c`, full stack against the peer. Latency is each charge's "
        "`ChargeResult.elapsed` (validation, conversion and the round trip).",
        "",
        "| concurrency | charges/s | p50 ms | p90 ms | p99 ms | max ms | CPU µs/charge | failed |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in r["levels"]:
        lines.append(
            f"| {row['concurrency']} | {row['charges_per_s']:,.0f} | {row['p50_ms']:.2f} | "
            f"{row['p90_ms']:.2f} | {row['p99_ms']:.2f} | {row['max_ms']:.2f} | "
            f"{row['cpu_us']:.1f} | {row['failed']} |"
        )
    best = max(r["levels"], key=lambda row: row["charges_per_s"])
    lines += [
        "",
        f"Throughput peaks at concurrency {best['concurrency']} "
        f"({best['charges_per_s']:,.0f} charges/s). The client and the peer share the machine's "
        "cores and the client is single-threaded, so once it is CPU-bound more concurrency adds "
        "queueing (latency) rather than throughput.",
        "",
    ]
    return lines


def _memory(section: dict[str, Any], machine: dict[str, Any]) -> list[str]:
    r = section["result"]
    small, large = r["runs"]
    growth = r["growth_tracemalloc_bytes"]
    lines = [
        "## 3. `charge_many` peak memory",
        "",
        _when(section, machine),
        "",
        "Each size in a fresh interpreter: a generator of charges, concurrency "
        f"{r['concurrency']}, the consumer keeping counters only. tracemalloc traces from "
        "after a warm-up batch; RSS is the process's high-water mark (`ru_maxrss`).",
        "",
        "| charges | tracemalloc peak MiB | traced at the end MiB | RSS high-water MiB | "
        "placed | wall s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in (small, large):
        lines.append(
            f"| {row['charges']:,} | {row['tracemalloc_peak_bytes'] / MiB:.2f} | "
            f"{row['tracemalloc_end_bytes'] / MiB:.2f} | "
            f"{row['rss_high_water_bytes'] / MiB:.1f} | {row['placed']:,} | {row['wall_s']:.1f} |"
        )
    lines += [
        "",
        f"- **Growth from {small['charges']:,} to {large['charges']:,} charges: "
        f"{growth / MiB:+.2f} MiB traced, {r['growth_rss_bytes'] / MiB:+.2f} MiB RSS**; target "
        f"< {r['target_growth_bytes'] / MiB:.0f} MiB: "
        f"{_verdict(max(growth, r['growth_rss_bytes']) < r['target_growth_bytes'])}.",
        "",
    ]
    return lines


def _soak(section: dict[str, Any], machine: dict[str, Any]) -> list[str]:
    r = section["result"]
    f, c = r["faulty"], r["clean"]
    faults = ", ".join(
        f"{name.removeprefix('fault_')} {rate:.1%}" for name, rate in r["faults"].items()
    )
    p = r["policy"]
    lines = [
        "## 4. Fault soak against the sandbox",
        "",
        _when(section, machine),
        "",
        f"{r['charges']:,} charges through `charge_many` (concurrency {r['concurrency']}) "
        "against `python -m klarna_async.testing._sandbox` in another process with faults "
        f"per request: {faults} (latency faults answer after {r['latency_seconds']} s, past "
        f"the {p['attempt_timeout']} s attempt timeout), seed {r['seed']}. Retry policy: "
        f"{p['max_attempts']} attempts, waits ≤ {p['max_delay']} s, deadline {p['deadline']} s. "
        "Then every UNKNOWN and every RETRYABLE charge is repeated "
        "with the same idempotency key (faults still on), until none is left. The sandbox's "
        "ledger (`GET /_fake/ledger`) is the judge.",
        "",
        "| pass | charges | placed | declined | retryable | unknown | attempts | charges/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for number, row in enumerate(f["passes"], 1):
        lines.append(
            f"| {number} | {row['charges']:,} | {row['placed']:,} | {row['declined']:,} | "
            f"{row['retryable']:,} | {row['unknown']:,} | {row['attempts']:,} | "
            f"{row['charges_per_s']:,.0f} |"
        )
    injected = ", ".join(f"{k} {v:,}" for k, v in sorted(f["faults_injected"].items()))
    detail = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in f["unaccounted_detail"].items())
    lines += [
        "",
        f"- **Duplicates: {f['duplicates']}** (keys with more than one order: "
        f"{f['keys_with_duplicates']}); target 0: {_verdict(f['duplicates'] == 0)}.",
        f"- **Unaccounted: {f['unaccounted']}** ({detail}); target 0: "
        f"{_verdict(f['unaccounted'] == 0)}.",
        f"- Final client view: {f['final']['placed']:,} placed, "
        f"{f['final']['declined']:,} declined, {f['final']['retryable']:,} retryable, "
        f"{f['final']['unknown']:,} unknown; ledger orders for the batch: "
        f"{f['ledger_orders']:,}.",
        f"- The sandbox received {f['requests']:,} order requests; faults injected: {injected}; "
        f"retries refused by the retry budget: {f['retry_budget_denied']}.",
        f"- **Throughput: {f['first_pass_charges_per_s']:,.0f} charges/s with faults (first "
        f"pass) against {c['first_pass_charges_per_s']:,.0f} charges/s fault-free "
        f"({r['throughput_ratio']:.2f}x)**; with the repeat passes "
        f"{f['overall_charges_per_s']:,.0f} charges/s overall. The sandbox is a full fake "
        "(validation, ledger, idempotency store) and is slower than the peer.",
        "",
    ]
    return lines


def _micro(section: dict[str, Any], machine: dict[str, Any]) -> list[str]:
    r = section["result"]
    lines = [
        "## 5. Micro-benchmarks",
        "",
        _when(section, machine),
        "",
        "pytest-benchmark (`benchmarks/test_micro.py`), one one-line `TokenOrderRequest` and one "
        "order answer; single-threaded, hot caches, so lower than the same steps inside a "
        "busy event loop.",
        "",
        "| step | min µs | median µs | mean µs | rounds |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in r["benchmarks"]:
        lines.append(
            f"| {row['name']} | {row['min_us']:.2f} | {row['median_us']:.2f} | "
            f"{row['mean_us']:.2f} | {row['rounds']:,} |"
        )
    lines.append("")
    return lines


def _breakdown(section: dict[str, Any], machine: dict[str, Any]) -> list[str]:
    r = section["result"]
    m, cost = r["median_us"], r["cost_us"]
    lines = [
        "## 6. Where the client's CPU goes (ablation)",
        "",
        _when(section, machine),
        "",
        f"`python -m benchmarks.breakdown` / `--only breakdown`: {r['rounds']} rounds x "
        f"{r['charges']:,} charges per arm at concurrency {r['concurrency']}, arms interleaved "
        "in a rotating order. Each arm is the full stack (prebuilt request) with one layer "
        "swapped for a free stand-in, monkeypatched in the benchmark process only; *cost in "
        "place* = full minus that arm. Differences of a few µs are within the noise of this "
        "machine (see the per-round figures).",
        "",
        "| arm | what it runs | CPU µs/charge (median) | cost in place µs | per round |",
        "|---|---|---:|---:|---|",
    ]
    for name, what in r["arms"].items():
        rounds = ", ".join(f"{v:.1f}" for v in r["cpu_us"][name])
        shown = "" if name in ("full", "raw") else f"{cost[name]:+.1f}"
        lines.append(f"| {name} | {what} | {m[name]:.1f} | {shown} | {rounds} |")
    lines += [
        "",
        f"- full - raw = {m['full'] - m['raw']:.1f} µs: what our layers add to a charge; "
        f"full - flat = {m['full'] - m['flat']:.1f} µs of it is the layering itself "
        "(create_order and _request: the client's state and loop checks, the key, the URL, "
        "the retry budget and deadline; the Retrier itself runs only after a failure).",
        "",
    ]
    return lines


def _capture_many(section: dict[str, Any], machine: dict[str, Any]) -> list[str]:
    r = section["result"]
    small, large = r["runs"]
    faults = ", ".join(f"{k} {v:g}" for k, v in r["faults"].items() if k != "endpoint")
    lines = [
        "## 7. `capture_many`: the fulfilment batch against the fake Klarna",
        "",
        _when(section, machine),
        "",
        "The fake (the sandbox) in its own process with that many fresh orders; each size in a "
        f"fresh client interpreter, concurrency {r['concurrency']}, a generator of capture "
        f"jobs; faults on `orders.capture`: {faults}. Jobs not settled on the first pass are "
        "repeated with their keys; the fake's ledger counts the captures it made.",
        "",
        "| orders | attempts | captured | fake's captures | duplicates | repeated | "
        "tracemalloc peak MiB | RSS high-water MiB | captures/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in (small, large):
        lines.append(
            f"| {row['captures']:,} | {row['attempts']:,} | {row['captured']:,} | "
            f"{row['fake_captures_total']:,} | "
            f"{row['duplicate_captures']} | {row['repeated']} | "
            f"{row['tracemalloc_peak_bytes'] / MiB:.2f} | "
            f"{row['rss_high_water_bytes'] / MiB:.1f} | {row['captures_per_s']:,.0f} |"
        )
    once = all(
        row["captured"] == row["captures"] == row["fake_captures_total"]
        and row["duplicate_captures"] == 0
        for row in (small, large)
    )
    lines += [
        "",
        f"- Each order captured once: {_verdict(once)}. **Growth from {small['captures']:,} to "
        f"{large['captures']:,} orders: {r['growth_tracemalloc_bytes'] / MiB:+.2f} MiB traced, "
        f"{r['growth_rss_bytes'] / MiB:+.2f} MiB RSS.** The throughput is the fake's (one "
        "process), not the client's.",
        "",
    ]
    return lines


def _fake_scale(section: dict[str, Any], machine: dict[str, Any]) -> list[str]:
    r = section["result"]
    points = r["checkpoints"]
    lines = [
        "## 8. The in-process fake Klarna over a million charges",
        "",
        _when(section, machine),
        "",
        f"{points[-1]['charges']:,} recurring charges (raw aiohttp, concurrency "
        f"{r.get('concurrency', 32)}) against one in-process `FakeKlarna`; memory and rate at "
        "every tenth. The fake keeps the latest orders in detail and exact counts for all.",
        "",
        "| charges | RSS MiB | peak RSS MiB | charges/s | CPU µs/charge |",
        "|---:|---:|---:|---:|---:|",
    ]
    for point in points:
        lines.append(
            f"| {point['charges']:,} | {point['rss_bytes'] / MiB:.1f} | "
            f"{point['peak_rss_bytes'] / MiB:.1f} | {point['rate_per_s']:,.0f} | "
            f"{point['cpu_us_per_charge']:.0f} |"
        )
    growth = r["rss_growth_bytes"] / MiB
    lines += [
        "",
        f"- **RSS growth from {points[0]['charges']:,} to {points[-1]['charges']:,}: "
        f"{growth:+.1f} MiB**; target under 50 MiB: {_verdict(growth < 50)}. Rate "
        f"{points[0]['rate_per_s']:,.0f}/s -> {points[-1]['rate_per_s']:,.0f}/s "
        f"({r['rate_ratio']:.2f}x). Checks: {len(r['problems'])} problems.",
        "",
    ]
    return lines


def _shared_limit(section: dict[str, Any], machine: dict[str, Any]) -> list[str]:
    r = section["result"]
    lines = [
        "## 9. One rate limit for several processes (`RedisRateLimiter`)",
        "",
        _when(section, machine),
        "",
        f"{r['processes']} processes, each a `KlarnaClient` charging with "
        f"{r['concurrency_per_process']} tasks, against one sandbox limited to "
        f"{r['rate_limit']:g} requests/s (429 beyond), pacing at {r['pace']:g}/s: sharing one "
        "`RedisRateLimiter` (shared), each pacing alone (local), and sharing it while Redis "
        "stops and starts again (outage). 429s counted by the sandbox.",
        "",
        "| mode | requests | 429s | share | orders | charged twice | peak accepted in 1 s | "
        "orders/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in ("shared", "local", "outage"):
        row = r.get(mode)
        if row:
            lines.append(
                f"| {mode} | {row['requests']:,} | {row['429']:,} | "
                f"{100 * row['429_share']:.1f} % | {row['orders']:,} | "
                f"{row['keys_charged_twice']} | {row['peak_accepted_in_1s']} | "
                f"{row['orders_per_s']:,.1f} |"
            )
    shared = r.get("shared")
    if shared:
        lines += [
            "",
            f"- Shared: 429s on {100 * shared['429_share']:.2f} % of requests; target at most "
            f"1 %: {_verdict(shared['429_share'] <= 0.01)}.",
        ]
    return [*lines, ""]


def _distributed(section: dict[str, Any], machine: dict[str, Any]) -> list[str]:
    r = section["result"]
    lines = [
        "## 10. Charge batches over taskiq workers",
        "",
        _when(section, machine),
        "",
        "`klarna-async charge --queue` enqueues shards; `klarna-async worker` processes charge "
        "them against the sandbox with a shared `RedisRateLimiter` and a Redis journal. On a "
        "2-core machine the workers, the sandbox and Redis share the same cores.",
        "",
    ]
    base = r.get("single_process_baseline")
    if r.get("throughput"):
        lines += ["| workers | charges/s (median) | runs |", "|---:|---:|---|"]
        for row in r["throughput"]:
            runs = ", ".join(f"{run['charges_per_s']:,.0f}" for run in row["runs"])
            lines.append(f"| {row['workers']} | {row['median_charges_per_s']:,.0f} | {runs} |")
        if base:
            lines += [
                "",
                f"- The same charges by single-process `klarna-async charge`: "
                f"{base.get('charges_per_s') or base.get('charges_per_s_with_start')}/s.",
            ]
    kill = r.get("kill")
    if kill:
        lines += [
            "",
            f"- **kill -9 of a worker mid-shard** ({kill['charges']:,} charges, "
            f"{kill['workers']} workers, faults {kill['faults']}): orders "
            f"{kill.get('orders', '?'):,}, keys charged twice {kill.get('keys_charged_twice')}, "
            f"keys not charged {kill.get('keys_not_charged')}, journal records "
            f"{kill.get('journal_records', '?'):,} matching the ledger: "
            f"{kill.get('journal_orders_match_ledger')}; exactly once: "
            f"{_verdict(bool(kill.get('exactly_once')))}.",
        ]
    outage = r.get("outage")
    if outage:
        lines += [
            f"- **Redis stopped mid-run** ({outage['charges']:,} charges): exactly once "
            f"{_verdict(bool(outage.get('exactly_once')))}, workers alive at the end "
            f"{outage.get('workers_alive_at_the_end')}.",
        ]
    limit = r.get("limit")
    if limit:
        modes = [
            f"{mode} {m['429']:,} of {m['requests']:,} requests ({m['429_share']:.1%}), "
            f"charged twice {m['keys_charged_twice']}"
            for mode in ("shared", "local")
            if isinstance(m := limit.get(mode), dict)
        ]
        lines.append(
            f"- 429s over {limit.get('workers')} workers, {limit.get('charges', 0):,} charges with "
            f"a rate limit of {limit.get('rate')}/s: " + "; ".join(modes) + "."
        )
    return [*lines, ""]


def _otel(section: dict[str, Any], machine: dict[str, Any]) -> list[str]:
    r = section["result"]
    lines = [
        "## 11. The cost of OpenTelemetry",
        "",
        _when(section, machine),
        "",
        "CPU per charge, one process, arms alternating: the package before telemetry landed, "
        "telemetry off, on with the API's no-op providers, on with the SDK recording every "
        "trace, and with the SDK sampling every trace out.",
        "",
        "| | " + " | ".join(r["wire"]["median"]) + " |",
        "|---|" + "---:|" * len(r["wire"]["median"]),
    ]
    for key, label in (("wire", "over the wire"), ("path", "request path, transport stubbed")):
        medians = r[key]["median"]
        lines.append(
            f"| {label} | " + " | ".join(f"{v['cpu_us']:.1f}" for v in medians.values()) + " |"
        )
    return [*lines, ""]


def _versions(section: dict[str, Any], machine: dict[str, Any]) -> list[str]:
    r = section["result"]
    low, high = r["after_minus_before_us_95"]
    return [
        "## 12. This version against an earlier one, in one process",
        "",
        _when(section, machine),
        "",
        f"The package at `{r['before']}` and the current one charging the same peer, arms "
        f"alternating over {r['rounds']} rounds of {r['charges']:,} charges: before "
        f"{r['median_us']['before']:.1f} µs, after {r['median_us']['after']:.1f} µs per charge; "
        f"**after - before {r['after_minus_before_us']:+.2f} µs** (95 % {low:+.2f} to "
        f"{high:+.2f}).",
        "",
    ]


_SECTIONS = {
    "cpu": _cpu,
    "sweep": _sweep,
    "memory": _memory,
    "soak": _soak,
    "micro": _micro,
    "breakdown": _breakdown,
    "capture_many": _capture_many,
    "fake_scale": _fake_scale,
    "shared_limit": _shared_limit,
    "distributed": _distributed,
    "otel": _otel,
    "versions": _versions,
}
#: Run by default; the others only with --only.
DEFAULT_SECTIONS = ("cpu", "sweep", "memory", "soak", "micro", "capture_many")


def _latest_machine(results: dict[str, Any]) -> dict[str, Any]:
    if not results:
        from benchmarks._common import machine

        return machine()
    latest = max(results.values(), key=lambda section: section["machine"]["date"])
    found: dict[str, Any] = latest["machine"]
    return found


def markdown(results: dict[str, Any], chart: str | None) -> str:
    machine = _latest_machine(results)
    lines = [
        "# klarna_async benchmarks",
        "",
        "Generated by `python -m benchmarks` (`nox -s bench`); do not edit by hand. Every "
        "server runs in another process on 127.0.0.1 and only the client process's CPU time is "
        "counted. What was changed on the hot path to get these figures, and why: "
        "[OPTIMIZATIONS.md](OPTIMIZATIONS.md).",
        "",
    ]
    if chart:
        lines += [f"![benchmark chart]({chart})", ""]
    lines += _machine(results, machine)
    for name, render in _SECTIONS.items():
        if name in results:
            lines += render(results[name], machine)
        elif name in DEFAULT_SECTIONS:
            lines += [f"_{name}: not run (`python -m benchmarks --only {name}`)._", ""]
    return "\n".join(lines).rstrip() + "\n"


# --- the chart ----------------------------------------------------------------------------------


def chart(results: dict[str, Any], path: Path) -> None:
    """A 2x3 figure: CPU, throughput, latency, memory, soak, micro (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(16, 9), layout="constrained")
    (a_cpu, a_tput, a_lat), (a_mem, a_soak, a_micro) = axes

    def missing(ax: Any, name: str) -> None:
        ax.text(0.5, 0.5, f"{name}: not run", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()

    if "cpu" in results:
        r = results["cpu"]["result"]
        names = list(r["median"])
        short_names = {"raw_fixed_body": "raw,\none body", "full_prebuilt": "full,\none request"}
        medians = [r["median"][n]["cpu_us"] for n in names]
        a_cpu.bar(
            [short_names.get(n, n) for n in names],
            medians,
            color=["#888888", "#ff9a00", "#bbbbbb", "#ffc266"][: len(names)],
        )
        for x, name in enumerate(names):
            values = [row["cpu_us"] for row in r["per_round"][name]]
            a_cpu.scatter([x] * len(values), values, color="black", s=6, zorder=3)
            # Inside the bar, clear of the rounds' dots above it.
            a_cpu.annotate(
                f"{medians[x]:.0f}", (x, medians[x] / 2), ha="center", va="center", color="white"
            )
        a_cpu.axhline(
            medians[0] * r["target_ratio"],
            color="red",
            ls="--",
            lw=1,
            label=f"target {r['target_ratio']}x raw",
        )
        a_cpu.set_title(f"Client CPU per charge (c={r['concurrency']}): ratio {r['ratio']:.2f}")
        a_cpu.set_ylabel("µs per charge (dots: rounds)")
        a_cpu.legend(loc="lower right")
    else:
        missing(a_cpu, "cpu")

    if "sweep" in results:
        rows = results["sweep"]["result"]["levels"]
        labels = [str(row["concurrency"]) for row in rows]
        a_tput.bar(labels, [row["charges_per_s"] for row in rows], color="#ff9a00")
        a_tput.set_title("Throughput (charge_many, full stack)")
        a_tput.set_xlabel("concurrency")
        a_tput.set_ylabel("charges/s")
        for q, style in (("p50", "o-"), ("p90", "s-"), ("p99", "^-")):
            a_lat.plot(labels, [row[f"{q}_ms"] for row in rows], style, label=q)
        a_lat.set_yscale("log")
        a_lat.set_title("Latency per charge")
        a_lat.set_xlabel("concurrency")
        a_lat.set_ylabel("ms (log)")
        a_lat.legend()
    else:
        missing(a_tput, "sweep")
        missing(a_lat, "sweep")

    if "memory" in results:
        runs = results["memory"]["result"]["runs"]
        labels = [f"{row['charges']:,}" for row in runs]
        xs = range(len(runs))
        a_mem.bar(
            [x - 0.2 for x in xs],
            [row["tracemalloc_peak_bytes"] / MiB for row in runs],
            width=0.4,
            label="tracemalloc peak during the batch",
            color="#ff9a00",
        )
        a_mem.bar(
            [x + 0.2 for x in xs],
            [(row["rss_high_water_bytes"] - row["rss_before_bytes"]) / MiB for row in runs],
            width=0.4,
            label="RSS high-water rise during the batch",
            color="#888888",
        )
        a_mem.set_xticks(list(xs), labels)
        for x, row in zip(xs, runs, strict=True):
            peak = row["tracemalloc_peak_bytes"] / MiB
            rise = (row["rss_high_water_bytes"] - row["rss_before_bytes"]) / MiB
            a_mem.annotate(f"{peak:.2f}", (x - 0.2, peak), ha="center", va="bottom")
            a_mem.annotate(f"{rise:.2f}", (x + 0.2, rise), ha="center", va="bottom")
        a_mem.set_title("charge_many memory by batch size")
        a_mem.set_xlabel("charges")
        a_mem.set_ylabel("MiB")
        a_mem.set_ylim(top=a_mem.get_ylim()[1] * 1.4)
        a_mem.legend(loc="upper center")
    else:
        missing(a_mem, "memory")

    if "soak" in results:
        r = results["soak"]["result"]
        f, c = r["faulty"], r["clean"]
        a_soak.bar(
            ["fault-free", "faults"],
            [c["first_pass_charges_per_s"], f["first_pass_charges_per_s"]],
            color=["#888888", "#ff9a00"],
        )
        a_soak.set_title(
            f"Soak, {r['charges']:,} charges: duplicates {f['duplicates']}, "
            f"unaccounted {f['unaccounted']}"
        )
        a_soak.set_ylabel("charges/s (first pass)")
    else:
        missing(a_soak, "soak")

    if "micro" in results:
        rows = results["micro"]["result"]["benchmarks"]
        a_micro.barh(
            [row["name"] for row in rows], [row["median_us"] for row in rows], color="#ff9a00"
        )
        a_micro.set_title("Micro-benchmarks (median)")
        a_micro.set_xlabel("µs")
    else:
        missing(a_micro, "micro")

    fig.suptitle("klarna_async benchmarks")
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(results: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write ``report.png`` and ``REPORT.md`` into ``out_dir``; their paths."""
    png = out_dir / "report.png"
    chart(results, png)
    md = out_dir / "REPORT.md"
    md.write_text(markdown(results, png.name), encoding="utf-8")
    return md, png
