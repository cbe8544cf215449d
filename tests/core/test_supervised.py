"""The supervised few-shot track (:mod:`metarl_bench.supervised`): benchmark definitions, the
fixed test episode, the support sampler, the meta-training budget and the record's layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import metarl_bench
from metarl_bench.agents import agent_class
from metarl_bench.envs.sinusoid import SinusoidFamily
from metarl_bench.results import load_record
from metarl_bench.supervised import (
    SinusoidProblem,
    SupervisedTrainContext,
    evaluation_episode,
    query_grid,
    take_support,
)

torch.set_num_threads(1)

SMOKE = "MetaRL/Sinusoid-K10-smoke-v0"


def make(name: str, **config):
    """The supervised implementation of ``name`` (names such as reptile also have an RL one)."""
    return agent_class(name, "supervised")(**config)


@pytest.mark.parametrize("k", [5, 10, 20])
def test_benchmark_definitions(k):
    b = metarl_bench.benchmark(f"MetaRL/Sinusoid-K{k}-v0")
    assert b.protocol.shots == k and b.protocol.inner_steps == 10
    assert b.lower_is_better and b.headline == "final"
    assert len(b.test_tasks) >= 1000
    assert not set(b.train_tasks) & set(b.test_tasks)
    floor = SinusoidFamily.prior_mean_mse(query_grid())
    assert b.references["random"]["final"] == pytest.approx(floor) and floor == pytest.approx(3.0158, abs=1e-3)
    assert b.references["oracle"]["final"] == 0.0


def test_test_episode_fixed_by_benchmark():
    b = metarl_bench.benchmark(SMOKE)
    e1, e2 = evaluation_episode(b), evaluation_episode(b)
    n = len(b.test_tasks) * b.protocol.runs_per_task
    assert e1.support_x.shape == (n, 10, 1) and e1.query_x.shape == (n, 100, 1)
    assert torch.equal(e1.support_x, e2.support_x)
    assert not torch.equal(e1.support_x[0], e1.support_x[1])  # independent runs see different points


def test_record_layout_and_round_trip(tmp_path):
    agent = make("maml", iterations=5)
    rec = metarl_bench.evaluate(agent, SMOKE, seed=3, results=tmp_path)
    b = metarl_bench.benchmark(SMOKE)
    assert rec.returns.shape == (len(b.test_tasks), b.protocol.runs_per_task, 11)
    assert rec.x.tolist() == list(range(11)) and rec.phase == ["budget"] * 10 + ["final"]
    assert rec.curve["x"] == [float(i) for i in range(11)]
    assert rec.scores["final"]["value"] == pytest.approx(rec.returns[:, :, 10].mean())
    assert rec.scores["mse_1_step"]["value"] == pytest.approx(rec.returns[:, :, 1].mean())
    assert rec.scores["online"]["value"] == pytest.approx(rec.returns[:, :, :10].sum(axis=2).mean())
    assert rec.extra["x_label"] == "inner gradient steps" and rec.benchmark["lower_is_better"]
    assert rec.agent["config"]["iterations"] == 5 and rec.meta_train["env_steps"] == 5 * 25 * 20
    loaded = load_record(rec.path(tmp_path))
    np.testing.assert_allclose(loaded.returns, rec.returns, rtol=1e-6)
    assert loaded.scores["mse_1_step"] == rec.scores["mse_1_step"]


def test_k_larger_than_the_available_points():
    x, y = torch.zeros(3, 8, 1), torch.zeros(3, 8, 1)
    assert [t.shape[1] for t in take_support(x, y, 5)] == [5, 5, 3, 3]
    with pytest.raises(ValueError, match="K=9 support points requested but each task has only 8"):
        take_support(x, y, 9)


def test_meta_training_budget_is_enforced():
    fam = SinusoidFamily()
    problem = SinusoidProblem(fam, fam.sample_tasks(20, np.random.default_rng(0)))
    ctx = SupervisedTrainContext(problem, seed=0, shots=5, query_shots=5, budget_samples=1000)
    with pytest.raises(RuntimeError, match="budget"):
        make("maml", iterations=10).meta_train(ctx)
