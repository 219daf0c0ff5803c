"""The pytest plugin costs nothing to test runs that do not use it: it imports no part of the
client until a fixture is used (the figure is measured in benchmarks/, not asserted here)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PROBE = textwrap.dedent(
    """
    import sys

    def pytest_sessionfinish(session):
        heavy = [m for m in ("klarna_async", "aiohttp", "cattrs") if m in sys.modules]
        print("IMPORTED:", ",".join(heavy) or "-")
    """
)


def _pytest(tmp_path: Path, test: str, *options: str) -> str:
    (tmp_path / "conftest.py").write_text(PROBE)
    (tmp_path / "test_probe.py").write_text(textwrap.dedent(test))
    ini = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
    (tmp_path / "pytest.ini").write_text(ini)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-s",
            "-p",
            "no:cacheprovider",
            *options,
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert 0 == done.returncode, done.stdout + done.stderr
    return done.stdout


def test_the_plugin_module_imports_only_pytest():
    code = (
        "import _klarna_async_pytestplugin, sys; "
        "print('klarna_async' in sys.modules, 'aiohttp' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "False False" == out.stdout.strip()


def test_a_run_without_fixtures_imports_nothing_of_the_client(tmp_path: Path):
    out = _pytest(tmp_path, "def test_nothing():\n    assert True\n")
    assert "IMPORTED: -" in out


@pytest.mark.parametrize("mode", ["asyncio", "threads"])
def test_the_fixture_works_when_used(tmp_path: Path, mode: str):
    """With pytest-asyncio an async fixture, without it a thread-served fake."""
    if mode == "asyncio":
        test = """
            import pytest

            @pytest.mark.asyncio
            async def test_fake(fake_klarna):
                assert fake_klarna.url.startswith("http://127.0.0.1:")
        """
        options: tuple[str, ...] = ()
    else:
        test = """
            def test_fake(fake_klarna):
                assert fake_klarna.url.startswith("http://127.0.0.1:")
        """
        options = ("-p", "no:asyncio")
    out = _pytest(tmp_path, test, *options)
    assert "1 passed" in out
    assert "klarna_async" in out.split("IMPORTED:")[1]
