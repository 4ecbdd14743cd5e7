"""Layers import downward only (STYLE.md rule 9): no import circle among elision's modules,
counting imports inside functions too, and no `_private` name taken from another module."""

from __future__ import annotations

import ast
from pathlib import Path

import elision

SRC = Path(elision.__file__).parent


def _modules() -> dict[str, tuple[ast.Module, bool]]:
    out = {}
    for p in SRC.rglob("*.py"):
        parts = ["elision", *p.relative_to(SRC).with_suffix("").parts]
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (ast.parse(p.read_text()), is_pkg)
    return out


def _imports(mods) -> dict[str, set[tuple[str, str | None]]]:
    """module -> {(imported module, name or None)}, names resolved to submodules where they are."""

    def known(name: str) -> str:
        while name not in mods and "." in name:
            name = name.rsplit(".", 1)[0]
        return name

    out = {}
    for m, (tree, is_pkg) in mods.items():
        here = m.split(".") if is_pkg else m.split(".")[:-1]
        edges = set()
        for node in ast.walk(tree):  # every import, at module level or inside a function
            if isinstance(node, ast.Import):
                edges |= {(known(a.name), None) for a in node.names if a.name.startswith("elision")}
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(here[:len(here) - node.level + 1] + [node.module or ""]).strip(".") \
                    if node.level else node.module
                if base and base.startswith("elision"):
                    edges |= {(known(f"{base}.{a.name}"), None) if f"{base}.{a.name}" in mods
                              else (known(base), a.name) for a in node.names}
        out[m] = {(t, n) for t, n in edges if t != m}
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while not comp or comp[-1] != v:
                comp.append(stack.pop())
                on.discard(comp[-1])
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles():
    mods = _modules()
    edges = _imports(mods)
    assert _cycles({m: {t for t, _ in e} for m, e in edges.items()}) == []


def test_nothing_imports_the_command_line():
    edges = _imports(_modules())
    assert [m for m, e in edges.items() if any(t == "elision.cli" for t, _ in e)] == []


def test_no_private_names_from_other_modules():
    """`from elision._errors import InvalidInput` is fine (a private module of the package, public
    name); `from ..models.registry import _transformers` is not."""
    edges = _imports(_modules())
    bad = sorted((m, f"{t}.{n}") for m, e in edges.items() for t, n in e
                 if n and n.startswith("_") and not n.startswith("__"))
    assert bad == []
