"""The package's shape holds: arrows point down (cli → pipelines → ops/training → teachers → engine), no
import cycles, operations never import the runner. Function-level imports count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "pocketguide"

# layer → the layers its modules may import (besides their own)
ALLOWED = {
    "engine": set(),
    "parsers": {"engine"},
    "gates": {"engine"},
    "exporters": {"engine"},
    "teachers": {"engine"},
    "ops": {"engine"},
    "training": {"engine", "ops", "teachers"},  # constrained eval decodes with the teacher's schema caps
    "pipelines": {"engine", "parsers", "gates", "exporters", "teachers", "ops", "training"},
    "testing": {"engine"},
    "report": {"engine"},  # the HTML run report reads the store; operations add sections via the registry
    "cli": {"engine", "parsers", "gates", "exporters", "teachers", "ops", "training", "pipelines", "report"},
    "api": {"engine"},  # pocketguide/__init__.py: the public facade re-exports the engine's API
    "main": {"cli"},  # python -m pocketguide
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "api"
    return {"__main__": "main", "testing": "testing"}.get(parts[1], parts[1])


def imports_of(path: Path) -> set[str]:
    """Every pocketguide module a file imports, anywhere in it (module level or inside functions)."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("pocketguide")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if not base.startswith("pocketguide"):
                continue
            for alias in node.names:  # `from pkg import module` imports the module, not just pkg
                sub = f"{base}.{alias.name}"
                found.add(sub if _is_module(sub) else base)
    return found - {me}


def _is_module(name: str) -> bool:
    p = PKG.parent.joinpath(*name.split("."))
    return p.with_suffix(".py").exists() or (p / "__init__.py").exists()


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in PKG.rglob("*.py") if "project" not in p.parts}


def test_arrows_point_down(graph):
    upward = sorted(f"{src} → {dst}" for src, dsts in graph.items() for dst in dsts
                    if layer(dst) != layer(src) and layer(dst) not in ALLOWED[layer(src)])
    assert upward == [], "imports against the layering:\n" + "\n".join(upward)


def test_pipelines_do_not_import_each_other(graph):
    cross = sorted(f"{src} → {dst}" for src, dsts in graph.items() for dst in dsts
                   if src.startswith("pocketguide.pipelines.") and dst.startswith("pocketguide.pipelines.")
                   and src.split(".")[2] != dst.split(".")[2] and dst.split(".")[2] != "projects")
    assert cross == []


def test_operations_never_import_the_runner(graph):
    ops = [m for m in graph if layer(m) in ("ops", "training", "pipelines") or m == "pocketguide.engine.operations"]
    assert [m for m in ops if "pocketguide.engine.runner" in graph[m]] == []


def test_no_import_cycles(graph):
    cycles = [c for c in _strongly_connected(graph) if len(c) > 1]
    assert cycles == [], f"import cycles: {cycles}"


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm over the module graph (iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                out.append(sorted(comp))
    return out


def test_the_checker_sees_a_planted_cycle_and_an_upward_import(tmp_path):
    """The checks can fail: a cycle and an engine → cli import are both found."""
    g = {"pocketguide.engine.a": {"pocketguide.engine.b"}, "pocketguide.engine.b": {"pocketguide.engine.a"},
         "pocketguide.engine.c": {"pocketguide.cli.app"}}
    assert [c for c in _strongly_connected(g) if len(c) > 1] == [["pocketguide.engine.a", "pocketguide.engine.b"]]
    assert layer("pocketguide.cli.app") not in ALLOWED[layer("pocketguide.engine.c")]
