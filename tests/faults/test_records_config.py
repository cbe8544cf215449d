"""Records are keyed by their configuration: a non-default config is stored beside the
default and never over it; ``run`` redoes a seed whose stored config differs."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

import metarl_bench
from metarl_bench.cli import main
from metarl_bench.results import config_differences, load_record, record_path, variant_name

REPO = Path(__file__).resolve().parents[2]
SMOKE = "MetaRL/Bandit-k5-n10-smoke-v0"


def test_readme_example_leaves_the_committed_default_record_alone(tmp_path, capsys):
    """`evaluate ... --agent ucb1 --set c=0.5` (the README's example) on a copy of the committed results."""
    bid = "MetaRL/Bandit-k5-n10-v0"
    src = REPO / "results" / bid / "ucb1"
    dst = tmp_path / bid / "ucb1"
    shutil.copytree(src, dst)
    before = {p.name: p.read_bytes() for p in dst.iterdir()}
    args = ["evaluate", "--benchmark", bid, "--agent", "ucb1", "--set", "c=0.5", "--results", str(tmp_path)]
    assert main(args) == 0
    assert {p.name: p.read_bytes() for p in dst.iterdir()} == before
    rec = load_record(tmp_path / bid / "ucb1@c=0.5" / "seed-0.json")
    assert rec.agent_name == "ucb1" and rec.variant == "ucb1@c=0.5" and rec.agent["config"] == {"c": 0.5}
    assert "ucb1@c=0.5/seed-0.json" in capsys.readouterr().out


def test_an_override_equal_to_the_default_gives_the_default_record(tmp_path):
    rec = metarl_bench.evaluate(metarl_bench.agent("ucb1", c=math.sqrt(2.0)), SMOKE, seed=0, results=tmp_path)
    assert rec.variant == "ucb1" and "variant" not in rec.agent
    assert (tmp_path / SMOKE / "ucb1" / "seed-0.json").exists()
    assert [p.name for p in (tmp_path / SMOKE).iterdir()] == ["ucb1"]


def test_variant_names_are_sorted_folder_safe_and_distinct():
    assert variant_name("ucb1", {}) == "ucb1"
    assert variant_name("ucb1", {"c": 0.5}) == "ucb1@c=0.5"
    assert variant_name("x", {"lr": 1e-5, "b": True, "a": [64, 64]}) == "x@a=64-64,b=true,lr=1e-05"
    odd = variant_name("x", {"s": "a/b"}), variant_name("x", {"s": "a b"}), variant_name("x", {"s": "a_b"})
    assert all("/" not in n and " " not in n for n in odd)
    assert len(set(odd)) == 3  # the two altered names carry a hash of the exact settings
    long = variant_name("x", {"k": "y" * 500})
    assert len(long) <= 120 and long == variant_name("x", {"k": "y" * 500})


def test_a_field_added_after_the_record_counts_as_its_default():
    assert config_differences({"a": 1}, {"a": 1, "b": 2}, {"b": 2}) == {}
    assert config_differences({"a": 1}, {"a": 1, "b": 3}, {"b": 2}) == {"b": ("<absent>", 3)}
    assert config_differences({"a": 1, "old": 0}, {"a": 1}) == {"old": (0, "<absent>")}
    assert config_differences({"t": [1, 2]}, {"t": (1, 2)}) == {}


def _plant(results: Path, c: float) -> Path:
    """A ucb1 record with ``c`` in ucb1's default place (as the old code wrote it)."""
    rec = metarl_bench.evaluate(metarl_bench.agent("ucb1", c=c), SMOKE, seed=0)
    rec.agent.pop("variant", None)
    rec.agent.pop("changed", None)
    path = rec.save(results)
    assert path == record_path(results, SMOKE, "ucb1", 0)
    return path


def test_run_redoes_a_seed_whose_stored_config_differs(tmp_path, capsys):
    path = _plant(tmp_path, 0.5)
    args = ["run", "--benchmark", SMOKE, "--agent", "ucb1", "--seeds", "0", "--workers", "1", "--results", str(tmp_path)]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "0 already done" in out and "1 to run" in out
    assert "another config" in err and "c: 0.5 stored" in err
    assert load_record(path).agent["config"] == {"c": math.sqrt(2.0)}
    assert main(args) == 0
    assert "1 already done" in capsys.readouterr().out


def test_run_of_a_non_default_config_keeps_the_default(tmp_path, capsys):
    default = _plant(tmp_path, math.sqrt(2.0))
    before = default.read_bytes()
    args = ["run", "--benchmark", SMOKE, "--agent", "ucb1", "--seeds", "0", "--workers", "1",
            "--set", "c=0.5", "--results", str(tmp_path)]
    assert main(args) == 0
    assert "1 to run" in capsys.readouterr().out
    assert default.read_bytes() == before
    assert load_record(record_path(tmp_path, SMOKE, "ucb1@c=0.5", 0)).agent["config"] == {"c": 0.5}


def test_a_chosen_name_is_never_reused_for_another_config(tmp_path, capsys):
    base = ["evaluate", "--benchmark", SMOKE, "--agent", "ucb1", "--results", str(tmp_path), "--name", "wide"]
    assert main(base + ["--set", "c=3.0"]) == 0
    path = record_path(tmp_path, SMOKE, "wide", 0)
    before = path.read_bytes()
    assert load_record(path).variant == "wide"
    capsys.readouterr()
    assert main(base + ["--set", "c=0.25"]) == 2
    err = capsys.readouterr().err
    assert "another config" in err and "--force" in err and err.count("\n") == 1
    assert path.read_bytes() == before
    assert main(base + ["--set", "c=0.25", "--force"]) == 0
    assert load_record(path).agent["config"] == {"c": 0.25}


@pytest.mark.parametrize("name, message", [("thompson", "another agent"), ("ucb1", "default configuration"),
                                           ("a/b", "not a usable name"), ("x@c=1", "not a usable name")])
def test_bad_names_are_refused_before_any_work(tmp_path, capsys, name, message):
    args = ["evaluate", "--benchmark", SMOKE, "--agent", "ucb1", "--set", "c=0.5", "--name", name,
            "--results", str(tmp_path)]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / SMOKE).exists() or not any((tmp_path / SMOKE).rglob("seed-*.json"))


def test_another_agents_record_is_never_replaced(tmp_path, capsys):
    rec = metarl_bench.evaluate(metarl_bench.agent("thompson"), SMOKE, seed=0)
    path = record_path(tmp_path, SMOKE, "ucb1@c=0.5", 0)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(rec.to_dict()))
    before = path.read_bytes()
    for cmd in (["evaluate", "--seed", "0"], ["run", "--seeds", "0", "--workers", "1", "--force"]):
        args = [cmd[0], "--benchmark", SMOKE, "--agent", "ucb1", "--set", "c=0.5", *cmd[1:], "--results", str(tmp_path)]
        assert main(args) != 0
        out, err = capsys.readouterr()
        assert "agent 'thompson'" in out + err
        assert path.read_bytes() == before
