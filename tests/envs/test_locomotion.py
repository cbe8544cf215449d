"""The MuJoCo locomotion families: rewards against Gymnasium's v5 envs and by hand, task
distributions, bad tasks, parameter scaling, and the batched env's pausing.

(Batched-versus-single equality, seeding and ``set_task`` semantics are checked for every
family by ``tests/envs/test_env_families.py::test_check_family_passes``.)
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import metarl_bench
from metarl_bench.envs import locomotion as L

IDS = [f.id for f in L.FAMILIES]


def _rollout(env: gym.Env, actions: np.ndarray, seed: int) -> tuple[list, list, list, list]:
    obs, _ = env.reset(seed=seed)
    observations, rewards, terminated, infos = [obs], [], [], []
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        observations.append(obs)
        rewards.append(float(r))
        terminated.append(bool(term))
        infos.append(info)
        if term or trunc:
            break
    return observations, rewards, terminated, infos


@pytest.mark.parametrize(
    "fid, task, gym_id, gym_kwargs",
    [
        # direction +1 with Gymnasium's forward weight 1 and ctrl cost 0.05 is HalfCheetahDir's reward
        ("MetaRL/HalfCheetahDir-v0", L.HalfCheetahDirTask(1), "HalfCheetah-v5", {"ctrl_cost_weight": 0.05}),
        # direction +1 is Ant-v5's own reward (forward, ctrl 0.5, contact 5e-4, healthy 1)
        ("MetaRL/AntDir-v0", L.AntDirTask(1), "Ant-v5", {}),
        # all log-scales 0 is Gymnasium's own walker and hopper
        ("MetaRL/Walker2DParams-v0", L.Walker2DParamsTask.zeros(), "Walker2d-v5", {}),
        ("MetaRL/HopperParams-v0", L.HopperParamsTask.zeros(), "Hopper-v5", {}),
    ],
)
def test_families_reproduce_gymnasium_v5_where_their_definitions_meet(fid, task, gym_id, gym_kwargs):
    ours = metarl_bench.family(fid).make_env(task)
    ref = gym.make(gym_id, max_episode_steps=200, **gym_kwargs)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(200, ref.action_space.shape[0])).astype(np.float32)
    o1, r1, t1, i1 = _rollout(ours, actions, seed=7)
    o2, r2, t2, _ = _rollout(ref, actions, seed=7)
    assert len(r1) == len(r2) > 5
    np.testing.assert_array_equal(np.array(o1), np.array(o2, dtype=np.float32))
    assert t1 == t2
    # Gymnasium sums the float32 action's squares in float32; the families in float64
    np.testing.assert_allclose(r1, r2, rtol=0, atol=1e-5)
    # the info dict carries the terms, and they add up to the reward
    for info, r in zip(i1, r1):
        terms = [v for k, v in info.items() if k.startswith("reward_")]
        assert math.isclose(sum(terms), r, rel_tol=1e-12, abs_tol=1e-12)


def _step_zero(env: gym.Env) -> tuple[float, dict, float]:
    """Step with a zero action; return the reward, info and the forward velocity from qpos."""
    u = env.unwrapped
    before = float(u.data.qpos[0])
    _, r, _, _, info = env.step(np.zeros(env.action_space.shape, dtype=np.float32))
    return float(r), info, (float(u.data.qpos[0]) - before) / u.dt


def test_half_cheetah_vel_reward_by_hand():
    env = metarl_bench.family("MetaRL/HalfCheetahVel-v0").make_env(L.HalfCheetahVelTask(velocity=2.0))
    env.reset(seed=0)
    u = env.unwrapped
    qvel = u.data.qvel.copy()
    qvel[0] = 1.2  # the cheetah moving forward at 1.2 m/s
    u.set_state(u.data.qpos.copy(), qvel)
    r, info, v_x = _step_zero(env)
    assert 0.5 < v_x < 1.5
    assert r == -abs(v_x - 2.0)  # zero action: no control cost
    assert info["reward_ctrl"] == 0.0 and info["reward_velocity"] == r


def test_half_cheetah_dir_reward_changes_sign_with_the_direction():
    rewards = {}
    for d in (1, -1):
        env = metarl_bench.family("MetaRL/HalfCheetahDir-v0").make_env(L.HalfCheetahDirTask(direction=d))
        env.reset(seed=3)
        a = np.full(6, 0.5, dtype=np.float32)
        _, rewards[d], _, _, info = env.step(a)
        assert info["reward_ctrl"] == pytest.approx(-0.05 * 6 * 0.25)
    ctrl = -0.05 * 6 * 0.25
    assert rewards[1] - ctrl == pytest.approx(-(rewards[-1] - ctrl))


def test_ant_goal_reward_is_the_l1_distance_of_the_torso():
    goal = L.AntGoalTask(x=1.0, y=-2.0)
    env = metarl_bench.family("MetaRL/AntGoal-v0").make_env(goal)
    env.reset(seed=0)
    _, r, term, _, info = env.step(np.zeros(8, dtype=np.float32))
    x, y = env.unwrapped.data.xpos[1, :2]  # the torso, as Gymnasium's Ant reads it
    assert r == -(abs(x - 1.0) + abs(y + 2.0))
    assert not term and info["reward_ctrl"] == 0.0
    # never terminates, even upside down far below the healthy range
    u = env.unwrapped
    qpos = u.data.qpos.copy()
    qpos[2] = 0.05
    u.set_state(qpos, u.data.qvel.copy())
    assert env.step(np.zeros(8, dtype=np.float32))[2] is False


def test_ant_dir_terminates_when_unhealthy():
    env = metarl_bench.family("MetaRL/AntDir-v0").make_env(L.AntDirTask(direction=-1))
    env.reset(seed=0)
    u = env.unwrapped
    qpos = u.data.qpos.copy()
    qpos[2] = 1.5  # torso above the healthy range [0.2, 1]
    u.set_state(qpos, u.data.qvel.copy())
    _, _, term, _, info = env.step(np.zeros(8, dtype=np.float32))
    assert term and info["reward_survive"] == 0.0


def test_parameter_tasks_scale_the_model_and_change_the_dynamics():
    fam = metarl_bench.family("MetaRL/HopperParams-v0")
    heavy = L.HopperParamsTask(
        body_mass=(3.0,) * 4, body_inertia=((3.0,) * 3,) * 4, dof_damping=(0.0,) * 6, geom_friction=((0.0,) * 3,) * 5
    )
    base, scaled = fam.make_env(L.HopperParamsTask.zeros()), fam.make_env(heavy)
    base.reset(seed=1)
    scaled.reset(seed=1)
    m0, m1 = base.unwrapped.model, scaled.unwrapped.model
    np.testing.assert_allclose(m1.body_mass[1:], m0.body_mass[1:] * 1.5**3)
    np.testing.assert_allclose(m1.body_inertia[1:], m0.body_inertia[1:] * 1.5**3)
    assert m1.body_mass[0] == m0.body_mass[0] == 0.0  # the world is not scaled
    a = np.full(3, 0.8, dtype=np.float32)
    o0 = [base.step(a)[0] for _ in range(10)]
    o1 = [scaled.step(a)[0] for _ in range(10)]
    assert np.abs(np.array(o0) - np.array(o1)).max() > 1e-3
    # back to Gymnasium's values at the next reset with the zero task
    scaled.unwrapped.set_task(L.HopperParamsTask.zeros())
    scaled.reset(seed=1)
    np.testing.assert_array_equal(m1.body_mass, m0.body_mass)


@pytest.mark.parametrize("task_cls, gym_id", [(L.Walker2DParamsTask, "Walker2d-v5"), (L.HopperParamsTask, "Hopper-v5")])
def test_parameter_task_shapes_match_the_models(task_cls, gym_id):
    m = gym.make(gym_id).unwrapped.model
    assert (task_cls.n_bodies, task_cls.n_dofs, task_cls.n_geoms) == (m.nbody - 1, m.nv, m.ngeom)


def test_task_distribution_moments():
    rng = np.random.default_rng(0)
    n = 20_000
    v = np.array([t.velocity for t in metarl_bench.family("MetaRL/HalfCheetahVel-v0").sample_tasks(n, rng)])
    assert v.min() >= 0 and v.max() <= 3
    assert abs(v.mean() - 1.5) < 4 * math.sqrt(0.75 / n)
    assert abs(v.var() - 0.75) < 0.03
    for fid in ("MetaRL/HalfCheetahDir-v0", "MetaRL/AntDir-v0"):
        d = np.array([t.direction for t in metarl_bench.family(fid).sample_tasks(n, rng)])
        assert set(d.tolist()) == {-1, 1}
        assert abs((d == 1).mean() - 0.5) < 4 * math.sqrt(0.25 / n)
    g = np.array([[t.x, t.y] for t in metarl_bench.family("MetaRL/AntGoal-v0").sample_tasks(n, rng)])
    r2 = (g**2).sum(axis=1)
    assert r2.max() <= 9 + 1e-9
    # uniform on the disc of radius 3: E[x] = E[y] = 0, E[r^2] = 4.5, P(r < 1.5) = 1/4
    assert np.all(np.abs(g.mean(axis=0)) < 4 * math.sqrt(9 / 4 / n))
    assert abs(r2.mean() - 4.5) < 4 * math.sqrt(81 / 12 / n)
    assert abs((r2 < 2.25).mean() - 0.25) < 4 * math.sqrt(0.1875 / n)
    tasks = metarl_bench.family("MetaRL/Walker2DParams-v0").sample_tasks(2_000, rng)
    s = np.array([t.features() for t in tasks], dtype=np.float64)  # every log-scale ~ U[-3, 3]
    assert s.min() >= -3 and s.max() <= 3
    assert abs(s.mean()) < 4 * math.sqrt(3 / s.size)
    assert abs(s.var() - 3.0) < 0.05


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: L.HalfCheetahVelTask(velocity=-0.5), ["velocity", "[0.0, 3.0]"]),
        (lambda: L.HalfCheetahVelTask(velocity=float("nan")), ["velocity", "finite"]),
        (lambda: L.HalfCheetahDirTask(direction=0), ["direction", "-1", "+1"]),
        (lambda: L.AntDirTask(direction=0.5), ["direction", "-1", "+1"]),
        (lambda: L.AntGoalTask(x=2.5, y=2.5), ["outside the disc", "radius 3"]),
        (lambda: L.AntGoalTask(x=float("inf"), y=0.0), ["x", "finite"]),
        (lambda: L.HopperParamsTask(**{**L.HopperParamsTask.zeros().to_dict(), "body_mass": [0, 0, 0, 4.0]}),
         ["body_mass", "[-3.0, 3.0]"]),
        (lambda: L.HopperParamsTask(**{**L.HopperParamsTask.zeros().to_dict(), "dof_damping": [0.0] * 5}),
         ["dof_damping", "shape (6,)"]),
        (lambda: L.Walker2DParamsTask(**{**L.Walker2DParamsTask.zeros().to_dict(),
                                         "geom_friction": [[float("nan")] * 3] * 8}), ["geom_friction", "finite"]),
    ],
)
def test_tasks_outside_their_support_are_refused_naming_the_field_and_range(make, words):
    with pytest.raises(ValueError) as err:
        make()
    for w in words:
        assert w in str(err.value)


def test_task_json_round_trip_keeps_log_scales():
    t = metarl_bench.family("MetaRL/Walker2DParams-v0").sample_tasks(1, np.random.default_rng(5))[0]
    assert L.Walker2DParamsTask.from_dict(t.to_dict()) == t
    assert isinstance(t.to_dict()["body_inertia"][0], list)  # JSON arrays, not tuples or pickles


def test_paused_sub_envs_neither_step_nor_autoreset():
    fam = metarl_bench.family("MetaRL/HopperParams-v0")
    tasks = fam.sample_tasks(3, np.random.default_rng(0))
    venv = fam.make_vector_env(tasks)
    obs, _ = venv.reset(seed=0)
    a = np.zeros((3, 3), dtype=np.float32)
    venv.pause_until_reset(np.array([False, True, False]))
    draws = venv._gens[1].bit_generator.state["state"]["state"]
    for _ in range(300):  # long past every hopper's first episode
        new, r, term, trunc, _ = venv.step(a)
        assert r[1] == 0.0 and not term[1] and not trunc[1]
        np.testing.assert_array_equal(new[1], obs[1])
    assert venv._gens[1].bit_generator.state["state"]["state"] == draws  # no initial state drawn
    obs2, _ = venv.reset()  # a reset ends the pause
    assert not np.array_equal(obs2[1], obs[1])
    assert venv.step(a)[1][1] != 0.0


def test_the_harness_counts_the_same_steps_with_paused_sub_envs(monkeypatch):
    """Pausing finished sub-envs saves physics, not experience: a stage's episodes run to their
    ends and return the same as without pausing (one stage, so autoreset draws cannot differ)."""
    from metarl_bench.harness import run_chunk
    from metarl_bench.perf.envs import _UniformAdapter

    fam = metarl_bench.family("MetaRL/HopperParams-v0")
    tasks = fam.sample_tasks(4, np.random.default_rng(1))
    space = fam.make_vector_env(tasks[:1]).single_action_space
    paused = run_chunk(_UniformAdapter(space, 0), fam, tasks, 2, 2, 1, 0, 0, False, None)
    monkeypatch.setattr(type(fam), "pause_finished", False)
    unpaused = run_chunk(_UniformAdapter(space, 0), fam, tasks, 2, 2, 1, 0, 0, False, None)
    np.testing.assert_array_equal(paused[0], unpaused[0])
    assert paused[1] == unpaused[1] > 4 * 2 * 2 * 5  # random hoppers fall within tens of steps


def test_locomotion_ids_known_without_mujoco_match_the_families():
    from metarl_bench.envs import LOCOMOTION_IDS

    assert list(LOCOMOTION_IDS) == [f.id for f in L.FAMILIES]


def test_sb3_trains_on_a_locomotion_family():
    from stable_baselines3 import PPO

    env = metarl_bench.family("MetaRL/HalfCheetahVel-v0").make_env()
    model = PPO("MlpPolicy", env, n_steps=256, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(512)
    assert model.num_timesteps == 512


@pytest.mark.parametrize("bid", ["MetaRL/HalfCheetahDir-v0", "MetaRL/AntDir-full-v0"])
def test_direction_benchmarks_have_balanced_task_lists_over_the_two_tasks(bid):
    from metarl_bench.benchmarks import benchmark

    b = benchmark(bid)
    for tasks in (b.train_tasks, b.test_tasks):
        d = [t.direction for t in tasks]
        assert d.count(1) == d.count(-1) == len(d) // 2


def test_without_mujoco_the_locomotion_ids_name_the_install():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['mujoco'] = None\n"
        "from metarl_bench.cli import main\n"
        "sys.exit(main(['evaluate', '--agent', 'random', '--benchmark', 'MetaRL/AntGoal-v0']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert "needs MuJoCo" in lines[0] and "pip install 'gymnasium[mujoco]'" in lines[0]
