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
