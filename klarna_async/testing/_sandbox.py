"""``klarna-async sandbox``: the fake Klarna as a standalone HTTP server.

For demos without credentials, for benchmarks and fault soaks against a separate process, and for
test suites in other languages::

    $ klarna-async sandbox --seed 42 --fault-503 0.05
    fake Klarna ready at http://127.0.0.1:8765 username=test_user password=test_password seed=42

(also ``python -m klarna_async.testing._sandbox ...``). It serves the Payments and Customer Token
endpoints under the printed URL with HTTP Basic auth, and test controls without auth under
``/_fake/`` (see :mod:`klarna_async.testing._app`): ``GET /_fake/ledger``, ``POST
/_fake/authorize`` (``{"session_id", "outcome"}`` -> ``{"authorization_token"}``), ``POST
/_fake/customer-tokens`` (-> ``{"token_id"}``), ``POST /_fake/clock/advance`` (``{"seconds"}``),
``POST /_fake/faults``, ``POST /_fake/reset``. It runs until SIGINT (Ctrl-C) or SIGTERM and then
exits with status 0. It listens on 127.0.0.1 unless told otherwise; it is a fake with fixed
credentials and unauthenticated controls, so do not expose it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

__all__ = ["DEFAULT_PORT", "add_arguments", "main", "run"]

DEFAULT_PORT = 8765


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a probability must be within [0, 1]: {text!r}")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the sandbox's options to ``parser``."""
    server = parser.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1", help="address to listen on [127.0.0.1]")
    server.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (0: any free port) [{DEFAULT_PORT}]"
    )
    server.add_argument("--username", default="test_user", help="accepted username [test_user]")
    server.add_argument(
        "--password", default="test_password", help="accepted password [test_password]"
    )
    server.add_argument(
        "--rate-limit",
        type=_positive,
        default=None,
        metavar="RPS",
        help="requests per second before 429 (default: no limit)",
    )
    server.add_argument(
        "--keep-requests",
        type=int,
        default=50_000,
        metavar="N",
        help="how many requests the ledger's request log keeps [50000]",
    )
    server.add_argument(
        "--lenient-amounts",
        action="store_true",
        help="do not enforce Klarna's amount and tax arithmetic on carts",
    )
    server.add_argument(
        "--accept-unknown-tokens",
        action="store_true",
        help="treat any unknown customer token id as an active token instead of 404",
    )
    faults = parser.add_argument_group("faults (probabilities per request, all endpoints)")
    faults.add_argument("--seed", type=int, default=None, help="fault seed (default: random)")
    faults.add_argument(
        "--fault-503", type=_probability, default=0.0, metavar="P", help="503 SERVICE_UNAVAILABLE"
    )
    faults.add_argument(
        "--fault-drop",
        type=_probability,
        default=0.0,
        metavar="P",
        help="process and commit, then drop the connection without answering",
    )
    faults.add_argument(
        "--fault-latency",
        type=_probability,
        default=0.0,
        metavar="P",
        help="answer after --latency-seconds",
    )
    faults.add_argument(
        "--latency-seconds",
        type=_non_negative,
        default=2.0,
        metavar="S",
        help="delay of a latency fault [2.0]",
    )
    faults.add_argument(
        "--fault-reset",
        type=_probability,
        default=0.0,
        metavar="P",
        help="reset the connection before processing",
    )
    faults.add_argument(
        "--fault-html",
        type=_probability,
        default=0.0,
        metavar="P",
        help="an HTML 500/502/504 page as from a proxy (split evenly)",
    )


async def _serve(args: argparse.Namespace) -> int:
    from klarna_async.testing._app import FakeKlarna

    fake = FakeKlarna(
        username=args.username,
        password=args.password,
        host=args.host,
        port=args.port,
        seed=args.seed,
        rate_limit=args.rate_limit,
        keep_requests=args.keep_requests,
        strict_amounts=not args.lenient_amounts,
        accept_unknown_tokens=args.accept_unknown_tokens,
        latency_seconds=args.latency_seconds,
    )
    html = args.fault_html / 3
    fake.faults.set_rates(
        service_unavailable=args.fault_503,
        drop_after_commit=args.fault_drop,
        latency=args.fault_latency,
        reset_before=args.fault_reset,
        html_500=html,
        html_502=html,
        html_504=html,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await fake.start()
    except OSError as error:
        print(
            f"klarna-async sandbox: cannot listen on {args.host}:{args.port}: {error}",
            file=sys.stderr,
        )
        return 1
    try:
        print(
            f"fake Klarna ready at {fake.url} username={args.username} "
            f"password={args.password} seed={fake.faults.seed} (controls: /_fake/, Ctrl-C stops)",
            flush=True,
        )
        await stop.wait()
    finally:
        await fake.stop()
    print("fake Klarna stopped", flush=True)
    return 0


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; the exit status (0 after a clean stop)."""
    try:
        return asyncio.run(_serve(args))
    except KeyboardInterrupt:  # platforms without loop signal handlers
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="klarna-async sandbox", description="Serve a fake Klarna over HTTP."
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
