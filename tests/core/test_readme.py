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
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    shown = tomllib.loads(_fenced("toml")[0])
    real = tomllib.loads((PLUGIN_EXAMPLE / "pyproject.toml").read_text())
    for key, value in shown["project"].items():
        assert real["project"][key] == value, f"README's pyproject differs from the example's at project.{key}"
    assert shown["tool"]["setuptools"] == real["tool"]["setuptools"]


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

    for b in as_list(getattr(args, "benchmark", None)):
        metarl_bench.benchmark(b)
    config = _parse_set(getattr(args, "set", None))
    for a in as_list(getattr(args, "agent", None)):
        metarl_bench.agent(a, **config)
    for a in (getattr(args, "agent_a", None), getattr(args, "agent_b", None)):
        if a is not None:
            metarl_bench.agent(a)
    for fid in getattr(args, "ids", None) or []:
        if not fid.startswith("MyLab/"):  # the README's example plugin, installed by tests/test_plugin.py only
            family_mod.family_spec(fid)
