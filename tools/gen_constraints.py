"""Writes ``klarna_async/_contract/spec.py``: the field constraints of every request schema in
``tests/specs/*.yml`` (Klarna's OpenAPI exports), as a readable, checked-in Python table.

Run from the repository root after copying a new export into ``tests/specs``::

    python tools/gen_constraints.py          # rewrite the table
    python tools/gen_constraints.py --check  # exit 1 and show the diff if it is out of date

``tests/test_contract.py`` runs the check, so a spec edited without regenerating (or a table
edited by hand) fails the suite. A request schema is the ``application/json`` body of any
operation, and every schema it reaches through properties, arrays and ``$ref``. Read-only
properties are listed, not described: a request never carries them. A JSON Schema keyword this
generator does not know stops it, so that a new export cannot lose a constraint silently.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
SPEC_DIR = ROOT / "tests" / "specs"
TARGET = ROOT / "klarna_async" / "_contract" / "spec.py"

#: The API each spec file describes, as the table's keys name it.
APIS = {
    "klarna-payments-api-openapi.yml": "payments",
    "klarna-customer-token-api-openapi.yml": "customer_token",
    "order-management-api-openapi.yml": "order_management",
}

# Stray control bytes in the exports (see the shared reference's SOURCES.md); YAML refuses them.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
# Keywords that describe rather than constrain.
_IGNORED = frozenset({"description", "example", "examples", "default", "title"})
_LINE = 100


class UnknownKeyword(ValueError):
    """A schema uses a keyword the table cannot express."""


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(_CONTROL.sub("", path.read_text(encoding="utf-8")))
    return document


def _ref_name(ref: str) -> str:
    prefix = "#/components/schemas/"
    if not ref.startswith(prefix):
        raise UnknownKeyword(f"$ref outside components/schemas: {ref}")
    return ref[len(prefix) :]


class _Collector:
    """Turns one spec's request schemas into source lines, following references."""

    def __init__(self, api: str, document: dict[str, Any]) -> None:
        self.api = api
        self.components: dict[str, Any] = document["components"]["schemas"]
        self.schemas: dict[str, tuple[str, dict[str, Any]]] = {}  # key -> (origin, schema)

    def key(self, name: str) -> str:
        return f"{self.api}.{name}"

    def add(self, name: str, schema: dict[str, Any], origin: str) -> str:
        key = self.key(name)
        if key not in self.schemas:
            self.schemas[key] = (origin, schema)
            for prop in (schema.get("properties") or {}).values():
                if not prop.get("readOnly"):
                    self.follow(prop, f"{name}.")
        return key

    def follow(self, node: dict[str, Any], inline_prefix: str) -> None:
        if "$ref" in node:
            name = _ref_name(node["$ref"])
            self.add(name, self.components[name], f"#/components/schemas/{name}")
        elif node.get("type") == "array":
            self.follow(node["items"], inline_prefix)

    def request_bodies(self, document: dict[str, Any]) -> list[tuple[str, str, str]]:
        found = []
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                if not isinstance(operation, dict) or "requestBody" not in operation:
                    continue
                content = operation["requestBody"]["content"]
                schema = content["application/json"]["schema"]
                if "$ref" not in schema:
                    raise UnknownKeyword(f"{method} {path}: an inline request body")
                name = _ref_name(schema["$ref"])
                key = self.add(name, self.components[name], f"#/components/schemas/{name}")
                found.append((method.upper(), path, key))
        return found


def _py_str(text: str) -> str:
    if "\\" in text and '"' not in text and not text.endswith("\\") and "\n" not in text:
        return f'r"{text}"'
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Call:
    """A call or a tuple in the generated source, laid out as ruff format lays it out."""

    def __init__(self, name: str, args: list[tuple[str, _Call | str]]) -> None:
        self.name = name  # "" for a tuple
        self.args = args  # (keyword or "", value)

    def flat(self) -> str:
        inner = ", ".join(
            f"{key}={_flat(value)}" if key else _flat(value) for key, value in self.args
        )
        if not self.name and len(self.args) == 1:
            inner += ","
        return f"{self.name}({inner})"

    def lines(self, indent: int, prefix: str, suffix: str) -> list[str]:
        pad = " " * indent
        line = f"{pad}{prefix}{self.flat()}{suffix}"
        if len(line) <= _LINE or not self.args:
            return [line]
        # One argument a line, each with the trailing comma that keeps ruff from joining them.
        out = [f"{pad}{prefix}{self.name}("]
        for key, value in self.args:
            start = f"{key}=" if key else ""
            if isinstance(value, _Call):
                out += value.lines(indent + 4, start, ",")
            else:
                out.append(f"{pad}    {start}{value},")
        out.append(f"{pad}){suffix}")
        return out


def _flat(value: _Call | str) -> str:
    return value.flat() if isinstance(value, _Call) else value


_CONSTRAINT_KEYWORDS = frozenset(
    {
        "type",
        "$ref",
        "format",
        "minLength",
        "maxLength",
        "pattern",
        "enum",
        "minimum",
        "maximum",
        "items",
        "minItems",
        "maxItems",
        "readOnly",
    }
)


def _kind(node: dict[str, Any], where: str, collector: _Collector) -> _Call:
    """One property's kind, e.g. ``String(max_length=99)``."""
    unknown = set(node) - _IGNORED - _CONSTRAINT_KEYWORDS
    if unknown:
        raise UnknownKeyword(f"{where}: {sorted(unknown)}")
    if "$ref" in node:
        return _Call("Object", [("", _py_str(collector.key(_ref_name(node["$ref"]))))])
    kind = node.get("type")
    args: list[tuple[str, _Call | str]] = []
    if kind == "string":
        if node.get("minLength", 0):
            args.append(("min_length", str(node["minLength"])))
        if "maxLength" in node:
            args.append(("max_length", str(node["maxLength"])))
        if "pattern" in node:
            args.append(("pattern", _py_str(node["pattern"])))
        if "enum" in node:
            values = [("", _py_str(str(value))) for value in node["enum"]]
            args.append(("enum", _Call("", values)))
        if "format" in node:
            args.append(("format", _py_str(node["format"])))
        return _Call("String", args)
    if kind == "integer":
        for keyword in ("minimum", "maximum"):
            if keyword in node:
                args.append((keyword, str(node[keyword])))
        if "format" in node:
            args.append(("format", _py_str(node["format"])))
        return _Call("Integer", args)
    if kind == "boolean":
        return _Call("Boolean", [])
    if kind == "array":
        args.append(("", _kind(node["items"], f"{where}[]", collector)))
        if node.get("minItems", 0):
            args.append(("min_items", str(node["minItems"])))
        if "maxItems" in node:
            args.append(("max_items", str(node["maxItems"])))
        return _Call("Array", args)
    raise UnknownKeyword(f"{where}: type {kind!r}")


def _names(keyword: str, names: list[str]) -> list[str]:
    return _Call("", [("", _py_str(name)) for name in names]).lines(8, f"{keyword}=", ",")


def render(spec_dir: Path = SPEC_DIR) -> str:
    """The source of ``klarna_async/_contract/spec.py`` for the specs in ``spec_dir``."""
    files = sorted(spec_dir.glob("*.yml"))
    unknown = [path.name for path in files if path.name not in APIS]
    if unknown:
        raise SystemExit(f"no API name for {unknown}: add it to APIS in {Path(__file__).name}")
    schema_lines: list[str] = []
    body_lines: list[str] = []
    for path in files:
        api = APIS[path.name]
        document = load(path)
        collector = _Collector(api, document)
        for method, url, key in collector.request_bodies(document):
            operation = _Call("", [("", _py_str(api)), ("", _py_str(method)), ("", _py_str(url))])
            body_lines += operation.lines(4, "", f": {_py_str(key)},")
        for key in sorted(collector.schemas):
            origin, schema = collector.schemas[key]
            if schema.get("type", "object") != "object":
                raise UnknownKeyword(f"{path.name} {origin}: not an object")
            extra = set(schema) - _IGNORED - {"type", "properties", "required"}
            if extra:
                raise UnknownKeyword(f"{path.name} {origin}: {sorted(extra)}")
            properties = schema.get("properties") or {}
            schema_lines.append(f"    # {path.name}: {origin.rsplit('/', 1)[-1]}")
            schema_lines.append(f"    {_py_str(key)}: Schema(")
            schema_lines.append("        properties={")
            for name, node in properties.items():
                if node.get("readOnly"):
                    continue
                kind = _kind(node, f"{path.name} {origin}.{name}", collector)
                schema_lines += kind.lines(12, f"{_py_str(name)}: ", ",")
            schema_lines.append("        },")
            required = list(schema.get("required") or ())
            if required:
                schema_lines += _names("required", required)
            read_only = [name for name, node in properties.items() if node.get("readOnly")]
            if read_only:
                schema_lines += _names("read_only", read_only)
            schema_lines.append("    ),")
    header = f'''"""Field constraints of every request schema in Klarna's OpenAPI specs.

GENERATED by tools/gen_constraints.py from tests/specs/*.yml:
{"".join(f"{chr(10)}* {p.name}" for p in files)}

Do not edit: copy a new export into tests/specs and run ``python tools/gen_constraints.py``.
tests/test_contract.py fails while this file differs from what the specs say. Our deliberate
differences from the specs are in klarna_async/_contract/overrides.py.

``SCHEMAS`` maps ``"<api>.<schema name>"`` to the schema; ``REQUEST_BODIES`` maps each operation
that takes a JSON body, ``(api, method, path)``, to its schema's key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from klarna_async._contract.kinds import Array, Boolean, Integer, Object, Schema, String

__all__ = ["REQUEST_BODIES", "SCHEMAS"]

SCHEMAS: Final[Mapping[str, Schema]] = {{
'''
    middle = "}\n\nREQUEST_BODIES: Final[Mapping[tuple[str, str, str], str]] = {\n"
    text = header + "\n".join(schema_lines) + "\n" + middle + "\n".join(body_lines) + "\n}\n"
    # Names only the kinds the table uses, so that ruff finds no unused import.
    kinds = ("Array", "Boolean", "Integer", "Object", "Schema", "String")
    used = [kind for kind in kinds if f"{kind}(" in text]
    return text.replace(
        "import Array, Boolean, Integer, Object, Schema, String", "import " + ", ".join(used)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare, exit 1 on drift")
    parser.add_argument(
        "--target",
        type=Path,
        default=TARGET,
        help="file to write or check",
    )
    args = parser.parse_args(argv)
    target: Path = args.target
    text = render()
    current = target.read_text(encoding="utf-8") if target.exists() else ""
    if args.check:
        if current == text:
            return 0
        sys.stdout.writelines(
            difflib.unified_diff(
                current.splitlines(True), text.splitlines(True), str(target), "regenerated"
            )
        )
        return 1
    target.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
