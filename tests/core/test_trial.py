"""The trial wrapper (:mod:`metarl_bench.trial`): n episodes on one task as one Gymnasium episode."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import metarl_bench
from metarl_bench.trial import TrialWrapper


def test_trial_wrapper_runs_episodes_back_to_back_on_one_task():
    fam = metarl_bench.family("MetaRL/Bandit-v0", k=2)
    tasks = fam.sample_tasks(20, np.random.default_rng(0))
    env = TrialWrapper(gym.make("MetaRL/Bandit-v0", k=2), episodes=3, tasks=tasks)
    obs, info = env.reset(seed=0)
    task = env.unwrapped.task
    assert task in tasks
    assert obs.tolist() == [0, 0, 0, 0, 0] and info["episode_index"] == 0
    ends = []
    for i in range(3):
        obs, reward, terminated, truncated, info = env.step(1)
        assert obs[1:3].tolist() == [0.0, 1.0]  # previous action, one-hot
        assert obs[3] == reward and obs[4] == 1.0  # previous reward, done flag
        assert env.unwrapped.task == task  # no resampling inside a trial
        assert info["episode_index"] == i + 1 and not truncated
        ends.append(terminated)
    assert ends == [False, False, True]


def test_trial_wrapper_passes_gymnasium_check_env():
    fam = metarl_bench.family("MetaRL/Bandit-v0", k=3)
    tasks = fam.sample_tasks(10, np.random.default_rng(0))
    with pytest.warns(UserWarning):  # check_env's notes on the unbounded reward input
        check_env(TrialWrapper(gym.make("MetaRL/Bandit-v0", k=3), episodes=4, tasks=tasks), skip_render_check=True)
        check_env(TrialWrapper(gym.make("MetaRL/Navigation2D-v0"), episodes=2), skip_render_check=True)


def test_trial_wrapper_rejects_bad_arguments():
    with pytest.raises(ValueError, match="episodes"):
        TrialWrapper(gym.make("MetaRL/Bandit-v0", k=2), episodes=0)
    with pytest.raises(ValueError, match="tasks"):
        TrialWrapper(gym.make("MetaRL/Bandit-v0", k=2), episodes=2, tasks=[])
