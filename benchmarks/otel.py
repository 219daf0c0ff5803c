"""Client CPU per charge with OpenTelemetry off, no-op and on: ``python -m benchmarks.otel``.

The arms charge the same peer (:mod:`benchmarks.peer`, another process) with ``create_order`` as
:mod:`benchmarks.cpu`'s ``full`` arm does (each charge builds its request, for its own customer
token and key), each through a client of its own, at concurrency 64:

* ``before``: the package as it was before telemetry landed: ``git archive`` of the first
  parent of the commit that brought ``klarna_async/_telemetry/_otel.py`` into this branch's
  first-parent history (the merge, once merged), imported as ``klarna_async_before`` (its own
  name, rewritten in its sources, so that both versions live in this one process). The baseline
  of "free when off", meaningful while nothing else has changed since; ``--before REV`` picks
  another. Left out outside a git checkout.
* ``off``: this package, no telemetry (the default).
* ``noop``: ``Telemetry`` with ``opentelemetry-api``'s ``NoOpTracerProvider`` and
  ``NoOpMeterProvider``: what the hooks cost when the application configures no SDK.
* ``sdk``: ``Telemetry`` with the SDK: a ``TracerProvider`` with a ``BatchSpanProcessor`` (its
  defaults) into an exporter that drops what it gets, and a ``MeterProvider`` with an in-memory
  reader (aggregation, no export). Each sdk round ends with ``force_flush()`` inside the
  measured window, so the export thread's work lands on this arm and no other; the spans made
  and exported are counted (a dropped span would flatter the figure).
* ``unsampled``: the same SDK with a sampler that records no trace (``ALWAYS_OFF``): what the
  metrics and the non-recording spans cost, i.e. the floor that trace sampling tends to.

All arms run in this one process, alternating in short rounds in a rotating order, as in
:mod:`benchmarks.cpu`: a process's own luck (its core, its hash seed, its memory layout) is
shared by every arm, and was measured to swing one process against another by 25 % on a busy
machine. Only this process's CPU is counted (``time.process_time()``: every thread, the SDK's
batch thread included). A ratio is the median of per-round ratios against the ``off`` round run
next to it; the median of per-round differences is given in µs beside it, with a bootstrap
95 % interval of that median.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import io
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import orjson

from benchmarks._common import OUT_DIR, ROOT, machine, median, peer
from benchmarks.cpu import _KEY_PREFIX, _TOKEN_PREFIX, _run_workers
from benchmarks.peer import ORDER

ARMS = ("before", "off", "noop", "sdk", "unsampled")
#: The file whose first commit is where telemetry landed.
_LANDED = "klarna_async/_telemetry/_otel.py"
_BEFORE = "klarna_async_before"

Charge = Callable[[int], Awaitable[None]]


# --- the "before" package -------------------------------------------------------------------


def before_revision() -> str | None:
    """The commit before telemetry landed, or None outside a git checkout."""
    git = shutil.which("git")
    if git is None:
        return None
    # --first-parent diffs a merge against its first parent: the merge that brought telemetry
    # in is found, and its first parent is the code just before it.
    command = ["log", "--first-parent", "--diff-filter=A", "--format=%H", "--", _LANDED]
    done = subprocess.run(  # noqa: S603 - git, with fixed arguments
        [git, "-C", str(ROOT), *command],
        capture_output=True,
        text=True,
        check=False,
    )
    commits = done.stdout.split()
    return f"{commits[-1]}^" if done.returncode == 0 and commits else None


@contextlib.contextmanager
def before_package(revision: str | None) -> Iterator[ModuleType | None]:
    """``klarna_async`` at ``revision``, imported as ``klarna_async_before``; removed again
    from ``sys.modules`` and ``sys.path`` afterwards."""
    git = shutil.which("git")
    if revision is None or git is None:
        yield None
        return
    archive = subprocess.run(  # noqa: S603 - git, with fixed arguments
        [git, "-C", str(ROOT), "archive", "--format=tar", revision, "klarna_async"],
        capture_output=True,
        check=True,
    ).stdout
    own_name = re.compile(r"\bklarna_async\b")
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            for member in tar.getmembers():
                if not member.isfile():
                    continue
                source = tar.extractfile(member)
                assert source is not None
                target = Path(tmp, _BEFORE, *Path(member.name).parts[1:])
                target.parent.mkdir(parents=True, exist_ok=True)
                data = source.read()
                if member.name.endswith(".py"):
                    data = own_name.sub(_BEFORE, data.decode()).encode()
                target.write_bytes(data)
        sys.path.insert(0, tmp)
        try:
            yield importlib.import_module(_BEFORE)
        finally:
            sys.path.remove(tmp)
            for name in [m for m in sys.modules if m.split(".")[0] == _BEFORE]:
                del sys.modules[name]


# --- the arms -------------------------------------------------------------------------------


def token_order(package: ModuleType, amount: int, reference: str) -> Any:
    """``tests.samples.token_order(amount, reference)`` built from ``package``'s classes (the
    same for every arm, so that building it costs each the same)."""
    return package.TokenOrderRequest(
        merchant_reference1=reference,
        merchant_data="optional string",
        auto_capture=True,
        purchase_currency="EUR",
        order_amount=amount,
        order_tax_amount=0,
        order_lines=(
            package.OrderLine(
                type=package.OrderLineType.DIGITAL,
                reference="19-402",
                name="Streaming Service Monthly",
                quantity=1,
                unit_price=amount,
                tax_rate=0,
                total_amount=amount,
                total_discount_amount=0,
                total_tax_amount=0,
                subscription=package.Subscription(
                    name="Premium Monthly", interval=package.Interval.MONTH, interval_count=1
                ),
            ),
        ),
    )


_ANSWER = (200, {"Content-Type": "application/json"}, orjson.dumps(ORDER))


async def _answer(*_: Any) -> tuple[int, dict[str, str], bytes]:
    """The peer's answer to a charge, at once."""
    return _ANSWER


@contextlib.contextmanager
def _patched(module: ModuleType, name: str, value: Any) -> Iterator[None]:
    saved = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, saved)


class _Drop:
    """A span exporter that counts what it is given and keeps nothing."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.count += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _client(package: ModuleType, url: str, concurrency: int, telemetry: Any = None) -> Any:
    options = {"telemetry": telemetry} if telemetry is not None else {}
    return package.KlarnaClient(
        username="test_user",
        password="test_password",
        base_url=url,
        connection_limit=concurrency,
        rate_limit=None,
        **options,
    )


async def measure(
    url: str,
    *,
    charges: int,
    rounds: int,
    concurrency: int,
    warmup: int,
    before: ModuleType | None,
    stub_transport: bool = False,
) -> dict[str, Any]:
    """Alternate the arms for ``rounds`` rounds of ``charges`` charges each.

    ``stub_transport``: every package's one HTTP attempt (``_request.send_once``) answers the
    peer's order at once, without I/O: the request path alone, where a sub-µs difference is not
    drowned by the network stack's noise.
    """
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    import klarna_async

    exporter = _Drop()
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(BatchSpanProcessor(cast("SpanExporter", exporter)))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False)
    unsampled = TracerProvider(sampler=ALWAYS_OFF, shutdown_on_exit=False)
    unsampled.add_span_processor(BatchSpanProcessor(cast("SpanExporter", _Drop())))
    packages = dict.fromkeys(("off", "noop", "sdk", "unsampled"), klarna_async)
    telemetry = {
        "noop": klarna_async.Telemetry(
            tracer_provider=trace.NoOpTracerProvider(), meter_provider=metrics.NoOpMeterProvider()
        ),
        "sdk": klarna_async.Telemetry(
            tracer_provider=tracer_provider, meter_provider=meter_provider
        ),
        "unsampled": klarna_async.Telemetry(
            tracer_provider=unsampled, meter_provider=meter_provider
        ),
    }
    if before is not None:
        packages["before"] = before
    arms = [arm for arm in ARMS if arm in packages]
    sdk_charges = 0
    try:
        async with contextlib.AsyncExitStack() as stack:
            if stub_transport:
                for package in {id(p): p for p in packages.values()}.values():
                    request_module = importlib.import_module(package.__name__ + "._request")
                    stack.enter_context(_patched(request_module, "send_once", _answer))
            fns: dict[str, Charge] = {}
            for arm in arms:
                package = packages[arm]
                client = await stack.enter_async_context(
                    _client(package, url, concurrency, telemetry.get(arm))
                )

                def charge_with(package: ModuleType, client: Any) -> Charge:
                    create_order = client.customer_tokens.create_order

                    async def charge(i: int) -> None:
                        request = token_order(package, 999, f"sub-{i:08d}")
                        token = f"{_TOKEN_PREFIX}{i:012d}"
                        await create_order(token, request, idempotency_key=f"{_KEY_PREFIX}{i:012d}")

                    return charge

                fns[arm] = charge_with(package, client)

            next_number = 0
            for arm in arms:  # the first figures must not pay for connecting or lazy setup
                await _run_workers(fns[arm], next_number, warmup, concurrency)
                next_number += warmup
            tracer_provider.force_flush()
            sdk_charges += warmup

            per_round: dict[str, list[dict[str, float]]] = {arm: [] for arm in arms}
            for r in range(rounds):
                order = arms[r % len(arms) :] + arms[: r % len(arms)]
                for arm in order:
                    gc.collect()
                    cpu0, wall0 = time.process_time(), time.perf_counter()
                    await _run_workers(fns[arm], next_number, charges, concurrency)
                    if arm == "sdk":
                        tracer_provider.force_flush()  # its export work, counted here
                        sdk_charges += charges
                    cpu = time.process_time() - cpu0
                    wall = time.perf_counter() - wall0
                    next_number += charges
                    per_round[arm].append(
                        {"cpu_us": cpu / charges * 1e6, "charges_per_s": charges / wall}
                    )
    finally:
        tracer_provider.shutdown()
        unsampled.shutdown()
        meter_provider.shutdown()

    medians = {
        arm: {key: median([row[key] for row in rows]) for key in ("cpu_us", "charges_per_s")}
        for arm, rows in per_round.items()
    }

    def paired(arm: str, base: str) -> dict[str, Any]:
        pairs = list(zip(per_round[arm], per_round[base], strict=True))
        extra = [a["cpu_us"] - b["cpu_us"] for a, b in pairs]
        return {
            "ratio": median([a["cpu_us"] / b["cpu_us"] for a, b in pairs]),
            "extra_us": median(extra),
            "extra_us_95": _interval(extra),
        }

    result: dict[str, Any] = {
        "charges": charges,
        "rounds": rounds,
        "concurrency": concurrency,
        "warmup": warmup,
        "per_round": per_round,
        "median": medians,
        "noop_vs_off": paired("noop", "off"),
        "sdk_vs_off": paired("sdk", "off"),
        "unsampled_vs_off": paired("unsampled", "off"),
        # One INTERNAL and one CLIENT span per charge.
        "sdk_spans_made": 2 * sdk_charges,
        "sdk_spans_exported": exporter.count,
    }
    if "before" in per_round:
        result["off_vs_before"] = paired("off", "before")
    return result


def run(
    *,
    charges: int = 2_000,
    rounds: int = 30,
    concurrency: int = 64,
    warmup: int | None = None,
    before: str | None = "auto",
    path_factor: int = 5,
) -> dict[str, Any]:
    """Start a peer, measure, stop the peer: ``wire`` (against the peer) and ``path`` (the
    transport stubbed, ``path_factor`` times as many charges a round, one at a time).
    ``before``: the revision of the ``before`` arm (``"auto"``: found with git; None: no such
    arm)."""
    if warmup is None:
        warmup = min(charges, max(4 * concurrency, 1000))
    revision = before_revision() if before == "auto" else before
    with peer() as child, before_package(revision) as package:
        wire = asyncio.run(
            measure(
                child.url,
                charges=charges,
                rounds=rounds,
                concurrency=concurrency,
                warmup=warmup,
                before=package,
            )
        )
        path = asyncio.run(
            measure(
                child.url,
                charges=charges * path_factor,
                rounds=rounds,
                concurrency=1,
                warmup=warmup,
                before=package,
                stub_transport=True,
            )
        )
    return {
        "wire": wire,
        "path": path,
        "before_revision": revision if package is not None else None,
    }


def summary(result: dict[str, Any]) -> str:
    return (
        f"over the wire: {_summary(result['wire'])}\n"
        f"the request path alone (transport stubbed): {_summary(result['path'])}"
    )


def _interval(values: Sequence[float], resamples: int = 2000) -> list[float]:
    """A bootstrap 95 % interval of the median of ``values`` (seeded: the same data, the same
    interval)."""
    draw = random.Random(0)
    medians = sorted(
        median(draw.choices(values, k=len(values))) for _ in range(resamples if values else 0)
    )
    if not medians:
        return [float("nan"), float("nan")]
    return [medians[int(0.025 * len(medians))], medians[int(0.975 * len(medians)) - 1]]


def _summary(result: dict[str, Any]) -> str:
    m = result["median"]

    def arm(name: str) -> str:
        return f"{name} {m[name]['cpu_us']:.1f} µs" if name in m else f"{name} n/a"

    def versus(key: str, label: str) -> str:
        pair = result[key]
        low, high = pair["extra_us_95"]
        return (
            f"{label} {pair['ratio']:.3f} ({pair['extra_us']:+.2f} µs, "
            f"95 % {low:+.2f}..{high:+.2f})"
        )

    parts = [
        "CPU per charge: " + ", ".join(arm(name) for name in ARMS),
        versus("noop_vs_off", "noop vs off"),
        versus("sdk_vs_off", "sdk vs off")
        + f" [{result['sdk_spans_exported']}/{result['sdk_spans_made']} spans exported]",
        versus("unsampled_vs_off", "unsampled vs off"),
    ]
    if "off_vs_before" in result:
        parts.append(versus("off_vs_before", "off vs before"))
    return "; ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.otel",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--charges", type=int, default=2_000, help="charges per round [2000]")
    parser.add_argument("--rounds", type=int, default=30, help="rounds of each arm [30]")
    parser.add_argument("--concurrency", type=int, default=64, help="charges in flight [64]")
    parser.add_argument("--quick", action="store_true", help="300 charges x 4 rounds")
    parser.add_argument(
        "--before", default="auto", help="git revision of the 'before' arm [auto: see above]"
    )
    args = parser.parse_args(argv)
    charges, rounds = (300, 4) if args.quick else (args.charges, args.rounds)
    result = run(charges=charges, rounds=rounds, concurrency=args.concurrency, before=args.before)
    result["machine"] = machine()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / ("otel-quick.json" if args.quick else "otel.json")
    path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(summary(result))
    print(f"wrote {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
