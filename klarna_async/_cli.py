"""The ``klarna-async`` command: ``demo``, ``charge``, ``worker``, ``status`` and ``sandbox``.

``klarna-async charge INPUT --out RESULTS`` charges the customer tokens listed in INPUT (JSON
Lines, one charge per line) and appends one JSON line per charge to RESULTS, flushed at once, so
a killed run loses nothing. Each charge's idempotency key is derived from its ``charge_id``, so
running the same file again cannot charge twice. ``--resume`` reads RESULTS first (see
``klarna_async._charge_file``): placed charges are skipped, declined ones too (unless
``--retry-failed``), unknown ones are sent again with their keys as "may have been placed", and
everything else (retryable, invalid, never recorded) is sent.

Exit codes: 0 every charge placed; 1 some charges are not placed (declined, retryable, invalid,
or not sent); 3 some outcomes are unknown (run again with --resume); 4 the run stopped because
Klarna refused the credentials (fix them, then --resume); 2 bad usage; 130 interrupted.

``charge INPUT --queue redis://...`` enqueues the charges for ``klarna-async worker`` processes
instead (taskiq over Redis, the ``[taskiq]`` extra), and ``klarna-async status`` follows them and
exports their journal in the results format; see ``klarna_async._distributed``. Nothing of taskiq
or Redis is imported unless one of them runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
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
    Charge,
    ChargeResult,
    KlarnaClient,
    RetryPolicy,
    UnauthorizedError,
)
from klarna_async import _distributed as dist
from klarna_async._charge_file import (
    INVALID,
    Action,
    BadLine,
    bad_line_record,
    load_results,
    parse_charge_line,
    plan,
    result_record,
    rewrite,
    status_text,
)
from klarna_async._distributed import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_JOURNAL_PATIENCE,
    DEFAULT_PREFIX,
    DEFAULT_SHARD_SIZE,
)
from klarna_async._version import __version__

__all__ = ["main"]

EXIT_OK, EXIT_NOT_PLACED, EXIT_USAGE, EXIT_UNKNOWN, EXIT_AUTH = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130
DEFAULT_NAMESPACE = "klarna-async-charge"
DEFAULT_CONCURRENCY = 32
DEFAULT_MAX_ATTEMPTS = 5


class _Usage(Exception):
    """A usage or file problem: one line on stderr, exit 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_USAGE
    try:
        code: int = args.run(args)
    except _Usage as problem:
        print(f"klarna-async: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


class _Help(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written (they are plain text with line breaks), and option defaults."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="klarna-async",
        description="Klarna orders from Python, asynchronously and without double charges.",
    )
    parser.add_argument("--version", action="version", version=f"klarna-async {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="walk through Klarna's order flows against an embedded fake Klarna",
        description="Walk through one-time orders, customer tokens and a faulty nightly batch "
        "against an embedded fake Klarna (loopback only, no credentials), and check every "
        "charge against the fake's ledger.",
        formatter_class=_Help,
    )
    demo.add_argument(
        "--charges", type=int, default=300, help="recurring charges in the batch (default: 300)"
    )
    demo.add_argument(
        "--seed", type=int, default=7, help="seed of the injected faults (default: 7)"
    )
    demo.set_defaults(run=_run_demo)

    charge = commands.add_parser(
        "charge",
        help="charge customer tokens listed in a JSON Lines file",
        description=_CHARGE_DESCRIPTION,
        formatter_class=_Help,
    )
    charge.add_argument("input", type=Path, help="JSON Lines, one charge per line")
    charge.add_argument(
        "--out",
        type=Path,
        help="where results go, one JSON line per charge (required, except with --queue)",
    )
    charge.add_argument(
        "--resume",
        action="store_true",
        help="read --out first: skip placed and declined charges, send unknown ones again "
        "with their keys, send everything else",
    )
    charge.add_argument(
        "--retry-failed",
        action="store_true",
        help="with --resume, also send declined charges again (with the same keys: Klarna "
        "may repeat its first answer for 24 hours)",
    )
    charge.add_argument(
        "--force-after-window",
        action="store_true",
        help="with --resume, send unknown charges again even when their key was first sent "
        "more than 23 hours ago (Klarna keeps keys 24 hours: this could charge twice)",
    )
    charge.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=f"charges in flight at once (default: {DEFAULT_CONCURRENCY})",
    )
    charge.add_argument(
        "--rate-limit",
        type=float,
        default=None,
        help="requests per second at most (default: 90 %% of Klarna's documented limit, 45/s "
        "in playground and 180/s in production; no limit with --base-url or --sandbox)",
    )
    charge.add_argument(
        "--namespace",
        default=DEFAULT_NAMESPACE,
        help=f"namespace of the keys derived from charge ids (default: {DEFAULT_NAMESPACE})",
    )
    charge.add_argument(
        "--max-attempts",
        type=int,
        default=DEFAULT_MAX_ATTEMPTS,
        help=f"attempts per charge, the first included (default: {DEFAULT_MAX_ATTEMPTS})",
    )
    charge.add_argument("--base-url", help="another server than Klarna's, e.g. a sandbox")
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
    queue = charge.add_argument_group(
        "distributed (with --queue: workers charge, see klarna-async worker --help)"
    )
    queue.add_argument(
        "--queue",
        metavar="URL",
        help="enqueue the charges on this Redis (redis://[:password@]host:port/db) for "
        "klarna-async worker processes instead of charging them here",
    )
    queue.add_argument(
        "--run",
        dest="run_name",
        metavar="NAME",
        help="the run's name on the queue (default: INPUT's file name without extension); "
        "--resume continues the run of that name",
    )
    queue.add_argument(
        "--shard-size",
        type=int,
        default=DEFAULT_SHARD_SIZE,
        help=f"charges per task (default: {DEFAULT_SHARD_SIZE})",
    )
    queue.add_argument(
        "--wait",
        action="store_true",
        help="after enqueueing, follow the run until every shard is done (and export the "
        "results to --out if given); exit as klarna-async status does",
    )
    queue.add_argument(
        "--timeout", type=float, default=None, help="with --wait, give up after this many seconds"
    )
    queue.add_argument("--prefix", default=DEFAULT_PREFIX, help=_PREFIX_HELP)
    charge.set_defaults(run=_run_charge)

    worker = commands.add_parser(
        "worker",
        help="charge the shards enqueued by charge --queue (a taskiq worker)",
        description=_WORKER_DESCRIPTION,
        formatter_class=_Help,
    )
    worker.add_argument("--queue", metavar="URL", required=True, help="the Redis of the queue")
    worker.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=f"charges in flight at once in this worker (default: {DEFAULT_CONCURRENCY})",
    )
    worker.add_argument(
        "--shards-at-once",
        type=int,
        default=1,
        help="shards this worker runs at once, sharing --concurrency (default: 1)",
    )
    worker.add_argument(
        "--rate-limit",
        type=float,
        default=None,
        help="requests per second for all workers together, shared through Redis (default: "
        "90 %% of Klarna's documented limit, 45/s in playground and 180/s in production; "
        "no limit with --base-url)",
    )
    worker.add_argument(
        "--rate-limit-redis",
        metavar="URL",
        help="the Redis that shares the rate limit (default: the queue's)",
    )
    worker.add_argument(
        "--expected-workers",
        type=int,
        default=4,
        help="how many workers run in all: while Redis is unreachable each one paces itself at "
        "the rate limit divided by this (default: 4)",
    )
    worker.add_argument(
        "--local-pacing",
        action="store_true",
        help="pace this worker alone at --rate-limit instead of sharing it (N workers then "
        "send N times the rate: for comparisons, not for production)",
    )
    worker.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT,
        help="seconds before a shard whose worker stopped answering goes to another worker "
        f"(default: {DEFAULT_IDLE_TIMEOUT:g}); give every worker the same; a live worker keeps "
        "its shards",
    )
    worker.add_argument(
        "--journal-patience",
        type=float,
        default=DEFAULT_JOURNAL_PATIENCE,
        help="seconds to wait for an unreachable Redis before giving a shard back "
        f"(default: {DEFAULT_JOURNAL_PATIENCE:g})",
    )
    worker.add_argument(
        "--max-attempts",
        type=int,
        default=DEFAULT_MAX_ATTEMPTS,
        help=f"attempts per charge, the first included (default: {DEFAULT_MAX_ATTEMPTS})",
    )
    worker.add_argument("--base-url", help="another server than Klarna's, e.g. a sandbox")
    worker.add_argument("--name", help="this worker's name in status (default: host-pid)")
    worker.add_argument("--prefix", default=DEFAULT_PREFIX, help=_PREFIX_HELP)
    worker.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log retries to stderr (-vv: every attempt); tokens masked, no credentials",
    )
    worker.set_defaults(run=_run_worker, sandbox=False)

    status = commands.add_parser(
        "status",
        help="show a distributed run's progress; export its results",
        description=_STATUS_DESCRIPTION,
        formatter_class=_Help,
    )
    status.add_argument("--queue", metavar="URL", required=True, help="the Redis of the queue")
    status.add_argument(
        "--run", dest="run_name", metavar="NAME", help="the run (default: the one enqueued last)"
    )
    status.add_argument(
        "--export",
        type=Path,
        metavar="PATH",
        help="write the run's results to PATH as JSON Lines, as klarna-async charge --out "
        "writes them (replaced atomically)",
    )
    status.add_argument(
        "--wait", action="store_true", help="follow the run until every shard is done"
    )
    status.add_argument(
        "--timeout", type=float, default=None, help="with --wait, give up after this many seconds"
    )
    status.add_argument("--json", action="store_true", help="the report as JSON")
    status.add_argument(
        "--forget",
        action="store_true",
        help="then delete the run from Redis: its journal and its input lines (customer tokens "
        "included); export it first. Refused while shards are pending",
    )
    status.add_argument("--prefix", default=DEFAULT_PREFIX, help=_PREFIX_HELP)
    status.set_defaults(run=_run_status)

    from klarna_async.testing import _sandbox

    sandbox = commands.add_parser(
        "sandbox",
        help="serve the fake Klarna on loopback, with its ledger and test controls",
    )  # its description and how-to (curl lines) come from the sandbox itself
    _sandbox.add_arguments(sandbox)
    sandbox.set_defaults(run=_sandbox.run)
    return parser


_CHARGE_DESCRIPTION = """\
Charge the customer tokens listed in INPUT, one JSON object per line:

  {"charge_id": "sub-42:2026-11", "customer_token": "...", "amount": 999,
   "currency": "EUR", "subscription": {"name": "Premium", "interval": "MONTH",
   "interval_count": 1}}

(or "order": a full customer-token order body instead of amount/currency/subscription).
Each charge's Klarna-Idempotency-Key is derived from its charge_id, so the same file run
again cannot charge twice. One result line per charge goes to --out as it finishes:
placed, declined (Klarna said no: do not repeat blindly), retryable (not charged, safe to
send again), unknown (may have been charged: run again with --resume within 23 hours) or
invalid (not sent: the line says why).

Credentials come from KLARNA_USERNAME and KLARNA_PASSWORD; KLARNA_REGION (eu, na or oc;
default eu) and KLARNA_ENVIRONMENT (playground or production; default playground) are
optional. Or use --sandbox to try it without any.

A run that Klarna answers with 401 (wrong credentials) stops at once; fix them and run
again with --resume.

Exit codes: 0 every charge placed; 1 some not placed (declined, retryable, invalid, or
not sent); 3 some unknown (run again with --resume); 4 stopped on wrong credentials;
2 bad usage or file; 130 interrupted (the summary so far is printed).
"""


_PREFIX_HELP = (
    "where the queue and runs live in Redis: one prefix per merchant sharing a Redis "
    f"(default: {DEFAULT_PREFIX})"
)

_WORKER_DESCRIPTION = """\
Charge the shards that klarna-async charge INPUT --queue URL enqueued, one shard at a
time, until SIGTERM or Ctrl-C (the charges in flight then finish and are journaled; the
shard goes back to the queue). Start as many as you like, on any machine.

Each charge's result goes to a journal in Redis, in the format of klarna-async charge
--out; before a charge is sent, its record says "in flight", so a worker killed at any
moment leaves nothing that reads as "not charged". A shard whose worker died goes to
another worker after --idle-timeout; it skips what is settled and sends the rest again
with the same idempotency keys (unknown ones as "may have been placed", within 23 hours
of their first attempt). All workers share one rate limit through Redis.

Credentials come from KLARNA_USERNAME and KLARNA_PASSWORD; KLARNA_REGION (eu, na or oc;
default eu) and KLARNA_ENVIRONMENT (playground or production; default playground) are
optional. --base-url points the worker at another server, e.g. klarna-async sandbox.

Exit codes: 0 stopped by a signal; 4 Klarna refused the credentials (the worker stops
at once, its shard goes back to the queue); 1 Redis did not answer at start; 2 bad usage.
"""

_STATUS_DESCRIPTION = """\
Show a distributed run: its charges by status (placed, declined, retryable, unknown,
in flight, invalid, not recorded yet), its shards (done, pending, running on which
worker, delivered again) and the live workers. --wait follows it until every shard is
done; --export writes its results as klarna-async charge --out does, so the same tools
(and klarna-async charge --resume) read them.

Exit codes: 0 every charge placed; 1 some not placed (declined, retryable, invalid);
3 some unknown or in flight (enqueue again with charge --queue ... --resume); 5 shards
still pending; 2 bad usage, no such run, or Redis not answering.
"""


def _run_demo(args: argparse.Namespace) -> int:
    from klarna_async._demo import run_demo

    return asyncio.run(run_demo(charges=args.charges, seed=args.seed))


# --- charge -------------------------------------------------------------------------------------


def _check_usage(args: argparse.Namespace) -> None:
    if args.concurrency < 1 or args.max_attempts < 1:
        raise _Usage("--concurrency and --max-attempts must be at least 1")
    if args.sandbox and args.base_url:
        raise _Usage("--sandbox and --base-url exclude each other")
    if (args.retry_failed or args.force_after_window) and not args.resume:
        raise _Usage("--retry-failed and --force-after-window only make sense with --resume")
    if not args.input.exists():
        raise _Usage(f"no such input file: {args.input}")
    if not args.input.is_file():
        raise _Usage(f"the input is not a file: {args.input}")
    if args.out.exists() and not args.out.is_file():
        raise _Usage(f"--out is not a file: {args.out}")
    if not args.out.parent.is_dir():
        raise _Usage(f"the directory of --out does not exist: {args.out.parent}")
    try:
        with args.input.open("rb"):
            pass
    except OSError as error:
        raise _Usage(f"cannot read {args.input}: {error.strerror}") from None


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    if args.sandbox:
        return {}
    username, password = os.environ.get("KLARNA_USERNAME"), os.environ.get("KLARNA_PASSWORD")
    if not username or not password:
        missing = " and ".join(
            name
            for name, value in (("KLARNA_USERNAME", username), ("KLARNA_PASSWORD", password))
            if not value
        )
        raise _Usage(
            f"set {missing} (KLARNA_REGION and KLARNA_ENVIRONMENT are optional: "
            "eu and playground by default), or use --sandbox"
        )
    settings: dict[str, Any] = {
        "username": username,
        "password": password,
        "region": os.environ.get("KLARNA_REGION", "eu"),
        "environment": os.environ.get("KLARNA_ENVIRONMENT", "playground"),
    }
    if args.base_url:
        settings["base_url"] = args.base_url
    return settings


def _run_charge(args: argparse.Namespace) -> int:
    if args.queue:
        return _run_enqueue(args)
    if args.out is None:
        raise _Usage("--out is required (or --queue, to enqueue the charges for workers)")
    _check_usage(args)
    settings = _settings(args)
    if args.verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        library_logger = logging.getLogger("klarna_async")
        library_logger.addHandler(handler)
        library_logger.setLevel(logging.WARNING if args.verbose == 1 else logging.DEBUG)
    run = _Run(args)
    try:
        return asyncio.run(_charge(args, settings, run))
    except KeyboardInterrupt:
        run.interrupted = True
        run.summary(sys.stdout)
        raise


async def _charge(args: argparse.Namespace, settings: dict[str, Any], run: _Run) -> int:
    async with contextlib.AsyncExitStack() as stack:
        if args.sandbox:
            from klarna_async.testing import FakeKlarna

            fake = await stack.enter_async_context(FakeKlarna(accept_unknown_tokens=True))
            settings = {"username": fake.username, "password": fake.password, "base_url": fake.url}
        rate: dict[str, Any] = {} if args.rate_limit is None else {"rate_limit": args.rate_limit}
        try:
            client = KlarnaClient(
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
        except ValueError as problem:
            raise _Usage(str(problem)) from None
        await stack.enter_async_context(client)
        return await run.execute(client)


@attrs.define
class _Tally:
    placed: int = 0
    declined: int = 0
    retryable: int = 0
    unknown: int = 0
    invalid: int = 0
    #: From RESULTS, not sent again: placed, declined, unknown past the key window.
    placed_before: int = 0
    declined_before: int = 0
    refused_window: int = 0
    #: Lines left unread when the run stopped (wrong credentials).
    not_sent: int = 0
    retried: int = 0
    total: int | None = None
    started: float = attrs.field(factory=time.monotonic)

    def add(self, status: str, attempts: int) -> None:
        if status == INVALID:
            self.invalid += 1
        else:
            setattr(self, status, getattr(self, status) + 1)
        if attempts > 1:
            self.retried += 1

    @property
    def done(self) -> int:
        return self.placed + self.declined + self.retryable + self.unknown + self.invalid

    @property
    def seen(self) -> int:
        return self.done + self.placed_before + self.declined_before + self.refused_window

    def rate(self) -> float:
        return self.done / max(time.monotonic() - self.started, 1e-9)


class _Run:
    """One run of ``klarna-async charge``: the plan from RESULTS, the batch, the records."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tally = _Tally()
        self.interrupted = False
        self.auth_refused = False
        self.in_flight = 0
        self._first_attempt: dict[int, dt.datetime] = {}
        self._line_of: dict[int, int] = {}
        self._out: IO[bytes] | None = None

    async def execute(self, client: KlarnaClient) -> int:
        args = self.args
        history = load_results(args.out) if args.resume else {}
        if args.resume:
            # One line per charge again; a record being re-sent stays until its new one lands,
            # so a run killed now still knows it (and when its key was first sent).
            rewrite(args.out, history.values())
        self.tally.total = _count_lines(args.input)
        progress = _Progress(self.tally, enabled=not args.no_progress)
        with args.out.open("ab") as out, progress:
            self._out = out
            try:
                async for result in client.customer_tokens.charge_many(
                    self._charges(history), concurrency=args.concurrency
                ):
                    self._record(result)
                    progress.update()
            except asyncio.CancelledError:
                self.interrupted = True
                raise
        if self.auth_refused:
            self.tally.not_sent = max(0, (self.tally.total or 0) - self.tally.seen)
        self.summary(sys.stdout)
        return self.exit_code()

    def _charges(self, history: dict[str, dict[str, Any]]) -> Iterator[Charge]:
        args = self.args
        seen: set[str] = set()
        with args.input.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if self.auth_refused:
                    return  # 401: nothing more is sent; --resume picks up from here
                if not raw.strip():
                    continue
                parsed = parse_charge_line(raw, number, args.namespace)
                if isinstance(parsed, BadLine):
                    self._bad(parsed)
                    continue
                charge = parsed.charge
                charge_id = charge.charge_id
                assert charge_id is not None
                if charge_id in seen:
                    self._bad(BadLine(number, f"charge_id {charge_id!r} repeats an earlier line"))
                    continue
                seen.add(charge_id)
                record = history.get(charge_id)
                action = plan(
                    record,
                    retry_declined=args.retry_failed,
                    force_after_window=args.force_after_window,
                )
                if action is Action.SKIP_PLACED:
                    self.tally.placed_before += 1
                    continue
                if action is Action.SKIP_DECLINED:
                    self.tally.declined_before += 1
                    continue
                if action is Action.REFUSE_WINDOW:
                    self.tally.refused_window += 1
                    print(
                        f"line {number}: charge {charge_id!r} not sent again: its outcome is "
                        f"unknown since {record and record.get('first_attempt_at')}, more than "
                        "23 hours ago, and Klarna keeps an idempotency key only 24 hours, so a "
                        "repeat could charge twice. Look the order up in the Merchant Portal "
                        "(merchant_reference1), then use --force-after-window to send it anyway.",
                        file=sys.stderr,
                    )
                    continue
                if action is Action.REDRIVE:
                    assert record is not None
                    key = record.get("idempotency_key")
                    if isinstance(key, str) and key != charge.idempotency_key:
                        # The key that may have placed it is the only safe one to repeat.
                        print(
                            f"line {number}: charge {charge_id!r} is re-sent with the key it "
                            "was first sent with, not the one derived now (did --namespace "
                            "change?)",
                            file=sys.stderr,
                        )
                        charge = attrs.evolve(charge, idempotency_key=key)
                    charge = attrs.evolve(charge, after_unknown=True)
                    first = record.get("first_attempt_at")
                    if isinstance(first, str):
                        self._first_attempt[id(charge)] = dt.datetime.fromisoformat(
                            first.replace("Z", "+00:00")
                        )
                self._line_of[id(charge)] = number
                yield charge

    def _bad(self, bad: BadLine) -> None:
        self.tally.add(INVALID, 0)
        print(f"line {bad.number}: invalid, not sent: {bad.problem}", file=sys.stderr)
        self._write(bad_line_record(bad))

    def _record(self, result: ChargeResult) -> None:
        key = id(result.charge)
        line = self._line_of.pop(key, None)
        status = status_text(result)
        if status == INVALID:
            # The same words as for a line that is not JSON: where, and why, once.
            print(f"line {line}: invalid, not sent: {result.error}", file=sys.stderr)
        self.tally.add(status, result.attempts)
        self._write(
            result_record(result, line, first_attempt_at=self._first_attempt.pop(key, None))
        )
        if isinstance(result.error, UnauthorizedError) and not self.auth_refused:
            self.auth_refused = True
            print(
                "Klarna refused the credentials (HTTP 401): check KLARNA_USERNAME, "
                "KLARNA_PASSWORD, KLARNA_REGION and KLARNA_ENVIRONMENT. The run stops here; "
                "nothing was charged with them. Fix them and run again with --resume.",
                file=sys.stderr,
            )

    def _write(self, record: dict[str, Any]) -> None:
        assert self._out is not None
        self._out.write(orjson.dumps(record) + b"\n")
        self._out.flush()

    def exit_code(self) -> int:
        t = self.tally
        if self.auth_refused:
            return EXIT_AUTH
        if t.unknown or t.refused_window:
            return EXIT_UNKNOWN
        if t.declined or t.retryable or t.invalid or t.declined_before or t.not_sent:
            return EXIT_NOT_PLACED
        return EXIT_OK

    def summary(self, stream: IO[str]) -> None:
        t = self.tally
        elapsed = time.monotonic() - t.started
        rows = [
            ("placed", t.placed),
            ("declined by Klarna", t.declined),
            ("retryable (not charged)", t.retryable),
            ("unknown (run --resume)", t.unknown),
            ("invalid lines (not sent)", t.invalid),
            ("placed before, skipped", t.placed_before),
            ("declined before, skipped", t.declined_before),
            ("unknown past the key window", t.refused_window),
            ("not sent (run stopped)", t.not_sent),
            ("needed retries", t.retried),
        ]
        width = max(len(name) for name, _ in rows)
        head = "interrupted after" if self.interrupted else "done:"
        print(
            f"\nklarna-async charge {head} {t.done} charges in {elapsed:.1f} s "
            f"({t.rate():.0f}/s); results in {self.args.out}",
            file=stream,
        )
        for name, value in rows:
            if value or name in ("placed", "unknown (run --resume)"):
                print(f"  {name:<{width}}  {value:>8}", file=stream)
        if self.interrupted:
            print(
                "  charges in flight when interrupted have no result line: --resume sends them "
                "again with the same keys (safe)",
                file=stream,
            )
        stream.flush()


# --- distributed: charge --queue, worker, status -------------------------------------------------


def _need_taskiq() -> None:
    """The taskiq machinery is installed, or a one-line usage error names the extra."""
    try:
        dist.import_taskiq()
    except ImportError as error:
        raise _Usage(str(error)) from None


def _run_enqueue(args: argparse.Namespace) -> int:
    given = [
        name
        for name, value, default in (
            ("--concurrency", args.concurrency, DEFAULT_CONCURRENCY),
            ("--max-attempts", args.max_attempts, DEFAULT_MAX_ATTEMPTS),
            ("--rate-limit", args.rate_limit, None),
            ("--base-url", args.base_url, None),
        )
        if value != default
    ]
    if given:
        raise _Usage(
            f"with --queue, {' and '.join(given)} belong to the workers "
            "(klarna-async worker --queue ...)"
        )
    if args.sandbox:
        raise _Usage("--sandbox does not go with --queue: run the workers with --base-url URL")
    if (args.retry_failed or args.force_after_window) and not args.resume:
        raise _Usage("--retry-failed and --force-after-window only make sense with --resume")
    if args.out is not None and not args.wait:
        raise _Usage("with --queue, --out needs --wait (results exist once the workers are done)")
    if args.shard_size < 1:
        raise _Usage("--shard-size must be at least 1")
    if not args.input.is_file():
        what = "no such input file" if not args.input.exists() else "the input is not a file"
        raise _Usage(f"{what}: {args.input}")
    _need_taskiq()
    run = args.run_name or args.input.stem
    options = dist.EnqueueOptions(
        queue=args.queue,
        input=args.input,
        run=run,
        namespace=args.namespace,
        namespace_given=args.namespace != DEFAULT_NAMESPACE,
        shard_size=args.shard_size,
        resume=args.resume,
        retry_failed=args.retry_failed,
        force_after_window=args.force_after_window,
        prefix=args.prefix,
    )
    try:
        report = asyncio.run(dist.enqueue(options, out=sys.stdout, err=sys.stderr))
        if not args.wait:
            return report.exit_code()
        follow = dist.StatusOptions(
            queue=args.queue,
            run=run,
            export=args.out,
            wait=True,
            timeout=args.timeout,
            prefix=args.prefix,
        )
        return asyncio.run(dist.status(follow, out=sys.stdout, err=sys.stderr))
    except dist.QueueError as problem:
        raise _Usage(str(problem)) from None


def _run_worker(args: argparse.Namespace) -> int:
    if args.concurrency < 1 or args.max_attempts < 1 or args.shards_at_once < 1:
        raise _Usage("--concurrency, --shards-at-once and --max-attempts must be at least 1")
    if args.expected_workers < 1:
        raise _Usage("--expected-workers must be at least 1")
    if not args.idle_timeout > 0 or not args.journal_patience > 0:
        raise _Usage("--idle-timeout and --journal-patience must be > 0 seconds")
    if args.rate_limit is not None and not args.rate_limit > 0:
        raise _Usage("--rate-limit must be > 0 requests per second")
    settings = _settings(args)
    _need_taskiq()
    name = args.name or dist.default_worker_name()
    _worker_logging(name, args.verbose)
    options = dist.WorkerOptions(
        queue=args.queue,
        settings=settings,
        name=name,
        concurrency=args.concurrency,
        shards_at_once=args.shards_at_once,
        rate_limit=args.rate_limit,
        rate_limit_redis=args.rate_limit_redis,
        local_pacing=args.local_pacing,
        expected_workers=args.expected_workers,
        idle_timeout=args.idle_timeout,
        journal_patience=args.journal_patience,
        max_attempts=args.max_attempts,
        prefix=args.prefix,
    )
    try:
        code = asyncio.run(dist.run_worker(options))
    except ValueError as problem:  # the client's or the limiter's settings
        raise _Usage(str(problem)) from None
    except asyncio.CancelledError:  # a second signal: the charges in flight were cut off
        print(
            "worker stopped at once: its charges in flight are 'in flight' in the journal, "
            "re-driven with their keys by the worker that takes the shard",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    return code


class _WorkerLog(logging.Filter):
    """A worker's stderr: its own lines, the rate limiter's (Redis unreachable, back), errors;
    with -v every warning (retries), with -vv everything."""

    def __init__(self, verbose: int) -> None:
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if self.verbose >= 2 or record.levelno >= logging.ERROR:
            return True
        if record.name.startswith("klarna_async.distributed"):
            return True
        if record.module == "_redis_pacer":
            return record.levelno >= logging.WARNING
        return self.verbose >= 1 and record.levelno >= logging.WARNING


def _worker_logging(name: str, verbose: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s {name} %(levelname)s %(message)s"))
    handler.addFilter(_WorkerLog(verbose))
    library_logger = logging.getLogger("klarna_async")
    library_logger.addHandler(handler)
    library_logger.setLevel(logging.DEBUG if verbose >= 2 else logging.INFO)


def _run_status(args: argparse.Namespace) -> int:
    if args.timeout is not None and not args.wait:
        raise _Usage("--timeout only makes sense with --wait")
    if args.export is not None and not args.export.parent.is_dir():
        raise _Usage(f"the directory of --export does not exist: {args.export.parent}")
    _need_taskiq()
    options = dist.StatusOptions(
        queue=args.queue,
        run=args.run_name,
        export=args.export,
        wait=args.wait,
        timeout=args.timeout,
        as_json=args.json,
        forget=args.forget,
        prefix=args.prefix,
    )
    try:
        code = asyncio.run(dist.status(options, out=sys.stdout, err=sys.stderr))
    except dist.QueueError as problem:
        raise _Usage(str(problem)) from None
    return code


def _count_lines(path: Path) -> int:
    """Non-empty lines: the total the progress display counts to."""
    count = 0
    with path.open("rb") as handle:
        for raw in handle:
            if raw.strip():
                count += 1
    return count


class _Progress:
    """A rich progress bar (with the ``[cli]`` extra, on a terminal), else a line every 2 s."""

    def __init__(self, tally: _Tally, *, enabled: bool) -> None:
        self.tally = tally
        self.enabled = enabled
        self._rich: Any = None
        self._task: Any = None
        self._last = 0.0

    def __enter__(self) -> _Progress:
        if not self.enabled or not sys.stderr.isatty():
            return self  # off, or plain lines (to a file, a pipe, CI logs)
        try:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeRemainingColumn,
            )
        except ImportError:
            return self
        self._rich = Progress(
            TextColumn("charging"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}/s"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[statuses]}"),
            transient=False,
        )
        self._rich.__enter__()
        self._task = self._rich.add_task(
            "charge", total=self.tally.total, rate="0", statuses=self._statuses()
        )
        return self

    def _statuses(self) -> str:
        t = self.tally
        return (
            f"placed {t.placed} | declined {t.declined} | retryable {t.retryable} | "
            f"unknown {t.unknown} | invalid {t.invalid}"
        )

    def _line(self) -> str:
        t = self.tally
        rate = t.rate()
        total = t.total or 0
        left = max(total - t.seen, 0)
        eta = f"{left / rate:.0f} s" if rate > 0 else "?"
        share = f" ({100 * t.seen / total:.1f} %)" if total else ""
        return f"{t.seen}/{total}{share}, {rate:.0f}/s, ETA {eta} | {self._statuses()}"

    def update(self) -> None:
        if not self.enabled:
            return
        if self._rich is not None:
            self._rich.update(
                self._task,
                completed=self.tally.seen,
                rate=f"{self.tally.rate():.0f}",
                statuses=self._statuses(),
            )
            return
        now_ = time.monotonic()
        if now_ - self._last >= 2.0:
            self._last = now_
            print(self._line(), file=sys.stderr, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self.update()
            self._rich.__exit__(None, None, None)
