"""The public API for one's own agents: what ``metarl_bench`` exports, and that exporting it
keeps ``import metarl_bench`` light (the agent, harness and saving modules load on first use)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import metarl_bench

EXPORTS = {
    "Agent": "metarl_bench.agents",
    "Adapter": "metarl_bench.agents",
    "AgentConfig": "metarl_bench.agents",
    "Transition": "metarl_bench.agents",
    "TrainContext": "metarl_bench.agents",
    "AdaptContext": "metarl_bench.agents",
    "register_agent": "metarl_bench.agents",
    "MetaTrainContext": "metarl_bench.harness",
    "EvalContext": "metarl_bench.harness",
    "Benchmark": "metarl_bench.benchmarks",
    "Protocol": "metarl_bench.benchmarks",
    "register_benchmark": "metarl_bench.benchmarks",
}


def _fresh(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_exported_names_are_the_modules_objects(name):
    import importlib

    assert getattr(metarl_bench, name) is getattr(importlib.import_module(EXPORTS[name]), name)
    assert name in metarl_bench.__all__ and name in dir(metarl_bench)


def test_every_name_in_all_resolves():
    for name in metarl_bench.__all__:
        assert getattr(metarl_bench, name) is not None, name
    with pytest.raises(AttributeError, match="has no attribute 'Agnet'"):
        metarl_bench.Agnet  # noqa: B018


def test_import_stays_light_and_exports_load_on_first_use():
    heavy = ("metarl_bench.agents", "metarl_bench.harness", "metarl_bench.benchmarks", "metarl_bench.saving", "torch")
    out = _fresh(
        "import sys, metarl_bench\n"
        f"heavy = {heavy!r}\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "metarl_bench.EvalContext\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    ).splitlines()
    assert out[0] == "[]"
    assert "'metarl_bench.harness'" in out[1] and "'metarl_bench.saving'" not in out[1]


def test_load_agent_imports_saving_only_when_called(tmp_path):
    out = _fresh(
        "import sys, metarl_bench\n"
        "print('metarl_bench.saving' in sys.modules)\n"
        "try:\n"
        f"    metarl_bench.load_agent({str(tmp_path / 'missing')!r})\n"
        "except ValueError as exc:\n"
        "    print(type(exc).__name__, 'missing' in str(exc))\n"
        "print('metarl_bench.saving' in sys.modules)\n"
    ).splitlines()
    assert out == ["False", "SavedAgentError True", "True"]
