"""The layers, checked over the import graph: every import statement counts, at module level, inside a
function or under TYPE_CHECKING alike, so a cycle cannot hide behind a late import."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "marrow_tui"

# What each lower layer may import from marrow_tui (by top-level part: "core" is marrow_tui.core…).
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset({"core"}),
    "protocol": frozenset({"core", "protocol"}),
    "store": frozenset({"core", "store"}),
    "proc": frozenset({"core", "aio", "proc"}),
    # awaiting with a bound: asyncio only, below everything that awaits
    "aio": frozenset({"aio"}),
    "runtime": frozenset({"core", "protocol", "store", "proc", "runtime"}),
    "config": frozenset({"core", "config", "userfile"}),
    "rotating": frozenset({"rotating"}),
    # the marrow-tui a run calls: a leaf the producers and agent_session use
    "own_command": frozenset({"own_command"}),
    # the MCP server talks to a hub like any agent: the client library, never the CLI's modules
    "mcp": frozenset({"", "core", "hub", "mcp"}),
    # the agent clients sit under the producers that will run them
    "agents": frozenset({"", "core", "aio", "proc", "agents", "rotating"}),
    # the [notify] hook listens to the runtime and runs a process: no producer, no console
    "notify": frozenset({"core", "config", "proc", "runtime", "notify"}),
    # a runtime's state kept over the wire: the core's books and the hub's client, never the
    # runtime (test_layering.py checks it loads neither the runtime nor the server)
    "attach": frozenset({"core", "hub", "attach"}),
    # the browser console's server: textual-serve and the operator token's check, never the
    # runtime or the console itself (each tab's console is another process)
    "web": frozenset({"hub", "web"}),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module) for every import in the file, relative ones resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            if node.level and not node.module:
                for alias in node.names:   # `from . import x` names a module when x is one
                    yield node.lineno, f"{stem}.{alias.name}"
            else:
                yield node.lineno, stem


def graph() -> dict[str, list[tuple[int, str]]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges: dict[str, list[tuple[int, str]]] = {}
    for name, path in modules.items():
        found = []
        for line, target in imported(path):
            # `from pkg import module` and `from pkg.module import name` both land on a real module.
            while target and target not in modules and "." in target:
                target = target.rpartition(".")[0]
            if target.startswith("marrow_tui") or target.split(".")[0] in {"textual"}:
                found.append((line, target))
        edges[name] = found
    return edges


def layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def test_lower_layers_import_only_what_is_below_them() -> None:
    bad = []
    for module, targets in graph().items():
        allowed = ALLOWED.get(layer(module))
        if allowed is None or module.endswith(".__main__"):  # an entry point, like the script
            continue
        for line, target in targets:
            if target.startswith("marrow_tui.") and layer(target) not in allowed:
                bad.append(f"{module}:{line} imports {target}")
            if target == "textual" or target.startswith("textual."):
                bad.append(f"{module}:{line} imports {target}")
    assert bad == []


def test_only_the_console_imports_textual() -> None:
    bad = [f"{module}:{line} imports {target}"
           for module, targets in graph().items() if layer(module) != "ui"
           for line, target in targets if target.split(".")[0] == "textual"]
    assert bad == []


def test_no_import_cycles() -> None:
    edges = {m: sorted({t for _, t in ts if t.startswith("marrow_tui") and t != m})
             for m, ts in graph().items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}   # 1 on the path, 2 done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in edges.get(node, ()):
            # A package's __init__ is imported on the way to its modules; only real edges count.
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)
    assert cycles == []


@pytest.mark.parametrize("rule", sorted(ALLOWED))
def test_each_layer_exists(rule: str) -> None:
    # The rules above would pass vacuously if a layer were renamed away.
    assert any(layer(m) == rule or m == f"marrow_tui.{rule}" for m in graph())
