"""Divergence (NaN/inf in meta-training): every learner raises ``DivergenceError``, and
``evaluate`` saves the last good parameters beside the results, named by benchmark,
variant, seed and config, with the iteration count right."""

import pickle

import numpy as np
import pytest
import torch

import metarl_bench
from metarl_bench.agents import DivergenceError, checkpoint_path
from metarl_bench.baselines.incontext import rl2
from metarl_bench.harness import MetaTrainContext
from metarl_bench.supervised import SupervisedTrainContext

BANDIT = "MetaRL/Bandit-k5-n10-smoke-v0"  # horizon 1: one env step call per batch of episodes
SINE = "MetaRL/Sinusoid-K5-smoke-v0"
SEED = 7

SMALL_MAML = {"meta_batch_size": 4, "fast_batch_size": 5, "hidden_sizes": (16,)}
RL_CASES = {
    # name: (config, env step calls per meta-iteration on BANDIT, "unit" in the message)
    "maml-trpo": ({**SMALL_MAML, "num_steps": 1}, 2, "meta-iteration"),  # a train and a valid batch
    "maml-ppo": ({**SMALL_MAML, "num_steps": 1}, 2, "meta-iteration"),
    "reptile": ({**SMALL_MAML, "num_steps": 2, "anneal": False}, 2, "meta-iteration"),  # 2 inner batches
}
SUPERVISED_CASES = {
    "maml": {"meta_batch_size": 4},
    "fomaml": {"meta_batch_size": 4},
    "meta-sgd": {"meta_batch_size": 4},
    "reptile": {"meta_batch_size": 4, "inner_steps": 2, "anneal": False},
    "pretrained": {"meta_batch_size": 4},
}


class _NaNRewardsAfter:
    """A vector env whose rewards are NaN from step call ``after + 1`` on."""

    def __init__(self, venv, after):
        self.venv, self.after, self.calls = venv, after, 0

    def step(self, actions):
        obs, r, term, trunc, info = self.venv.step(actions)
        self.calls += 1
        if self.calls > self.after:
            r = np.full_like(r, np.nan)
        return obs, r, term, trunc, info

    def __getattr__(self, item):
        return getattr(self.venv, item)


def _poison_rl_rewards(monkeypatch, after):
    make = MetaTrainContext.make_vector_env
    monkeypatch.setattr(MetaTrainContext, "make_vector_env",
                        lambda self, tasks, **kw: _NaNRewardsAfter(make(self, tasks, **kw), after))


def _poison_supervised_samples(monkeypatch, good):
    """Labels are NaN from the ``good + 1``-th sample on (one sample per iteration)."""
    sample = SupervisedTrainContext.sample
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        ep = sample(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] > good:
            ep.support_y[:] = float("nan")
            ep.query_y[:] = float("nan")
        return ep

    monkeypatch.setattr(SupervisedTrainContext, "sample", poisoned)


def _params(agent):
    impl = getattr(agent, "_impl", None) or agent
    for attr in ("policy", "learner", "net"):
        if getattr(impl, attr, None) is not None:
            return getattr(impl, attr).state_dict()
    raise AssertionError(f"no parameters on {agent!r}")


def _reference(name, bench, **config):
    """The parameters after exactly two iterations of the same run, unpoisoned."""
    agent = metarl_bench.agent(name, **config)
    metarl_bench.evaluate(agent, bench, seed=SEED)
    return _params(agent)


def _check_saved(err, results, bench, reference, unit):
    path = err.path
    assert path is not None and path.exists()
    assert path.parent.parent == results / ".checkpoints" / bench  # <results>/.checkpoints/<benchmark>/<variant>/
    assert path.name.startswith(f"seed-{SEED}-config-")  # the run's own seed, not a derived one
    message = str(err)
    assert str(path) in message and f"at {unit} 3 of 5" in message and f"after {unit} 2" in message
    assert "Lower " in message  # the fix
    saved = torch.load(path)
    assert saved["iteration"] == 2 and saved["diverged_at"] == 3 and saved["seed"] == SEED
    assert saved["state"].keys() == reference.keys()
    for k, v in reference.items():
        assert torch.equal(saved["state"][k], v), k


@pytest.mark.parametrize("name", sorted(RL_CASES))
def test_rl_learner_divergence_saves_the_last_good_parameters_beside_the_results(name, tmp_path, monkeypatch):
    config, calls, unit = RL_CASES[name]
    reference = _reference(name, BANDIT, **config, iterations=2)
    _poison_rl_rewards(monkeypatch, after=2 * calls)  # meta-iterations 1 and 2 are clean
    with pytest.raises(DivergenceError) as info:
        metarl_bench.evaluate(metarl_bench.agent(name, **config, iterations=5), BANDIT, seed=SEED, results=tmp_path)
    _check_saved(info.value, tmp_path, BANDIT, reference, unit)


def _poison_meta_update(monkeypatch, name, good):
    """The meta-parameters become NaN in the update of meta-iteration ``good + 1``."""
    if name == "maml-ppo":  # the last Adam step (of ppo_epochs) of that meta-iteration writes NaN
        from metarl_bench.baselines.gradient.maml_rl import MAMLPPO

        setup = MAMLPPO._setup_optimiser

        def poisoned_setup(self):
            setup(self)
            real_step, calls = self.optimizer.step, {"n": 0}

            def step(*args, **kwargs):
                out = real_step(*args, **kwargs)
                calls["n"] += 1
                if calls["n"] >= (good + 1) * self.config.ppo_epochs:  # the last epoch's step
                    with torch.no_grad():
                        next(self.policy.parameters()).fill_(float("nan"))
                return out

            self.optimizer.step = step

        # fault injection: poison the optimiser's step, an internal of the learner
        monkeypatch.setattr(MAMLPPO, "_setup_optimiser", poisoned_setup)
    else:  # reptile: the interpolation towards the adapted parameters yields NaN
        from metarl_bench.baselines.gradient import reptile_rl

        real, calls = reptile_rl.reptile_update, {"n": 0}

        def update(theta, adapted, meta_lr):
            calls["n"] += 1
            new = real(theta, adapted, meta_lr)
            return {k: v * float("nan") for k, v in new.items()} if calls["n"] > good else new

        monkeypatch.setattr(reptile_rl, "reptile_update", update)


@pytest.mark.parametrize("name", ["maml-ppo", "reptile"])
def test_a_broken_meta_update_restores_and_saves_the_parameters_before_it(name, tmp_path, monkeypatch):
    config, _, unit = RL_CASES[name]
    reference = _reference(name, BANDIT, **config, iterations=2)
    _poison_meta_update(monkeypatch, name, good=2)
    agent = metarl_bench.agent(name, **config, iterations=5)
    with pytest.raises(DivergenceError, match="non-finite policy parameters") as info:
        metarl_bench.evaluate(agent, BANDIT, seed=SEED, results=tmp_path)
    _check_saved(info.value, tmp_path, BANDIT, reference, unit)
    for k, v in reference.items():  # the agent itself is back at its last good parameters too
        assert torch.equal(_params(agent)[k], v), k


RL2_SMALL = {"num_trials": 16, "hidden_size": 16, "anneal_lr": False, "ent_coef": 0.01, "ent_coef_final": 0.01,
             "update_epochs": 1, "num_minibatches": 1}


def _poison_rl2_after(monkeypatch, good):
    real = rl2.RL2Agent._ppo_epochs
    calls = {"n": 0}

    def poisoned(self, net, *args, **kwargs):
        stats = real(self, net, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] > good:
            with torch.no_grad():
                next(net.parameters()).fill_(float("nan"))
        return stats

    monkeypatch.setattr(rl2.RL2Agent, "_ppo_epochs", poisoned)  # fault injection into rl2's update


def test_rl2_divergence_saves_the_last_good_parameters_beside_the_results(tmp_path, monkeypatch):
    per_update = 16 * 10  # trials x episodes of one trial (the budget, 10) x horizon 1
    reference = _reference("rl2", BANDIT, **RL2_SMALL, train_env_steps=2 * per_update)
    _poison_rl2_after(monkeypatch, good=2)
    agent = metarl_bench.agent("rl2", **RL2_SMALL, train_env_steps=5 * per_update)
    with pytest.raises(DivergenceError) as info:
        metarl_bench.evaluate(agent, BANDIT, seed=SEED, results=tmp_path)
    _check_saved(info.value, tmp_path, BANDIT, reference, "PPO update")


def test_rl2_checkpoint_dir_field_chooses_the_folder(tmp_path, monkeypatch):
    _poison_rl2_after(monkeypatch, good=0)
    agent = metarl_bench.agent("rl2", **RL2_SMALL, train_env_steps=2 * 16 * 10, checkpoint_dir=str(tmp_path / "mine"))
    with pytest.raises(DivergenceError) as info:
        metarl_bench.evaluate(agent, BANDIT, seed=SEED, results=tmp_path / "results")
    assert info.value.path.is_relative_to(tmp_path / "mine") and info.value.path.exists()


@pytest.mark.parametrize("name", sorted(SUPERVISED_CASES))
def test_supervised_learner_divergence_saves_the_last_good_parameters(name, tmp_path, monkeypatch):
    config = SUPERVISED_CASES[name]
    reference = _reference(name, SINE, **config, iterations=2)
    _poison_supervised_samples(monkeypatch, good=2)
    with pytest.raises(DivergenceError) as info:
        metarl_bench.evaluate(metarl_bench.agent(name, **config, iterations=5), SINE, seed=SEED, results=tmp_path)
    _check_saved(info.value, tmp_path, SINE, reference, "iteration")


def test_divergence_at_the_first_iteration_keeps_the_initial_parameters(tmp_path, monkeypatch):
    _poison_supervised_samples(monkeypatch, good=0)
    with pytest.raises(DivergenceError) as info:
        metarl_bench.evaluate(metarl_bench.agent("maml", iterations=5), SINE, seed=SEED, checkpoints=tmp_path)
    err = info.value
    assert "at iteration 1 of 5" in str(err) and "the initial ones, before iteration 1" in str(err)
    assert "-1" not in str(err).replace(str(err.path), "")
    assert torch.load(err.path)["iteration"] == 0


def test_checkpoints_argument_and_the_temporary_folder_fallback(tmp_path, monkeypatch):
    import tempfile

    _poison_supervised_samples(monkeypatch, good=1)
    with pytest.raises(DivergenceError) as info:
        metarl_bench.evaluate(metarl_bench.agent("maml", iterations=3), SINE, seed=SEED, results=tmp_path / "r",
                              checkpoints=tmp_path / "ck")
    assert info.value.path.is_relative_to(tmp_path / "ck")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    with pytest.raises(DivergenceError) as info:
        metarl_bench.evaluate(metarl_bench.agent("maml", iterations=3), SINE, seed=SEED)  # no results folder
    assert info.value.path.is_relative_to(tmp_path / "tmp" / "metarl-bench-checkpoints")


def test_an_unwritable_checkpoint_folder_still_raises_the_divergence(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    _poison_supervised_samples(monkeypatch, good=1)
    with pytest.raises(DivergenceError) as info:
        metarl_bench.evaluate(metarl_bench.agent("maml", iterations=3), SINE, seed=SEED, checkpoints=blocker)
    assert info.value.path is None and "could not be saved" in str(info.value) and str(blocker) in str(info.value)


def test_a_saved_divergence_error_crosses_process_boundaries(tmp_path, monkeypatch):
    _poison_supervised_samples(monkeypatch, good=1)
    with pytest.raises(DivergenceError) as info:
        metarl_bench.evaluate(metarl_bench.agent("maml", iterations=3), SINE, seed=SEED, checkpoints=tmp_path)
    err = info.value
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is type(err) and str(copy) == str(err) and copy.path == err.path
    assert copy.state is None  # the parameters are in the file, not shipped back from a worker


def test_checkpoint_names_tell_configs_apart_but_not_folders():
    a = {"outer_lr": 0.001, "iterations": 5, "checkpoint_dir": ""}
    b = {**a, "outer_lr": 0.002}
    moved = {**a, "checkpoint_dir": "/elsewhere"}
    assert checkpoint_path("f", "B", "x", a, 1) != checkpoint_path("f", "B", "x", b, 1)
    assert checkpoint_path("f", "B", "x", a, 1) == checkpoint_path("f", "B", "x", moved, 1)
    assert checkpoint_path("f", "B", "x", a, 1) != checkpoint_path("f", "B", "x", a, 2)


def test_cli_prints_a_divergence_as_one_line_and_keeps_the_checkpoint_where_asked(monkeypatch, tmp_path, capsys):
    from metarl_bench.cli import main

    _poison_rl_rewards(monkeypatch, after=2)  # the first meta-iteration is clean, the second diverges
    sets = [f"--set={k}={v}" for k, v in {**SMALL_MAML, "num_steps": 1, "hidden_sizes": "[16]"}.items()]
    rc = main(["evaluate", "--benchmark", BANDIT, "--agent", "maml-trpo", "--seed", str(SEED), *sets,
               "--results", str(tmp_path / "results"), "--checkpoints", str(tmp_path / "ckpt")])
    err = capsys.readouterr().err
    assert rc == 1
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1 and "Traceback" not in err
    saved = list((tmp_path / "ckpt").rglob("*.last-good.pt"))
    assert len(saved) == 1 and str(saved[0]) in lines[0]
    assert torch.load(saved[0])["iteration"] == 1
    assert not (tmp_path / "results" / ".checkpoints").exists()


def test_run_passes_checkpoints_to_every_job(monkeypatch, tmp_path, capsys):
    from metarl_bench.cli import main

    _poison_rl_rewards(monkeypatch, after=2)
    sets = [f"--set={k}={v}" for k, v in {**SMALL_MAML, "num_steps": 1, "hidden_sizes": "[16]"}.items()]
    rc = main(["run", "--benchmark", BANDIT, "--agent", "maml-trpo", "--seeds", str(SEED), "--workers", "1",
               *sets, "--results", str(tmp_path / "results"), "--checkpoints", str(tmp_path / "ckpt")])
    out = capsys.readouterr()
    assert rc == 1 and "FAILED" in out.out + out.err
    assert len(list((tmp_path / "ckpt").rglob("*.last-good.pt"))) == 1
