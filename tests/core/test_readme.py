"""The README stays true: its Python blocks run, and the commands it names exist.

Every fenced ```python block of README.md is executed (in a temporary working
directory); the quickstart's printed score is checked against the value its comment
shows. The plugin example must be the exact file that ``tests/test_plugin.py``
installs and checks, and every ``metarl-bench ...`` line the README shows must parse
with the real command-line parser and name existing benchmarks, agents and families
(nothing slow is run).
"""

from __future__ import annotations

import ast
import importlib
import re
import shlex
import sys
from pathlib import Path

import gymnasium as gym
import pytest

from metarl_bench.cli import build_parser

family_mod = importlib.import_module("metarl_bench.family")  # the package's `family` attribute is the function

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
PLUGIN_EXAMPLE = ROOT / "tests" / "plugin_example"


def _fenced(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", README, flags=re.S | re.M)


PYTHON_BLOCKS = _fenced("python")


def _command_lines() -> list[str]:
    """Every ``metarl-bench ...`` invocation shown in the README (indented or ```bash blocks)."""
    lines: list[str] = []
    pending = ""
    for raw in README.splitlines():
        text = raw.strip()
        if pending:
            text = pending + " " + text
            pending = ""
        elif not text.startswith("metarl-bench "):
            continue
        if text.rstrip().endswith("\\"):
            pending = text.rstrip()[:-1].strip()
            continue
        lines.append(text)
    return lines


def _run_block(code: str, name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict:
    monkeypatch.chdir(tmp_path)
    module = type(sys)(name)  # a real module, so dataclasses can resolve their own module
    monkeypatch.setitem(sys.modules, name, module)
    exec(compile(code, f"README.md:{name}", "exec"), module.__dict__)  # noqa: S102
    return module.__dict__


def test_readme_has_the_blocks_this_test_expects():
    assert len(PYTHON_BLOCKS) >= 2, "README.md should hold the quickstart and the plugin example"
    assert "metarl_bench.family(" in PYTHON_BLOCKS[0]
    assert len(_command_lines()) >= 8


def test_quickstart_runs_and_prints_what_its_comment_says(monkeypatch, tmp_path, capsys):
    code = PYTHON_BLOCKS[0]
    _run_block(code, "readme_quickstart", monkeypatch, tmp_path)
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed, "the quickstart should print the online score"
    got = ast.literal_eval(printed[-1])
    claimed = re.search(r"print\(record\.scores\[\"online\"\]\)\s*#\s*(\{.*\})", code)
    assert claimed, "the quickstart's last print should carry the expected output as a comment"
    want = ast.literal_eval(claimed.group(1))
    assert set(got) == set(want)
    for key, value in want.items():
        decimals = len(str(value).partition(".")[2])
        assert round(got[key], decimals) == value, f"README claims {key}={value}, the code gives {got[key]}"
    assert not any(tmp_path.iterdir()), "the quickstart should not write files"


@pytest.fixture
def restore_registries():
    families, envs = dict(family_mod._REGISTRY), set(gym.registry)
    try:
        yield
    finally:
        for fid in set(family_mod._REGISTRY) - set(families):
            del family_mod._REGISTRY[fid]
        for eid in set(gym.registry) - envs:
            del gym.registry[eid]


def test_plugin_example_runs_and_is_the_tested_file(monkeypatch, tmp_path, restore_registries):
    import numpy as np

    import metarl_bench

    code = next(b for b in PYTHON_BLOCKS if "def register()" in b)
    # tests/test_plugin.py pip-installs and check-envs this file: the README must show it verbatim.
    assert code == (PLUGIN_EXAMPLE / "metarl_corridor.py").read_text()
    ns = _run_block(code, "metarl_corridor_readme", monkeypatch, tmp_path)
    ns["register"]()
    fam = metarl_bench.family("MyLab/Corridor-v0")
    task = fam.sample_tasks(1, np.random.default_rng(0))[0]
    assert fam.task_from_dict(task.to_dict()) == task
    env = gym.make("MyLab/Corridor-v0")
    env.unwrapped.set_task(ns["CorridorTask"](goal=1))
    env.reset(seed=0)
    rewards = [env.step(1)[1] for _ in range(3)]
    assert rewards == [0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="goal"):
        ns["CorridorTask"](goal=2).validate()


def test_plugin_pyproject_matches_the_tested_one():
    """The README's family pyproject is the example's, less what the example adds for its agent
    and benchmark (the entry points shown under "Evaluate your own agent", and the package
    that holds them with its tuned configs as package data)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    shown = tomllib.loads(_fenced("toml")[0])
    real = tomllib.loads((PLUGIN_EXAMPLE / "pyproject.toml").read_text())
    for key, value in shown["project"].items():
        if key == "entry-points":
            for group, entries in value.items():
                assert real["project"][key][group] == entries, f"README's pyproject differs at entry point group {group}"
            continue
        assert real["project"][key] == value, f"README's pyproject differs from the example's at project.{key}"
    assert set(real["project"]["entry-points"]) == {"metarl_bench.families", "metarl_bench.agents",
                                                     "metarl_bench.benchmarks"}
    shown_tool, real_tool = dict(shown["tool"]["setuptools"]), dict(real["tool"]["setuptools"])
    assert real_tool.pop("packages") == ["metarl_corridor_agent"]
    assert real_tool.pop("package-data") == {"metarl_corridor_agent": ["tuned_configs.yaml"]}
    assert shown_tool == real_tool


def _section(heading: str) -> str:
    """The text of README section ``## heading``, up to the next section."""
    m = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", README, flags=re.S | re.M)
    assert m, f"README.md has no section {heading!r}"
    return m.group(1)


def _block(heading: str, lang: str) -> str:
    blocks = re.findall(rf"^```{lang}\n(.*?)^```", _section(heading), flags=re.S | re.M)
    assert blocks, f"README section {heading!r} has no {lang} block"
    return blocks[0]


def test_own_agent_example_runs_and_prints_what_its_comment_says(monkeypatch, tmp_path, capsys):
    code = _block("Evaluate your own agent", "python")
    assert len([line for line in code.splitlines() if line.startswith((" ", "class"))]) <= 16  # about 10 lines of agent
    ns = _run_block(code, "readme_own_agent", monkeypatch, tmp_path)
    import metarl_bench

    assert issubclass(ns["TryEachArm"], metarl_bench.Agent) and issubclass(ns["TryEachArmAdapter"], metarl_bench.Adapter)
    assert ns["record"].agent["name"] == "try-each-arm"
    got = ast.literal_eval(capsys.readouterr().out.strip().splitlines()[-1])
    claimed = re.search(r"print\(record\.scores\[\"online\"\]\)\s*#\s*(\{.*\})", code)
    assert claimed, "the example's last print should carry the expected output as a comment"
    for key, value in ast.literal_eval(claimed.group(1)).items():
        decimals = len(str(value).partition(".")[2])
        assert round(got[key], decimals) == value, f"README claims {key}={value}, the code gives {got[key]}"
    # the prose's comparison holds: between UCB1 and Thompson sampling
    assert 5.69 < got["value"] < 5.85 and "between UCB1 (5.69) and Thompson sampling (5.85)" in _section("Evaluate your own agent")


def test_sb3_model_example_runs_and_beats_random(monkeypatch, tmp_path, capsys):
    import torch

    code = _block("Evaluate an SB3 model", "python")
    threads = torch.get_num_threads()
    try:
        ns = _run_block(code, "readme_sb3_model", monkeypatch, tmp_path)
    finally:
        torch.set_num_threads(threads)  # the example sets one thread, for this process only
    from stable_baselines3 import PPO

    assert isinstance(ns["model"], PPO)
    record, bench = ns["record"], ns["bench"]
    assert record.agent["name"] == "my-multitask-ppo" and record.meta_train["env_steps"] == 0
    final = ast.literal_eval(capsys.readouterr().out.strip().splitlines()[-1])["value"]
    random, oracle = bench.references["random"]["final"], bench.references["oracle"]["final"]
    claimed = re.search(r"about (-?[\d.]+) \(random (-?[\d.]+), oracle (-?[\d.]+)\)", code)
    assert claimed, "the example's last print should say what it prints"
    assert abs(final - float(claimed.group(1))) < 5
    assert random < final < oracle  # zero-shot after brief multi-task training: above random, below the oracle
    assert round(random, 1) == float(claimed.group(2)) and round(oracle, 1) == float(claimed.group(3))


def test_plugin_agent_pyproject_is_the_examples():
    tomllib = pytest.importorskip("tomllib")
    shown = tomllib.loads(_block("Evaluate your own agent", "toml"))
    real = tomllib.loads((PLUGIN_EXAMPLE / "pyproject.toml").read_text())
    for group, entries in shown["project"]["entry-points"].items():
        assert real["project"]["entry-points"][group] == entries
    for key, value in shown["tool"]["setuptools"].items():  # the agent's package and its tuned configs
        assert real["tool"]["setuptools"][key] == value, f"README's pyproject differs at tool.setuptools.{key}"


@pytest.mark.parametrize("line", _command_lines(), ids=lambda line: " ".join(shlex.split(line, comments=True))[:70])
def test_every_command_line_in_the_readme_parses(line):
    argv = shlex.split(line, comments=True)
    assert argv[0] == "metarl-bench"
    parser = build_parser()
    try:
        args = parser.parse_args(argv[1:])
    except SystemExit as exc:  # argparse reports unknown commands and options this way
        raise AssertionError(f"README command does not parse: {line!r}") from exc
    assert args.command == argv[1]
    assert callable(args.fn)
    _check_named_ids(args)


def _check_named_ids(args) -> None:
    """The benchmarks, agents (with their --set overrides) and families a README command names exist."""
    import metarl_bench
    from metarl_bench.cli import _parse_set

    def as_list(v):
        return [] if v is None else [v] if isinstance(v, str) else list(v)

    # the README's example plugin (MyLab/..., explore-commit) is installed by tests/test_plugin.py only
    for b in as_list(getattr(args, "benchmark", None)):
        if not b.startswith("MyLab/"):
            metarl_bench.benchmark(b)
    config = _parse_set(getattr(args, "set", None))
    for a in as_list(getattr(args, "agent", None)):
        if a != "explore-commit":
            metarl_bench.agent(a, **config)
    if getattr(args, "name", None) is not None and args.command == "agents":
        if args.name != "explore-commit":
            metarl_bench.agent(args.name)
    for a in (getattr(args, "agent_a", None), getattr(args, "agent_b", None)):
        if a is not None:
            metarl_bench.agent(a)
    for fid in getattr(args, "ids", None) or []:
        if not fid.startswith("MyLab/"):
            family_mod.family_spec(fid)
