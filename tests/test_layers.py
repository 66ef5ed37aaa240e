"""The import graph: layers point down, no circles, one namespace.

The installed code lives under ``citywatch``: the kernel (``citywatch.*``), the stages
(``citywatch.collectors``, ``.rules``, ``.alerting``, ``.api``, whose folders stand at the top
of the checkout and are linked into the package), the tools (``citywatch.simulate``,
``citywatch.grafana``) and, above everything, the wiring (``citywatch.app``). Imports under
``if TYPE_CHECKING:`` count too: a type is a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "citywatch"
STAGES = ("collectors", "rules", "alerting", "api")
TOOLS = ("simulate", "grafana")
WIRING = "app"
# What each stage may import besides the kernel: data flows collectors -> rules -> alerting,
# and the API reads the rules and alerting. Alerting reads the rules' declarations (a patrol
# rule's words, from its spec); nothing imports a stage downstream of it.
STAGE_MAY_IMPORT: dict[str, set[str]] = {
    "collectors": set(),
    "rules": set(),
    "alerting": {"rules"},
    "api": {"rules", "alerting"},
}


def _modules() -> dict[str, Path]:
    """Every module of the package, by dotted name (the stage links followed)."""
    found: dict[str, Path] = {}

    def walk(folder: Path, prefix: str) -> None:
        for path in sorted(folder.iterdir()):
            if path.is_dir() and (path / "__init__.py").exists():
                walk(path, f"{prefix}.{path.name}")
            elif path.suffix == ".py":
                name = prefix if path.stem == "__init__" else f"{prefix}.{path.stem}"
                found[name] = path

    walk(PACKAGE, "citywatch")
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[str]:
    """The modules of this tree that ``name`` imports (resolved, relative imports too)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            # ``from pkg import mod`` takes the module; ``from mod import name``, the module.
            targets = [f"{base}.{a.name}" for a in node.names]
            if any(t not in MODULES for t in targets):
                targets.append(base)
        else:
            continue
        for target in targets:
            # The longest module of this tree that the name falls in.
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


GRAPH = {name: set(_imports(name, path)) for name, path in MODULES.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "kernel"
    if parts[1] == "__main__" or parts[1] == WIRING:
        return "wiring"
    if parts[1] in STAGES:
        return parts[1]
    if parts[1] in TOOLS:
        return "tools"
    return "kernel"


def test_the_stage_links_are_in_place() -> None:
    for stage in STAGES:
        link = PACKAGE / stage
        assert link.is_symlink() and link.resolve() == ROOT / stage, f"citywatch/{stage}"


def test_the_kernel_imports_no_stage_tool_or_wiring() -> None:
    wrong = {
        (m, t)
        for m, targets in GRAPH.items()
        if _layer(m) == "kernel"
        for t in targets
        if _layer(t) != "kernel"
    }
    assert not wrong, sorted(wrong)


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_imports_only_the_kernel_and_the_stages_upstream(stage: str) -> None:
    allowed = {"kernel", stage} | STAGE_MAY_IMPORT[stage]
    wrong = {
        (m, t)
        for m, targets in GRAPH.items()
        if _layer(m) == stage
        for t in targets
        if _layer(t) not in allowed
    }
    assert not wrong, sorted(wrong)


def test_tools_import_no_wiring() -> None:
    wrong = {
        (m, t)
        for m, targets in GRAPH.items()
        if _layer(m) == "tools"
        for t in targets
        if _layer(t) == "wiring"
    }
    assert not wrong, sorted(wrong)


def test_no_import_circles() -> None:
    # Tarjan's strongly connected components over the module graph.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
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
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not circles, circles


def test_nothing_imports_a_stage_by_its_folder_name() -> None:
    """``import rules`` would load a second copy beside ``citywatch.rules``."""
    wrong = []
    for folder in ("citywatch", *STAGES, "tests", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom) and not node.level
                    else []
                )
                wrong += [f"{path}: {n}" for n in names if n.split(".")[0] in STAGES]
    assert not wrong, wrong
