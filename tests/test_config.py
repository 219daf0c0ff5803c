"""Region and environment: any casing, and an unknown value's error lists the valid ones."""

from __future__ import annotations

from typing import Any

import pytest

from klarna_async import Environment, KlarnaClient, Region, base_url_for


@pytest.mark.parametrize(
    ("given", "region"),
    [("eu", Region.EU), ("EU", Region.EU), ("Na", Region.NA), ("oC", Region.OC)],
)
def test_region_in_any_casing(given: str, region: Region) -> None:
    assert Region(given) is region


@pytest.mark.parametrize("given", ["PRODUCTION", "Playground", "playground"])
def test_environment_in_any_casing(given: str) -> None:
    assert Environment(given).value == given.lower()


@pytest.mark.parametrize(
    ("cls", "given", "message"),
    [
        (Region, "us", "region must be one of 'eu', 'na', 'oc' (any casing), got 'us'"),
        (Region, " eu", "region must be one of 'eu', 'na', 'oc' (any casing), got ' eu'"),
        (Region, None, "region must be one of 'eu', 'na', 'oc' (any casing), got NoneType"),
        (
            Environment,
            "live",
            "environment must be one of 'playground', 'production' (any casing), got 'live'",
        ),
        (Environment, 1, "environment must be one of 'playground', 'production'"),
    ],
)
def test_unknown_values_list_the_valid_ones(cls: Any, given: Any, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        cls(given)


def test_base_url_and_client_take_any_casing() -> None:
    assert base_url_for("EU", "PRODUCTION") == "https://api.klarna.com"
    assert base_url_for("Oc", "Playground") == "https://api-oc.playground.klarna.com"
    client = KlarnaClient(username="u", password="p", region="NA", environment="Production")
    assert client.region is Region.NA
    assert client.environment is Environment.PRODUCTION
    assert client.base_url == "https://api-na.klarna.com"


def test_the_client_says_what_is_valid() -> None:
    with pytest.raises(ValueError, match="region must be one of 'eu', 'na', 'oc'"):
        KlarnaClient(username="u", password="p", region="us")
    with pytest.raises(ValueError, match="environment must be one of 'playground', 'production'"):
        KlarnaClient(username="u", password="p", environment="test")
