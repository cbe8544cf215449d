"""Stable-Baselines3 is a real client of the family envs: its checker passes and PPO trains."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import metarl_bench

sb3 = pytest.importorskip("stable_baselines3")


def _nav_env():
    fam = metarl_bench.family("MetaRL/Navigation2D-v0")
    return fam.make_env(fam.sample_tasks(1, np.random.default_rng(0))[0])


def test_sb3_env_checker_passes_on_a_family_env():
    from stable_baselines3.common.env_checker import check_env

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(_nav_env(), warn=True)
    # Only SB3's advice to rescale Box actions to [-1, 1] is expected (the task fixes [-0.1, 0.1]).
    others = [str(w.message) for w in caught if "symmetric and normalized Box action space" not in str(w.message)]
    assert not others, others


def test_ppo_trains_on_navigation_for_2000_steps(tmp_path_factory):
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor

    torch.set_num_threads(1)
    env = _nav_env()
    model = PPO("MlpPolicy", env, n_steps=512, batch_size=128, n_epochs=2, seed=0, device="cpu", verbose=0)
    model.learn(total_timesteps=2048)
    assert model.num_timesteps >= 2048
    # SB3's logger folder lands in pytest's temporary folder, not as SB3-<date> in the system one.
    assert Path(model.logger.get_dir()).is_relative_to(tmp_path_factory.getbasetemp())
    mean, std = evaluate_policy(model, Monitor(env), n_eval_episodes=2, deterministic=True)
    assert np.isfinite(mean) and np.isfinite(std) and mean < 0
    for p in model.policy.parameters():
        assert torch.isfinite(p).all()
