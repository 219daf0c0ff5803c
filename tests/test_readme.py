"""The README's service recipes (FastAPI, aiohttp.web), run as written against the fake Klarna,
and type-checked with mypy --strict as a user's project would."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestClient, TestServer

from klarna_async import Intent, KlarnaClient
from klarna_async._converter import to_dict
from klarna_async.testing import FakeKlarna
from tests import samples

README = Path(__file__).parent.parent / "README.md"

#: (status, JSON body) of a POST /checkout/{token} with a JSON body.
Post = Callable[[str, Any], Awaitable[tuple[int, Any]]]


def snippet(name: str) -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"<!-- {name}-snippet.*?-->\s*```python\n(.*?)```", text, re.DOTALL)
    assert match, f"the README lost its {name} snippet"
    return match.group(1)


def run(name: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": f"readme_{name}"}
    exec(compile(snippet(name), f"README.md ({name})", "exec"), namespace)  # noqa: S102
    return namespace


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeKlarna]:
    async with FakeKlarna() as fake:
        monkeypatch.setenv("KLARNA_USERNAME", fake.username)
        monkeypatch.setenv("KLARNA_PASSWORD", fake.password)
        monkeypatch.setenv("KLARNA_BASE_URL", fake.url)
        yield fake


async def authorized(fake: FakeKlarna) -> str:
    async with KlarnaClient(
        username=fake.username, password=fake.password, base_url=fake.url
    ) as setup:
        session = await setup.payments.create_session(samples.session_request(Intent.BUY))
    return fake.authorize(session.session_id)


async def check_recipe(fake: FakeKlarna, post: Post) -> None:
    """Placed; the same token again (expired) 409; a bad body 422 with JSON paths; a cart that
    differs from the authorized one 409 with the fields; one order in the ledger."""
    body = to_dict(samples.one_time_order())
    token = await authorized(fake)
    status, placed = await post(token, body)
    assert (200, "placed") == (status, placed["status"])
    assert [placed["order_id"]] == [o.order_id for o in fake.ledger.orders]
    assert "ACCEPTED" == placed["fraud_status"]
    assert 409 == (await post(token, body))[0]

    bad = {**body, "order_amount": "ten", "purchase_currency": "EURO"}
    status, problems = await post(await authorized(fake), bad)
    assert 422 == status
    assert "$.order_amount" in str(problems)
    assert "$.purchase_currency" in str(problems)

    changed = to_dict(samples.one_time_order())
    changed["billing_address"]["postal_code"] = "10001"
    status, mismatch = await post(await authorized(fake), changed)
    assert 409 == status
    assert "billing_address.postal_code" in str(mismatch)
    assert 1 == len(fake.ledger.orders)


async def test_fastapi_recipe(fake: FakeKlarna):
    app = run("fastapi")["app"]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop") as http:

            async def post(token: str, body: Any) -> tuple[int, Any]:
                answer = await http.post(f"/checkout/{token}", json=body)
                return answer.status_code, answer.json()

            await check_recipe(fake, post)
        assert isinstance(app.state.klarna, KlarnaClient)
    assert app.state.klarna.closed


async def test_aiohttp_recipe(fake: FakeKlarna):
    namespace = run("aiohttp")
    app = namespace["make_app"]()
    async with TestClient(TestServer(app)) as http:

        async def post(token: str, body: Any) -> tuple[int, Any]:
            async with http.post(f"/checkout/{token}", json=body) as answer:
                return answer.status, await answer.json()

        await check_recipe(fake, post)
        klarna = app[namespace["KLARNA"]]
    assert klarna.closed


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def test_every_python_block_passes_mypy_strict(tmp_path: Path):
    """Every Python block of the README type-checks as it stands (mypy --strict, as a user's
    CI would): the two service recipes and every smaller example."""
    blocks = python_blocks()
    assert len(blocks) >= 7
    files = []
    for number, block in enumerate(blocks):
        path = tmp_path / f"readme_block_{number}.py"
        path.write_text(block, encoding="utf-8")
        files.append(str(path))
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
         "--cache-dir", str(Path(__file__).parent.parent / ".mypy_cache"), *files],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert 0 == done.returncode, done.stdout + done.stderr


async def test_the_testing_example_runs():
    """The README's test example, run as written: the fake's adversary and its witness."""
    (block,) = [b for b in python_blocks() if "async def test_" in b]
    namespace = run_block(block)
    await namespace["test_a_gateway_503_after_the_order_was_placed"]()


def run_block(code: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "readme_block"}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102
    return namespace


@pytest.mark.parametrize("name", ["fastapi", "aiohttp"])
def test_the_pending_order_recipes_are_the_tested_files(name: str):
    """The README's notification recipes are, word for word, the files that
    tests/test_notifications.py runs end to end and type-checks."""
    tested = Path(__file__).parent / "recipes" / f"pending_{name}.py"
    assert tested.read_text(encoding="utf-8").rstrip("\n") == snippet(f"pending-{name}").rstrip(
        "\n"
    )
