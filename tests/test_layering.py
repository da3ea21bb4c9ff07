"""The layers of the README (section "Layout") hold: `splits` <- `methods` <- `bench`. No module imports a higher
layer, not even inside a function, and no modules import each other in a cycle. The scan reads every import statement
of every module (AST), so an import hidden in a function body counts like any other."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"splits": 0, "methods": 1, "bench": 2}


def modules() -> dict[str, Path]:
    """Dotted name -> file of every module in the three packages (a package is named by its __init__)."""
    found = {}
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Modules of the three packages that `name` imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from pkg import sub` imports the submodule `pkg.sub`; `from mod import name` imports `mod`
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in known else source for a in node.names]
        else:
            continue
        out.update(t for t in targets if t.split(".")[0] in LAYERS)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    edges = {name: imported(name, path, known) for name, path in known.items()}
    unknown = {t for targets in edges.values() for t in targets if t not in known}
    assert not unknown, f"imports of modules that do not exist: {sorted(unknown)}"
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges[v]:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_module_imports_a_higher_layer():
    upward = [f"{source} -> {target}" for source, targets in graph().items() for target in sorted(targets)
              if LAYERS[target.split(".")[0]] > LAYERS[source.split(".")[0]]]
    assert upward == [], "upward imports:\n" + "\n".join(upward)


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_the_scan_sees_function_level_imports_and_cycles(tmp_path, monkeypatch):
    """The checks can fail: an import inside a function is an edge, and a two-module cycle is found."""
    (tmp_path / "methods").mkdir()
    (tmp_path / "methods" / "__init__.py").write_text("")
    (tmp_path / "methods" / "a.py").write_text("def f():\n    from bench.cli import main\n    from methods import b\n")
    (tmp_path / "methods" / "b.py").write_text("from .a import f\n")
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "__init__.py").write_text("")
    (tmp_path / "bench" / "cli.py").write_text("")
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "__init__.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    edges = graph()
    assert edges["methods.a"] == {"bench.cli", "methods.b"} and edges["methods.b"] == {"methods.a"}
    assert cycles(edges) == [["methods.a", "methods.b"]]
