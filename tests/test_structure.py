"""The package keeps the shape a newcomer can hold in their head (issue 22): no import cycle, the table
contract at the bottom, no module over 500 lines and no function over 80 (README "Architecture")."""

import ast
import graphlib

from conftest import ROOT

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def _module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path) -> set:
    """The opbreak modules a file imports (relative or absolute, at the top or inside a function)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module
            out.add(target)
            out.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def _graph() -> dict:
    files = {_module_name(p): p for p in (ROOT / "opbreak").rglob("*.py")}
    graph = {}
    for name, path in files.items():
        # a module importing its own package's __init__ is not an arrow back up
        graph[name] = {m for m in _imports(path) if m in files and m != name and not name.startswith(m + ".")}
    return graph


def test_no_import_cycle():
    order = list(graphlib.TopologicalSorter(_graph()).static_order())  # raises CycleError naming the cycle
    assert "opbreak.contract" in order


def test_contract_imports_no_producer():
    assert _graph()["opbreak.contract"] == set()


def _sources():
    for folder in ("opbreak", "scripts", "bench"):
        yield from sorted((ROOT / folder).rglob("*.py"))


def test_no_module_over_500_lines():
    long = {
        str(p.relative_to(ROOT)): n for p in _sources() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, long


def test_no_function_over_80_lines():
    long = {}
    for p in _sources():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long[f"{p.relative_to(ROOT)}:{node.name}"] = n
    assert not long, long
