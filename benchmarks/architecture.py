"""The shape of the tree, measured: import cycles between modules, project imports made inside
functions, lines per layer, the largest modules and the imports between layers.

    python benchmarks/architecture.py [--json] [--inner]

Reads the source with `ast` (nothing is imported). Counts module-level and in-function imports
alike for cycles; `if TYPE_CHECKING:` imports count for neither. `make check` enforces the
contracts with import-linter (pyproject.toml); this script gives the figures behind them.
"""

from __future__ import annotations

import argparse
import ast
import json
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["config", "governance", "assistant", "content", "answers", "retrieval", "inference", "core"]


def project_modules() -> dict[str, Path]:
    found = {}
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")) if (ROOT / layer).is_dir() else []:
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom, known: set[str]) -> list[str]:
    names = []
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
            package = package[: len(package) - node.level + 1]
            base = ".".join([*package, base] if base else package)
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
    resolved = []
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name:
            resolved.append(name)
    return resolved


def import_graph(modules: dict[str, Path]) -> tuple[dict[str, set[str]], list[tuple[str, int, str]]]:
    known = set(modules)
    graph: dict[str, set[str]] = defaultdict(set)
    inner: list[tuple[str, int, str]] = []

    def walk(module: str, path: Path, node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                for target in _targets(module, path, child, known):
                    if target != module:
                        graph[module].add(target)
                    if in_function:
                        inner.append((str(path.relative_to(ROOT)), child.lineno, target))
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            else:
                is_function = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                walk(module, path, child, in_function or is_function)

    for module, path in modules.items():
        walk(module, path, ast.parse(path.read_text()), False)
    return graph, inner


def cycles(graph: dict[str, set[str]], nodes: list[str]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
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
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def report() -> dict:
    modules = project_modules()
    graph, inner = import_graph(modules)
    layer = lambda module: module.split(".")[0]  # noqa: E731
    lines = {module: len(path.read_text().splitlines()) for module, path in modules.items()}
    per_layer = Counter()
    for module, count in lines.items():
        per_layer[layer(module)] += count
    between = Counter(f"{layer(a)} -> {layer(b)}" for a in graph for b in graph[a] if layer(a) != layer(b))
    largest = sorted(lines.items(), key=lambda item: -item[1])[:10]
    return {
        "cycles": cycles(graph, sorted(modules)),
        "imports_inside_functions": len(inner),
        "inner": inner,
        "lines_per_layer": {name: per_layer[name] for name in LAYERS},
        "largest_modules": {str(modules[m].relative_to(ROOT)): n for m, n in largest},
        "imports_between_layers": dict(sorted(between.items())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.add_argument("--inner", action="store_true", help="list the imports inside functions")
    args = parser.parse_args()
    figures = report()
    if not args.inner:
        figures.pop("inner")
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"cycles: {len(figures['cycles'])}")
    for component in figures["cycles"]:
        print("   " + " ".join(component))
    print(f"imports inside functions: {figures['imports_inside_functions']}")
    for path, line, target in figures.get("inner", []):
        print(f"   {path}:{line} {target}")
    print("lines per layer:", figures["lines_per_layer"])
    print("largest modules:", figures["largest_modules"])
    print("imports between layers:")
    for edge, count in figures["imports_between_layers"].items():
        print(f"   {edge}: {count}")


if __name__ == "__main__":
    main()
