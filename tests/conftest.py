"""Shared test setup."""

from __future__ import annotations

from typing import Any
from unittest import mock

import aioresponses.core
import pytest
from aiohttp import ClientResponse


class _CompatResponse(ClientResponse):
    # aioresponses 0.7.9 builds responses without the `stream_writer` argument that aiohttp 3.14
    # added; give it a stand-in so the mock keeps working on current aiohttp.
    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", mock.Mock(output_size=0))
        super().__init__(method, url, **kwargs)


@pytest.fixture(autouse=True)
def _aioresponses_on_current_aiohttp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioresponses.core, "ClientResponse", _CompatResponse)
