"""The command line for one's own agents: ``agents show`` / ``agents list``, saving with
``train --save`` and loading with ``evaluate --agent-dir``, and ``--tensorboard``."""

from __future__ import annotations

import json

import pytest

import metarl_bench
from metarl_bench.cli import config_fields, main

SMOKE_NAV = "MetaRL/Navigation2D-smoke-v0"
TINY_MAML = ["--set", "iterations=1", "--set", "meta_batch_size=2", "--set", "fast_batch_size=2"]


# --- agents show / list ------------------------------------------------------------------------


def test_agents_show_prints_every_field_with_type_default_and_doc(capsys):
    assert main(["agents", "show", "ucb1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ucb1  (source: metarl-bench)")
    assert "[rl] metarl_bench.baselines.classical.bandits:UCB1Agent" in out
    assert "UCB1, c = sqrt(2)" in out  # the description
    assert "c: float = 1.4142135623730951" in out
    assert "Exploration coefficient: index = mean + c * sqrt(ln t / n_i)" in out
    assert "tuned configs: none" in out


def test_agents_show_covers_inherited_fields_multiline_docs_and_tuned_entries(capsys):
    import dataclasses

    from metarl_bench.agents import agent_class

    assert main(["agents", "show", "maml-trpo"]) == 0
    out = capsys.readouterr().out
    cfg = agent_class("maml-trpo").config_cls
    for f in dataclasses.fields(cfg):  # every field, the inherited ones (MAMLConfig's) included
        assert f"\n    {f.name}: " in out, f.name
    assert "meta_batch_size: int = 20\n        Tasks per meta-batch (outer update)." in out
    assert "hidden_sizes: tuple[int, ...] = (64, 64)" in out
    # a docstring over several lines is shown whole
    assert "meta-gradient, the trust-region check and the line search always use every sample." in out
    # the tuned YAML entries, per benchmark
    tuned = out[out.index("tuned configs (baselines/configs/maml-trpo.yaml"):]
    assert "  MetaRL/Navigation2D-smoke-v0:\n    meta_batch_size = 4\n    iterations = 2" in tuned


def test_agents_show_a_name_with_two_kinds_shows_both(capsys):
    assert main(["agents", "show", "reptile"]) == 0
    out = capsys.readouterr().out
    assert "[rl] metarl_bench.baselines.gradient.reptile_rl:ReptileRL" in out
    assert "[supervised] metarl_bench.baselines.fewshot.reptile:ReptileAgent" in out
    assert out.count("config (") == 2


def test_config_fields_read_docstrings_and_end_of_line_comments():
    import dataclasses

    @dataclasses.dataclass
    class Config(metarl_bench.AgentConfig):
        lr: float = 1e-3
        """Step size."""
        width: int = 64  # hidden units
        names: list[str] = dataclasses.field(default_factory=lambda: ["a"])
        maybe: int | None = None

    rows = {name: (tp, default, doc) for name, tp, default, doc in config_fields(Config)}
    assert rows == {
        "lr": ("float", "0.001", "Step size."),
        "width": ("int", "64", "hidden units"),
        "names": ("list[str]", "['a']", ""),
        "maybe": ("int | None", "None", ""),
    }


def test_agents_show_unknown_name_is_one_line_with_close_matches(capsys):
    assert main(["agents", "show", "ucb"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "unknown agent 'ucb'" in err[0] and "ucb1" in err[0]
    assert main(["agents", "show"]) == 2
    assert "agents show needs an agent name" in capsys.readouterr().err


def test_agents_list_is_list_agents(capsys):
    assert main(["agents", "list"]) == 0
    listed = capsys.readouterr().out
    assert main(["list", "agents"]) == 0
    assert listed == capsys.readouterr().out
    assert next(line for line in listed.splitlines() if line.startswith("name ")).split()[-1] == "source"


# --- train --save / evaluate --agent-dir ------------------------------------------------------


def _score_lines(out: str) -> list[str]:
    """The summary's score rows (the headline's marked ``*``) and its curve line."""
    return [line for line in out.splitlines() if line.lstrip("* ").startswith(("online", "final", "curve"))]


def test_train_saves_and_evaluate_agent_dir_reproduces_the_scores(tmp_path, capsys):
    save, results = tmp_path / "saved", tmp_path / "res"
    args = ["train", "--benchmark", SMOKE_NAV, "--agent", "maml-trpo", *TINY_MAML, "--save", str(save),
            "--results", str(results)]
    assert main(args) == 0
    trained = capsys.readouterr().out
    assert f"saved agent: {save}" in trained and f"metarl-bench evaluate --agent-dir {save}" in trained
    manifest = json.loads((save / "manifest.json").read_text())
    assert manifest["benchmark"]["id"] == SMOKE_NAV and manifest["agent"]["name"] == "maml-trpo"
    assert manifest["agent"]["config"]["iterations"] == 1

    # no --benchmark and no --seed: the saved agent's own; its scores are those of the run that saved it
    assert main(["evaluate", "--agent-dir", str(save), "--no-save"]) == 0
    loaded = capsys.readouterr().out
    assert _score_lines(loaded) == _score_lines(trained) and len(_score_lines(loaded)) == 3
    assert [line.split()[1] for line in _score_lines(loaded) if line.startswith("*")] == ["final"]  # navigation's
    assert f"meta-training: none here; loaded from {save}" in loaded


def test_evaluate_agent_dir_errors_are_one_line(tmp_path, capsys):
    assert main(["evaluate", "--agent-dir", str(tmp_path / "nothing-here"), "--no-save"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing-here" in err[0]
    assert main(["evaluate", "--agent-dir", str(tmp_path), "--set", "c=1", "--no-save"]) == 2
    assert "--agent-dir loads an agent trained already" in capsys.readouterr().err
    assert main(["evaluate", "--agent", "ucb1", "--no-save"]) == 2
    assert "evaluate --agent needs --benchmark ID" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: one of --agent and --agent-dir, not both
        main(["evaluate", "--agent", "ucb1", "--agent-dir", str(tmp_path), "--benchmark", SMOKE_NAV])
    (tmp_path / "file").write_text("")
    args = ["train", "--benchmark", SMOKE_NAV, "--agent", "maml-trpo", "--save", str(tmp_path / "file"), "--no-save"]
    assert main(args) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_evaluate_agent_dir_refuses_another_benchmark(tmp_path, capsys):
    save = tmp_path / "saved"
    assert main(["train", "--benchmark", SMOKE_NAV, "--agent", "maml-trpo", *TINY_MAML, "--save", str(save),
                 "--no-save"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--agent-dir", str(save), "--benchmark", "MetaRL/Navigation2D-v0", "--no-save"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest.json" in err[0] and SMOKE_NAV in err[0]


# --- --tensorboard -----------------------------------------------------------------------------


@pytest.fixture
def calls(monkeypatch):
    """``metarl_bench.evaluate`` replaced by a recorder that runs the real one without TensorBoard."""
    seen: list[dict] = []
    real = metarl_bench.evaluate

    def recorder(agent, benchmark, seed=0, **kw):
        seen.append({"benchmark": benchmark, "seed": seed, **kw})
        kw.pop("tensorboard", None)
        return real(agent, benchmark, seed=seed, **kw)

    monkeypatch.setattr(metarl_bench, "evaluate", recorder)
    return seen


def test_tensorboard_and_save_reach_evaluate(calls, tmp_path, capsys):
    bench = "MetaRL/Bandit-k5-n10-smoke-v0"
    assert main(["evaluate", "--agent", "ucb1", "--benchmark", bench, "--no-save", "--tensorboard", str(tmp_path / "tb")]) == 0
    assert main(["evaluate", "--agent", "ucb1", "--benchmark", bench, "--no-save", "--seed", "3"]) == 0
    assert calls[0]["tensorboard"] == str(tmp_path / "tb") and calls[0]["seed"] == 0
    assert "tensorboard" not in calls[1] and calls[1]["seed"] == 3
    assert main(["train", "--agent", "maml-trpo", *TINY_MAML, "--benchmark", SMOKE_NAV, "--no-save", "--seed", "2",
                 "--save", str(tmp_path / "saved"), "--tensorboard", str(tmp_path / "tb")]) == 0
    assert calls[2]["save_agent"] == str(tmp_path / "saved") and calls[2]["tensorboard"] == str(tmp_path / "tb")
    assert calls[2]["seed"] == 2 and calls[2]["benchmark"] == SMOKE_NAV


def test_run_passes_tensorboard_to_the_sweep(monkeypatch, tmp_path, capsys):
    from metarl_bench import sweep

    seen: list[dict] = []

    def run_sweep(jobs, results, tensorboard=None, **kw):
        seen.append({"jobs": [str(j) for j in jobs], "tensorboard": tensorboard})
        return [], []

    monkeypatch.setattr(sweep, "run_sweep", run_sweep)
    args = ["run", "--agent", "ucb1", "--benchmark", "MetaRL/Bandit-k5-n10-smoke-v0", "--results", str(tmp_path)]
    assert main(args + ["--tensorboard", str(tmp_path / "tb")]) == 0
    assert main(args) == 0
    assert [s["tensorboard"] for s in seen] == [str(tmp_path / "tb"), None]
    assert seen[0]["jobs"] == ["ucb1 on MetaRL/Bandit-k5-n10-smoke-v0 seed 0"]


def test_evaluate_tensorboard_writes_event_files(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    tb = tmp_path / "tb"
    args = ["evaluate", "--agent", "maml-trpo", *TINY_MAML, "--benchmark", SMOKE_NAV, "--no-save", "--tensorboard", str(tb)]
    assert main(args) == 0
    events = list(tb.rglob("events.out.tfevents.*"))
    assert events, f"no TensorBoard event files under {tb}"


def test_run_tensorboard_writes_one_run_per_job_in_the_pool_and_in_process(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    tb, results = tmp_path / "tb", tmp_path / "results"
    base = ["run", "--agent", "maml-trpo", *TINY_MAML, "--benchmark", SMOKE_NAV, "--results", str(results),
            "--tensorboard", str(tb)]
    assert main(base + ["--seeds", "0", "1", "--workers", "2"]) == 0  # a process pool
    assert main(base + ["--seeds", "1", "2", "--workers", "1"]) == 0  # in this process; seed 1 is done
    runs = sorted(p.name.rsplit("_seed", 1)[1] for p in (tb / SMOKE_NAV).iterdir())
    assert runs == ["0_1", "1_1", "2_1"]  # one run per job that ran, none for the job already done
    for run in (tb / SMOKE_NAV).iterdir():
        assert list(run.glob("events.out.tfevents.*")), f"no TensorBoard event files in {run}"
    assert len(list(results.rglob("seed-*.json"))) == 3
