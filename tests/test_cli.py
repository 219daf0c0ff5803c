"""The klarna-async command: charge (input lines, results, resume after kill -9), demo."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from klarna_async._cli import load_settled, main, parse_charge_line
from klarna_async._demo import run_demo

PLAN = {"name": "Premium", "interval": "MONTH", "interval_count": 1}


def write_input(path: Path, n: int, *, extra: list[bytes] = ()) -> None:  # type: ignore[assignment]
    with path.open("wb") as handle:
        for i in range(n):
            line = {
                "charge_id": f"sub-{i}:2026-11",
                "customer_token": f"tok-{i % 25:04d}-abcdef",
                "amount": 999 + i % 5,
                "currency": "EUR",
                "subscription": PLAN,
            }
            handle.write(orjson.dumps(line) + b"\n")
        for raw in extra:
            handle.write(raw + b"\n")


def read_results(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


class TestInputLines:
    def test_short_form(self):
        """amount, currency and subscription make a valid one-line subscription order."""
        line = parse_charge_line(
            orjson.dumps(
                {
                    "charge_id": "a",
                    "customer_token": "t",
                    "amount": 1250,
                    "currency": "EUR",
                    "subscription": PLAN,
                    "tax_rate": 2500,
                }
            ),
            1,
            "ns",
        )
        charge = line.charge  # type: ignore[union-attr]
        body = charge.request
        assert (1250, 250) == (body["order_amount"], body["order_tax_amount"])
        assert PLAN == body["order_lines"][0]["subscription"]

    def test_full_order_form_and_explicit_key(self):
        """A full order body and an explicit key are taken as they are."""
        order = {"purchase_currency": "EUR", "order_amount": 1}
        line = parse_charge_line(
            orjson.dumps(
                {"charge_id": "a", "customer_token": "t", "order": order, "idempotency_key": "k"}
            ),
            1,
            "ns",
        )
        assert ("k", order) == (line.charge.idempotency_key, line.charge.request)  # type: ignore[union-attr]

    @pytest.mark.parametrize(
        ("raw", "problem"),
        [
            (b"{not json", "not JSON"),
            (b"[1]", "JSON object"),
            (
                b'{"customer_token": "t", "amount": 1, "currency": "EUR", "subscription": {}}',
                "$.charge_id",
            ),
            (b'{"charge_id": "a", "customer_token": "t"}', "$.amount"),
            (b'{"charge_id": "a", "customer_token": "t", "order": 5}', "$.order"),
        ],
    )
    def test_bad_lines(self, raw: bytes, problem: str):
        """Bad lines say what is wrong, with the JSON path."""
        line = parse_charge_line(raw, 7, "ns")
        assert 7 == line.number
        assert problem in line.problem  # type: ignore[union-attr]

    def test_keys_are_deterministic(self):
        """The same charge id always gives the same key; so re-runs cannot charge twice."""
        raw = orjson.dumps(
            {
                "charge_id": "sub-1:2026-11",
                "customer_token": "t",
                "amount": 1,
                "currency": "EUR",
                "subscription": PLAN,
            }
        )
        first = parse_charge_line(raw, 1, "ns").charge.idempotency_key  # type: ignore[union-attr]
        again = parse_charge_line(raw, 9, "ns").charge.idempotency_key  # type: ignore[union-attr]
        other = parse_charge_line(raw, 1, "other").charge.idempotency_key  # type: ignore[union-attr]
        assert first == again != other

    def test_load_settled_drops_unknown_and_torn_lines(self, tmp_path: Path):
        """Resume keeps placed and failed, drops unknown and a half-written last line."""
        out = tmp_path / "r.jsonl"
        out.write_bytes(
            b'{"charge_id": "a", "status": "placed"}\n'
            b'{"charge_id": "b", "status": "unknown"}\n'
            b'{"charge_id": "c", "status": "failed"}\n'
            b'{"charge_id": "d", "sta'
        )
        assert {"a", "c"} == set(load_settled(out))


class TestChargeCommand:
    def test_sandbox_run(self, tmp_path: Path, capsys):
        """--sandbox: every valid line placed, bad lines reported by number and not sent."""
        source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
        write_input(source, 40, extra=[b"{oops", b'{"charge_id": "x", "customer_token": "t"}'])
        code = main(["charge", str(source), "--out", str(out), "--sandbox", "--no-progress"])
        captured = capsys.readouterr()
        assert 1 == code  # invalid lines make the run not clean
        assert "line 41: skipped, not sent" in captured.err
        assert "line 42: skipped, not sent" in captured.err
        results = read_results(out)
        assert 40 == len(results)
        assert {"placed"} == {r["status"] for r in results}
        assert "placed" in captured.out

    def test_verbose_logs_retries_without_secrets(self, tmp_path: Path, capsys):
        """-v shows each retry on stderr, with masked tokens and no credentials."""
        source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
        line = {
            "charge_id": "c1",
            "customer_token": "tok-0001-abcdef-secret-9999",
            "amount": 999,
            "currency": "EUR",
            "subscription": PLAN,
        }
        source.write_bytes(orjson.dumps(line) + b"\n")
        original = logging.getLogger("klarna_async").handlers[:]
        try:
            import klarna_async.testing._app as fake_app

            real_init = fake_app.FakeKlarna.__init__

            def flaky(self: Any, **options: Any) -> None:
                real_init(self, **options)
                self.faults.script(
                    "customer_tokens.create_order", [fake_app.Fault.SERVICE_UNAVAILABLE]
                )

            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(fake_app.FakeKlarna, "__init__", flaky)
                code = main(
                    ["charge", str(source), "--out", str(out), "--sandbox", "--no-progress", "-v"]
                )
        finally:
            logging.getLogger("klarna_async").handlers[:] = original
            logging.getLogger("klarna_async").setLevel(logging.NOTSET)
        err = capsys.readouterr().err
        assert 0 == code
        assert "retrying" in err
        assert "****9999" in err
        assert "secret" not in err
        assert "test_password" not in err

    def test_usage_errors(self, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch):
        """Missing input, missing credentials, conflicting options: exit 2 with a message."""
        monkeypatch.delenv("KLARNA_USERNAME", raising=False)
        assert 2 == main(["charge", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
        source = tmp_path / "in.jsonl"
        write_input(source, 1)
        assert 2 == main(["charge", str(source), "--out", str(tmp_path / "o")])
        assert "KLARNA_USERNAME" in capsys.readouterr().err
        assert 2 == main(
            [
                "charge",
                str(source),
                "--out",
                str(tmp_path / "o"),
                "--sandbox",
                "--base-url",
                "http://127.0.0.1:1",
            ]
        )
        assert 2 == main([])

    def test_kill_9_then_resume(self, tmp_path: Path):
        """A run killed with SIGKILL mid-way, then --resume: every charge appears exactly once
        in RESULTS and the server's ledger holds exactly one order per charge."""
        source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
        total = 600
        write_input(source, total)
        with _sandbox() as url:
            env = {
                **os.environ,
                "KLARNA_USERNAME": "test_user",
                "KLARNA_PASSWORD": "test_password",
                "PYTHONUNBUFFERED": "1",
            }
            command = [
                sys.executable,
                "-m",
                "klarna_async",
                "charge",
                str(source),
                "--out",
                str(out),
                "--base-url",
                url,
                "--concurrency",
                "8",
                "--no-progress",
            ]
            run = subprocess.Popen(
                [*command, "--rate-limit", "150"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and _lines(out) < 100:
                    time.sleep(0.05)
                os.kill(run.pid, signal.SIGKILL)
            finally:
                run.wait(timeout=10)
            done_before = _lines(out)
            assert 0 < done_before < total, "the kill came too late to test anything"

            resumed = subprocess.run(
                [*command, "--resume"], env=env, capture_output=True, timeout=60, check=False
            )
            assert 0 == resumed.returncode, resumed.stderr.decode()[-2000:]
            ledger = orjson.loads(urllib.request.urlopen(f"{url}/_fake/ledger", timeout=5).read())  # noqa: S310

        results = read_results(out)
        ids = Counter(r["charge_id"] for r in results)
        assert total == len(ids)
        assert {1} == set(ids.values())
        assert {"placed"} == {r["status"] for r in results}
        per_key = Counter(o["idempotency_key"] for o in ledger["orders"])
        assert total == len(per_key)
        assert {1} == set(per_key.values())
        assert {r["order_id"] for r in results} == {o["order_id"] for o in ledger["orders"]}


class TestDemo:
    async def test_demo_tells_the_story_and_the_verdict(self):
        """The README's main command: every section, and the ledger's clean verdict."""
        out = io.StringIO()
        assert 0 == await run_demo(charges=60, seed=3, out=out)
        text = out.getvalue()
        for part in (
            "fraud_status ACCEPTED",
            "fraud_status PENDING",
            "NOT_FOUND",
            "customer token",
            "buy_and_tokenize",
            "duplicates: 0",
            "OK:",
        ):
            assert part in text


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _sandbox() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "klarna_async",
            "sandbox",
            "--port",
            str(port),
            "--accept-unknown-tokens",
            "--seed",
            "5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline().decode()
        assert "ready at" in ready, ready
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - only if shutdown hangs
            proc.kill()
            proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
