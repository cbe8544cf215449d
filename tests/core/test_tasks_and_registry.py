"""Task API, family registry and id errors (docs/design.md: "Tasks and families")."""

import json
import math

import gymnasium as gym
import numpy as np
import pytest

import metarl_bench
from metarl_bench.envs import BanditTask, NavigationTask


def test_task_json_round_trip_and_hash():
    fam = metarl_bench.family("MetaRL/Navigation2D-v0")
    tasks = fam.sample_tasks(5, np.random.default_rng(0))
    for t in tasks:
        back = fam.task_from_dict(json.loads(json.dumps(t.to_dict())))
        assert back == t and hash(back) == hash(t)
    assert len(set(tasks)) == 5


def test_sample_tasks_needs_explicit_generator_and_is_reproducible():
    fam = metarl_bench.family("MetaRL/Bandit-v0", k=3)
    with pytest.raises(TypeError, match="Generator"):
        fam.sample_tasks(2, 0)  # type: ignore[arg-type]
    assert fam.sample_tasks(4, np.random.default_rng(7)) == fam.sample_tasks(4, np.random.default_rng(7))
    assert fam.sample_tasks(4, np.random.default_rng(7)) != fam.sample_tasks(4, np.random.default_rng(8))


@pytest.mark.parametrize(
    "kwargs, field",
    [({"means": (0.5, float("nan"))}, "means"), ({"means": (0.5,)}, "means"), ({"means": (0.5, 1.5)}, "means")],
)
def test_invalid_bandit_task_names_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        BanditTask(**kwargs)


def test_invalid_goal_names_field_and_range():
    with pytest.raises(ValueError, match=r"goal.*\[-0.5, 0.5\]"):
        NavigationTask(goal=(0.9, 0.0))
    with pytest.raises(ValueError, match="shape"):
        NavigationTask(goal=(0.1, 0.2, 0.3))


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown fields"):
        NavigationTask.from_dict({"goal": [0, 0], "speed": 1})


def test_set_task_takes_effect_at_next_reset_and_reset_never_resamples():
    env = gym.make("MetaRL/Navigation2D-v0")
    a, b = NavigationTask(goal=(0.3, 0.2)), NavigationTask(goal=(-0.4, 0.1))
    env.unwrapped.set_task(a)
    env.reset(seed=0)
    env.unwrapped.set_task(b)
    assert env.unwrapped.task == b
    # the running episode still uses task a
    _, r, *_ = env.step(np.array([0.0, 0.0]))
    assert r == pytest.approx(-math.hypot(0.3, 0.2))
    for _ in range(3):
        env.reset()
        _, r, *_ = env.step(np.array([0.0, 0.0]))
        assert r == pytest.approx(-math.hypot(-0.4, 0.1))


def test_task_of_another_family_is_a_type_error_naming_both():
    env = gym.make("MetaRL/Navigation2D-v0")
    with pytest.raises(TypeError, match="NavigationTask.*BanditTask"):
        env.unwrapped.set_task(BanditTask(means=(0.1, 0.2)))


def test_bandit_arm_count_mismatch():
    env = gym.make("MetaRL/Bandit-v0", k=3)
    with pytest.raises(ValueError, match="k=3"):
        env.unwrapped.set_task(BanditTask(means=(0.1, 0.2)))


def test_expose_task_appends_features():
    env = gym.make("MetaRL/Navigation2D-v0", expose_task=True)
    env.unwrapped.set_task(NavigationTask(goal=(0.3, 0.2)))
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(obs, [0, 0, 0.3, 0.2], rtol=1e-6)
    assert env.observation_space.contains(obs)
    hidden, _ = gym.make("MetaRL/Navigation2D-v0").reset(seed=0)
    assert hidden.shape == (2,)


def test_unknown_and_unversioned_ids_list_close_matches():
    with pytest.raises(KeyError, match="Did you mean.*Navigation2D-v0"):
        metarl_bench.family("MetaRL/Navigaton2D-v0")
    with pytest.raises(KeyError, match="no version.*Navigation2D-v0"):
        metarl_bench.family("MetaRL/Navigation2D")
    with pytest.raises(KeyError, match="unknown benchmark"):
        metarl_bench.benchmark("MetaRL/Bandit-k7-n10-v0")
    with pytest.raises(KeyError, match="unknown agent.*ucb1"):
        metarl_bench.agent("ucb")


def test_make_vec_vector_entry_point_matches_family_vector_env():
    fam = metarl_bench.family("MetaRL/Bandit-k5-v0")
    tasks = fam.sample_tasks(4, np.random.default_rng(1))
    v1 = gym.make_vec("MetaRL/Bandit-k5-v0", num_envs=4, vectorization_mode="vector_entry_point")
    v1.set_tasks(tasks)
    v2 = fam.make_vector_env(tasks)
    v1.reset(seed=3)
    v2.reset(seed=3)
    for _ in range(20):
        a = np.array([0, 1, 2, 3])
        np.testing.assert_array_equal(v1.step(a)[1], v2.step(a)[1])
