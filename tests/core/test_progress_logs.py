"""Progress and training logs: every learner's meta-training shows a progress bar when
asked (and nothing otherwise), ``evaluate(..., tensorboard=DIR)`` writes the recorded
metrics as TensorBoard scalars in Stable-Baselines3's layout (x = env steps), the
leaderboard and compare show bars when asked, and ``format_record_summary`` gives a short
table with the headline marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import metarl_bench
from metarl_bench.recording import progress_bar, tensorboard_run_dir
from metarl_bench.results import format_record_summary

BANDIT = "MetaRL/Bandit-k5-n10-smoke-v0"
SINUSOID = "MetaRL/Sinusoid-K5-smoke-v0"

TINY: dict[str, tuple[str, dict[str, Any]]] = {
    "maml-trpo": (BANDIT, {"iterations": 2}),
    "maml-ppo": (BANDIT, {"iterations": 2}),
    "reptile-rl": (BANDIT, {"iterations": 2}),
    "rl2": (BANDIT, {"num_trials": 16, "num_minibatches": 2, "update_epochs": 1, "hidden_size": 8,
                     "train_env_steps": 16 * 10 * 2, "log_every": 1}),
    "maml": (SINUSOID, {"iterations": 3}),
    "fomaml": (SINUSOID, {"iterations": 3}),
    "meta-sgd": (SINUSOID, {"iterations": 3}),
    "reptile": (SINUSOID, {"iterations": 3}),
    "pretrained": (SINUSOID, {"iterations": 3}),
}


def _run(key: str, **kwargs: Any) -> Any:
    bench, overrides = TINY[key]
    name = "reptile" if key == "reptile-rl" else key
    return metarl_bench.evaluate(metarl_bench.agent(name, **overrides), bench, seed=0, **kwargs)


# --- progress --------------------------------------------------------------------------------


class _Recorder:
    """A progress bar that records what it was told."""

    def __init__(self, enabled: bool | None, total: float | None, desc: str, unit: str = "it", leave: bool = False):
        self.enabled, self.total, self.desc, self.unit, self.n = enabled, total, desc, unit, 0.0

    def update(self, n: float | None = 1) -> None:
        self.n += n or 0

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


# meta-training steps of the TINY configs: iterations, or PPO updates for rl2 (2 x 16 trials of 10 pulls)
STEPS = {"rl2": 2, "maml-trpo": 2, "maml-ppo": 2, "reptile-rl": 2}


@pytest.mark.parametrize("key", sorted(TINY))
def test_every_learner_counts_its_meta_training_on_a_progress_bar(key, monkeypatch):
    from metarl_bench import harness, supervised

    bars: list[_Recorder] = []

    def record(*args: Any, **kwargs: Any) -> _Recorder:
        bars.append(_Recorder(*args, **kwargs))
        return bars[-1]

    monkeypatch.setattr(harness, "progress_bar", record)
    monkeypatch.setattr(supervised, "progress_bar", record)
    _run(key, progress=True)
    name = "reptile" if key == "reptile-rl" else key
    (bar,) = [b for b in bars if b.desc == f"{name}: meta-training"]  # the learner's own bar
    assert bar.enabled is True and bar.unit == ("update" if key == "rl2" else "it")
    assert bar.total == bar.n == STEPS.get(key, 3)


@pytest.mark.parametrize("key", ["maml-trpo", "rl2", "maml"])
def test_meta_training_progress_shows_on_stderr_only_when_asked(key, capsys):
    _run(key, progress=True)
    name = "reptile" if key == "reptile-rl" else key
    assert f"{name}: meta-training" in capsys.readouterr().err
    _run(key, progress=False)
    assert capsys.readouterr().err == ""


def test_progress_bars_follow_the_terminal_unless_asked(capsys):
    with progress_bar(None, 3, "quiet", unit="x") as bar:  # stderr is not a terminal under pytest
        bar.update(3)
    assert capsys.readouterr().err == ""
    with progress_bar(True, 3, "shown", unit="x") as bar:
        bar.update(3)
    assert "shown" in capsys.readouterr().err


def _records(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    for seed in (0, 1):
        for name in ("thompson", "ucb1"):
            metarl_bench.evaluate(metarl_bench.agent(name), BANDIT, seed=seed, results=results)
    return results


def test_leaderboard_and_compare_show_progress_when_asked(tmp_path, capsys):
    from metarl_bench.leaderboard import compare, write_leaderboard

    results = _records(tmp_path)
    capsys.readouterr()
    write_leaderboard(results, reps=20, progress=True)
    err = capsys.readouterr().err
    assert "loading records" in err and "/4 [" in err  # 4 records
    assert "tables and plots of 1 benchmarks" in err and "2/2 [" in err  # its table and its plots
    compare(results, "thompson", "ucb1", BANDIT, reps=20, progress=True)
    err = capsys.readouterr().err
    assert "loading records" in err and "bootstrap confidence intervals" in err and "/4 [" in err

    write_leaderboard(results, reps=20, progress=False)
    compare(results, "thompson", "ucb1", BANDIT, reps=20)  # stderr is not a terminal: no bar
    assert capsys.readouterr().err == ""


# --- TensorBoard -----------------------------------------------------------------------------


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert list(folder.glob("events.out.tfevents.*")), f"no event file in {folder}"
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_training_metrics_go_to_tensorboard_in_sb3_layout(tmp_path):
    record = _run("maml-trpo", tensorboard=tmp_path / "tb")
    run = tmp_path / "tb" / BANDIT / "maml-trpo@iterations=2_seed0_1"
    scalars = _scalars(run)
    log = record.extra["train_log"]
    for key in ("valid_return", "train_return", "iteration"):
        assert [s for s, _ in scalars[f"train/{key}"]] == [row["env_steps"] for row in log]  # x = env steps
        assert [v for _, v in scalars[f"train/{key}"]] == pytest.approx([row[key] for row in log], rel=1e-6)
    assert "time/wall_seconds" in scalars and "train/env_steps" not in scalars

    _run("maml-trpo", tensorboard=tmp_path / "tb")  # a second run gets the next number, as SB3's runs do
    assert (tmp_path / "tb" / BANDIT / "maml-trpo@iterations=2_seed0_2").is_dir()
    assert tensorboard_run_dir(tmp_path / "tb", BANDIT, "maml-trpo@iterations=2", 0).name.endswith("_3")


def test_supervised_training_metrics_go_to_tensorboard_against_samples(tmp_path):
    record = _run("maml", tensorboard=tmp_path / "tb")
    scalars = _scalars(tmp_path / "tb" / SINUSOID / "maml@iterations=3_seed0_1")
    log = record.extra["train_log"]
    assert [s for s, _ in scalars["train/outer_loss"]] == [row["samples"] for row in log]
    assert [v for _, v in scalars["train/outer_loss"]] == pytest.approx([row["outer_loss"] for row in log], rel=1e-6)


def test_rl2_metrics_go_to_tensorboard(tmp_path):
    record = _run("rl2", tensorboard=tmp_path / "tb")
    (run,) = (tmp_path / "tb" / BANDIT).iterdir()
    scalars = _scalars(run)
    assert [s for s, _ in scalars["train/trial_return"]] == [row["env_steps"] for row in record.extra["train_log"]]


def test_no_tensorboard_folder_without_the_option(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _run("maml-trpo")
    assert list(tmp_path.iterdir()) == []


# --- the evaluate summary --------------------------------------------------------------------


def test_record_summary_marks_the_headline():
    rl = metarl_bench.evaluate(metarl_bench.agent("thompson"), BANDIT, seed=0)
    text = format_record_summary(rl)
    lines = text.splitlines()
    assert lines[0] == f"thompson on {BANDIT} (seed 0)"
    headline = [line for line in lines if line.startswith("*")]
    assert len(headline) == 1 and headline[0].split()[1] == rl.benchmark["headline"] == "online"
    assert f"{rl.scores['online']['value']:.4f}" in headline[0]
    assert f"{rl.scores['normalized_online']['value']:.4f}" in headline[0]
    assert "higher is better" in text and "env steps" in text and "[" not in text  # no raw lists

    sup = _run("maml")
    text = format_record_summary(sup)
    (headline,) = [line for line in text.splitlines() if line.startswith("*")]
    assert headline.split()[1] == "final" and "lower is better" in text and "mse_1_step" in text
    assert "query MSE by inner gradient steps" in text and "labelled examples" in text


def test_record_summary_of_a_loaded_agent_says_where_it_came_from(tmp_path):
    from metarl_bench.saving import load_agent

    metarl_bench.evaluate(metarl_bench.agent("maml-trpo", iterations=1), BANDIT, seed=0, save_agent=tmp_path / "s")
    text = format_record_summary(metarl_bench.evaluate(load_agent(tmp_path / "s"), BANDIT, seed=0))
    assert f"loaded from {tmp_path / 's'}" in text and "seed 0" in text
