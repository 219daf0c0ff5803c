"""The ``klarna-async`` command: ``demo``, ``charge`` and ``sandbox``.

``klarna-async charge INPUT --out RESULTS`` charges customer tokens listed in JSON Lines, one
charge per line, and appends one JSON line per finished charge to RESULTS, flushed at once, so a
killed run loses nothing. ``--resume`` keeps what RESULTS already settled (placed or failed) and
sends the rest again with the same idempotency keys, which are derived from each line's
``charge_id``: Klarna answers a repeated key with the order it already placed.

Exit codes: 0 every charge placed; 1 some charges failed (Klarna did not charge them) or input
lines were invalid; 3 some outcomes are unknown (run again with ``--resume``); 2 bad usage;
130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import attrs
import orjson

from klarna_async import (
    ApiError,
    Charge,
    ChargeResult,
    ChargeStatus,
    KlarnaClient,
    OutcomeUnknownError,
    RequestValidationError,
    RetryPolicy,
    derive_idempotency_key,
)
from klarna_async._version import __version__

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNKNOWN, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
DEFAULT_NAMESPACE = "klarna-async-charge"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_USAGE
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="klarna-async",
        description="Klarna orders from Python, asynchronously and without double charges.",
    )
    parser.add_argument("--version", action="version", version=f"klarna-async {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="walk through Klarna's order flows against an embedded fake Klarna"
    )
    demo.add_argument("--charges", type=int, default=300, help="recurring charges in the batch")
    demo.add_argument("--seed", type=int, default=7, help="seed of the injected faults")
    demo.set_defaults(run=_run_demo)

    charge = commands.add_parser(
        "charge",
        help="charge customer tokens listed in a JSON Lines file",
        description=__doc__.split("\n\n", 2)[1] if __doc__ else None,
    )
    charge.add_argument("input", type=Path, help="JSON Lines, one charge per line")
    charge.add_argument("--out", type=Path, required=True, help="results, JSON Lines (appended)")
    charge.add_argument(
        "--resume",
        action="store_true",
        help="skip charges settled in --out; repeat unknown ones with their keys",
    )
    charge.add_argument("--concurrency", type=int, default=32)
    charge.add_argument(
        "--rate-limit",
        type=float,
        default=None,
        help="requests per second (default: Klarna's documented limit)",
    )
    charge.add_argument(
        "--namespace",
        default=DEFAULT_NAMESPACE,
        help="namespace of the idempotency keys derived from charge ids",
    )
    charge.add_argument("--max-attempts", type=int, default=5)
    charge.add_argument("--base-url", help="another server than Klarna's (e.g. a sandbox)")
    charge.add_argument(
        "--sandbox",
        action="store_true",
        help="run against an embedded fake Klarna (no credentials needed)",
    )
    charge.add_argument("--no-progress", action="store_true", help="no progress display")
    charge.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log retries to stderr (-vv: every attempt); tokens masked, no credentials",
    )
    charge.set_defaults(run=_run_charge)

    from klarna_async.testing import _sandbox

    sandbox = commands.add_parser(
        "sandbox", help="serve the fake Klarna on loopback, with its ledger and test controls"
    )
    _sandbox.add_arguments(sandbox)
    sandbox.set_defaults(run=_sandbox.run)
    return parser


def _run_demo(args: argparse.Namespace) -> int:
    from klarna_async._demo import run_demo

    return asyncio.run(run_demo(charges=args.charges, seed=args.seed))


# --- charge -------------------------------------------------------------------------------------


@attrs.frozen
class _Line:
    number: int
    charge: Charge


@attrs.frozen
class _BadLine:
    number: int
    problem: str


def parse_charge_line(raw: bytes, number: int, namespace: str) -> _Line | _BadLine:
    """One input line as a :class:`Charge`, or why it cannot be one (never sent)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _BadLine(number, f"not JSON: {exc}")
    if not isinstance(data, dict):
        return _BadLine(number, "a line must be a JSON object")
    problems = []
    charge_id = data.get("charge_id")
    token = data.get("customer_token")
    if not isinstance(charge_id, str) or not charge_id:
        problems.append("$.charge_id: a non-empty string is required")
    if not isinstance(token, str) or not token:
        problems.append("$.customer_token: a non-empty string is required")
    order = data.get("order")
    if order is None:
        order, more = _order_from_short_form(data)
        problems.extend(more)
    elif not isinstance(order, dict):
        problems.append("$.order: must be an object (a customer-token order body)")
    explicit_key = data.get("idempotency_key")
    if explicit_key is not None and (not isinstance(explicit_key, str) or not explicit_key):
        problems.append("$.idempotency_key: must be a non-empty string when given")
    if problems or not isinstance(charge_id, str) or not isinstance(token, str):
        return _BadLine(number, "; ".join(problems))
    key = explicit_key or derive_idempotency_key(namespace, charge_id)
    charge = Charge(
        customer_token=token,
        request=order,
        idempotency_key=key,
        charge_id=charge_id,
    )
    return _Line(number, charge)


def _order_from_short_form(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``amount``, ``currency`` and ``subscription`` become a one-line subscription order."""
    problems = []
    amount, currency = data.get("amount"), data.get("currency")
    subscription = data.get("subscription")
    if not isinstance(amount, int) or isinstance(amount, bool):
        problems.append("$.amount: an integer in minor units is required (or give $.order)")
    if not isinstance(currency, str):
        problems.append("$.currency: an ISO 4217 code is required (or give $.order)")
    if not isinstance(subscription, dict):
        problems.append("$.subscription: {name, interval, interval_count} is required")
    tax_rate = data.get("tax_rate", 0)
    if not isinstance(tax_rate, int) or isinstance(tax_rate, bool) or not 0 <= tax_rate <= 10000:
        problems.append("$.tax_rate: an integer from 0 to 10000 (basis points) when given")
    if problems or not isinstance(amount, int) or not isinstance(subscription, dict):
        return {}, problems
    # Tax included in the amount, as Klarna counts it: amount - amount * 10000 / (10000 + rate).
    tax = amount - amount * 10000 // (10000 + tax_rate)
    line: dict[str, Any] = {
        "type": "digital",
        "name": data.get("description") or subscription.get("name") or "Subscription",
        "quantity": 1,
        "unit_price": amount,
        "total_amount": amount,
        "tax_rate": tax_rate,
        "total_tax_amount": tax,
        "subscription": subscription,
    }
    order: dict[str, Any] = {
        "purchase_currency": currency,
        "order_amount": amount,
        "order_tax_amount": tax,
        "order_lines": [line],
        "merchant_reference1": data.get("merchant_reference1") or data.get("charge_id"),
    }
    if "auto_capture" in data:
        order["auto_capture"] = data["auto_capture"]
    return order, []


def result_record(result: ChargeResult, line: int | None = None) -> dict[str, Any]:
    """A result as one JSON line: what happened, with what is needed to look it up."""
    charge = result.charge
    record: dict[str, Any] = {
        "charge_id": charge.charge_id,
        "status": result.status.value,
        "idempotency_key": charge.idempotency_key,
        "attempts": result.attempts,
        "elapsed": round(result.elapsed, 4),
    }
    if line is not None:
        record["line"] = line
    if result.order is not None:
        record["order_id"] = result.order.order_id
        record["fraud_status"] = str(result.order.fraud_status)
    error = result.error
    if error is not None:
        record["error_type"] = type(error).__name__
        if isinstance(error, ApiError):
            record["error_code"] = error.error_code
            record["correlation_id"] = error.correlation_id
        elif isinstance(error, OutcomeUnknownError) and isinstance(error.last_error, ApiError):
            record["error_code"] = error.last_error.error_code
        record["error"] = _one_line(str(error))
    return record


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]


def load_settled(path: Path) -> dict[str, dict[str, Any]]:
    """The records of RESULTS that are final (placed or failed), by charge id.

    Unknown outcomes, a torn last line from a killed run, and anything unreadable are dropped,
    so those charges are sent again with their same keys.
    """
    settled: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return settled
    with path.open("rb") as handle:
        for raw in handle:
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(record, dict):
                continue
            charge_id = record.get("charge_id")
            if isinstance(charge_id, str) and record.get("status") in ("placed", "failed"):
                settled[charge_id] = record
    return settled


def _rewrite(path: Path, records: Iterator[dict[str, Any]]) -> None:
    """Replace RESULTS atomically with ``records`` (so every charge appears in it once)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        for record in records:
            handle.write(orjson.dumps(record) + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


@attrs.define
class _Tally:
    placed: int = 0
    failed: int = 0
    unknown: int = 0
    invalid: int = 0
    skipped: int = 0
    retried: int = 0
    started: float = attrs.field(factory=time.monotonic)

    def add(self, result: ChargeResult) -> None:
        status = result.status
        if status is ChargeStatus.PLACED:
            self.placed += 1
        elif status is ChargeStatus.UNKNOWN:
            self.unknown += 1
        else:
            self.failed += 1
        if result.attempts > 1:
            self.retried += 1

    @property
    def done(self) -> int:
        return self.placed + self.failed + self.unknown

    def rate(self) -> float:
        return self.done / max(time.monotonic() - self.started, 1e-9)


def _run_charge(args: argparse.Namespace) -> int:
    if args.concurrency < 1 or args.max_attempts < 1:
        print("--concurrency and --max-attempts must be >= 1", file=sys.stderr)
        return EXIT_USAGE
    if not args.input.exists():
        print(f"no such input file: {args.input}", file=sys.stderr)
        return EXIT_USAGE
    if args.sandbox and args.base_url:
        print("--sandbox and --base-url exclude each other", file=sys.stderr)
        return EXIT_USAGE
    if args.verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        library_logger = logging.getLogger("klarna_async")
        library_logger.addHandler(handler)
        library_logger.setLevel(logging.WARNING if args.verbose == 1 else logging.DEBUG)
    return asyncio.run(_charge(args))


async def _charge(args: argparse.Namespace) -> int:
    async with contextlib.AsyncExitStack() as stack:
        settings: dict[str, Any] = {}
        if args.sandbox:
            from klarna_async.testing import FakeKlarna

            fake = await stack.enter_async_context(FakeKlarna(accept_unknown_tokens=True))
            settings = {"username": fake.username, "password": fake.password, "base_url": fake.url}
        else:
            try:
                settings = {
                    "username": os.environ["KLARNA_USERNAME"],
                    "password": os.environ["KLARNA_PASSWORD"],
                    "region": os.environ.get("KLARNA_REGION", "eu"),
                    "environment": os.environ.get("KLARNA_ENVIRONMENT", "playground"),
                }
            except KeyError as missing:
                print(
                    f"set {missing.args[0]} (and KLARNA_PASSWORD, KLARNA_REGION, "
                    "KLARNA_ENVIRONMENT), or use --sandbox",
                    file=sys.stderr,
                )
                return EXIT_USAGE
            if args.base_url:
                settings["base_url"] = args.base_url
        rate: dict[str, Any] = {} if args.rate_limit is None else {"rate_limit": args.rate_limit}
        client = await stack.enter_async_context(
            KlarnaClient(
                **settings,
                **rate,
                connection_limit=args.concurrency,
                retry=RetryPolicy(
                    max_attempts=args.max_attempts,
                    max_delay=8.0,
                    deadline=120.0,
                    attempt_timeout=30.0,
                ),
            )
        )
        return await _charge_with(client, args)


async def _charge_with(client: KlarnaClient, args: argparse.Namespace) -> int:
    settled = load_settled(args.out) if args.resume else {}
    if args.resume:
        _rewrite(args.out, iter(settled.values()))
    tally = _Tally(skipped=len(settled))
    bad: list[_BadLine] = []
    line_of: dict[int, int] = {}

    def charges() -> Iterator[Charge]:
        seen: set[str] = set()
        with args.input.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                parsed = parse_charge_line(raw, number, args.namespace)
                if isinstance(parsed, _BadLine):
                    bad.append(parsed)
                    tally.invalid += 1
                    print(f"line {number}: skipped, not sent: {parsed.problem}", file=sys.stderr)
                    continue
                charge_id = parsed.charge.charge_id
                assert charge_id is not None
                if charge_id in settled:
                    continue
                if charge_id in seen:
                    tally.invalid += 1
                    print(
                        f"line {number}: skipped, charge_id {charge_id!r} repeats an earlier line",
                        file=sys.stderr,
                    )
                    continue
                seen.add(charge_id)
                line_of[id(parsed.charge)] = number
                yield parsed.charge

    progress = _Progress(tally, enabled=not args.no_progress)
    with args.out.open("ab") as out, progress:
        async for result in client.customer_tokens.charge_many(
            charges(), concurrency=args.concurrency
        ):
            if isinstance(result.error, RequestValidationError):
                tally.invalid += 1
            tally.add(result)
            record = result_record(result, line_of.pop(id(result.charge), None))
            out.write(orjson.dumps(record) + b"\n")
            out.flush()
            progress.update()
    _summary(tally, args.out, sys.stdout)
    if tally.unknown:
        return EXIT_UNKNOWN
    if tally.failed or tally.invalid:
        return EXIT_FAILED
    return EXIT_OK


class _Progress:
    """A rich progress bar when rich is installed and stderr is a terminal; else quiet lines."""

    def __init__(self, tally: _Tally, *, enabled: bool) -> None:
        self.tally = tally
        self.enabled = enabled
        self._rich: Any = None
        self._task: Any = None
        self._last = 0.0

    def __enter__(self) -> _Progress:
        if not self.enabled:
            return self
        try:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
        except ImportError:
            return self
        if not sys.stderr.isatty():
            return self
        self._rich = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=False
        )
        self._rich.__enter__()
        self._task = self._rich.add_task(self._text(), total=None)
        return self

    def _text(self) -> str:
        t = self.tally
        return (
            f"{t.done} done, {t.rate():.0f}/s | placed {t.placed} | failed {t.failed} | "
            f"unknown {t.unknown} | retried {t.retried}"
        )

    def update(self) -> None:
        if not self.enabled:
            return
        if self._rich is not None:
            self._rich.update(self._task, description=self._text())
            return
        now = time.monotonic()
        if now - self._last >= 2.0:
            self._last = now
            print(self._text(), file=sys.stderr, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.update(self._task, description=self._text())
            self._rich.__exit__(None, None, None)


def _summary(tally: _Tally, out: Path, stream: IO[str]) -> None:
    elapsed = time.monotonic() - tally.started
    rows = [
        ("placed", tally.placed),
        ("failed (not charged)", tally.failed),
        ("unknown (run --resume)", tally.unknown),
        ("invalid input lines", tally.invalid),
        ("already settled, skipped", tally.skipped),
        ("needed retries", tally.retried),
    ]
    width = max(len(name) for name, _ in rows)
    print(
        f"\nklarna-async charge: {tally.done} charges in {elapsed:.1f} s "
        f"({tally.rate():.0f}/s); results in {out}",
        file=stream,
    )
    for name, value in rows:
        print(f"  {name:<{width}}  {value:>8}", file=stream)
