"""Developer tasks: ``nox -s tests``, ``nox -s lint typing``, ``nox -s bench``."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typing"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

PYPROJECT = nox.project.load_toml("pyproject.toml")
# No pinned interpreter: the sessions use the Python that runs nox (3.11 or newer), so the
# README's test command works on whatever Python a fresh machine has.
PYTHON = None


#: What the suite needs besides the package: it runs from a copy of these, so that the
#: package it imports is the installed wheel, not the source tree beside it.
SUITE = ("tests", "benchmarks", "tools", "pyproject.toml", "README.md")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite against the built wheel, with branch coverage (fails under 90 %);
    warnings are errors."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "tests"))
    tmp = Path(session.create_tmp())
    dist, suite = tmp / "dist", tmp / "suite"
    shutil.rmtree(dist, ignore_errors=True)
    shutil.rmtree(suite, ignore_errors=True)
    session.run("python", "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist), ".")
    (wheel,) = dist.glob("klarna_async-*.whl")
    session.install("--force-reinstall", f"{wheel}[cli]")
    suite.mkdir()
    for name in SUITE:
        source = Path(name)
        if source.is_dir():
            shutil.copytree(
                source, suite / name, ignore=shutil.ignore_patterns("__pycache__", "out")
            )
        else:
            shutil.copy2(source, suite / name)
    session.chdir(suite)
    # Temporary files outside the project: a test's scratch project under .nox/ would find the
    # repository's pyproject.toml above it and take its pytest settings.
    env = {
        "PYTHONDEVMODE": "1",
        "KLARNA_TEST_INSTALLED": "1",
        "TMPDIR": tempfile.gettempdir(),
    }
    # `coverage run`, not pytest-cov: the package's own pytest plugin is imported before
    # pytest-cov starts, which would hide every module-level line from the report.
    session.run("coverage", "erase")
    session.run("coverage", "run", "-m", "pytest", *session.posargs, env=env)
    session.run("coverage", "report")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typing(session: nox.Session) -> None:
    """mypy --strict on the package, and on tests/typing/api.py that uses it as a user would."""
    session.install("-e", ".", *nox.project.dependency_groups(PYPROJECT, "typing"))
    session.run("mypy", "klarna_async", "_klarna_async_pytestplugin.py", "tests/typing/api.py")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Run benchmarks/ and write benchmarks/REPORT.md with its chart (not part of the tests)."""
    session.install("-e", ".", *nox.project.dependency_groups(PYPROJECT, "bench"))
    session.run("python", "-m", "benchmarks", *session.posargs)
