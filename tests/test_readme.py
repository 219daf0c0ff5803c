"""The README's FastAPI snippet, run as written against the fake Klarna."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from klarna_async import Intent, KlarnaClient
from klarna_async._converter import to_dict
from klarna_async.testing import FakeKlarna
from tests import samples

README = Path(__file__).parent.parent / "README.md"


def fastapi_snippet() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- fastapi-snippet.*?-->\s*```python\n(.*?)```", text, re.DOTALL)
    assert match, "the README lost its FastAPI snippet"
    return match.group(1)


async def test_fastapi_snippet(monkeypatch: pytest.MonkeyPatch):
    """The lifespan opens the client; the handler places an order, maps expiry and unknowns."""
    async with FakeKlarna() as fake:
        monkeypatch.setenv("KLARNA_USERNAME", fake.username)
        monkeypatch.setenv("KLARNA_PASSWORD", fake.password)
        monkeypatch.setenv("KLARNA_BASE_URL", fake.url)
        namespace: dict[str, Any] = {}
        exec(compile(fastapi_snippet(), "README.md", "exec"), namespace)  # noqa: S102
        app = namespace["app"]
        body = to_dict(samples.one_time_order())

        async with KlarnaClient(
            username=fake.username, password=fake.password, base_url=fake.url
        ) as setup:
            session = await setup.payments.create_session(samples.session_request(Intent.BUY))
        token = fake.authorize(session.session_id)

        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://shop") as http:
                placed = await http.post(f"/checkout/{token}", json=body)
                again = await http.post(f"/checkout/{token}", json=body)
            assert isinstance(app.state.klarna, KlarnaClient)
        assert app.state.klarna.closed
        assert 200 == placed.status_code
        assert "placed" == placed.json()["status"]
        assert [placed.json()["order_id"]] == [o.order_id for o in fake.ledger.orders]
        assert 409 == again.status_code
