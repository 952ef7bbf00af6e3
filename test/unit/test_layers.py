"""The package layout follows the layers of shared/DESIGN.md: imports flow down, and no cycles.

Every ``mickey_ros`` import is read from the source with ``ast`` (function-level imports too),
so a lazy import that runs back up a layer is caught as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "mickey_ros"

# A package may import only packages of a strictly lower rank (and itself).
RANK = {
    "utils": 0,
    "geometry": 1,
    "model": 1,
    "mapfree": 2,
    "estimator": 2,
    "relocalization": 3,
    "bags": 4,
    "synth": 5,  # a data source for train/ and cli/ as well as a front-end
    "keyframes": 5,  # keyframe library + selection (issue 29): below replay, ros and cli
    "replay": 6,
    "dataset": 6,  # bags -> Map-free layout (issue 27); uses synth's overlap geometry
    "eval": 6,
    "train": 6,
    "ros": 7,
    "cli": 7,
}


def _module_name(path: Path) -> str:
    parts = ["mickey_ros", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Modules of ``mickey_ros`` that ``path`` imports (``from a import b``: a.b when a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found |= {n for n in names if n in modules}
    return found


def _graph() -> dict[str, set[str]]:
    """Module -> the modules it imports, without its own ancestor packages.

    ``from mickey_ros.eval import scene_score`` inside ``mickey_ros.eval.report`` finds the package
    already being initialised; only module-to-module edges can form a cycle that breaks at import.
    """
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {
        name: {d for d in _imports(path, set(files)) if not name.startswith(d + ".")} - {name}
        for name, path in files.items()
    }


class TestLayers:
    def test_every_package_has_a_rank(self):
        packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
        assert packages == set(RANK)

    def test_imports_flow_down(self):
        violations = []
        for module, deps in _graph().items():
            src = module.split(".")[1] if module.count(".") else None
            for dep in deps:
                dst = dep.split(".")[1] if dep.count(".") else None
                if src is None or dst is None or src == dst:
                    continue
                if RANK[dst] >= RANK[src]:
                    violations.append(f"{module} -> {dep}")
        assert violations == []

    def test_no_import_cycles(self):
        graph = _graph()
        cycles = []
        for start in graph:
            stack, seen = [(start, [start])], set()
            while stack:
                node, path = stack.pop()
                for dep in graph[node]:
                    if dep == start:
                        cycles.append(" -> ".join([*path, start]))
                    elif dep not in seen:
                        seen.add(dep)
                        stack.append((dep, [*path, dep]))
        assert cycles == []
