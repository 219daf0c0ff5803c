"""``klarna-async sandbox``: the fake Klarna as a standalone HTTP server.

For demos without credentials, for benchmarks and fault soaks against a separate process, and for
test suites in other languages::

    $ klarna-async sandbox --seed 42 --fault-503 0.05 --fault envoy_503_committed=0.01
    fake Klarna ready at http://127.0.0.1:8765 username=test_user password=test_password seed=42

(also ``python -m klarna_async.testing._sandbox ...``). It serves the Payments, Customer Token
and Order Management endpoints under the printed URL with HTTP Basic auth, and test controls
without auth under ``/_fake/``: ``GET /_fake/`` lists them all, with the fault names and options
(see :mod:`klarna_async.testing._app`). ``--help`` shows, as curl lines that work, how another
process gets an authorization token and a customer token, charges it and captures the order
(:data:`HOW_TO`; a test runs them). It
runs until SIGINT (Ctrl-C) or SIGTERM and then exits with status 0. It listens on 127.0.0.1
unless told otherwise; it is a fake with fixed credentials and unauthenticated controls, so do
not expose it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

__all__ = ["DEFAULT_PORT", "HOW_TO", "add_arguments", "main", "run"]

DEFAULT_PORT = 8765

DESCRIPTION = (
    "Serve a fake Klarna (Payments, Customer Token and Order Management APIs, with a ledger, "
    "fault injection and test controls under /_fake/) on loopback, for tests and demos "
    "without credentials."
)

#: How another process gets an authorization token and a customer token (``--help`` shows it;
#: tests/test_sandbox.py runs every curl line in it against a sandbox). ``-> {...}`` shows the
#: answer: a value ending in ``_ID`` or ``_TOKEN`` names what later lines use, another one
#: (``ACCEPTED``) is the value itself.
HOW_TO = """\
From another process (the API takes the credentials, /_fake/ takes none;
GET /_fake/ lists every control, fault and option):

  # 1. A payment session (intent "tokenize": the customer agrees to be charged later)
  curl -s -u test_user:test_password -H 'Content-Type: application/json' \\
    -d '{"intent": "tokenize", "purchase_country": "DE", "purchase_currency": "EUR",
         "locale": "de-DE", "order_amount": 1000, "order_lines": [{"name": "Plan",
         "quantity": 1, "unit_price": 1000, "total_amount": 1000}]}' \\
    http://127.0.0.1:8765/payments/v1/sessions
    -> {"session_id": "SESSION_ID", "client_token": "...", ...}

  # 2. The customer approves it in Klarna's widget: an authorization token
  curl -s -d '{"session_id": "SESSION_ID"}' http://127.0.0.1:8765/_fake/authorize
    -> {"authorization_token": "AUTHORIZATION_TOKEN"}

  # 3. The merchant turns it into a customer token
  curl -s -u test_user:test_password -H 'Content-Type: application/json' \\
    -d '{"description": "Monthly plan", "intended_use": "SUBSCRIPTION", "locale": "de-DE",
         "purchase_country": "DE", "purchase_currency": "EUR"}' \\
    http://127.0.0.1:8765/payments/v1/authorizations/AUTHORIZATION_TOKEN/customer-token
    -> {"token_id": "CUSTOMER_TOKEN", ...}

  # (or skip 1-3: a ready customer token in one call)
  curl -s -X POST http://127.0.0.1:8765/_fake/customer-tokens
    -> {"token_id": "OTHER_CUSTOMER_TOKEN"}

  # 4. Charge it, with an idempotency key, and ask the ledger what that key placed
  curl -s -u test_user:test_password -H 'Content-Type: application/json' \\
    -H 'Klarna-Idempotency-Key: 3f1c0b9e-2d4a-4c8e-9a57-6b2f1e0d7c11' \\
    -d '{"purchase_currency": "EUR", "order_amount": 1000, "order_tax_amount": 0,
         "order_lines": [{"name": "Plan", "quantity": 1, "unit_price": 1000,
         "total_amount": 1000}]}' \\
    http://127.0.0.1:8765/customer-token/v1/tokens/CUSTOMER_TOKEN/order
    -> {"order_id": "ORDER_ID", "fraud_status": "ACCEPTED", ...}
  curl -s http://127.0.0.1:8765/_fake/ledger/keys/3f1c0b9e-2d4a-4c8e-9a57-6b2f1e0d7c11
    -> {"idempotency_key": "...", "orders": 1, ...}

  # 5. Order Management: capture part of that order, then read it back
  curl -s -u test_user:test_password -H 'Content-Type: application/json' \\
    -H 'Klarna-Idempotency-Key: 8d2e6c1a-5b7f-4e3a-9c0d-1f2a3b4c5d6e' \\
    -d '{"captured_amount": 600}' \\
    http://127.0.0.1:8765/ordermanagement/v1/orders/ORDER_ID/captures
    -> 201, Capture-Id: CAPTURE_ID
  curl -s -u test_user:test_password http://127.0.0.1:8765/ordermanagement/v1/orders/ORDER_ID
    -> {"status": "PART_CAPTURED", "captured_amount": 600, "remaining_authorized_amount": 400, ...}

  # (an order straight into Order Management, a pending order's fraud decision with
  # Klarna's notification, the notifications sent: POST /_fake/orders, see GET /_fake/)

  # Faults and options, e.g. Envoy's 503 after the order was placed, then a 409 while a
  # key is still being processed
  curl -s -d '{"script": {"customer_tokens.create_order": ["envoy_503_committed"]},
              "options": {"in_flight": "conflict"}}' http://127.0.0.1:8765/_fake/faults
    -> {"seed": ...}
"""


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


def _fault_rate(text: str) -> tuple[str, float]:
    from klarna_async.testing._faults import RATE_NAMES

    name, sep, rate = text.partition("=")
    name = name.strip().lower()
    if not sep or name not in RATE_NAMES or name == "latency_seconds":
        raise argparse.ArgumentTypeError(
            f"expected NAME=P with NAME a fault (see GET /_fake/), got {text!r}"
        )
    return name, _probability(rate)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the sandbox's options to ``parser``, and its description and how-to if it has none."""
    if parser.description is None:
        parser.description = DESCRIPTION
    if parser.epilog is None:
        parser.epilog = HOW_TO
        # Keep the how-to's line breaks (argparse would rewrap it into one paragraph).
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
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
        "--keep-orders",
        type=int,
        default=50_000,
        metavar="N",
        help="how many orders the ledger keeps in detail; counts stay exact [50000]",
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
    faults.add_argument(
        "--fault",
        type=_fault_rate,
        action="append",
        default=[],
        metavar="NAME=P",
        help="any fault by name, e.g. envoy_503_committed=0.01 (repeatable; GET /_fake/ lists "
        "them)",
    )
    options = parser.add_argument_group("options (Klarna documents neither)")
    options.add_argument(
        "--in-flight",
        choices=("process", "conflict", "wait"),
        default="process",
        help="a request whose idempotency key is still being processed: process it, answer "
        "409 CONFLICT, or wait and replay [process]",
    )
    options.add_argument(
        "--check-order",
        choices=("replay_first", "state_first"),
        default="replay_first",
        help="replay a stored answer first, or check the token and body first [replay_first]",
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
        keep_orders=args.keep_orders,
        strict_amounts=not args.lenient_amounts,
        accept_unknown_tokens=args.accept_unknown_tokens,
        latency_seconds=args.latency_seconds,
    )
    html = args.fault_html / 3
    rates = {
        "service_unavailable": args.fault_503,
        "drop_after_commit": args.fault_drop,
        "latency": args.fault_latency,
        "reset_before": args.fault_reset,
        "html_500": html,
        "html_502": html,
        "html_504": html,
    }
    for name, rate in args.fault:
        rates[name] = rates.get(name, 0.0) + rate
    try:
        fake.faults.set_rates(**rates)
    except ValueError as error:
        print(f"klarna-async sandbox: {error}", file=sys.stderr)
        return 2
    fake.faults.set_options(in_flight=args.in_flight, check_order=args.check_order)
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
    parser = argparse.ArgumentParser(prog="klarna-async sandbox")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
