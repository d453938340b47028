"""The package's import graph: one direction, no cycles, the core never imports the views."""

from __future__ import annotations

import ast
from pathlib import Path

import cnc_widgets

ROOT = Path(cnc_widgets.__file__).parent
# The browser code (js/src, bundled into static/ by js/build.mjs): the same limit per module.
JS_SRC = Path(__file__).resolve().parents[1] / "js" / "src"
# Lower layers first; a module may import its own layer or lower ones, never higher ones.
LAYERS = [
    {"provenance", "compress", "evaluate", "metrics", "formatting", "tasks"},
    {"comparison"},
    {"registry"},
    {"widgets", "examples", "__main__"},
]
# At most this many entries at the package's top level (modules and packages, besides
# __init__ and __main__, the built static/ folder and caches), and lines per module.
TOP_LEVEL_LIMIT = 10
MODULE_LINES = 500


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports, at module level or inside functions."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        out: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                subs = [f"{target}.{a.name}" for a in node.names]
                candidates = subs if all(s in mods for s in subs) else [target, *subs]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            out.update(c for c in candidates if c in mods and c != name)
        graph[name] = out
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                cycles.append(part)

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None
    for i, names in enumerate(LAYERS):
        if parts[1] in names:
            return i
    return None


def test_no_import_cycles():
    assert _cycles(import_graph()) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) != []


def test_imports_point_down_the_layers():
    upward = []
    for module, targets in import_graph().items():
        here = _layer(module)
        for target in targets:
            there = _layer(target)
            if here is not None and there is not None and there > here:
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_every_package_says_what_it_owns():
    for path in ROOT.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc and len(doc) > 80, f"{path} needs a docstring that says what it owns"


def test_top_level_holds_at_most_ten_entries():
    entries = sorted(
        p.name
        for p in ROOT.iterdir()
        if p.name not in {"__init__.py", "__main__.py", "static", "__pycache__"}
        and (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))
    )
    assert len(entries) <= TOP_LEVEL_LIMIT, entries


def test_no_module_is_longer_than_the_limit():
    long = {
        str(path.relative_to(ROOT)): n
        for path in ROOT.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MODULE_LINES
    }
    assert long == {}


def test_no_js_module_is_longer_than_the_limit():
    modules = list(JS_SRC.rglob("*.js"))
    assert len(modules) > 20, f"the browser code is expected under {JS_SRC}"
    long = {
        str(path.relative_to(JS_SRC)): n
        for path in modules
        if (n := len(path.read_text().splitlines())) > MODULE_LINES
    }
    assert long == {}
