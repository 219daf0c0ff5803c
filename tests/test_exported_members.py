"""The flat public API: a sorted __all__ of names that exist, and a version."""

from __future__ import annotations

import ast
import enum
import importlib.metadata
import os
import pydoc
import subprocess
import sys
from pathlib import Path

import pytest

import klarna_async
import klarna_async.testing


def test_all_is_sorted_and_complete():
    """Every name in __all__ exists and the list is sorted, so diffs stay readable."""
    assert sorted(klarna_async.__all__) == klarna_async.__all__
    for name in klarna_async.__all__:
        assert hasattr(klarna_async, name), name


def test_no_private_leaks():
    """Nothing private is exported."""
    assert not [n for n in klarna_async.__all__ if n.startswith("_") and n != "__version__"]


def test_testing_all_is_sorted():
    """klarna_async.testing has its own sorted public list."""
    assert sorted(klarna_async.testing.__all__) == klarna_async.testing.__all__
    for name in klarna_async.testing.__all__:
        assert hasattr(klarna_async.testing, name), name


def test_version_matches_metadata():
    """__version__ is the installed distribution's version."""
    assert importlib.metadata.version("klarna-async") == klarna_async.__version__


def test_public_namespace_is_exactly_all():
    """A fresh `import klarna_async` exposes __all__ and nothing else that is public (no
    `logging`, no helper left behind)."""
    code = (
        "import klarna_async, sys; "
        "print(sorted(n for n in dir(klarna_async) if not n.startswith('_')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    public = ast.literal_eval(out)
    assert sorted(n for n in klarna_async.__all__ if not n.startswith("_")) == public


@pytest.mark.parametrize("name", [n for n in klarna_async.__all__ if n != "__version__"])
def test_public_names_live_in_the_package_and_are_documented(name: str):
    """__module__ is `klarna_async` (help() and reprs show where to import from), and every
    public name, and every public method of a public class, has a docstring."""
    value = getattr(klarna_async, name)
    assert "klarna_async" == value.__module__
    assert (value.__doc__ or "").strip(), name
    if isinstance(value, type) and not issubclass(value, (BaseException, enum.Enum)):
        for attribute, member in vars(value).items():
            if attribute.startswith("_") or not callable(member):
                continue
            assert (member.__doc__ or "").strip(), f"{name}.{attribute}"


def test_help_shows_the_resources():
    """help(KlarnaClient) names the resources and what they do; their classes are public."""
    text = pydoc.render_doc(klarna_async.KlarnaClient, renderer=pydoc.plaintext)
    assert "payments" in text
    assert "customer_tokens" in text
    assert "Customer Token API" in text
    tokens = pydoc.render_doc(klarna_async.CustomerTokens, renderer=pydoc.plaintext)
    assert "charge_many" in tokens


def test_the_distribution_ships_its_license_and_types():
    """The wheel carries LICENSE (MIT, as the metadata says) and py.typed; under
    `nox -s tests` the package under test is that installed wheel, not the source tree."""
    files = {str(f) for f in importlib.metadata.files("klarna-async") or ()}
    assert any(f.endswith("LICENSE") for f in files), sorted(files)[:20]
    assert "MIT" in (importlib.metadata.metadata("klarna-async")["License-Expression"] or "")
    package = Path(klarna_async.__file__).parent
    assert (package / "py.typed").is_file()
    if os.environ.get("KLARNA_TEST_INSTALLED"):
        assert "site-packages" in str(package)
        assert "klarna_async/py.typed" in files
