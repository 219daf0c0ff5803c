"""Micro-benchmarks (pytest-benchmark) of the CPU-bound steps of one recurring charge.

Run by ``python -m benchmarks --only micro``, or directly::

    python -m pytest benchmarks/test_micro.py --benchmark-only

Every input is built once, at import, so each benchmark times only its step. The two orjson
baselines show the floor: what a hand-written body or answer costs without models.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import orjson
from multidict import CIMultiDict, CIMultiDictProxy

from benchmarks.peer import ORDER
from klarna_async._converter import to_dict, to_json
from klarna_async._models import Order, TokenOrderRequest
from klarna_async._responses import api_error, decode_success
from klarna_async._validation import encode_request, prepare, validate
from tests.samples import token_order


class Benchmark(Protocol):
    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...


REQUEST = token_order()
MAPPING = to_dict(REQUEST)
BODY = to_json(REQUEST)
# The mapping as a web framework hands it over (``await request.json()``): parsed JSON, plain
# strings for the enums.
PARSED = orjson.loads(BODY)
ANSWER = orjson.dumps(ORDER)
ANSWER_HEADERS = CIMultiDictProxy(
    CIMultiDict({"Content-Type": "application/json", "Klarna-Correlation-Id": "c0ffee"})
)
ERROR_503 = orjson.dumps(
    {
        "error_code": "SERVICE_UNAVAILABLE",
        "error_messages": ["A temporary internal Klarna error occurred. Try again later."],
        "correlation_id": "c0ffee",
    }
)


# --- requests -----------------------------------------------------------------------------------


def token_order_dict() -> dict[str, Any]:
    """tests.samples.token_order() as a caller would write the dict (the raw loop's body)."""
    return {
        "purchase_currency": "EUR",
        "order_amount": 999,
        "order_tax_amount": 0,
        "order_lines": [
            {
                "name": "Streaming Service Monthly",
                "quantity": 1,
                "unit_price": 999,
                "total_amount": 999,
                "type": "digital",
                "reference": "19-402",
                "tax_rate": 0,
                "total_discount_amount": 0,
                "total_tax_amount": 0,
                "subscription": {
                    "name": "Premium Monthly",
                    "interval": "MONTH",
                    "interval_count": 1,
                },
            }
        ],
        "auto_capture": True,
        "merchant_reference1": "45aa52f387871e3a210645d4",
        "merchant_data": "optional string",
    }


def test_build_request(benchmark: Benchmark) -> None:
    """The caller's side: a one-line TokenOrderRequest (attrs models)."""
    assert isinstance(benchmark(token_order), TokenOrderRequest)


def test_validate(benchmark: Benchmark) -> None:
    assert benchmark(validate, REQUEST) is None


def test_validate_without_amounts(benchmark: Benchmark) -> None:
    assert benchmark(validate, REQUEST, check_amounts=False) is None


def test_to_json(benchmark: Benchmark) -> None:
    assert benchmark(to_json, REQUEST) == BODY


def test_prepare_model(benchmark: Benchmark) -> None:
    model, body = benchmark(prepare, REQUEST, TokenOrderRequest)
    assert model is REQUEST
    assert body == BODY


def test_prepare_mapping(benchmark: Benchmark) -> None:
    model, body = benchmark(prepare, MAPPING, TokenOrderRequest)
    assert model == REQUEST
    assert body == BODY


def test_encode_model(benchmark: Benchmark) -> None:
    """What a resource pays per charge for a TokenOrderRequest: validation and JSON."""
    assert benchmark(encode_request, REQUEST, TokenOrderRequest) == BODY


def test_encode_mapping(benchmark: Benchmark) -> None:
    """The same for the charge given as parsed JSON (the README's FastAPI example)."""
    assert benchmark(encode_request, PARSED, TokenOrderRequest) == BODY


def test_build_mapping(benchmark: Benchmark) -> None:
    """The caller's side for a mapping: the same one-line body as a dict literal."""
    assert benchmark(token_order_dict) == PARSED


def test_orjson_dumps_baseline(benchmark: Benchmark) -> None:
    """The raw loop's request cost: orjson.dumps of the same body as a dict."""
    assert benchmark(orjson.dumps, MAPPING) == BODY


# --- responses ----------------------------------------------------------------------------------


def test_decode_success(benchmark: Benchmark) -> None:
    order = benchmark(decode_success, 200, ANSWER_HEADERS, ANSWER, Order)
    assert order.order_id == ORDER["order_id"]


def test_orjson_loads_baseline(benchmark: Benchmark) -> None:
    """The raw loop's answer cost: orjson.loads of the same answer."""
    assert benchmark(orjson.loads, ANSWER)["order_id"] == ORDER["order_id"]


def test_api_error_503(benchmark: Benchmark) -> None:
    """The most common error answer in a soak."""
    error = benchmark(api_error, 503, ANSWER_HEADERS, ERROR_503)
    assert error.error_code == "SERVICE_UNAVAILABLE"
