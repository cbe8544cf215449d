"""The import direction between the layers: core modules load no learner and no speed
benchmark, and learners load no speed benchmark; the perf package sits on top of both."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

CORE = (
    "metarl_bench",
    "metarl_bench.tasks",
    "metarl_bench.family",
    "metarl_bench.benchmarks",
    "metarl_bench.benchmark_defs",
    "metarl_bench.benchmark_spec",
    "metarl_bench.harness",
    "metarl_bench.recording",
    "metarl_bench.results",
    "metarl_bench.stats",
    "metarl_bench.plots",
    "metarl_bench.leaderboard",
    "metarl_bench.supervised",
    "metarl_bench.fewshot_images",
    "metarl_bench.fewshot_nets",
)
LEARNERS = (
    "metarl_bench.baselines.classical.reference",
    "metarl_bench.baselines.classical.bandits",
    "metarl_bench.baselines.classical.psrl",
    "metarl_bench.baselines.gradient.maml_rl",
    "metarl_bench.baselines.gradient.reptile_rl",
    "metarl_bench.baselines.incontext.rl2",
    "metarl_bench.baselines.fewshot.maml",
    "metarl_bench.baselines.fewshot.metasgd",
    "metarl_bench.baselines.fewshot.reptile",
    "metarl_bench.baselines.fewshot.references",
)


def _loaded_after_importing(modules: tuple[str, ...], prefixes: tuple[str, ...]) -> list[str]:
    """The modules under ``prefixes`` that a fresh interpreter holds after importing ``modules``."""
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print('\\n'.join(sorted(m for m in sys.modules if m.startswith({prefixes!r}))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return out.split()


def test_core_modules_import_no_learner_and_no_speed_benchmark():
    assert _loaded_after_importing(CORE, ("metarl_bench.baselines", "metarl_bench.perf")) == []


def test_learners_import_no_speed_benchmark():
    loaded = _loaded_after_importing(LEARNERS, ("metarl_bench.baselines", "metarl_bench.perf"))
    assert set(LEARNERS) <= set(loaded)  # the check sees the learners it imported
    assert [m for m in loaded if m.startswith("metarl_bench.perf")] == []


def test_core_modules_name_no_learner_even_in_a_function():
    """Not even a lazy import inside a function: a core module that builds learner objects at
    run time (a network, a default agent) depends on the learners all the same."""
    found = []
    for module in CORE:
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin is not None, module
        tree = ast.parse(Path(spec.origin).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            found += [f"{module}:{node.lineno} imports {n}" for n in names
                      if n.startswith(("metarl_bench.baselines", "metarl_bench.perf"))]
    assert found == []


def _core_import_graph() -> dict[str, set[str]]:
    """Which core module (``metarl_bench/*.py``) imports which, from the source: every import
    statement counts, at the top or inside a function, except those under ``if TYPE_CHECKING:``
    (never run). ``from metarl_bench import stats`` is an import of ``metarl_bench.stats``;
    imports of subpackages (envs, baselines, perf) are not core and are left out."""
    spec = importlib.util.find_spec("metarl_bench")
    assert spec is not None and spec.origin is not None
    folder = Path(spec.origin).parent
    files = {("metarl_bench" if p.stem == "__init__" else f"metarl_bench.{p.stem}"): p for p in folder.glob("*.py")}

    def target(name: str) -> str | None:
        return name if name in files else None

    def imports(node: ast.AST) -> list[str]:
        out: list[str] = []
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                out += [n for c in child.orelse for n in imports(ast.Module(body=[c], type_ignores=[]))]
                continue
            if isinstance(child, ast.Import):
                out += [t for a in child.names if (t := target(a.name))]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                if child.module == "metarl_bench":
                    out += [target(f"metarl_bench.{a.name}") or "metarl_bench" for a in child.names]
                elif t := target(child.module):
                    out.append(t)
            out += imports(child)
        return out

    return {m: set(imports(ast.parse(p.read_text()))) - {m} for m, p in files.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_core_modules_import_each_other_without_cycles_even_in_a_function():
    """A lazy import that closes a cycle hides a tangle rather than removing it: shared pieces
    belong in a lower module both import (as ``recording`` for the harness and the supervised
    track, and ``benchmark_spec`` for the registry and the suite's definitions)."""
    graph = _core_import_graph()
    assert "metarl_bench.recording" in graph["metarl_bench.supervised"]  # the check sees imports
    assert "metarl_bench.supervised" in graph["metarl_bench.harness"]  # ... inside functions too
    assert _cycles(graph) == []
