"""The import cycle between `_staging` and `_backends/processes` is gone (issue 21): no import of either module,
at the top or inside a function, leads back to the other. (Imports under `if TYPE_CHECKING:` do not run.)"""
import ast
from pathlib import Path
from typing import Dict, Set

PACKAGE = Path(__file__).resolve().parents[1] / "hydra_plugins" / "hydra_vertex_ai"
ROOT = "hydra_plugins.hydra_vertex_ai"


def _module_name(path: Path) -> str:
    return ".".join([ROOT, *path.relative_to(PACKAGE).with_suffix("").parts])


def _imports(path: Path) -> Set[str]:
    """The package's modules that `path` imports when its code runs (function-level imports included)."""
    tree = ast.parse(path.read_text())
    skipped = {id(node) for stmt in ast.walk(tree) if isinstance(stmt, ast.If)
               and "TYPE_CHECKING" in ast.unparse(stmt.test) for node in ast.walk(stmt)}
    package = _module_name(path).rsplit(".", 1)[0]
    found: Set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped or not isinstance(node, ast.ImportFrom):
            continue
        base = package.split(".")
        if node.level:
            base = base[: len(base) - node.level + 1]
        prefix = ".".join(base + ([node.module] if node.module else [])) if node.level else (node.module or "")
        for alias in node.names:
            found.add(f"{prefix}.{alias.name}")
            found.add(prefix)
    return found


def _graph() -> Dict[str, Set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules} for name, path in modules.items()}


def _reaches(graph: Dict[str, Set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name == goal:
            return True
        if name not in seen:
            seen.add(name)
            todo.extend(graph.get(name, ()))
    return False


def test_staging_and_processes_do_not_import_each_other() -> None:
    graph = _graph()
    staging, processes = f"{ROOT}._staging", f"{ROOT}._backends.processes"
    assert not (_reaches(graph, staging, processes) and _reaches(graph, processes, staging))
