"""Envs start with a fixed draw from their task distribution, and take their tasks at construction.

``Family.default_task()`` is the first task of ``sample_tasks(1, np.random.default_rng(0))``;
``gym.make(id, task=...)`` and ``gym.make_vec(id, num_envs=n, tasks=[...])`` set tasks (or
their dicts) before the first reset.
"""

from __future__ import annotations

import importlib
import math
import pickle

import gymnasium as gym
import numpy as np
import pytest

import metarl_bench
from metarl_bench.envs import BanditTask, Navigation2DEnv, Navigation2DFamily, NavigationTask, TabularMDPTask
from metarl_bench.envs.navigation import _OBS_SPACE

# The 52 Meta-World families share one env class (13 s of check-env each): tests/envs/test_metaworld.py
# checks a few of them, `metarl-bench check-env` all of them.
RL_IDS = [fid for fid in metarl_bench.family_ids()
          if metarl_bench.family(fid).kind == "rl" and not fid.startswith("MetaRL/MetaWorld-")]


def test_navigation_starts_with_a_drawn_goal_not_the_start_position():
    # The distribution is goal ~ U[-0.5, 0.5]^2 drawn with Generator.uniform: seed 0's first draw.
    goal = np.random.default_rng(0).uniform(-0.5, 0.5, size=2)
    env = gym.make("MetaRL/Navigation2D-v0")
    assert env.unwrapped.task == NavigationTask(goal=tuple(goal))
    env.reset(seed=0)
    _, reward, *_ = env.step(np.zeros(2, dtype=np.float32))
    assert reward == pytest.approx(-math.hypot(*goal), abs=1e-12)  # standing still does not score 0
    assert reward < -0.1


def test_bandit_starts_with_drawn_arm_means():
    means = np.random.default_rng(0).uniform(0.0, 1.0, size=3)
    assert gym.make("MetaRL/Bandit-v0", k=3).unwrapped.task == BanditTask(means=tuple(means))
    five = gym.make("MetaRL/Bandit-k5-v0").unwrapped.task
    assert five.means == tuple(np.random.default_rng(0).uniform(0.0, 1.0, size=5))
    assert len(set(five.means)) == 5  # not every arm 0.5


@pytest.mark.parametrize("fid", RL_IDS)
def test_every_env_starts_with_the_documented_default_task(fid):
    fam = metarl_bench.family(fid)
    first = fam.sample_tasks(1, np.random.default_rng(0))[0]
    assert fam.default_task() == first
    assert gym.make(fid).unwrapped.task == first
    assert fam.make_env().unwrapped.task == first
    venv = gym.make_vec(fid, num_envs=2)
    assert venv.tasks == [first, first]
    assert fam.env_cls(**fam.kwargs).task == first  # constructed directly, too


def test_gym_make_takes_a_task_or_its_dict():
    task = NavigationTask(goal=(0.3, -0.2))
    for given in (task, task.to_dict()):
        env = gym.make("MetaRL/Navigation2D-v0", task=given)
        assert env.unwrapped.task == task
        env.reset(seed=0)
        _, reward, *_ = env.step(np.array([0.1, 0.0], dtype=np.float32))
        assert reward == pytest.approx(-math.hypot(0.1 - 0.3, 0.0 + 0.2), abs=1e-7)
    exposed, _ = gym.make("MetaRL/Navigation2D-v0", task=task, expose_task=True).reset(seed=0)
    np.testing.assert_allclose(exposed, [0.0, 0.0, 0.3, -0.2], rtol=1e-6)
    bandit = gym.make("MetaRL/Bandit-v0", k=2, task={"means": [0.0, 1.0]})
    bandit.reset(seed=0)
    assert [bandit.step(1)[1] for _ in range(1)] == [1.0]


def test_gym_make_refuses_bad_tasks_with_the_reason():
    with pytest.raises(TypeError, match="NavigationTask.*BanditTask"):
        gym.make("MetaRL/Navigation2D-v0", task=BanditTask(means=(0.1, 0.2)))
    with pytest.raises(ValueError, match="goal"):
        gym.make("MetaRL/Navigation2D-v0", task={"goal": [2.0, 0.0]})
    with pytest.raises(ValueError, match="k=3"):
        gym.make("MetaRL/Bandit-v0", k=3, task=BanditTask(means=(0.1, 0.2)))
    with pytest.raises(TypeError, match="gym.make_vec"):
        gym.make("MetaRL/Navigation2D-v0", tasks=[NavigationTask()])
    with pytest.raises(TypeError, match="NavigationTask or its dict"):
        gym.make("MetaRL/Navigation2D-v0", task=(0.1, 0.2))


def test_gym_make_vec_takes_one_task_per_sub_env():
    goals = [(0.3, -0.2), (-0.1, 0.4), (0.0, 0.5)]
    tasks = [NavigationTask(goal=g) for g in goals]
    for given in (tasks, [t.to_dict() for t in tasks]):
        venv = gym.make_vec("MetaRL/Navigation2D-v0", num_envs=3, tasks=given)
        assert isinstance(venv, metarl_bench.family("MetaRL/Navigation2D-v0").vector_env_cls)
        assert venv.tasks == tasks
        venv.reset(seed=0)
        _, reward, *_ = venv.step(np.zeros((3, 2), dtype=np.float32))
        np.testing.assert_allclose(reward, [-math.hypot(*g) for g in goals], atol=1e-12)
    same = gym.make_vec("MetaRL/Navigation2D-v0", num_envs=2, task=tasks[0])
    assert same.tasks == [tasks[0], tasks[0]]
    with pytest.raises(ValueError, match="2 tasks for num_envs=3; pass one task per sub-env"):
        gym.make_vec("MetaRL/Navigation2D-v0", num_envs=3, tasks=tasks[:2])
    with pytest.raises(TypeError, match="either task= .* or tasks="):
        gym.make_vec("MetaRL/Navigation2D-v0", num_envs=3, tasks=tasks, task=tasks[0])
    with pytest.raises(TypeError, match="one task per sub-env"):
        gym.make_vec("MetaRL/Navigation2D-v0", num_envs=1, tasks=tasks[0])


def test_gym_make_vec_sync_mode_passes_task_to_every_sub_env():
    task = NavigationTask(goal=(0.3, -0.2))
    venv = gym.make_vec("MetaRL/Navigation2D-v0", num_envs=2, vectorization_mode="sync", task=task)
    assert [e.unwrapped.task for e in venv.envs] == [task, task]


class _PlaceholderEnv(Navigation2DEnv):
    """Starts with a placeholder task of its own, as a plugin's env may (the README's corridor does)."""

    def __init__(self, expose_task: bool = False) -> None:
        super().__init__(expose_task)
        self._init_task(NavigationTask(goal=(0.0, 0.0)), expose_task, _OBS_SPACE)


def test_plugin_style_family_starts_with_its_default_and_takes_tasks_in_make_vec():
    # A family with no vector_env_cls (like most plugins) gets SyncVectorEnv with set_tasks.
    fid = "Test/NoBatch-v0"
    cls = type("NoBatch", (Navigation2DFamily,), {"id": fid, "env_cls": _PlaceholderEnv, "vector_env_cls": None})
    metarl_bench.register_family(cls)
    try:
        assert _PlaceholderEnv().task == NavigationTask(goal=(0.0, 0.0))
        assert gym.make(fid).unwrapped.task == cls().default_task() != NavigationTask(goal=(0.0, 0.0))
        tasks = [NavigationTask(goal=(0.3, -0.2)), NavigationTask(goal=(-0.1, 0.4))]
        venv = gym.make_vec(fid, num_envs=2, tasks=tasks)
        assert venv.tasks == tasks
        venv.reset(seed=0)
        _, reward, _, truncated, _ = venv.step(np.zeros((2, 2), dtype=np.float32))
        np.testing.assert_allclose(reward, [-math.hypot(0.3, -0.2), -math.hypot(-0.1, 0.4)], atol=1e-12)
        for _ in range(99):
            *_, truncated, _ = venv.step(np.zeros((2, 2), dtype=np.float32))
        assert truncated.all()  # the registered horizon still applies to the sub-envs
        default = gym.make_vec(fid, num_envs=2)
        assert default.tasks == [cls().default_task()] * 2
    finally:
        # test-only: family.py has no public way to unregister a family
        importlib.import_module("metarl_bench.family")._REGISTRY.pop(fid, None)
        gym.registry.pop(fid, None)


def test_tabular_mdp_default_is_a_drawn_mdp():
    task = gym.make("MetaRL/TabularMDP-v0").unwrapped.task
    rng = np.random.default_rng(0)
    mu = rng.normal(1.0, 1.0, size=(10, 5))
    P = rng.dirichlet(np.ones(10), size=(10, 5))
    assert task == TabularMDPTask(mu=mu, P=P)


def test_envs_made_with_a_task_still_pickle():
    task = NavigationTask(goal=(0.3, -0.2))
    env = pickle.loads(pickle.dumps(gym.make("MetaRL/Navigation2D-v0", task=task)))
    assert env.unwrapped.task == task
    venv = pickle.loads(pickle.dumps(gym.make_vec("MetaRL/Navigation2D-v0", num_envs=2, tasks=[task, task])))
    assert venv.tasks == [task, task]
