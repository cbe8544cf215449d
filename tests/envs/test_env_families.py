"""The environment families: API conformance over every registered id, exact step semantics,
sampled distribution moments, reference values and bad input."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from gymnasium.envs.classic_control.pendulum import PendulumEnv

import metarl_bench
from metarl_bench.checks import check_family, format_report
from metarl_bench.envs import (
    BanditTask,
    CartPoleDynamicsTask,
    NavigationTask,
    PendulumDynamicsTask,
    TabularMDPTask,
    value_iteration,
)
from metarl_bench.envs.tabular_mdp import policy_evaluation

# The 52 Meta-World families share one env class (13 s of check-env each): tests/envs/test_metaworld.py
# checks a few of them, `metarl-bench check-env` all of them.
RL_IDS = [fid for fid in metarl_bench.family_ids()
          if metarl_bench.family(fid).kind == "rl" and not fid.startswith("MetaRL/MetaWorld-")]


def test_every_canonical_family_is_registered():
    for fid in (
        "MetaRL/Bandit-v0",
        "MetaRL/TabularMDP-v0",
        "MetaRL/Navigation2D-v0",
        "MetaRL/CartPoleDynamics-v0",
        "MetaRL/PendulumDynamics-v0",
    ):
        assert fid in RL_IDS
        assert metarl_bench.family(fid).batched, f"{fid} should ship a native batched env"


@pytest.mark.parametrize("fid", RL_IDS)
def test_check_family_passes(fid):
    results = check_family(fid)
    assert len(results) >= 10
    assert all(r.passed for r in results), format_report(results, title=fid)


# --- exact step semantics ------------------------------------------------------------------


def test_navigation_step_by_hand():
    env = metarl_bench.family("MetaRL/Navigation2D-v0").make_env(NavigationTask(goal=(0.3, 0.2)))
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, [0.0, 0.0])
    obs, reward, terminated, truncated, _ = env.step(np.array([1.0, 1.0], dtype=np.float32))  # clipped to 0.1
    np.testing.assert_allclose(obs, [0.1, 0.1], rtol=0, atol=1e-7)
    assert reward == pytest.approx(-math.sqrt(0.05), abs=1e-12)
    assert not terminated and not truncated

    venv = metarl_bench.family("MetaRL/Navigation2D-v0").make_vector_env([NavigationTask(goal=(0.1, -0.1))] * 2)
    venv.reset(seed=0)
    obs, reward, terminated, _, _ = venv.step(np.array([[1.0, -1.0], [0.0, 0.0]], dtype=np.float32))
    np.testing.assert_allclose(obs, [[0.1, -0.1], [0.0, 0.0]], atol=1e-7)
    assert terminated.tolist() == [True, False]
    assert reward[0] == pytest.approx(0.0, abs=1e-12)
    assert reward[1] == pytest.approx(-math.sqrt(0.02), abs=1e-12)


def test_bandit_reward_frequencies():
    n = 20_000
    means = (0.1, 0.9, 0.5)
    venv = metarl_bench.family("MetaRL/Bandit-v0", k=3).make_vector_env([BanditTask(means=means)] * n)
    venv.reset(seed=0)
    for arm, p in enumerate(means):
        obs, reward, terminated, truncated, _ = venv.step(np.full(n, arm))
        assert terminated.all() and not truncated.any()
        np.testing.assert_array_equal(obs, np.zeros((n, 1), dtype=np.float32))
        assert set(np.unique(reward)) <= {0.0, 1.0}
        assert abs(reward.mean() - p) < 4 * math.sqrt(p * (1 - p) / n)
        venv.reset()


def _deterministic_mdp() -> TabularMDPTask:
    """Action a moves from s to (s + a) % 10; mu(s, a) = s + a / 10."""
    S, A = 10, 5
    P = np.zeros((S, A, S))
    for s in range(S):
        for a in range(A):
            P[s, a, (s + a) % S] = 1.0
    mu = np.arange(S)[:, None] + np.arange(A)[None, :] / 10
    return TabularMDPTask(mu=mu, P=P)


def test_mdp_starts_in_state_zero_with_one_hot_observations():
    task = _deterministic_mdp()
    env = metarl_bench.family("MetaRL/TabularMDP-v0").make_env(task)
    for episode in range(2):
        obs, _ = env.reset(seed=episode)
        np.testing.assert_array_equal(obs, np.eye(10, dtype=np.float32)[0])
        s = 0
        for t in range(10):
            a = (3 * t + 1) % 5
            obs, reward, terminated, truncated, _ = env.step(a)
            s = (s + a) % 10
            np.testing.assert_array_equal(obs, np.eye(10, dtype=np.float32)[s])
            assert not terminated
            assert truncated == (t == 9)
            assert np.isfinite(reward)


def test_mdp_reward_noise_and_transition_frequencies():
    rng = np.random.default_rng(3)
    task = metarl_bench.family("MetaRL/TabularMDP-v0").sample_tasks(1, rng)[0]
    mu, P = task.arrays()
    n = 10_000
    venv = metarl_bench.family("MetaRL/TabularMDP-v0").make_vector_env([task] * n)
    venv.reset(seed=0)
    obs, reward, *_ = venv.step(np.full(n, 2))
    noise = reward - mu[0, 2]
    assert abs(noise.mean()) < 4 / math.sqrt(n)
    assert abs(noise.var() - 1.0) < 4 * math.sqrt(2 / n)
    freq = obs.mean(axis=0)
    se = np.sqrt(P[0, 2] * (1 - P[0, 2]) / n)
    assert np.all(np.abs(freq - P[0, 2]) < 4 * se + 1e-12), (freq, P[0, 2])


def _cartpole_like(length: float, masspole: float) -> CartPoleEnv:
    env = CartPoleEnv()
    env.length, env.masspole = length, masspole
    env.total_mass = env.masspole + env.masscart
    env.polemass_length = env.masspole * env.length
    return env


@pytest.mark.parametrize(
    ("task", "reference"),
    [
        (CartPoleDynamicsTask(), CartPoleEnv()),
        (CartPoleDynamicsTask(length_scale=2.0, masspole_scale=0.5), _cartpole_like(1.0, 0.05)),
    ],
)
def test_cartpole_equals_gymnasium_trajectory_exactly(task, reference):
    env = metarl_bench.family("MetaRL/CartPoleDynamics-v0").make_env(task).unwrapped
    actions = np.random.default_rng(0).integers(0, 2, size=500)
    for seed in (0, 1):
        ours, _ = env.reset(seed=seed)
        theirs, _ = reference.reset(seed=seed)
        np.testing.assert_array_equal(ours, theirs)
        for a in actions:
            ours = env.step(int(a))
            theirs = reference.step(int(a))
            np.testing.assert_array_equal(ours[0], theirs[0])
            assert ours[1:4] == theirs[1:4]
            if theirs[2]:
                break


def test_cartpole_task_changes_the_dynamics():
    env = metarl_bench.family("MetaRL/CartPoleDynamics-v0").make_env().unwrapped
    obs = []
    for task in (CartPoleDynamicsTask(0.5, 0.5), CartPoleDynamicsTask(2.0, 2.0)):
        env.set_task(task)
        env.reset(seed=0)
        for _ in range(5):
            o, *_ = env.step(1)
        obs.append(o)
    # A short pole falls faster: its angular velocity after the same pushes is larger.
    assert abs(obs[0][3]) > abs(obs[1][3])


@pytest.mark.parametrize("scales", [(1.0, 1.0), (2.0, 0.5), (0.6, 1.7)])
def test_pendulum_equals_gymnasium_trajectory_exactly(scales):
    m, length = scales
    env = metarl_bench.family("MetaRL/PendulumDynamics-v0").make_env(PendulumDynamicsTask(m, length)).unwrapped
    reference = PendulumEnv()
    reference.m, reference.l = m, length
    actions = np.random.default_rng(1).uniform(-2, 2, size=(200, 1)).astype(np.float32)
    ours, _ = env.reset(seed=5)
    theirs, _ = reference.reset(seed=5)
    np.testing.assert_array_equal(ours, theirs)
    for a in actions:
        ours = env.step(a)
        theirs = reference.step(a)
        np.testing.assert_array_equal(ours[0], theirs[0])
        assert ours[1] == theirs[1]


def test_classic_control_horizons_truncate():
    for fid, horizon in (("MetaRL/PendulumDynamics-v0", 200), ("MetaRL/CartPoleDynamics-v0", 500)):
        assert metarl_bench.family(fid).horizon == horizon
        assert gym.spec(fid).max_episode_steps == horizon
    venv = metarl_bench.family("MetaRL/PendulumDynamics-v0").make_vector_env([PendulumDynamicsTask()] * 2)
    venv.reset(seed=0)
    for t in range(200):
        _, _, terminated, truncated, _ = venv.step(np.zeros((2, 1), dtype=np.float32))
        assert not terminated.any()
        assert truncated.all() == (t == 199)


# --- sampled distributions -----------------------------------------------------------------


def test_bandit_means_are_uniform():
    tasks = metarl_bench.family("MetaRL/Bandit-v0", k=5).sample_tasks(4000, np.random.default_rng(0))
    x = np.array([t.means for t in tasks]).ravel()  # 20,000 draws
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert abs(x.mean() - 0.5) < 4 * math.sqrt(1 / 12 / x.size)
    assert abs(x.var() - 1 / 12) < 0.003
    # i.i.d. arms: no correlation between arm 0 and arm 1
    a = np.array([t.means for t in tasks])
    assert abs(np.corrcoef(a[:, 0], a[:, 1])[0, 1]) < 4 / math.sqrt(len(tasks))


def test_mdp_distribution_moments():
    tasks = metarl_bench.family("MetaRL/TabularMDP-v0").sample_tasks(400, np.random.default_rng(0))
    mu = np.array([t.mu for t in tasks]).ravel()  # 20,000 draws of N(1, 1)
    assert abs(mu.mean() - 1.0) < 4 / math.sqrt(mu.size)
    assert abs(mu.var() - 1.0) < 4 * math.sqrt(2 / mu.size)
    P = np.array([t.P for t in tasks])  # (400, 10, 5, 10)
    assert (P >= 0).all()
    np.testing.assert_allclose(P.sum(axis=-1), 1.0, atol=1e-12)
    # Dirichlet(1, ..., 1) on 10 states: each coordinate ~ Beta(1, 9), mean 0.1, variance 9 / 1100.
    coords = P.reshape(-1, 10)
    assert np.all(np.abs(coords.mean(axis=0) - 0.1) < 4 * math.sqrt(9 / 1100 / len(coords)))
    assert abs(coords.var() - 9 / 1100) < 0.0006


def test_navigation_goals_are_uniform():
    tasks = metarl_bench.family("MetaRL/Navigation2D-v0").sample_tasks(10_000, np.random.default_rng(0))
    g = np.array([t.goal for t in tasks])
    assert g.min() >= -0.5 and g.max() <= 0.5
    assert np.all(np.abs(g.mean(axis=0)) < 4 * math.sqrt(1 / 12 / len(g)))
    assert np.all(np.abs(g.var(axis=0) - 1 / 12) < 0.003)


@pytest.mark.parametrize(
    ("fid", "fields"),
    [
        ("MetaRL/CartPoleDynamics-v0", ("length_scale", "masspole_scale")),
        ("MetaRL/PendulumDynamics-v0", ("mass_scale", "length_scale")),
    ],
)
def test_dynamics_factors_are_log_uniform_on_half_to_two(fid, fields):
    tasks = metarl_bench.family(fid).sample_tasks(10_000, np.random.default_rng(0))
    for name in fields:
        f = np.array([getattr(t, name) for t in tasks])
        assert f.min() >= 0.5 and f.max() <= 2.0
        assert f.min() < 0.51 and f.max() > 1.98  # the whole range is covered
        log2 = np.log2(f)  # U[-1, 1]: mean 0, variance 1/3
        assert abs(log2.mean()) < 4 * math.sqrt(1 / 3 / f.size)
        assert abs(log2.var() - 1 / 3) < 0.012
        assert abs(np.mean(f < 1.0) - 0.5) < 4 * math.sqrt(0.25 / f.size)  # median 1
    a, b = (np.log2([getattr(t, n) for t in tasks]) for n in fields)
    assert abs(np.corrcoef(a, b)[0, 1]) < 4 / math.sqrt(len(tasks))


# --- reference values --------------------------------------------------------------------


def test_value_iteration_by_hand():
    # Two states, two actions. In s0: a0 pays 1 and stays, a1 pays 0 and moves to s1.
    # In s1 every action pays 3 and stays. With 2 steps: go to s1 first (0 + 3) beats 1 + 1.
    mu = np.array([[1.0, 0.0], [3.0, 3.0]])
    P = np.array([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 1.0]]])
    Q, V = value_iteration(mu, P, horizon=2)
    assert Q.shape == (2, 2, 2) and V.shape == (3, 2)
    np.testing.assert_allclose(Q[1], mu)
    np.testing.assert_allclose(Q[0], [[2.0, 3.0], [6.0, 6.0]])
    np.testing.assert_allclose(V[0], [3.0, 6.0])
    np.testing.assert_allclose(V[2], 0.0)
    # Uniform policy: V_1(s0) = 0.5, V_0(s0) = 0.5 * (1 + 0.5) + 0.5 * (0 + 3) = 2.25.
    Vu = policy_evaluation(mu, P, np.full((2, 2), 0.5), horizon=2)
    np.testing.assert_allclose(Vu[0], [2.25, 6.0])


def test_mdp_random_and_oracle_reference_values():
    # Many MDPs drawn exactly as the task distribution draws them, solved in one batch.
    rng = np.random.default_rng(0)
    n = 20_000
    mu = rng.normal(1.0, 1.0, size=(n, 10, 5))
    P = rng.dirichlet(np.ones(10), size=(n, 10, 5))
    oracle = value_iteration(mu, P, 10)[1][:, 0, 0]
    random = policy_evaluation(mu, P, np.full((10, 5), 0.2), 10)[:, 0, 0]
    assert abs(random.mean() - 10.0) < 4 * random.std() / math.sqrt(n)
    assert abs(oracle.mean() - 21.83) < 0.07  # the documented "about 21.83"; 4 standard errors is 0.065
    # The family's per-task methods compute the same numbers.
    fam = metarl_bench.family("MetaRL/TabularMDP-v0")
    tasks = fam.sample_tasks(50, np.random.default_rng(1))
    mus, Ps = np.array([t.mu for t in tasks]), np.array([t.P for t in tasks])
    np.testing.assert_allclose(fam.oracle_return(tasks), value_iteration(mus, Ps)[1][:, 0, 0], rtol=1e-12)
    np.testing.assert_allclose(
        fam.random_return(tasks), policy_evaluation(mus, Ps, np.full((10, 5), 0.2))[:, 0, 0], rtol=1e-12
    )
    assert np.all(fam.oracle_return(tasks) >= fam.random_return(tasks))


def test_mdp_env_returns_match_the_exact_references():
    """Monte Carlo returns in the batched env equal the analytic values: the task is wired into the env."""
    fam = metarl_bench.family("MetaRL/TabularMDP-v0")
    tasks = fam.sample_tasks(3, np.random.default_rng(2))
    episodes = 3000
    venv = fam.make_vector_env([t for t in tasks for _ in range(episodes)])
    Q = np.stack([value_iteration(*t.arrays())[0] for t in tasks])  # (3, H, S, A)
    task_of = np.repeat(np.arange(3), episodes)
    rng = np.random.default_rng(0)
    for policy, reference in (("oracle", fam.oracle_return(tasks)), ("random", fam.random_return(tasks))):
        obs, _ = venv.reset(seed=1)
        total = np.zeros(venv.num_envs)
        for t in range(10):
            s = obs.argmax(axis=1)
            if policy == "oracle":
                a = Q[task_of, t, s].argmax(axis=1)
            else:
                a = rng.integers(0, 5, size=venv.num_envs)
            obs, reward, terminated, truncated, _ = venv.step(a)
            total += reward
        assert truncated.all()
        per_task = total.reshape(3, episodes)
        se = per_task.std(axis=1) / math.sqrt(episodes)
        assert np.all(np.abs(per_task.mean(axis=1) - reference) < 4 * se), (policy, per_task.mean(axis=1), reference)


def test_classic_control_references():
    fam = metarl_bench.family("MetaRL/CartPoleDynamics-v0")
    tasks = fam.sample_tasks(4, np.random.default_rng(0))
    r = fam.random_return(tasks, episodes=16)
    assert r.shape == (4,) and np.all((r >= 1) & (r < 200))  # a random policy drops the pole quickly
    np.testing.assert_array_equal(r, fam.random_return(tasks, episodes=16))  # fixed seed
    assert fam.oracle_return(tasks) is None
    pend = metarl_bench.family("MetaRL/PendulumDynamics-v0")
    r = pend.random_return(pend.sample_tasks(2, np.random.default_rng(0)), episodes=8)
    assert np.all((r < 0) & (r > -200 * (math.pi**2 + 0.1 * 64 + 0.001 * 4)))
    assert pend.oracle_return([]) is None


# --- bad input -----------------------------------------------------------------------------


def _uniform_P() -> np.ndarray:
    return np.full((10, 5, 10), 0.1)


@pytest.mark.parametrize(
    ("make", "field", "words"),
    [
        (lambda: TabularMDPTask(mu=np.ones((10, 4)), P=_uniform_P()), "mu", "shape"),
        (lambda: TabularMDPTask(mu=np.full((10, 5), np.nan), P=_uniform_P()), "mu", "finite"),
        (lambda: TabularMDPTask(mu=np.ones((10, 5)), P=_uniform_P() * 0.9), "P", "sum to 1"),
        (lambda: TabularMDPTask(mu=np.ones((10, 5)), P=_uniform_P() - 0.2), "P", "[0.0, 1.0]"),
        (lambda: CartPoleDynamicsTask(length_scale=3.0), "length_scale", "[0.5, 2.0]"),
        (lambda: CartPoleDynamicsTask(masspole_scale=float("nan")), "masspole_scale", "[0.5, 2.0]"),
        (lambda: PendulumDynamicsTask(mass_scale=0.25), "mass_scale", "[0.5, 2.0]"),
        (lambda: PendulumDynamicsTask(length_scale="long"), "length_scale", "number"),
    ],
)
def test_invalid_tasks_raise_value_error_naming_the_field(make, field, words):
    with pytest.raises(ValueError) as info:
        make()
    assert f".{field} " in str(info.value) and words in str(info.value)


@pytest.mark.parametrize(
    ("fid", "foreign"),
    [
        ("MetaRL/TabularMDP-v0", NavigationTask()),
        ("MetaRL/CartPoleDynamics-v0", PendulumDynamicsTask()),
        ("MetaRL/PendulumDynamics-v0", CartPoleDynamicsTask()),
    ],
)
def test_task_of_another_family_is_a_type_error_naming_both(fid, foreign):
    fam = metarl_bench.family(fid)
    own, other = fam.task_cls.__name__, type(foreign).__name__
    with pytest.raises(TypeError, match=f"{own}.*{other}"):
        fam.make_env().unwrapped.set_task(foreign)
    venv = fam.make_vector_env(fam.sample_tasks(2, np.random.default_rng(0)))
    with pytest.raises(TypeError, match=f"{own}.*{other}"):
        venv.set_tasks([foreign, foreign])


@pytest.mark.parametrize(
    ("bad", "suggestion"),
    [
        ("MetaRL/TabularMDP-v1", "MetaRL/TabularMDP-v0"),
        ("MetaRL/CartPoleDynamics", "MetaRL/CartPoleDynamics-v0"),
        ("MetaRL/PendulumDynamic-v0", "MetaRL/PendulumDynamics-v0"),
    ],
)
def test_unknown_id_lists_close_matches(bad, suggestion):
    with pytest.raises(metarl_bench.UnknownIdError) as info:
        metarl_bench.family(bad)
    assert suggestion in str(info.value)


def test_make_vec_reaches_the_native_batched_envs():
    for fid in ("MetaRL/TabularMDP-v0", "MetaRL/CartPoleDynamics-v0", "MetaRL/PendulumDynamics-v0"):
        venv = gym.make_vec(fid, num_envs=3, vectorization_mode="vector_entry_point")
        assert isinstance(venv, metarl_bench.family(fid).vector_env_cls)
        assert venv.num_envs == 3
        obs, _ = venv.reset(seed=0)
        assert obs.shape == (3, *venv.single_observation_space.shape)
