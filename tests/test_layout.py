"""The layout's rules, read from the imports: no circle between packages, and no package importing one above it.

The order below is the README's layout section from the bottom up; a module may import only from
its own package and from packages earlier in the list.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "chatbot"

# lowest first: shared names and helpers; the table of kinds, the runtime, the data tools, the
# registry; then what runs and stores; then what composes them; the web app and the CLI on top
LAYERS = ["__init__", "errors", "defaults", "files", "skills", "runtime", "data", "adapters", "registry", "database", "conversation", "backends",
          "answer", "training", "evaluation", "routing", "jobs", "bot", "conversation_tests", "export", "web", "cli"]


def _unit(module: str) -> str:
    """The layout unit of ``chatbot.x.y``: ``x`` (a package or a top-level module)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _imports() -> dict[str, set[str]]:
    """Each module of the package (dotted name) and the ``chatbot`` modules it imports, at any depth of its code."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("chatbot")}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("chatbot"):
                found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names if _is_module(f"{node.module}.{a.name}")}
        graph[name] = found
    return graph


def test_every_unit_of_the_package_has_a_place_in_the_layers():
    units = {_unit(m) for m in _imports()}
    assert units == set(LAYERS), f"add {sorted(units - set(LAYERS))} to LAYERS (and the README's layout), drop {sorted(set(LAYERS) - units)}"


def test_no_package_imports_one_above_it():
    rank = {unit: i for i, unit in enumerate(LAYERS)}
    wrong = sorted(f"{module} imports {target}" for module, targets in _imports().items() for target in targets
                   if rank[_unit(target)] > rank[_unit(module)])
    assert not wrong, "\n".join(wrong)


def test_no_import_circle_between_modules():
    graph = _imports()
    modules = set(graph)
    edges = {m: {t if t in modules else t.rsplit(".", 1)[0] for t in targets} & modules - {m} for m, targets in graph.items()}
    for package in [m for m in modules if (PACKAGE / Path(*m.split(".")[1:]) / "__init__.py").exists()]:
        for m in edges:  # a package's __init__ re-exports its modules: importing them back is no circle
            if m.startswith(package + "."):
                edges[m].discard(package)
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join(path[path.index(nxt):] + [node, nxt]) if nxt in path else f"{node} -> {nxt}")
            if nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [])


def test_the_readme_layout_names_every_folder_and_module():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Where things are", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"^  ([a-z_]+)(?:/|\.py)", section, flags=re.M))
    units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}
    assert named == units, f"README layout misses {sorted(units - named)}, names what is gone: {sorted(named - units)}"
