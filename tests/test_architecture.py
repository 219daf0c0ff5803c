"""The house: imports point one way down the layers, with no cycle, and one request path.

Read from the source (every ``import``, including those under ``TYPE_CHECKING`` and inside
functions), so a new module has to be placed in a layer on purpose.
"""

from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

import pytest

import klarna_async

# The package under test: the source tree, or the installed wheel under `nox -s tests`.
PACKAGE = Path(klarna_async.__file__).parent

#: Top to bottom. A module may import modules of lower layers only; within a layer, only
#: modules of its own package (``_models.common`` -> ``_models.enums``).
LAYERS: list[tuple[str, list[str]]] = [
    ("entry point", ["klarna_async.__main__"]),
    ("command line", ["klarna_async._cli"]),
    ("demo", ["klarna_async._demo"]),
    # Distributed batches (taskiq workers, a journal in Redis) use the public API, the charge
    # files' rules and RedisRateLimiter: above the integrations they build on.
    ("distributed batches", ["klarna_async._distributed"]),
    ("public API", ["klarna_async"]),
    ("integrations", ["klarna_async._charge_file", "klarna_async._redis_pacer"]),
    ("client", ["klarna_async._client"]),
    # Below the client, which builds its observer from the client's settings; above the
    # request path, which is handed that observer and never imports it.
    ("telemetry", ["klarna_async._telemetry", "klarna_async._telemetry.*"]),
    ("resources", ["klarna_async._resources", "klarna_async._resources.*"]),
    ("batch runner", ["klarna_async._batch"]),
    ("request path", ["klarna_async._request"]),
    ("retry and outcome", ["klarna_async._retry"]),
    ("transport, answers, pacing", [
        "klarna_async._transport", "klarna_async._responses", "klarna_async._ratelimit",
    ]),
    ("validation", ["klarna_async._validation"]),
    ("validate-and-write fast path", ["klarna_async._fast_path"]),
    ("rules bound to the models", ["klarna_async._rules"]),
    ("converter", ["klarna_async._converter"]),
    ("the wire contract, generated from the specs", [
        "klarna_async._contract", "klarna_async._contract.*",
    ]),
    # Klarna's pending-order notification: parsed from bytes, checked against an order model;
    # the resources read the order back with it. Pure: it knows the models and errors only.
    ("notifications", ["klarna_async._notifications"]),
    ("models, errors, config", [
        "klarna_async._models", "klarna_async._models.*", "klarna_async._errors",
        "klarna_async._config",
    ]),
    ("version", ["klarna_async._version"]),
]  # fmt: skip


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules ``path`` imports (a submodule importing its own package excepted)."""
    me = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != me and not me.startswith(name + "."):
                targets.add(name)
    return targets


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) for name, path in modules.items()}


def _layer(module: str) -> int | None:
    for index, (_, patterns) in enumerate(LAYERS):
        if any(fnmatch.fnmatchcase(module, pattern) for pattern in patterns):
            return index
    return None


def _package(module: str) -> str:
    return module.rpartition(".")[0]


GRAPH = _graph()
CLIENT_MODULES = sorted(m for m in GRAPH if not m.startswith("klarna_async.testing"))


def test_the_graph_was_read():
    """The reader finds the edges it should (so the other tests cannot pass on an empty graph)."""
    assert "klarna_async._request" in GRAPH["klarna_async._client"]
    assert "klarna_async._retry" in GRAPH["klarna_async._request"]
    assert len(GRAPH) > 20


def test_no_cycles():
    """Depth-first search for a back edge; the cycle is named if one exists."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(GRAPH[node]):
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(GRAPH):
        if node not in state:
            visit(node)


@pytest.mark.parametrize("module", CLIENT_MODULES)
def test_every_module_has_a_layer_and_imports_only_downwards(module: str):
    mine = _layer(module)
    assert mine is not None, f"{module} is in no layer: place it in LAYERS on purpose"
    for target in sorted(GRAPH[module]):
        if target.startswith("klarna_async.testing"):
            # Only the command line and the demo may start the fake.
            assert module in ("klarna_async._cli", "klarna_async._demo"), (
                f"{module} imports the testing kit ({target})"
            )
            continue
        theirs = _layer(target)
        assert theirs is not None, target
        if theirs == mine:
            # Within a layer, only inside one subpackage (_models/__init__ -> _models.common).
            inside = target.startswith(module + ".") or (
                _package(module) == _package(target) != "klarna_async"
            )
            assert inside, f"{module} -> {target}: same layer ({LAYERS[mine][0]})"
        else:
            assert theirs > mine, (
                f"{module} ({LAYERS[mine][0]}) imports {target} ({LAYERS[theirs][0]}), upwards"
            )


def test_the_fake_shares_no_code_with_the_client():
    """klarna_async.testing imports only itself: its reading of the specs is its own."""
    for module, targets in GRAPH.items():
        if module.startswith("klarna_async.testing"):
            foreign = {t for t in targets if not t.startswith("klarna_async.testing")}
            assert not foreign, f"{module} imports {foreign}"


def test_one_request_path():
    """Only the request path sends (transport.send), and only through Retrier.run: no second,
    inlined attempt anywhere."""
    senders = {m for m, targets in GRAPH.items() if "klarna_async._transport" in targets}
    assert {"klarna_async._request"} == senders
    runners = set()
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "run":
                value = node.value
                if isinstance(value, ast.Attribute) and value.attr == "retrier":
                    runners.add(module)
    assert {"klarna_async._request"} == runners
