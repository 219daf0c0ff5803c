"""Charges from a JSON Lines file, and what a results file says to do next.

Used by ``klarna-async charge`` (and by anything else that runs a charge file: the taskiq
workers keep the same records). Three pieces, all pure (no network):

* :func:`parse_charge_line`: one input line as a :class:`Charge` (its idempotency key derived
  from ``charge_id``), or why it cannot be one;
* :func:`result_record`: a :class:`ChargeResult` as one JSON line, with the time it was
  recorded and the time its key was first sent;
* :func:`load_results` and :func:`plan`: the last record of each charge, and what a resume does
  with it: skip it (placed; declined unless asked), send it again (retryable, invalid, never
  recorded), re-drive it as "may have been placed" (unknown), or refuse to (unknown, and its key
  was first sent more than 23 hours ago: Klarna keeps a key 24 hours, so a repeat after that
  could charge twice).
"""

from __future__ import annotations

import datetime as dt
import enum
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs
import orjson

from klarna_async._batch import Charge, ChargeResult, ChargeStatus
from klarna_async._errors import ApiError, OutcomeUnknownError, RequestValidationError
from klarna_async._resources.customer_tokens import derive_idempotency_key

__all__ = [
    "INVALID",
    "KEY_WINDOW_GUARD",
    "Action",
    "BadLine",
    "Line",
    "load_results",
    "now",
    "parse_charge_line",
    "parse_stamp",
    "plan",
    "result_record",
    "rewrite",
    "stamp",
]

#: The status of a line that could not be sent as it is (bad JSON, bad fields, a request the
#: spec refuses). Not a ChargeStatus: nothing of it reached Klarna, and a resume reads it again.
INVALID = "invalid"
#: Klarna keeps an idempotency key for 24 hours; an unknown charge is re-driven only within 23
#: (an hour's margin for clocks and runs in flight).
KEY_WINDOW_GUARD = dt.timedelta(hours=23)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def stamp(moment: dt.datetime) -> str:
    """A moment as the results file writes it: ISO 8601 in UTC, to the second, with a ``Z``."""
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_stamp(value: object) -> dt.datetime | None:
    """A results file's moment read back (naive means UTC); None for anything that is not one."""
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


# --- input lines --------------------------------------------------------------------------------


@attrs.frozen
class Line:
    number: int
    charge: Charge


@attrs.frozen
class BadLine:
    number: int
    problem: str
    charge_id: str | None = None


def parse_charge_line(raw: bytes, number: int, namespace: str) -> Line | BadLine:
    """One input line as a :class:`Charge`, or why it cannot be one (never sent)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return BadLine(number, f"not JSON: {exc}")
    if not isinstance(data, dict):
        return BadLine(number, "a line must be a JSON object")
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
    known_id = charge_id if isinstance(charge_id, str) and charge_id else None
    if problems or not isinstance(charge_id, str) or not isinstance(token, str):
        return BadLine(number, "; ".join(problems), known_id)
    key = explicit_key or derive_idempotency_key(namespace, charge_id)
    return Line(
        number,
        Charge(customer_token=token, request=order, idempotency_key=key, charge_id=charge_id),
    )


def _order_from_short_form(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``amount``, ``currency`` and ``subscription`` become a one-line subscription order."""
    problems = []
    amount, currency = data.get("amount"), data.get("currency")
    subscription = data.get("subscription")
    if not isinstance(amount, int) or isinstance(amount, bool):
        problems.append("$.amount: an integer in minor units is required (or give $.order)")
    elif amount < 1:
        # Said here, like every other problem of a line, not only after the request is built.
        problems.append("$.amount: must be at least 1 (minor units)")
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


# --- result records -----------------------------------------------------------------------------


def status_text(result: ChargeResult) -> str:
    """The record's status: the ChargeStatus, or ``invalid`` for a request the spec refuses."""
    if isinstance(result.error, RequestValidationError):
        return INVALID
    return result.status.value


def result_record(
    result: ChargeResult,
    line: int | None = None,
    *,
    first_attempt_at: dt.datetime | None = None,
    at: dt.datetime | None = None,
) -> dict[str, Any]:
    """A result as one JSON line: what happened, what to do next, and what finds it again.

    ``at`` is when the result was recorded; ``first_attempt_at`` when its key was first sent
    (kept across resumes: Klarna's 24-hour key window counts from there).
    """
    charge = result.charge
    recorded = at or now()
    record: dict[str, Any] = {
        "charge_id": charge.charge_id,
        "status": status_text(result),
        "idempotency_key": charge.idempotency_key,
        "attempts": result.attempts,
        "elapsed": round(result.elapsed, 4),
        "at": stamp(recorded),
    }
    if result.attempts:
        started = first_attempt_at or recorded - dt.timedelta(seconds=result.elapsed)
        record["first_attempt_at"] = stamp(started)
    if line is not None:
        record["line"] = line
    if result.order is not None:
        record["order_id"] = result.order.order_id
        record["fraud_status"] = str(result.order.fraud_status)
    error = result.error
    if error is not None:
        record["error_type"] = type(error).__name__
        last = error.last_error if isinstance(error, OutcomeUnknownError) else error
        if isinstance(last, ApiError):
            record["error_code"] = last.error_code
            record["correlation_id"] = last.correlation_id
        record["error"] = one_line(str(error))
    return record


def bad_line_record(bad: BadLine, *, at: dt.datetime | None = None) -> dict[str, Any]:
    return {
        "charge_id": bad.charge_id,
        "status": INVALID,
        "line": bad.number,
        "at": stamp(at or now()),
        "error": one_line(bad.problem),
    }


def one_line(text: str) -> str:
    return " ".join(text.split())[:500]


def load_results(path: Path) -> dict[str, dict[str, Any]]:
    """The last record of each charge in a results file, by charge id.

    A torn last line (a killed run) and anything unreadable are skipped. For a charge that was
    unknown more than once, ``first_attempt_at`` is the earliest one seen: the key window counts
    from the first attempt.
    """
    found: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return found
    with path.open("rb") as handle:
        for raw in handle:
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(record, dict):
                continue
            charge_id = record.get("charge_id")
            if not isinstance(charge_id, str) or not isinstance(record.get("status"), str):
                continue
            earlier = found.get(charge_id)
            if earlier is not None and earlier.get("status") == ChargeStatus.UNKNOWN:
                first = parse_stamp(earlier.get("first_attempt_at"))
                mine = parse_stamp(record.get("first_attempt_at"))
                if first is not None and (mine is None or first < mine):
                    record = {**record, "first_attempt_at": earlier["first_attempt_at"]}
            found[charge_id] = record
    return found


def rewrite(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Replace RESULTS atomically with ``records`` (so each charge appears in it once)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        for record in records:
            handle.write(orjson.dumps(record) + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


# --- what a resume does -------------------------------------------------------------------------


class Action(enum.Enum):
    """What to do with one charge on a resume, given its last record."""

    #: Never recorded, retryable, or invalid before: send it (again), with its key.
    SEND = "send"
    #: Unknown before: send it again with the same key, as "may have been placed".
    REDRIVE = "redrive"
    #: Placed already: nothing to do.
    SKIP_PLACED = "skip_placed"
    #: Declined by Klarna before: not repeated unless asked (--retry-failed).
    SKIP_DECLINED = "skip_declined"
    #: Unknown, and its key was first sent more than 23 hours ago: a repeat could charge twice.
    REFUSE_WINDOW = "refuse_window"


def plan(
    record: dict[str, Any] | None,
    *,
    retry_declined: bool = False,
    force_after_window: bool = False,
    at: dt.datetime | None = None,
) -> Action:
    """What a resume does with a charge whose last record is ``record`` (None: none)."""
    if record is None:
        return Action.SEND
    status = record.get("status")
    if status == ChargeStatus.PLACED:
        return Action.SKIP_PLACED
    # "failed" is what results files of version 0.1 called any charge not placed.
    if status in (ChargeStatus.DECLINED, "failed"):
        return Action.SEND if retry_declined else Action.SKIP_DECLINED
    if status == ChargeStatus.UNKNOWN:
        first = parse_stamp(record.get("first_attempt_at")) or parse_stamp(record.get("at"))
        too_old = first is None or (at or now()) - first > KEY_WINDOW_GUARD
        if too_old and not force_after_window:
            return Action.REFUSE_WINDOW
        return Action.REDRIVE
    return Action.SEND
