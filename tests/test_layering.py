"""The layering of DESIGN.md section 1, enforced.

- import-linter's contracts (``[tool.importlinter]`` in pyproject.toml) are kept: faces > commands >
  transports > engine; faces reach the engine only through commands; the engine never imports the notebook
  stack; the store imports no container module; images import no store ...;
- no import cycle among layerkit's modules, imports made inside functions counted (type-hint imports under
  ``if TYPE_CHECKING:`` are not dependencies, as DESIGN.md says; the store, images and containers close no
  cycle even through them);
- no face (the CLI, the notebook, the tour, the table of verbs they share) uses a private name of another.

Each check is also shown to fail on a package that breaks it, so none of them passes by not looking.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "layerkit"

# module -> the face it belongs to; modules of no face are absent
FACES = {"layerkit.cli": "cli", "layerkit.__main__": "cli", "layerkit.tour": "tour", "layerkit.verbs": "verbs"}


def face_of(module: str) -> str | None:
    """The face a module belongs to: the CLI, the notebook, the tour, or the verb table they share."""
    if module == "layerkit.notebook" or module.startswith("layerkit.notebook."):
        return "notebook"
    return FACES.get(module)


# ---- import-linter -------------------------------------------------------------------------------

def lint_imports(root: Path, config: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` (the venv's, beside this interpreter) on the package under ``root``."""
    exe = Path(sys.executable).with_name("lint-imports")
    cmd = [str(exe)] if exe.exists() else [shutil.which("lint-imports") or "lint-imports"]
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([*cmd, "--config", str(config), "--no-cache"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)


def test_import_linter_contracts_are_kept():
    res = lint_imports(ROOT, ROOT / "pyproject.toml")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert " kept, 0 broken." in out, out


def _copy_package(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(PACKAGE, root / "layerkit", ignore=shutil.ignore_patterns("__pycache__", "*.ipynb"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def _append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def test_import_linter_catches_an_engine_that_imports_a_face_inside_a_function(tmp_path):
    root = _copy_package(tmp_path)
    _append(root / "layerkit/engine/digests.py", "\n\ndef _bad():\n    from ..cli import main\n    return main\n")
    _append(root / "layerkit/engine/store.py", "\n\ndef _worse():\n    import pandas\n    return pandas\n")
    res = lint_imports(root, root / "pyproject.toml")
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "layerkit.engine.digests -> layerkit.cli" in out  # the layers contract, by line
    assert "layerkit.engine.store -> pandas" in out  # the notebook stack stays out of the engine


# ---- no import cycle -------------------------------------------------------------------------------

def import_graph(package: str, path: Path, hints: bool = False) -> grimp.ImportGraph:
    """The package's module import graph: every ``import``, at module level or in a function; with
    ``hints``, also those under ``if TYPE_CHECKING:``."""
    sys.path.insert(0, str(path))
    try:
        return grimp.build_graph(package, exclude_type_checking_imports=not hints, cache_dir=None)
    finally:
        sys.path.remove(str(path))


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) in each strongly connected component of more than one module."""
    edges = {m: sorted(graph.find_modules_directly_imported_by(m) & graph.modules - {m}) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(edges):  # Tarjan's algorithm, iterative (no recursion limit)
        if start in index:
            continue
        work = [(start, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = len(index)
                stack.append(v)
                on_stack.add(v)
            if i < len(edges[v]):
                work.append((v, i + 1))
                w = edges[v][i]
                if w not in index:
                    work.append((w, 0))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    components.append(comp)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    out = []
    for comp in components:
        members = set(comp)
        first = min(comp)
        # the shortest way back to the first module, inside the component
        prev: dict[str, str] = {}
        todo, seen, found = [first], {first}, None
        while todo and found is None:
            nxt = []
            for v in todo:
                for w in edges[v]:
                    if w == first:
                        found = v
                        break
                    if w in members and w not in seen:
                        seen.add(w)
                        prev[w] = v
                        nxt.append(w)
                if found is not None:
                    break
            todo = nxt
        path = [found]
        while path[-1] != first:
            path.append(prev[path[-1]])
        out.append([*reversed(path), first])
    return out


def describe(graph: grimp.ImportGraph, cycle: list[str]) -> str:
    """A cycle with the line of each import, as a reader fixes it."""
    parts = []
    for a, b in zip(cycle, cycle[1:], strict=False):
        lines = sorted({d["line_number"] for d in graph.get_import_details(importer=a, imported=b)})
        parts.append(f"{a} -> {b} (line {', '.join(map(str, lines))})")
    return "\n  ".join(parts)


def test_no_import_cycle_among_layerkit_modules():
    graph = import_graph("layerkit", ROOT)
    assert len(graph.modules) > 40  # the whole package was read
    found = cycles(graph)
    assert not found, "import cycles:\n  " + "\n\n  ".join(describe(graph, c) for c in found)


def test_store_images_and_containers_close_no_cycle_even_through_type_hints():
    # issue 13 named store <-> image <-> container: Image held the Store, the store found containers (which
    # name the store in their hints); images now read through IndexProvider and the store imports no container
    graph = import_graph("layerkit", ROOT, hints=True)
    trio = {"layerkit.engine.store", "layerkit.engine.image", "layerkit.engine.container"}
    bad = [c for c in cycles(graph) if len(trio & set(c)) > 1]
    assert not bad, "\n\n".join(describe(graph, c) for c in bad)


def test_cycle_check_sees_imports_inside_functions(tmp_path):
    pkg = tmp_path / "cyc"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .c import g\n    return g\n")
    (pkg / "c.py").write_text("def g():\n    from . import a\n    return a\n")
    (pkg / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n")
    (pkg / "e.py").write_text("from . import d\n")
    graph = import_graph("cyc", tmp_path)
    found = cycles(graph)
    assert found == [["cyc.a", "cyc.b", "cyc.c", "cyc.a"]]  # d's hint import closes no cycle
    assert describe(graph, found[0]) == "cyc.a -> cyc.b (line 1)\n  cyc.b -> cyc.c (line 2)\n  cyc.c -> cyc.a (line 2)"


# ---- no face uses another face's private names ---------------------------------------------------

def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _absolute(module: str, is_package: bool, level: int, name: str | None) -> str:
    """``from ..x import y`` in ``module``: the absolute name of ``..x``."""
    if level == 0:
        return name or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def private_uses(root: Path, package: str) -> list[tuple[str, str, str, int]]:
    """(module, module it reaches into, private name, line) for every use of another module's private name
    (``_name``, not ``__dunder__``): ``from M import _name`` and ``M._name`` where ``M`` names a module."""
    modules = {_module_name(p, root): p for p in (root / package).rglob("*.py")}
    out = []
    for mod, path in sorted(modules.items()):
        tree = ast.parse(path.read_text(), str(path))
        is_pkg = path.name == "__init__.py"
        bound: dict[str, str] = {}  # local name -> module it names
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in modules:
                        bound[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom):
                src = _absolute(mod, is_pkg, node.level, node.module)
                for a in node.names:
                    full = f"{src}.{a.name}"
                    if full in modules:
                        bound[a.asname or a.name] = full
                    elif a.name.startswith("_") and not a.name.startswith("__") and src in modules:
                        out.append((mod, src, a.name, node.lineno))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and isinstance(node.value, ast.Name) and node.value.id in bound):
                out.append((mod, bound[node.value.id], node.attr, node.lineno))
    return out


def cross_face(uses: list[tuple[str, str, str, int]]) -> list[tuple[str, str, str, int]]:
    """The uses by a face of a private name of another face."""
    return [u for u in uses if face_of(u[0]) and face_of(u[1]) and face_of(u[0]) != face_of(u[1])]


def test_no_face_uses_another_faces_private_names():
    uses = private_uses(ROOT, "layerkit")
    assert any(face_of(m) == "notebook" and face_of(t) == "notebook" for m, t, _n, _l in uses)  # it sees them
    bad = cross_face(uses)
    assert not bad, "\n".join(f"{m} uses {t}.{n} (line {line})" for m, t, n, line in bad)


def test_private_name_check_finds_both_forms(tmp_path):
    root = _copy_package(tmp_path)
    _append(root / "layerkit/notebook/magics.py", "\n\ndef _x():\n    from ..cli import _emit\n    return _emit\n")
    _append(root / "layerkit/notebook/plots.py", "\n\nfrom .. import verbs  # noqa: E402\nP = verbs._Parser\n")
    bad = cross_face(private_uses(root, "layerkit"))
    assert {(m, t, n) for m, t, n, _l in bad} == {("layerkit.notebook.magics", "layerkit.cli", "_emit"),
                                                  ("layerkit.notebook.plots", "layerkit.verbs", "_Parser")}
