"""The oracle on Meta-World (its scripted expert) scores through the harness what Meta-World's own
evaluation gives it on the same goals."""

from __future__ import annotations

import dataclasses
from functools import partial

import gymnasium as gym
import numpy as np
import pytest

import metarl_bench
from metarl_bench.baselines.classical.metaworld_expert import expert_policy
from metarl_bench.benchmark_spec import Protocol
from metarl_bench.envs.metaworld import env_class

metaworld = pytest.importorskip("metaworld")
from metaworld.evaluation import evaluation  # noqa: E402


class _Expert:
    """Meta-World's evaluation Agent protocol around one scripted policy."""

    def __init__(self, name: str) -> None:
        self.policy = expert_policy(name)

    def eval_action(self, obs: np.ndarray) -> np.ndarray:
        return np.stack([self.policy.get_action(o) for o in obs])

    def reset(self, env_mask: np.ndarray) -> None:
        pass


def metaworld_success(tasks, episodes: int = 1) -> np.ndarray:
    """Meta-World's ``evaluation`` of the expert, one goal at a time (it counts episodes per class,
    so one vector env per goal), the goal visible as the expert needs; success per goal."""
    out = []
    for task in tasks:
        # metaworld._init_each_env is how Meta-World builds each env of its benchmarks
        make = partial(metaworld._init_each_env, env_cls=env_class(task.env_name),
                       tasks=[task.to_metaworld(expose_goal=True)], seed=0, task_select="pseudorandom")
        envs = gym.vector.SyncVectorEnv([make], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        envs.call("sample_tasks")
        rate, *_ = evaluation(_Expert(task.env_name), envs, num_episodes=episodes)
        envs.close()
        out.append(rate)
    return np.array(out)


def harness_success(env_name: str, goals: int):
    """The oracle through the harness on the first ``goals`` test goals of the ML1 quick tier:
    one adaptation episode and one evaluation episode per goal."""
    quick = metarl_bench.benchmark(f"MetaRL/MetaWorld-ML1-{env_name}-quick-v0")
    probe = dataclasses.replace(quick, id=f"MetaRL/MetaWorld-ML1-{env_name}-probe-v0", n_test=goals,
                                test_goals_per_class=goals,
                                protocol=Protocol(budget_episodes=1, runs_per_task=1, final_episodes=1, max_envs=20))
    record = metarl_bench.evaluate(metarl_bench.agent("oracle"), probe, seed=0)
    return record, probe.test_tasks


def _compare(env_name: str, goals: int) -> float:
    record, tasks = harness_success(env_name, goals)
    ours = record.returns[:, 0, :]  # (goals, episodes): success 0/1 of every episode
    assert set(np.unique(ours)) <= {0.0, 1.0}
    assert np.all(ours[:, 0] == ours[:, 1])  # the expert and the env are deterministic
    theirs = metaworld_success(tasks)
    np.testing.assert_array_equal(ours[:, 1], theirs)  # goal by goal
    assert record.scores["final"]["value"] == pytest.approx(theirs.mean())
    assert record.extra["return_scores"]["final"] > 0  # returns kept beside the successes
    return float(theirs.mean())


def test_expert_on_reach_matches_metaworlds_evaluation_and_succeeds():
    assert _compare("reach", 10) >= 0.9


@pytest.mark.slow
@pytest.mark.parametrize("env_name", ["push", "pick-place"])
def test_expert_on_push_and_pick_place_matches_metaworlds_evaluation(env_name):
    _compare(env_name, 10)


def test_oracle_runs_on_every_metaworld_benchmark():
    oracle = metarl_bench.agent("oracle")
    for bid in ("MetaRL/MetaWorld-ML1-push-v0", "MetaRL/MetaWorld-ML10-quick-v0", "MetaRL/MetaWorld-ML45-v0"):
        assert oracle.supports(metarl_bench.benchmark(bid)) is None
