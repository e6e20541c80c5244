"""The package's import structure: no cycles between interp's modules, and imports without side effects.

The graph is read from the source with ``ast``, so it sees every import, including the lazy
ones inside functions (``def f(): from interp.analysis import ...``) that a runtime check
would miss until the function runs. An edge A -> B means module A names module B in an import
statement; ``from interp import store`` is an edge to ``interp.store``. The implicit import
of a parent package (importing ``interp.sweep.worker`` runs ``interp/sweep/__init__.py``) is
not an edge: Python resolves it before the child, whatever the child imports.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "interp"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def interp_modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted name -> file of every module and package under ``package``."""
    return {module_name(p, package.parent): p for p in sorted(package.rglob("*.py"))}


def imported_modules(path: Path, name: str, known: set[str]) -> set[str]:
    """The interp modules that ``path`` (module ``name``) imports anywhere in its source."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x, from ..measures import y
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # ``from pkg import sub`` imports the submodule pkg.sub where one exists.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            # ``import interp.a.b`` names interp.a.b (its parents are not edges, see above).
            while target and target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in known and target != name:
                found.add(target)
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    modules = interp_modules(package)
    known = set(modules)
    return {name: imported_modules(path, name, known) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search with colours)."""
    colour = dict.fromkeys(graph, 0)  # 0 unseen, 1 on the current path, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt, 2) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if colour.get(nxt) == 0 and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        colour[node] = 2
        return None

    for node in sorted(graph):
        if colour[node] == 0 and (cycle := visit(node)):
            return cycle
    return None


def test_import_graph__has_no_cycle():
    # Catches: any cycle between interp modules, lazy imports inside functions included; in
    # particular the old one, interp.train importing interp.analysis (to analyse checkpoints as
    # they land) while interp.analysis imported autocast/pick_precision from interp.train.
    graph = import_graph()
    assert "interp.train" in graph and "interp.analysis" in graph  # the parser sees the package
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_import_graph__finds_lazy_imports_and_the_old_cycle(tmp_path):
    # Negative control for the test above: a package shaped like the old code (a lazy import
    # inside a function closing a cycle, written in each import style) must be reported.
    pkg = tmp_path / "interp"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "device.py").write_text("import torch\n")
    (pkg / "train.py").write_text("from interp import device\n\ndef checkpoint():\n"
                                  "    from interp.analysis import analyze_run\n")
    (pkg / "analysis.py").write_text("def f():\n    from interp.train import autocast\n")
    (pkg / "sub" / "__init__.py").write_text("from . import worker\n")
    (pkg / "sub" / "worker.py").write_text("def g():\n    import interp.sub.spec as s\n    from ..device import x\n")
    (pkg / "sub" / "spec.py").write_text("")
    graph = import_graph(pkg)
    assert graph["interp.train"] == {"interp.device", "interp.analysis"}
    assert graph["interp.analysis"] == {"interp.train"}
    assert graph["interp.sub"] == {"interp.sub.worker"}
    assert graph["interp.sub.worker"] == {"interp.sub.spec", "interp.device"}
    cycle = find_cycle(graph)
    assert cycle[0] == cycle[-1] and set(cycle) == {"interp.analysis", "interp.train"}
    (pkg / "analysis.py").write_text("def f():\n    from interp.device import autocast\n")
    assert find_cycle(import_graph(pkg)) is None


def test_device_module__sits_on_the_lowest_floor():
    # Catches: device/precision choice growing a dependency on the modules that use it.
    assert import_graph()["interp.device"] <= {"interp.errors"}
    assert "interp.analysis" not in import_graph()["interp.train"]


def test_no_interp_module_imports_streamlit_anywhere():
    # Catches: a streamlit import in the package, even a lazy one that the runtime check below
    # would miss; only apps/ imports it (``interp app`` finds it with importlib.util.find_spec).
    offenders = []
    for name, path in interp_modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{name}: {n}" for n in names if n.split(".")[0] == "streamlit"]
    assert offenders == []


def dependencies_first(graph: dict[str, set[str]]) -> list[str]:
    """Every module after the modules it imports (depth-first post-order; a cycle, which the
    test above reports, is cut where it is met)."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(node: str) -> None:
        seen.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in seen:
                visit(nxt)
        order.append(node)

    for node in sorted(graph):
        if node not in seen:
            visit(node)
    return order


PROBE = r"""
import json, os, sys
from pathlib import Path
import torch
watched = [Path(p) for p in sys.argv[2:]]
def files():
    return sorted(str(p) for root in watched for p in root.rglob("*"))
def state():
    return {"threads": torch.get_num_threads(), "interop": torch.get_num_interop_threads(),
            "dtype": str(torch.get_default_dtype()), "grad": torch.is_grad_enabled(),
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "streamlit": "streamlit" in sys.modules, "files": files()}
before, changes = state(), {}
for name in json.loads(sys.argv[1]):
    __import__(name)
    now = state()
    diff = {k: [before[k], now[k]] for k in now if now[k] != before[k]}
    if diff:
        changes[name] = diff
        before = now
print(json.dumps(changes))
"""


def test_importing_every_module__has_no_side_effects(tmp_path):
    # Catches: a module that at import time writes files (a cache, a log, a run directory) in
    # the working directory, the home directory or the token cache; changes torch's thread
    # counts, default dtype, grad mode or determinism; or imports streamlit outside apps/.
    # One fresh interpreter imports every module, checking after each one; dependencies come
    # first, so a change is reported against the module that makes it.
    names = dependencies_first(import_graph())
    home, cache, work = tmp_path / "home", tmp_path / "cache", tmp_path / "work"
    for folder in (home, cache, work):
        folder.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "INTERP_CACHE": str(cache),
           "PYTHONPATH": str(ROOT), "MPLCONFIGDIR": str(tmp_path / "mpl"), "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(names), str(home), str(cache), str(work)],
                          cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    changes = json.loads(proc.stdout.strip().splitlines()[-1])
    assert changes == {}, changes
