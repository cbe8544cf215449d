"""PSRL and certainty-equivalence references on tabular MDPs."""

import numpy as np
import pytest

import metarl_bench
from metarl_bench.agents import Transition
from metarl_bench.baselines.classical.psrl import PosteriorMDPAdapter
from metarl_bench.harness import EvalContext


def _adapter(mode):
    bench = metarl_bench.benchmark("MetaRL/TabularMDP-n10-smoke-v0")
    venv = bench.family.make_vector_env(bench.test_tasks[:1])
    ctx = EvalContext(bench, 0, venv.single_observation_space, venv.single_action_space)
    return PosteriorMDPAdapter(ctx, mode)


def test_posterior_counts_follow_the_transitions():
    ad = _adapter("psrl")
    ad.reset(np.array([0, 1]))
    eye = np.eye(10, dtype=np.float32)
    tr = Transition(
        obs=eye[[0, 0]], action=np.array([2, 3]), reward=np.array([1.5, -0.5]), next_obs=eye[[4, 7]],
        terminated=np.zeros(2, bool), truncated=np.zeros(2, bool), active=np.array([True, False]),
        step=np.zeros(2, int),
    )
    ad.observe(tr)
    assert ad.trans[0, 0, 2, 4] == 1 and ad.trans.sum() == 1  # the inactive sub-env is ignored
    assert ad.visits[0, 0, 2] == 1 and ad.reward_sum[0, 0, 2] == 1.5
    assert ad.t.tolist() == [1, 0]


def test_posterior_mean_plan_uses_the_prior_before_data():
    ad = _adapter("greedy")
    ad.reset(np.array([0]))
    q = ad.plan()
    # prior: mu = 1 everywhere, so every action is worth exactly the steps left
    np.testing.assert_allclose(q[0, 0], 10.0)


def test_psrl_and_greedy_beat_random_and_stay_below_the_oracle():
    bench = metarl_bench.benchmark("MetaRL/TabularMDP-n10-v0")
    scores = {
        a: metarl_bench.evaluate(metarl_bench.agent(a), bench, seed=0).scores["online"]
        for a in ("random", "psrl", "greedy", "oracle")
    }
    assert scores["random"]["value"] == pytest.approx(100.0, abs=3 * scores["random"]["se"])
    assert scores["oracle"]["value"] == pytest.approx(218.3, abs=3 * scores["oracle"]["se"] + 1)
    for a in ("psrl", "greedy"):
        assert scores["random"]["value"] + 10 < scores[a]["value"] < scores["oracle"]["value"] - 30, a
