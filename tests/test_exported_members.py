"""The flat public API: a sorted __all__ of names that exist, and a version."""

from __future__ import annotations

import importlib.metadata

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
