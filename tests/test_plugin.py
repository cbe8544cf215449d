"""A third-party package adds a family, a benchmark and an agent through the entry-point groups
``metarl_bench.families``, ``metarl_bench.benchmarks`` and ``metarl_bench.agents``.

The example package in ``tests/plugin_example`` (the README's "Register a new family" example
and its agent and benchmark package, with the agent's tuned configs as package data) is
pip-installed, offline, into a temporary folder (never into the running environment, which
other test processes share), then used from fresh interpreters that have the folder on
``PYTHONPATH``: ``family_ids()`` lists the family, ``check_family`` passes on it, and the
command line runs its agent on its benchmark and on a built-in one, with its tuned configs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent / "plugin_example"
DIST = "metarl-corridor"
FAMILY_ID = "MyLab/Corridor-v0"
BENCHMARK_ID = "MyLab/Corridor-n4-v0"
AGENT = "explore-commit"


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the example plugin is installed in (``pip install --target``)."""
    root = tmp_path_factory.mktemp("plugin")
    # Build from a copy so that no build/ or *.egg-info lands in the repository.
    src = shutil.copytree(EXAMPLE, root / "plugin_example")
    target = root / "site"
    result = _pip("install", "--no-deps", "--no-build-isolation", "--no-index", "-q", "--target", str(target), str(src))
    assert result.returncode == 0, f"pip install of the example plugin failed:\n{result.stdout}\n{result.stderr}"
    assert (target / "metarl_corridor_agent" / "tuned_configs.yaml").exists()  # the agent's package data
    return target


def _env(plugin_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(plugin_path), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _python(code: str, plugin_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=_env(plugin_path))


def _cli(args: list[str], plugin_path: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed ``metarl-bench`` command (its console script), as a user runs it."""
    script = Path(sys.executable).parent / "metarl-bench"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "metarl_bench.cli"]
    return subprocess.run(cmd + args, capture_output=True, text=True, timeout=300, env=_env(plugin_path), cwd=cwd)


def test_example_plugin_is_short_enough_for_the_readme():
    lines = (EXAMPLE / "metarl_corridor.py").read_text().splitlines()
    assert len(lines) < 40


def test_installed_plugin_is_listed_and_passes_check_env(plugin_path):
    listed = _python("import metarl_bench; print(metarl_bench.family_ids())", plugin_path)
    assert listed.returncode == 0, listed.stderr
    assert FAMILY_ID in listed.stdout
    assert "MetaRL/Navigation2D-v0" in listed.stdout  # the suite's own families are still there

    checked = _python(
        "from metarl_bench.checks import check_family, format_report\n"
        "from metarl_bench.family import family_spec\n"
        f"results = check_family({FAMILY_ID!r})\n"
        "print(format_report(results))\n"
        f"print('provider:', family_spec({FAMILY_ID!r}).provider)\n"
        "raise SystemExit(0 if all(r.passed for r in results) else 1)\n",
        plugin_path,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "batched vs single envs" in checked.stdout
    assert f"provider: {DIST}" in checked.stdout
    # The set_task check switched between the two different corridor tasks (seed 0 draws goal 1 twice).
    set_task_line = next(line for line in checked.stdout.splitlines() if "set_task: at the next reset" in line)
    assert "CorridorTask(goal=1)" in set_task_line and "CorridorTask(goal=-1)" in set_task_line
    assert "left that episode unchanged" in set_task_line


def test_plugin_agent_runs_from_the_cli_on_its_benchmark_and_a_builtin_one(plugin_path, tmp_path):
    builtin = "MetaRL/Bandit-k5-n10-smoke-v0"
    run = _cli(["run", "--agent", AGENT, "--benchmark", BENCHMARK_ID, builtin, "--workers", "1",
                "--results", "res"], plugin_path, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "skipped the plugin" not in run.stderr

    corridor = json.loads((tmp_path / "res" / BENCHMARK_ID / AGENT / "seed-0.json").read_text())
    assert corridor["agent"]["name"] == AGENT and corridor["agent"]["config"] == {"rounds": 1}
    assert corridor["benchmark"]["id"] == BENCHMARK_ID
    # Every run tries the left end, then the right one (one of them pays), then keeps the paying
    # end for the last two episodes: 3 in total over the budget of 4, and 1 in the final episodes.
    assert corridor["scores"]["online"] == {"value": 3.0, "se": 0.0}
    assert corridor["scores"]["final"] == {"value": 1.0, "se": 0.0}

    bandit = json.loads((tmp_path / "res" / builtin / AGENT / "seed-0.json").read_text())
    assert bandit["agent"]["name"] == AGENT
    # 5 pulls to explore the arms, then 5 of the best one seen: above random (5), below the oracle (10).
    assert 5.0 < bandit["scores"]["online"]["value"] < 10.0

    # evaluate, with a setting changed: a variant beside the default record
    ev = _cli(["evaluate", "--agent", AGENT, "--benchmark", builtin, "--set", "rounds=2", "--results", "res"],
              plugin_path, tmp_path)
    assert ev.returncode == 0, ev.stdout + ev.stderr
    assert (tmp_path / "res" / builtin / f"{AGENT}@rounds=2" / "seed-0.json").exists()


def test_plugin_agent_reads_the_tuned_configs_its_package_ships(plugin_path, tmp_path):
    """``tuned_configs.yaml`` (package data beside the agent's module, named by the class) sets
    rounds=4 on the k5-n100 bandit: a run uses it (the smoke tier takes the quick tier's entry),
    stores it as the default record, and ``--set rounds=4`` there is that same default."""
    bench = "MetaRL/Bandit-k5-n100-smoke-v0"
    run = _cli(["run", "--agent", AGENT, "--benchmark", bench, "--workers", "1", "--results", "res"],
               plugin_path, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    record = json.loads((tmp_path / "res" / bench / AGENT / "seed-0.json").read_text())
    assert record["agent"]["config"] == {"rounds": 4} and "variant" not in record["agent"]
    ev = _cli(["evaluate", "--agent", AGENT, "--benchmark", bench, "--set", "rounds=4", "--results", "res"],
              plugin_path, tmp_path)
    assert ev.returncode == 0, ev.stdout + ev.stderr
    assert [p.name for p in (tmp_path / "res" / bench).iterdir() if not p.name.startswith(".")] == [AGENT]


def test_plugin_agent_and_benchmark_are_listed_with_their_source(plugin_path, tmp_path):
    listed = _cli(["list"], plugin_path, tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines() if line.strip()}
    assert rows[AGENT][-1] == DIST and rows["ucb1"][-1] == "metarl-bench"
    assert rows[BENCHMARK_ID][-1] == DIST and rows["MetaRL/Bandit-k5-n10-v0"][-1] == "metarl-bench"
    assert rows[FAMILY_ID][-1] == DIST
    assert "Broken plugins" not in listed.stdout

    shown = _cli(["agents", "show", AGENT], plugin_path, tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert f"source: {DIST}" in shown.stdout
    assert "rounds: int = 1" in shown.stdout
    assert "Episodes each action is tried before committing to the best one." in shown.stdout
    tuned = shown.stdout[shown.stdout.index("tuned configs ("):]
    assert str(plugin_path / "metarl_corridor_agent" / "tuned_configs.yaml") in tuned.splitlines()[0]
    assert "  MetaRL/Bandit-k5-n100-v0:\n    rounds = 4\n  MetaRL/Bandit-k10-n100-v0:\n    rounds = 3" in tuned


# --- a broken plugin is reported and skipped ------------------------------------------------


@pytest.fixture
def fake_entry_points(monkeypatch):
    """Replace the installed entry points by the real ones plus ``extra``; restore the registries after."""
    import importlib
    import importlib.metadata
    import types

    import gymnasium as gym

    family_mod = importlib.import_module("metarl_bench.family")

    real = list(importlib.metadata.entry_points(group=family_mod.ENTRY_POINT_GROUP))
    families, envs = dict(family_mod._REGISTRY), dict(gym.registry)

    def install(*extra: tuple[str, str, str | None], modules: dict[str, types.ModuleType] | None = None) -> None:
        for name, module in (modules or {}).items():
            monkeypatch.setitem(sys.modules, name, module)
        eps = []
        for name, value, dist in extra:
            ep = importlib.metadata.EntryPoint(name, value, family_mod.ENTRY_POINT_GROUP)
            eps.append(ep._for(types.SimpleNamespace(name=dist)) if dist else ep)
        original = importlib.metadata.entry_points

        def entry_points(**kw: object) -> object:
            return real + eps if kw.get("group") == family_mod.ENTRY_POINT_GROUP else original(**kw)

        monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
        monkeypatch.setattr(family_mod, "_PLUGINS_LOADED", False)
        monkeypatch.setattr(family_mod, "_PLUGIN_ERRORS", [])

    yield install
    family_mod._REGISTRY.clear()
    family_mod._REGISTRY.update(families)
    for eid in set(gym.registry) - set(envs):
        del gym.registry[eid]
    gym.registry.update(envs)


def _half_plugin():
    """A plugin module whose hook registers one family, then raises."""
    import types

    from metarl_bench.envs import Navigation2DFamily

    module = types.ModuleType("metarl_half_plugin")

    def register() -> None:
        import metarl_bench

        metarl_bench.register_family(type("Half", (Navigation2DFamily,), {"id": "Half/Registered-v0"}))
        raise RuntimeError("the second family's data file is missing")

    def register_ok() -> None:
        import metarl_bench

        metarl_bench.register_family(type("Fine", (Navigation2DFamily,), {"id": "Fine/Plugin-v0"}))

    module.register, module.register_ok = register, register_ok  # type: ignore[attr-defined]
    return module


def test_broken_plugins_are_reported_once_and_skipped(fake_entry_points, capsys):
    import gymnasium as gym

    import metarl_bench
    from metarl_bench.family import plugin_errors

    fake_entry_points(
        ("broken", "metarl_no_such_plugin_module:register", "metarl-broken"),
        ("half", "metarl_half_plugin:register", "metarl-half"),
        ("fine", "metarl_half_plugin:register_ok", "metarl-fine"),
        modules={"metarl_half_plugin": _half_plugin()},
    )
    ids = metarl_bench.family_ids()
    assert "MetaRL/Navigation2D-v0" in ids and "Fine/Plugin-v0" in ids  # the others still load
    # Nothing is left half-registered by the plugin that failed half-way.
    assert "Half/Registered-v0" not in ids and "Half/Registered-v0" not in gym.registry
    assert metarl_bench.family("Fine/Plugin-v0") is not None
    errors = {e.name: e for e in plugin_errors()}
    assert set(errors) == {"broken", "half"}
    assert errors["broken"].provider == "metarl-broken"
    assert errors["broken"].error.startswith("ModuleNotFoundError: No module named 'metarl_no_such_plugin_module'")
    assert errors["half"].provider == "metarl-half"
    assert errors["half"].error == "RuntimeError: the second family's data file is missing"
    metarl_bench.family_ids()
    metarl_bench.family("MetaRL/Bandit-v0")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2, err  # one line per broken plugin, once per process
    assert "'broken'" in err[0] and "metarl-broken" in err[0] and "No module named" in err[0]
    assert "pip uninstall metarl-broken" in err[0]
    assert "'half'" in err[1] and "metarl-half" in err[1] and "data file is missing" in err[1]


def test_broken_plugin_leaves_check_env_and_evaluate_working(fake_entry_points, capsys):
    import metarl_bench
    from metarl_bench.checks import check_family
    from metarl_bench.cli import main

    fake_entry_points(("broken", "metarl_no_such_plugin_module:register", "metarl-broken"))
    assert all(r.passed for r in check_family("MetaRL/Bandit-v0"))
    record = metarl_bench.evaluate(metarl_bench.agent("random"), metarl_bench.benchmark("MetaRL/Bandit-k5-n10-v0"))
    assert 4.0 < record.scores["online"]["value"] < 6.0  # n=10 pulls at mean 1/2
    assert main(["list", "families"]) == 0
    out, err = capsys.readouterr()
    assert "MetaRL/Navigation2D-v0" in out
    assert "Broken plugins" in out and "metarl-broken" in out
    assert err.count("skipped the plugin 'broken'") == 1
