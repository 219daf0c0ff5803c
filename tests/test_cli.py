"""The klarna-async command: charge (input lines, results, resume after kill -9), demo."""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from klarna_async._charge_file import Action, load_results, parse_charge_line, plan
from klarna_async._cli import main
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

    def test_load_results_keeps_the_last_record_and_the_first_attempt(self, tmp_path: Path):
        """The last record of each charge wins; a torn last line is skipped; an unknown charge
        keeps the earliest first_attempt_at (the key window counts from there)."""
        out = tmp_path / "r.jsonl"
        out.write_bytes(
            b'{"charge_id": "a", "status": "retryable"}\n'
            b'{"charge_id": "a", "status": "placed"}\n'
            b'{"charge_id": "b", "status": "unknown", "first_attempt_at": "2026-11-01T10:00:00Z"}\n'
            b'{"charge_id": "b", "status": "unknown", "first_attempt_at": "2026-11-01T12:00:00Z"}\n'
            b'{"charge_id": "d", "sta'
        )
        found = load_results(out)
        assert {"a", "b"} == set(found)
        assert "placed" == found["a"]["status"]
        assert "2026-11-01T10:00:00Z" == found["b"]["first_attempt_at"]


class TestResumePlan:
    NOW = dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC)

    @pytest.mark.parametrize(
        ("record", "options", "action"),
        [
            (None, {}, Action.SEND),
            ({"status": "placed"}, {}, Action.SKIP_PLACED),
            ({"status": "placed"}, {"retry_declined": True}, Action.SKIP_PLACED),
            ({"status": "declined"}, {}, Action.SKIP_DECLINED),
            ({"status": "declined"}, {"retry_declined": True}, Action.SEND),
            ({"status": "failed"}, {}, Action.SKIP_DECLINED),  # results of version 0.1
            ({"status": "retryable"}, {}, Action.SEND),
            ({"status": "invalid"}, {}, Action.SEND),
            (
                {"status": "unknown", "first_attempt_at": "2026-11-02T00:00:00Z"},
                {},
                Action.REDRIVE,
            ),
            (
                {"status": "unknown", "first_attempt_at": "2026-11-01T12:59:00Z"},
                {},
                Action.REFUSE_WINDOW,
            ),
            (
                {"status": "unknown", "first_attempt_at": "2026-11-01T12:59:00Z"},
                {"force_after_window": True},
                Action.REDRIVE,
            ),
            ({"status": "unknown"}, {}, Action.REFUSE_WINDOW),  # no time: assume the worst
        ],
    )
    def test_what_a_resume_does(self, record, options, action):
        """Placed and declined are skipped; unknown is re-driven within 23 h of its first
        attempt and refused after; the rest is sent."""
        assert action == plan(record, at=self.NOW, **options)


class TestChargeCommand:
    def test_sandbox_run(self, tmp_path: Path, capsys):
        """--sandbox: every valid line placed; each bad line reported once, the same way, on
        stderr and in the results file, with its line number, and counted once."""
        source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
        bad_order = {"purchase_currency": "EUR", "order_amount": 5, "order_lines": []}
        write_input(
            source,
            40,
            extra=[
                b"{oops",
                b"[1]",
                b'{"charge_id": "x", "customer_token": "t"}',
                orjson.dumps(
                    {
                        "charge_id": "neg",
                        "customer_token": "t",
                        "amount": -5,
                        "currency": "EUR",
                        "subscription": PLAN,
                    }
                ),
                orjson.dumps({"charge_id": "o", "customer_token": "t", "order": bad_order}),
            ],
        )
        code = main(["charge", str(source), "--out", str(out), "--sandbox", "--no-progress"])
        captured = capsys.readouterr()
        assert 1 == code  # invalid lines make the run not clean
        for number in range(41, 46):
            assert 1 == captured.err.count(f"line {number}: invalid, not sent"), captured.err
        results = read_results(out)
        assert 45 == len(results)
        assert Counter({"placed": 40, "invalid": 5}) == Counter(r["status"] for r in results)
        assert {41, 42, 43, 44, 45} == {r["line"] for r in results if r["status"] == "invalid"}
        assert re.search(r"invalid lines \(not sent\)\s+5\b", captured.out), captured.out
        assert re.search(r"placed\s+40\b", captured.out)
        for record in results:
            assert record["at"].endswith("Z")

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


class TestResumeRules:
    def test_wrong_password_stops_early_and_resume_places_everything(self, tmp_path: Path):
        """A run with a wrong password stops at the first 401 (exit 4), sending a handful of
        requests, not one per charge; --resume with the right one places every charge once."""
        source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
        total = 300
        write_input(source, total)
        with _sandbox() as url:
            env = {**os.environ, "KLARNA_USERNAME": "test_user", "PYTHONUNBUFFERED": "1"}
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
                "4",
                "--no-progress",
            ]
            wrong = subprocess.run(
                command,
                env={**env, "KLARNA_PASSWORD": "wrong"},
                capture_output=True,
                timeout=60,
                check=False,
            )
            assert 4 == wrong.returncode, wrong.stderr.decode()[-2000:]
            assert "401" in wrong.stderr.decode()
            assert "not sent (run stopped)" in wrong.stdout.decode()
            sent = _ledger(url)["request_counts"]["customer_tokens.create_order"]
            assert sent <= 4 + 4  # the first 401 plus what was already in flight
            right = subprocess.run(
                [*command, "--resume"],
                env={**env, "KLARNA_PASSWORD": "test_password"},
                capture_output=True,
                timeout=60,
                check=False,
            )
            assert 0 == right.returncode, right.stderr.decode()[-2000:]
            ledger = _ledger(url)
        results = load_results(out)
        assert total == len(results)
        assert {"placed"} == {r["status"] for r in results.values()}
        per_key = Counter(o["idempotency_key"] for o in ledger["orders"])
        assert total == len(per_key)
        assert {1} == set(per_key.values())

    def test_unknown_past_the_key_window_is_not_sent_again(self, tmp_path: Path, capsys):
        """An unknown charge first sent 30 hours ago: refused with the reason, exit 3; with
        --force-after-window it is sent."""
        source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
        write_input(source, 2)
        old = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=30)).isoformat()
        recent = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
        out.write_bytes(
            orjson.dumps(
                {"charge_id": "sub-0:2026-11", "status": "unknown", "first_attempt_at": old}
            )
            + b"\n"
            + orjson.dumps(
                {"charge_id": "sub-1:2026-11", "status": "unknown", "first_attempt_at": recent}
            )
            + b"\n"
        )
        args = ["charge", str(source), "--out", str(out), "--sandbox", "--no-progress", "--resume"]
        assert 3 == main(args)
        captured = capsys.readouterr()
        assert "line 1: charge 'sub-0:2026-11' not sent again" in captured.err
        assert "24 hours" in captured.err
        results = load_results(out)
        assert "unknown" == results["sub-0:2026-11"]["status"]
        assert "placed" == results["sub-1:2026-11"]["status"]
        # The re-driven charge keeps the time its key was first sent.
        kept = dt.datetime.fromisoformat(results["sub-1:2026-11"]["first_attempt_at"])
        assert abs(kept - dt.datetime.fromisoformat(recent)) < dt.timedelta(seconds=1)
        assert 0 == main([*args, "--force-after-window"])
        assert "placed" == load_results(out)["sub-0:2026-11"]["status"]

    def test_resume_sends_retryable_and_invalid_lines_again(self, tmp_path: Path):
        """Retryable (never charged) and invalid lines are sent on --resume; placed are not."""
        source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
        write_input(source, 3)
        out.write_bytes(
            b'{"charge_id": "sub-0:2026-11", "status": "placed", "order_id": "o-0"}\n'
            b'{"charge_id": "sub-1:2026-11", "status": "retryable"}\n'
            b'{"charge_id": "sub-2:2026-11", "status": "invalid"}\n'
        )
        args = ["charge", str(source), "--out", str(out), "--sandbox", "--no-progress", "--resume"]
        assert 0 == main(args)
        results = load_results(out)
        assert "o-0" == results["sub-0:2026-11"]["order_id"]
        assert {"placed"} == {r["status"] for r in results.values()}
        # The next resume compacts RESULTS to one line per charge, and sends nothing.
        assert 0 == main(args)
        assert 3 == len(read_results(out))
        assert results == load_results(out)

    def test_declined_needs_retry_failed(self, tmp_path: Path, capsys):
        """A declined charge stays declined on --resume (exit 1), unless --retry-failed."""
        source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
        write_input(source, 1)
        out.write_bytes(b'{"charge_id": "sub-0:2026-11", "status": "declined"}\n')
        args = ["charge", str(source), "--out", str(out), "--sandbox", "--no-progress", "--resume"]
        assert 1 == main(args)
        assert "declined before, skipped" in capsys.readouterr().out
        assert 0 == main([*args, "--retry-failed"])


class TestCommandLine:
    @pytest.mark.parametrize(
        ("make", "message"),
        [
            (lambda d: ["charge", str(d), "--out", str(d / "o")], "the input is not a file"),
            (
                lambda d: ["charge", str(d / "in.jsonl"), "--out", str(d / "no" / "o")],
                "the directory of --out does not exist",
            ),
            (
                lambda d: ["charge", str(d / "in.jsonl"), "--out", str(d)],
                "--out is not a file",
            ),
            (
                lambda d: ["charge", str(d / "in.jsonl"), "--out", str(d / "o"), "--retry-failed"],
                "only make sense with --resume",
            ),
        ],
    )
    def test_usage_and_file_errors_are_one_line_and_exit_2(self, tmp_path, capsys, make, message):
        write_input(tmp_path / "in.jsonl", 1)
        assert 2 == main([*make(tmp_path), "--sandbox"])
        err = capsys.readouterr().err
        assert message in err
        assert 1 == len(err.strip().splitlines()), err
        assert "Traceback" not in err

    def test_credentials_message(self, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch):
        """Names what is missing once, and says region and environment are optional."""
        monkeypatch.setenv("KLARNA_USERNAME", "u")
        monkeypatch.delenv("KLARNA_PASSWORD", raising=False)
        write_input(tmp_path / "in.jsonl", 1)
        assert 2 == main(["charge", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert 1 == err.count("KLARNA_PASSWORD")
        assert "KLARNA_USERNAME" not in err.split("(")[0]
        assert "optional" in err

    @pytest.mark.parametrize("command", ["charge", "demo", "sandbox"])
    def test_help_is_plain_words_with_defaults(self, command: str, capsys):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        for markup in ("``", ":class:", ":mod:"):
            assert markup not in text
        assert len(text.split("\n\n")) >= 3  # a description, not just the options
        if command == "charge":
            for default in ("(default: 32)", "(default: 5)", "45/s", "klarna-async-charge"):
                assert default in text

    def test_ctrl_c_prints_the_summary_and_exits_130(self, tmp_path: Path):
        source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
        write_input(source, 5000)
        with _sandbox() as url:
            env = {
                **os.environ,
                "KLARNA_USERNAME": "test_user",
                "KLARNA_PASSWORD": "test_password",
                "PYTHONUNBUFFERED": "1",
            }
            run = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "klarna_async",
                    "charge",
                    str(source),
                    "--out",
                    str(out),
                    "--base-url",
                    url,
                    "--rate-limit",
                    "500",
                    "--no-progress",
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and _lines(out) < 50:
                time.sleep(0.05)
            run.send_signal(signal.SIGINT)
            stdout, stderr = run.communicate(timeout=20)
        assert 130 == run.returncode, stderr.decode()[-2000:]
        text = stdout.decode()
        assert "interrupted after" in text
        assert re.search(r"placed\s+\d+", text)
        assert "--resume" in text


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


def _ledger(url: str) -> dict[str, Any]:
    answer = urllib.request.urlopen(f"{url}/_fake/ledger", timeout=5)  # noqa: S310 - loopback
    ledger: dict[str, Any] = orjson.loads(answer.read())
    return ledger


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
    # The sandbox is scenery here, not the code under test: no development mode (its asyncio
    # debug warnings about slow callbacks are noise under load), and its stderr goes to a file,
    # not a pipe that nobody drains while the charges run.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDEVMODE", "PYTHONASYNCIODEBUG")}
    command = [sys.executable, "-m", "klarna_async", "sandbox", "--port", str(port)]
    command += ["--accept-unknown-tokens", "--seed", "5"]
    with (
        tempfile.TemporaryFile() as errors,
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=errors) as proc,
    ):
        try:
            assert proc.stdout is not None
            ready = proc.stdout.readline().decode()
            errors.seek(0)
            assert "ready at" in ready, (ready, errors.read()[-2000:])
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
