"""Success-scored benchmarks through the harness: an episode scores 1 if ``info["success"]`` was 1
at any of its steps; the returns are kept beside. End to end on Meta-World's smoke tier with the
references and both learners."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import metarl_bench
from metarl_bench.agents import Adapter
from metarl_bench.harness import run_chunk
from metarl_bench.plots import axis_labels
from metarl_bench.results import decode_array, load_record

SMOKE = "MetaRL/MetaWorld-ML1-reach-smoke-v0"


class _Blink(gym.vector.VectorEnv):
    """Three sub-envs, 5-step episodes, reward 1 a step. Sub-env 0 reports success at step 2 only,
    sub-env 1 never, sub-env 2 reports it at every step but masked out (``_success`` False)."""

    def __init__(self, n: int) -> None:
        assert n == 3
        self.num_envs = n
        self.single_observation_space = gym.spaces.Box(-1.0, 1.0, (1,))
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (1,))
        self.t = 0

    def reset(self, *, seed: Any = None, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
        self.t = 0
        return np.zeros((3, 1)), {}

    def step(self, actions: Any) -> tuple[Any, ...]:
        self.t += 1
        info = {"success": np.array([1.0 if self.t == 2 else 0.0, 0.0, 1.0]),
                "_success": np.array([True, True, False])}
        return np.zeros((3, 1)), np.ones(3), np.zeros(3, bool), np.full(3, self.t == 5), info


class _BlinkFamily:
    id, horizon = "Test/Blink-v0", 5

    def make_vector_env(self, tasks: list[Any], expose_task: bool = False) -> _Blink:
        return _Blink(len(tasks))


class _Still(Adapter):
    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.zeros((len(obs), 1))


def test_an_episode_succeeds_if_success_was_reported_at_any_step():
    out: list[np.ndarray] = []
    returns, steps = run_chunk(_Still(), _BlinkFamily(), [0, 1, 2], 1, 1, 1, 0, 0, False, None,  # type: ignore[arg-type]
                               success_out=out)
    np.testing.assert_array_equal(returns[:, 0, 0], [5.0, 5.0, 5.0])
    np.testing.assert_array_equal(out[0][:, 0, 0], [1.0, 0.0, 0.0])
    assert steps == 15


pytest.importorskip("metaworld")


def test_records_hold_successes_and_keep_the_returns(tmp_path):
    bench = metarl_bench.benchmark(SMOKE)
    rec = metarl_bench.evaluate(metarl_bench.agent("oracle"), bench, seed=0, results=tmp_path)
    back = load_record(rec.path(tmp_path))
    assert back.benchmark["episode_score"] == "success"
    assert set(np.unique(back.returns)) <= {0.0, 1.0}
    returns = decode_array(back.extra["episode_returns"])
    assert returns.shape == back.returns.shape
    assert np.all(returns > 100)  # Meta-World's v2 reward: 0-10 a step over 500 steps
    budget = np.array([p == "budget" for p in back.phase])
    assert back.extra["return_scores"]["final"] == pytest.approx(returns[:, :, ~budget].mean())
    assert back.score_matrix("final").mean() == pytest.approx(back.scores["final"]["value"])
    assert axis_labels(back)[1] == "success rate"  # the curves' y axis


@pytest.mark.parametrize(
    ("agent", "config"),
    [
        ("rl2", {"num_trials": 2, "num_minibatches": 2, "bptt_chunk": 500, "train_env_steps": 3_000}),
        ("maml-trpo", {"meta_batch_size": 2, "fast_batch_size": 2, "iterations": 1}),
    ],
)
def test_learners_run_end_to_end_on_the_smoke_tier(agent, config):
    bench = metarl_bench.benchmark(SMOKE)
    rec = metarl_bench.evaluate(metarl_bench.agent(agent, **config), bench, seed=0)
    assert 0 < rec.meta_train["env_steps"] <= bench.meta_train_steps
    assert set(np.unique(rec.returns)) <= {0.0, 1.0}
    assert 0.0 <= rec.scores["final"]["value"] <= 1.0
