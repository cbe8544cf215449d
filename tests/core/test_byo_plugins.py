"""Agents and benchmarks from installed packages: the ``metarl_bench.agents`` and
``metarl_bench.benchmarks`` entry-point groups, and what happens when a plugin is broken.

Entry points are faked in-process (the pip-installed example package is tested in
``tests/test_plugin.py``): a working plugin's agent is usable by name from the command line,
and each broken one is skipped with one stderr line naming it, its distribution and the
error, while everything else keeps working.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import sys
import types

import numpy as np
import pytest

import metarl_bench
from metarl_bench.cli import main

agents_mod = importlib.import_module("metarl_bench.agents")
benchmarks_mod = importlib.import_module("metarl_bench.benchmarks")
family_mod = importlib.import_module("metarl_bench.family")

AGENTS, BENCHMARKS = "metarl_bench.agents", "metarl_bench.benchmarks"


@pytest.fixture
def fake_plugins(monkeypatch):
    """``install((group, name, value, distribution), ..., modules={...})``: the installed entry
    points plus these; the agent and benchmark registries are restored afterwards (their private
    tables and load flags are touched because there is no public unregister or reload)."""
    agents_mod.agent_names()
    benchmarks_mod.benchmark_ids()
    saved = (
        {n: dict(k) for n, k in agents_mod._AGENTS.items()},
        dict(agents_mod._AGENT_SOURCES),
        dict(benchmarks_mod._BENCHMARKS),
        dict(benchmarks_mod._BENCHMARK_SOURCES),
    )

    def install(*extra: tuple[str, str, str, str], modules: dict[str, types.ModuleType] | None = None) -> None:
        for name, module in (modules or {}).items():
            monkeypatch.setitem(sys.modules, name, module)
        original = importlib.metadata.entry_points
        added: dict[str, list[importlib.metadata.EntryPoint]] = {}
        for group, name, value, dist in extra:
            ep = importlib.metadata.EntryPoint(name, value, group)
            # EntryPoint._for attaches a distribution: the only way to fake one without installing
            added.setdefault(group, []).append(ep._for(types.SimpleNamespace(name=dist)))

        def entry_points(**kw: object) -> object:
            group = kw.get("group")
            if group in added:
                return list(original(group=group)) + added[group]  # type: ignore[arg-type]
            return original(**kw)

        monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
        monkeypatch.setattr(agents_mod, "_PLUGINS_LOADED", False)
        monkeypatch.setattr(benchmarks_mod, "_LOADED", False)
        monkeypatch.setattr(family_mod, "_PLUGIN_ERRORS", [])

    yield install
    agents_mod._AGENTS.clear()
    agents_mod._AGENTS.update(saved[0])
    agents_mod._AGENT_SOURCES.clear()
    agents_mod._AGENT_SOURCES.update(saved[1])
    benchmarks_mod._BENCHMARKS.clear()
    benchmarks_mod._BENCHMARKS.update(saved[2])
    benchmarks_mod._BENCHMARK_SOURCES.clear()
    benchmarks_mod._BENCHMARK_SOURCES.update(saved[3])


class _FirstArmAdapter(metarl_bench.Adapter):
    def act(self, obs):
        return np.zeros(len(obs), dtype=np.int64)


def _agent_module() -> types.ModuleType:
    """A plugin module: a working agent, and hooks that fail in different ways."""
    module = types.ModuleType("metarl_fake_agents")

    @dataclasses.dataclass
    class ArmConfig(metarl_bench.AgentConfig):
        arm: int = 0
        """The arm to pull (documented for `agents show`)."""

    class FirstArm(metarl_bench.Agent):
        name = "first-arm"
        config_cls = ArmConfig
        description = "always pulls the first arm"

        def adapter(self, ctx):
            return _FirstArmAdapter()

    class Misnamed(FirstArm):
        name = "something-else"

    class FakeUCB(FirstArm):
        name = "ucb1"

    class Half(FirstArm):
        name = "half-registered"

    def half() -> None:
        metarl_bench.register_agent("half-registered", Half)
        raise RuntimeError("the second agent's weights are missing")

    module.FirstArm, module.Misnamed, module.FakeUCB, module.half = FirstArm, Misnamed, FakeUCB, half  # type: ignore[attr-defined]
    module.not_an_agent = 42  # type: ignore[attr-defined]
    FirstArm.__module__ = Misnamed.__module__ = FakeUCB.__module__ = Half.__module__ = module.__name__
    return module


def test_plugin_agents_are_usable_by_name_and_broken_ones_are_skipped(fake_plugins, capsys, tmp_path):
    fake_plugins(
        (AGENTS, "first-arm", "metarl_fake_agents:FirstArm", "metarl-fine"),
        (AGENTS, "broken", "metarl_no_such_agent_module:Agent", "metarl-broken"),
        (AGENTS, "half", "metarl_fake_agents:half", "metarl-half"),
        (AGENTS, "misnamed", "metarl_fake_agents:Misnamed", "metarl-misnamed"),
        (AGENTS, "ucb1", "metarl_fake_agents:FakeUCB", "metarl-takeover"),
        (AGENTS, "number", "metarl_fake_agents:not_an_agent", "metarl-number"),
        modules={"metarl_fake_agents": _agent_module()},
    )
    names = agents_mod.agent_names()
    assert "first-arm" in names and "ucb1" in names and "rl2" in names
    assert "half-registered" not in names and "misnamed" not in names and "something-else" not in names
    assert agents_mod.agent_source("first-arm") == "metarl-fine"
    assert agents_mod.agent_source("ucb1") == "metarl-bench"
    assert type(metarl_bench.agent("ucb1")).__module__ == "metarl_bench.baselines.classical.bandits"  # not replaced

    errors = {e.name: e for e in family_mod.plugin_errors(group=AGENTS)}
    assert set(errors) == {"broken", "half", "misnamed", "ucb1", "number"}
    assert errors["broken"].provider == "metarl-broken" and "No module named" in errors["broken"].error
    assert errors["half"].error == "RuntimeError: the second agent's weights are missing"
    assert "name = 'something-else'" in errors["misnamed"].error and "name = 'misnamed'" in errors["misnamed"].error
    assert "already registered by metarl-bench" in errors["ucb1"].error
    assert "neither an Agent subclass nor a function" in errors["number"].error
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 5, err  # one line per broken plugin
    for line, (name, dist) in zip(err, [("broken", "metarl-broken"), ("half", "metarl-half"),
                                        ("misnamed", "metarl-misnamed"), ("ucb1", "metarl-takeover"),
                                        ("number", "metarl-number")]):
        assert f"skipped the plugin {name!r}" in line and "'metarl_bench.agents'" in line
        assert f"pip uninstall {dist}" in line and "Its agents are not registered" in line

    # the plugin's agent runs from the command line by name; the broken plugins are not reported again
    args = ["evaluate", "--agent", "first-arm", "--benchmark", "MetaRL/Bandit-k5-n10-smoke-v0", "--results", str(tmp_path)]
    assert main(args) == 0
    assert (tmp_path / "MetaRL/Bandit-k5-n10-smoke-v0/first-arm/seed-0.json").exists()
    capsys.readouterr()
    assert main(["list", "agents"]) == 0
    out, err = capsys.readouterr()
    assert "skipped the plugin" not in err
    row = next(line for line in out.splitlines() if line.startswith("first-arm "))
    assert "always pulls the first arm" in row and row.split()[-1] == "metarl-fine"
    broken = out[out.index("Broken plugins"):]
    for name in ("broken", "half", "misnamed", "ucb1", "number"):
        assert any(line.split()[:2] == ["agents", name] for line in broken.splitlines())
    assert main(["agents", "show", "first-arm"]) == 0
    out = capsys.readouterr().out
    assert "source: metarl-fine" in out and "arm: int = 0" in out and "The arm to pull" in out


def _benchmark_module() -> types.ModuleType:
    module = types.ModuleType("metarl_fake_benchmarks")
    base = metarl_bench.benchmark("MetaRL/Bandit-k5-n10-v0")

    def fine() -> None:
        metarl_bench.register_benchmark(
            dataclasses.replace(base, id="MyLab/Bandit-k3-n6-v0", family_kwargs={"k": 3}, task_seed=3,
                                protocol=metarl_bench.Protocol(budget_episodes=6, runs_per_task=2, final_episodes=2),
                                n_train=10, n_test=4),
            smoke={"n_test": 2},
        )

    def half() -> None:
        metarl_bench.register_benchmark(dataclasses.replace(base, id="MyLab/Half-v0"))
        raise RuntimeError("the task file is missing")

    def takeover() -> None:  # a built-in id with another definition
        metarl_bench.register_benchmark(dataclasses.replace(base, n_test=5))

    module.fine, module.half, module.takeover = fine, half, takeover  # type: ignore[attr-defined]
    module.instance = dataclasses.replace(base, id="MyLab/Instance-v0")  # type: ignore[attr-defined]
    return module


def test_plugin_benchmarks_register_and_broken_ones_are_skipped(fake_plugins, capsys, tmp_path):
    fake_plugins(
        (BENCHMARKS, "fine", "metarl_fake_benchmarks:fine", "metarl-fine"),
        (BENCHMARKS, "instance", "metarl_fake_benchmarks:instance", "metarl-instance"),
        (BENCHMARKS, "broken", "metarl_no_such_benchmark_module:register", "metarl-broken"),
        (BENCHMARKS, "half", "metarl_fake_benchmarks:half", "metarl-half"),
        (BENCHMARKS, "takeover", "metarl_fake_benchmarks:takeover", "metarl-takeover"),
        modules={"metarl_fake_benchmarks": _benchmark_module()},
    )
    ids = benchmarks_mod.benchmark_ids()
    assert {"MyLab/Bandit-k3-n6-v0", "MyLab/Bandit-k3-n6-smoke-v0", "MyLab/Instance-v0"} <= set(ids)
    assert "MyLab/Half-v0" not in ids
    assert metarl_bench.benchmark("MetaRL/Bandit-k5-n10-v0").n_test == 1000  # the built-in is kept
    assert benchmarks_mod.benchmark_source("MyLab/Bandit-k3-n6-smoke-v0") == "metarl-fine"
    assert benchmarks_mod.benchmark_source("MyLab/Instance-v0") == "metarl-instance"
    assert benchmarks_mod.benchmark_source("MetaRL/Bandit-k5-n10-v0") == "metarl-bench"
    smoke = metarl_bench.benchmark("MyLab/Bandit-k3-n6-smoke-v0")
    assert (smoke.tier, smoke.n_test, smoke.protocol.budget_episodes) == ("smoke", 2, 6)

    errors = {e.name: e for e in family_mod.plugin_errors(group=BENCHMARKS)}
    assert set(errors) == {"broken", "half", "takeover"}
    assert errors["half"].error == "RuntimeError: the task file is missing"
    assert "already registered (by metarl-bench) with another definition" in errors["takeover"].error
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3, err
    assert all("'metarl_bench.benchmarks'" in line and "Its benchmarks are not registered" in line for line in err)

    assert main(["evaluate", "--agent", "ucb1", "--benchmark", "MyLab/Bandit-k3-n6-smoke-v0", "--no-save"]) == 0
    capsys.readouterr()
    assert main(["list", "benchmarks"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("MyLab/Bandit-k3-n6-v0 "))
    assert row.split()[-1] == "metarl-fine"
    assert any(line.split()[:2] == ["benchmarks", "takeover"] for line in out.splitlines())


def test_register_benchmark_refuses_bad_input_with_one_line():
    base = metarl_bench.benchmark("MetaRL/Bandit-k5-n10-v0")
    with pytest.raises(TypeError, match="takes a metarl_bench.benchmarks.Benchmark"):
        metarl_bench.register_benchmark("MetaRL/Bandit-k5-n10-v0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must look like 'Namespace/Name-vN'"):
        metarl_bench.register_benchmark(dataclasses.replace(base, id="no-version"))
    with pytest.raises(ValueError, match="bump the -vN"):
        metarl_bench.register_benchmark(dataclasses.replace(base, n_test=3))
    metarl_bench.register_benchmark(base)  # the same definition again is harmless


def test_register_agent_checks_its_input():
    class Named(metarl_bench.Agent):
        name = "named"

    with pytest.raises(ValueError, match="kind must be 'rl' or 'supervised'"):
        metarl_bench.register_agent("named", Named, kind="vision")
    with pytest.raises(ValueError, match="only letters, digits"):
        metarl_bench.register_agent("my/agent", Named)
    with pytest.raises(ValueError, match="set the class attribute name = 'other'"):
        metarl_bench.register_agent("other", Named)
    with pytest.raises(TypeError, match="not a subclass of metarl_bench.Agent"):
        metarl_bench.register_agent("named", dict)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already registered by metarl-bench"):
        metarl_bench.register_agent("random", type("Random", (Named,), {"name": "random"}))
    assert "named" not in agents_mod.agent_names()
