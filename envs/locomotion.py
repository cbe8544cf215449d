"""MuJoCo locomotion task families on Gymnasium's v5 models, with a batched vector env per family.

The field's copies of these families disagree, so each is defined here once, versioned:

| id | task | reward per step | episode |
|---|---|---|---|
| ``MetaRL/HalfCheetahVel-v0`` | ``velocity ~ U[0, 3]`` | ``-abs(v_x - velocity) - 0.05 sum(a^2)`` | 200 steps, never terminates |
| ``MetaRL/HalfCheetahDir-v0`` | ``direction`` -1 or +1, equally likely | ``direction * v_x - 0.05 sum(a^2)`` | 200 steps, never terminates |
| ``MetaRL/AntDir-v0`` | ``direction`` -1 or +1 along x, equally likely | ``direction * v_x - 0.5 sum(a^2) - 5e-4 sum(clip(cfrc_ext, -1, 1)^2) + 1`` | 200 steps; terminates when unhealthy (torso z outside [0.2, 1], or a non-finite state) |
| ``MetaRL/AntGoal-v0`` | ``goal = 3 sqrt(u) (cos t, sin t)``, u ~ U[0, 1], t ~ U[0, 2 pi) | ``-(abs(x - goal_x) + abs(y - goal_y)) - 0.1 sum(a^2)`` | 200 steps, never terminates |
| ``MetaRL/Walker2DParams-v0`` | log-scales ~ U[-3, 3] per element: body mass and inertia x 1.5^s, dof damping x 1.3^s, geom friction x 1.5^s | Gymnasium Walker2d-v5's: ``v_x + 1 (healthy) - 1e-3 sum(a^2)`` | 200 steps; terminates when unhealthy as Walker2d-v5 |
| ``MetaRL/HopperParams-v0`` | as Walker2DParams, on the hopper | Gymnasium Hopper-v5's: ``v_x + 1 (healthy) - 1e-3 sum(a^2)`` | 200 steps; terminates when unhealthy as Hopper-v5 |

``v_x`` is Gymnasium v5's forward velocity: the change of ``qpos[0]`` (the ant: of the
torso's ``xpos``) over one env step, divided by ``dt`` = timestep x frame skip (0.05 s for
the cheetah and the ant, 0.008 s for the walker and the hopper). Observations, initial-state
noise, health checks and frame skips are Gymnasium v5's (the ant observes its clipped
external contact forces, 105 numbers). Every env reports its reward terms in ``info``.

Where the lineage differs (and what this suite chose): velocities U[0, 2] in MAML and
garage, U[0, 3] in ProMP, PEARL and VariBAD (here U[0, 3]); MAML's rllab cheetah steps at
dt = 0.01 s while every Gym port steps at 0.05 s (here 0.05 s); VariBAD's AntDir draws
headings of +-1 radian instead of forward/backward (here forward/backward along x); ctrl
and contact costs and the survive bonus differ between ports (here the table above, which
is ProMP's for AntGoal and Gymnasium v5's Ant terms for AntDir); contact costs were zero in
every port run on MuJoCo >= 2.0 through mujoco-py (cfrc_ext was not computed), here they
are computed after every step as Gymnasium v5 does. The parameter families follow
rand_param_envs (as PEARL's Walker2DRandParams and HopperRandParams) with Gymnasium v5's
models and rewards; a task stores the log-scales (exponents), so every scaled quantity
stays positive; the world body is not scaled.

The batched env (``*VectorEnv``) keeps one ``MjData`` per sub-env (and, for the parameter
families, one ``MjModel`` per sub-env, since their dynamics differ) and steps them on a
pool of threads: each ``mujoco.mj_step`` runs in C with the GIL released, so two threads
step two sub-envs at once. Rewards, observations and health checks are computed for all
sub-envs at once in numpy by the same functions the single envs use, so a batch equals N
single envs bit for bit (tested). ``mujoco.rollout`` was measured as the alternative: on
2 threads it stepped HalfCheetah at the same speed as this pool, but it returns states and
sensor values only, not the ant's ``cfrc_ext`` that its reward and observation need (see
docs/design.md, "MuJoCo locomotion").
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium import spaces
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv

from metarl_bench.envbase import MetaEnv
from metarl_bench.family import Family, TaskDistribution
from metarl_bench.tasks import Task, check_array, check_number

from .classic_control import NpRandomBatch, monte_carlo_return

HORIZON = 200
VELOCITY_HIGH = 3.0
GOAL_RADIUS = 3.0
LOG_SCALE = 3.0  # log-scales (exponents) ~ U[-3, 3]
MASS_BASE, DAMPING_BASE, FRICTION_BASE = 1.5, 1.3, 1.5
# Fewer live sub-envs than this are stepped in the calling thread: waking a pool thread
# costs about as much as a few sub-env steps (measured on the hopper, the cheapest model).
INLINE_BELOW = 4


# --- tasks ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HalfCheetahVelTask(Task):
    """Target forward velocity in [0, 3] (m/s)."""

    velocity: float = 1.5

    def validate(self) -> None:
        check_number("HalfCheetahVelTask", "velocity", self.velocity, 0.0, VELOCITY_HIGH)


def _check_direction(task: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value not in (-1, 1):
        raise ValueError(f"{task}.direction must be -1 (backward) or +1 (forward), got {value!r}")


@dataclass(frozen=True)
class HalfCheetahDirTask(Task):
    """Running direction along x: +1 forward, -1 backward."""

    direction: int = 1

    def validate(self) -> None:
        _check_direction("HalfCheetahDirTask", self.direction)


@dataclass(frozen=True)
class AntDirTask(Task):
    """Running direction along x: +1 forward, -1 backward."""

    direction: int = 1

    def validate(self) -> None:
        _check_direction("AntDirTask", self.direction)


@dataclass(frozen=True)
class AntGoalTask(Task):
    """Goal position (x, y) in the disc of radius 3 around the start."""

    x: float = 0.0
    y: float = 0.0

    def validate(self) -> None:
        check_number("AntGoalTask", "x", self.x, -GOAL_RADIUS, GOAL_RADIUS)
        check_number("AntGoalTask", "y", self.y, -GOAL_RADIUS, GOAL_RADIUS)
        # 1e-12: a goal drawn on the rim (3 sqrt(1) (cos t, sin t)) may land an ulp outside it
        if math.hypot(self.x, self.y) > GOAL_RADIUS + 1e-12:
            raise ValueError(
                f"AntGoalTask goal ({self.x}, {self.y}) lies outside the disc of radius {GOAL_RADIUS} "
                f"(distance {math.hypot(self.x, self.y):.6g}): x^2 + y^2 must be <= {GOAL_RADIUS**2:g}"
            )


@dataclass(frozen=True)
class _BodyParamsTask(Task):
    """Log-scales (exponents, each in [-3, 3]) of a model's physical parameters.

    ``body_mass`` (one per body but the world; mass x 1.5^s), ``body_inertia`` (three per
    body but the world; diagonal inertia x 1.5^s), ``dof_damping`` (one per dof; damping
    x 1.3^s), ``geom_friction`` (three per geom; friction coefficients x 1.5^s). All zero is
    Gymnasium's model. A log-scale keeps every scaled quantity positive.
    """

    body_mass: tuple[float, ...] = ()
    body_inertia: tuple[tuple[float, ...], ...] = ()
    dof_damping: tuple[float, ...] = ()
    geom_friction: tuple[tuple[float, ...], ...] = ()

    n_bodies: ClassVar[int]  # bodies but the world
    n_dofs: ClassVar[int]
    n_geoms: ClassVar[int]

    def validate(self) -> None:
        name = type(self).__name__
        shapes = {
            "body_mass": (self.n_bodies,),
            "body_inertia": (self.n_bodies, 3),
            "dof_damping": (self.n_dofs,),
            "geom_friction": (self.n_geoms, 3),
        }
        for field_name, shape in shapes.items():
            check_array(name, field_name, getattr(self, field_name), shape, -LOG_SCALE, LOG_SCALE)

    @classmethod
    def zeros(cls) -> _BodyParamsTask:
        """The task of Gymnasium's own model (every log-scale 0)."""
        return cls(
            body_mass=(0.0,) * cls.n_bodies,
            body_inertia=((0.0,) * 3,) * cls.n_bodies,
            dof_damping=(0.0,) * cls.n_dofs,
            geom_friction=((0.0,) * 3,) * cls.n_geoms,
        )


@dataclass(frozen=True)
class Walker2DParamsTask(_BodyParamsTask):
    __doc__ = _BodyParamsTask.__doc__
    n_bodies: ClassVar[int] = 7
    n_dofs: ClassVar[int] = 9
    n_geoms: ClassVar[int] = 8


@dataclass(frozen=True)
class HopperParamsTask(_BodyParamsTask):
    __doc__ = _BodyParamsTask.__doc__
    n_bodies: ClassVar[int] = 4
    n_dofs: ClassVar[int] = 6
    n_geoms: ClassVar[int] = 5


# --- distributions -------------------------------------------------------------------------


class UniformVelocity(TaskDistribution):
    def __call__(self, rng: np.random.Generator) -> Task:
        return HalfCheetahVelTask(velocity=float(rng.uniform(0.0, VELOCITY_HIGH)))

    def describe(self) -> str:
        return "velocity ~ U[0, 3]"


class RandomDirection(TaskDistribution):
    def __init__(self, task_cls: type[Task]) -> None:
        self.task_cls = task_cls

    def __call__(self, rng: np.random.Generator) -> Task:
        return self.task_cls(direction=int(rng.choice((-1, 1))))  # type: ignore[call-arg]

    def describe(self) -> str:
        return "direction -1 or +1, equally likely"


class UniformDiscGoal(TaskDistribution):
    def __call__(self, rng: np.random.Generator) -> Task:
        u, theta = rng.uniform(0.0, 1.0), rng.uniform(0.0, 2.0 * np.pi)
        r = GOAL_RADIUS * math.sqrt(u)
        return AntGoalTask(x=float(r * math.cos(theta)), y=float(r * math.sin(theta)))

    def describe(self) -> str:
        return "goal = 3 sqrt(u) (cos t, sin t), u ~ U[0, 1], t ~ U[0, 2 pi): uniform on the disc of radius 3"


class UniformLogScales(TaskDistribution):
    def __init__(self, task_cls: type[_BodyParamsTask]) -> None:
        self.task_cls = task_cls

    def __call__(self, rng: np.random.Generator) -> Task:
        c = self.task_cls

        def draw(*shape: int) -> Any:
            return rng.uniform(-LOG_SCALE, LOG_SCALE, size=shape).tolist()

        return c(
            body_mass=draw(c.n_bodies),
            body_inertia=draw(c.n_bodies, 3),
            dof_damping=draw(c.n_dofs),
            geom_friction=draw(c.n_geoms, 3),
        )

    def describe(self) -> str:
        return "every log-scale ~ U[-3, 3] i.i.d. (mass, inertia, friction x 1.5^s; damping x 1.3^s)"


# --- the arithmetic shared by single and batched envs (arrays of shape (n, ...)) -----------


def _sum_of_squares(x: np.ndarray) -> np.ndarray:
    """Row sums of squares, one column at a time.

    Element-wise operations round identically whatever SIMD kernel NumPy picks, while a
    reduction's summation order may differ between a (d,) and an (n, d) array; summing
    column by column keeps single and batched envs bit-identical on any CPU.
    """
    out: np.ndarray = np.square(x[:, 0])
    for j in range(1, x.shape[1]):
        out = out + np.square(x[:, j])
    return out


@dataclass
class Physics:
    """What a step reads from MuJoCo, for n sub-envs."""

    qpos: np.ndarray  # (n, nq)
    qvel: np.ndarray  # (n, nv)
    xy: np.ndarray  # (n, 2): the torso's xpos (x, y), as Gymnasium's Ant reads it
    cfrc: np.ndarray | None = None  # (n, nbody, 6), the ant only


class _Robot:
    """One robot's Gymnasium v5 conventions: its env class, observation, initial noise and health."""

    gym_cls: ClassVar[type[MujocoEnv]]
    contact_forces: ClassVar[bool] = False  # read cfrc_ext after each step (mj_rnePostConstraint)

    @staticmethod
    def observe(ph: Physics) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def reset_noise(gen: np.random.Generator, nq: int, nv: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError  # pragma: no cover - abstract

    @staticmethod
    def healthy(ph: Physics) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def position(ph: Physics) -> np.ndarray:
        """The forward coordinate(s) whose change over a step gives the velocity."""
        return ph.qpos[:, :1]


class _Cheetah(_Robot):
    gym_cls = HalfCheetahEnv

    @staticmethod
    def observe(ph: Physics) -> np.ndarray:
        return np.concatenate([ph.qpos[:, 1:], ph.qvel], axis=1)

    @staticmethod
    def reset_noise(gen: np.random.Generator, nq: int, nv: int) -> tuple[np.ndarray, np.ndarray]:
        # HalfCheetah-v5 and Ant-v5's reset_model: qpos + U(-0.1, 0.1), qvel + 0.1 N(0, 1)
        return gen.uniform(low=-0.1, high=0.1, size=nq), 0.1 * gen.standard_normal(nv)

    @staticmethod
    def healthy(ph: Physics) -> np.ndarray:
        return np.ones(len(ph.qpos), dtype=bool)


class _Ant(_Robot):
    gym_cls = AntEnv
    contact_forces = True
    reset_noise = _Cheetah.reset_noise

    @staticmethod
    def observe(ph: Physics) -> np.ndarray:
        assert ph.cfrc is not None
        contact = np.clip(ph.cfrc[:, 1:], -1.0, 1.0).reshape(len(ph.qpos), -1)
        return np.concatenate([ph.qpos[:, 2:], ph.qvel, contact], axis=1)

    @staticmethod
    def healthy(ph: Physics) -> np.ndarray:
        finite = np.isfinite(ph.qpos).all(axis=1) & np.isfinite(ph.qvel).all(axis=1)
        z = ph.qpos[:, 2]
        out: np.ndarray = finite & (z >= 0.2) & (z <= 1.0)
        return out

    @staticmethod
    def position(ph: Physics) -> np.ndarray:
        return ph.xy

    @staticmethod
    def contact_cost(ph: Physics) -> np.ndarray:
        assert ph.cfrc is not None
        return 5e-4 * _sum_of_squares(np.clip(ph.cfrc, -1.0, 1.0).reshape(len(ph.qpos), -1))


class _Planar(_Robot):
    """Walker2d-v5 and Hopper-v5: qpos[1:], qvel clipped to [-10, 10]; noise U(-5e-3, 5e-3) on both."""

    @staticmethod
    def observe(ph: Physics) -> np.ndarray:
        return np.concatenate([ph.qpos[:, 1:], np.clip(ph.qvel, -10.0, 10.0)], axis=1)

    @staticmethod
    def reset_noise(gen: np.random.Generator, nq: int, nv: int) -> tuple[np.ndarray, np.ndarray]:
        return gen.uniform(low=-5e-3, high=5e-3, size=nq), gen.uniform(low=-5e-3, high=5e-3, size=nv)


class _Walker(_Planar):
    gym_cls = Walker2dEnv

    @staticmethod
    def healthy(ph: Physics) -> np.ndarray:
        z, angle = ph.qpos[:, 1], ph.qpos[:, 2]
        return (z > 0.8) & (z < 2.0) & (angle > -1.0) & (angle < 1.0)


class _Hopper(_Planar):
    gym_cls = HopperEnv

    @staticmethod
    def healthy(ph: Physics) -> np.ndarray:
        z, angle = ph.qpos[:, 1], ph.qpos[:, 2]
        state = np.concatenate([ph.qpos, ph.qvel], axis=1)[:, 2:]
        return ((state > -100.0) & (state < 100.0)).all(axis=1) & (z > 0.7) & (angle > -0.2) & (angle < 0.2)


def _velocity(before: np.ndarray, after: np.ndarray, dt: float) -> np.ndarray:
    out: np.ndarray = (after - before) / dt
    return out


# --- single envs ---------------------------------------------------------------------------


class _LocomotionEnv(MetaEnv):
    """A family's single env: Gymnasium's v5 env (model, reset noise, rendering) with the family's reward.

    Subclasses also derive from the Gymnasium class named by ``robot.gym_cls`` and implement
    :meth:`terms`; the step reads MuJoCo's state into :class:`Physics` and computes the
    reward with the same array functions as the batched env.
    """

    robot: ClassVar[type[_Robot]]
    family_cls: ClassVar[type[Family]]
    terminates: ClassVar[bool] = False  # episodes end when unhealthy
    model: Any  # Gymnasium's MujocoEnv attributes, typed loosely
    data: Any
    frame_skip: int
    dt: float

    def __init__(self, expose_task: bool = False, render_mode: str | None = None) -> None:
        self.robot.gym_cls.__init__(self, render_mode=render_mode)  # type: ignore[arg-type,call-arg]  # the v5 subclass
        n_obs = int(np.prod(self.observation_space.shape))  # type: ignore[arg-type]
        raw = spaces.Box(-np.inf, np.inf, (n_obs,), np.float32)
        self._base_params = _model_params(self.model)
        self._init_task(self.family_cls().default_task(), expose_task, raw)

    def _physics(self) -> Physics:
        return Physics(
            qpos=self.data.qpos[None].copy(),
            qvel=self.data.qvel[None].copy(),
            xy=self.data.xpos[1, :2][None].copy(),
            cfrc=self.data.cfrc_ext[None].copy() if self.robot.contact_forces else None,
        )

    def terms(self, ph_before: Physics, ph: Physics, action: np.ndarray, healthy: np.ndarray) -> dict[str, np.ndarray]:
        return _family_terms(self.family_cls, _task_arrays([self._task]), ph_before, ph, action, healthy, self.dt)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        task = self._begin_reset(seed)
        _apply_params(self.model, self._base_params, _task_arrays([task]), 0)
        obs, info = self.robot.gym_cls.reset(self, seed=seed, options=options)  # type: ignore[arg-type]
        return self._observe(self.robot.observe(self._physics())[0]), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = np.asarray(action, dtype=np.float64).reshape(1, -1)
        before = self._physics()
        self.do_simulation(action, self.frame_skip)  # type: ignore[attr-defined]  # MujocoEnv's
        ph = self._physics()
        healthy = self.robot.healthy(ph)
        terms = self.terms(before, ph, a, healthy)
        reward = float(_total(terms)[0])
        info = {k: float(v[0]) for k, v in terms.items()}
        info["x_velocity"] = float(_velocity(self.robot.position(before)[:, 0], self.robot.position(ph)[:, 0], self.dt)[0])
        terminated = bool(self.terminates and not healthy[0])
        if self.render_mode == "human":  # type: ignore[attr-defined]
            self.render()  # type: ignore[attr-defined]
        return self._observe(self.robot.observe(ph)[0]), reward, terminated, False, info


def _total(terms: dict[str, np.ndarray]) -> np.ndarray:
    """The reward: the terms added in their fixed order."""
    values = list(terms.values())
    out = values[0]
    for v in values[1:]:
        out = out + v
    return out


def _family_terms(
    family_cls: type[Family],
    p: dict[str, np.ndarray],
    before: Physics,
    ph: Physics,
    a: np.ndarray,
    healthy: np.ndarray,
    dt: float,
) -> dict[str, np.ndarray]:
    robot: type[_Robot] = family_cls.robot  # type: ignore[attr-defined]
    pos0, pos1 = robot.position(before), robot.position(ph)
    v_x = _velocity(pos0[:, 0], pos1[:, 0], dt)
    kind = family_cls.reward_kind  # type: ignore[attr-defined]
    if kind == "cheetah-vel":
        return {"reward_velocity": -np.abs(v_x - p["velocity"]), "reward_ctrl": -0.05 * _sum_of_squares(a)}
    if kind == "cheetah-dir":
        return {"reward_forward": p["direction"] * v_x, "reward_ctrl": -0.05 * _sum_of_squares(a)}
    if kind == "ant-dir":
        return {
            "reward_forward": p["direction"] * v_x,
            "reward_ctrl": -0.5 * _sum_of_squares(a),
            "reward_contact": -_Ant.contact_cost(ph),
            "reward_survive": healthy.astype(np.float64),
        }
    if kind == "ant-goal":
        dist = np.abs(pos1[:, 0] - p["goal"][:, 0]) + np.abs(pos1[:, 1] - p["goal"][:, 1])
        return {"reward_goal": -dist, "reward_ctrl": -0.1 * _sum_of_squares(a)}
    if kind == "v5":  # Walker2d-v5 and Hopper-v5: forward weight 1, healthy reward 1, ctrl cost 1e-3
        return {
            "reward_forward": v_x,
            "reward_survive": healthy.astype(np.float64),
            "reward_ctrl": -1e-3 * _sum_of_squares(a),
        }
    raise AssertionError(f"unknown reward kind {kind!r}")  # pragma: no cover


# --- task parameters as arrays, and the parameter families' models ------------------------


def _task_arrays(tasks: Sequence[Task]) -> dict[str, np.ndarray]:
    t0 = tasks[0]
    if isinstance(t0, HalfCheetahVelTask):
        return {"velocity": np.array([t.velocity for t in tasks], dtype=np.float64)}  # type: ignore[attr-defined]
    if isinstance(t0, (HalfCheetahDirTask, AntDirTask)):
        return {"direction": np.array([t.direction for t in tasks], dtype=np.float64)}  # type: ignore[attr-defined]
    if isinstance(t0, AntGoalTask):
        return {"goal": np.array([[t.x, t.y] for t in tasks], dtype=np.float64)}  # type: ignore[attr-defined]
    if isinstance(t0, _BodyParamsTask):
        return {
            name: np.array([getattr(t, name) for t in tasks], dtype=np.float64)
            for name in ("body_mass", "body_inertia", "dof_damping", "geom_friction")
        }
    raise TypeError(f"not a locomotion task: {type(t0).__name__}")  # pragma: no cover


def _model_params(model: Any) -> dict[str, np.ndarray]:
    return {
        "body_mass": model.body_mass.copy(),
        "body_inertia": model.body_inertia.copy(),
        "dof_damping": model.dof_damping.copy(),
        "geom_friction": model.geom_friction.copy(),
    }


def _apply_params(model: Any, base: dict[str, np.ndarray], p: dict[str, np.ndarray], i: int) -> None:
    """Scale ``model``'s parameters by task ``i``'s log-scales (a no-op for tasks without any)."""
    if "body_mass" not in p:
        return
    model.body_mass[1:] = base["body_mass"][1:] * MASS_BASE ** p["body_mass"][i]
    model.body_inertia[1:] = base["body_inertia"][1:] * MASS_BASE ** p["body_inertia"][i]
    model.dof_damping[:] = base["dof_damping"] * DAMPING_BASE ** p["dof_damping"][i]
    model.geom_friction[:] = base["geom_friction"] * FRICTION_BASE ** p["geom_friction"][i]


# --- the batched env -----------------------------------------------------------------------


def _default_threads() -> int:
    try:
        return max(1, min(2, len(os.sched_getaffinity(0))))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, min(2, os.cpu_count() or 1))


class _LocomotionVectorEnv(NpRandomBatch):
    """N sub-envs of a locomotion family stepped in C on a thread pool (see the module docstring).

    Sub-env ``i`` of a batch reset with seed ``s`` draws its initial state from
    ``seeding.np_random(s + i)``, as a single env reset with ``s + i`` does; later resets
    continue each generator. ``threads`` (default: up to 2, the CPUs this process may use)
    sets the pool size; results do not depend on it.
    """

    family_cls: ClassVar[type[Family]]
    horizon = HORIZON

    def __init__(self, num_envs: int = 1, expose_task: bool = False, threads: int | None = None) -> None:
        family_cls = self.family_cls
        robot: type[_Robot] = family_cls.robot  # type: ignore[attr-defined]
        self.robot = robot
        proto = robot.gym_cls()  # type: ignore[call-arg]  # the model, frame skip and initial state
        self.dt = float(proto.dt)
        self.frame_skip = int(proto.frame_skip)
        self.init_qpos = proto.init_qpos.copy()
        self.init_qvel = proto.init_qvel.copy()
        self._base_params = _model_params(proto.model)
        per_env_models = issubclass(family_cls.task_cls, _BodyParamsTask)
        # one model per sub-env where the dynamics differ by task, else one shared model
        if per_env_models:
            self.models = [proto.model] + [copy.deepcopy(proto.model) for _ in range(num_envs - 1)]
        else:
            self.models = [proto.model] * num_envs
        self.datas = [mujoco.MjData(m) for m in self.models]
        proto.close()
        nq, nv = self.init_qpos.size, self.init_qvel.size
        self.ph = Physics(
            qpos=np.zeros((num_envs, nq)),
            qvel=np.zeros((num_envs, nv)),
            xy=np.zeros((num_envs, 2)),
            cfrc=np.zeros((num_envs, self.models[0].nbody, 6)) if robot.contact_forces else None,
        )
        n_obs = robot.observe(self.ph).shape[1]
        nu = self.models[0].nu
        low, high = self.models[0].actuator_ctrlrange.T.astype(np.float32)
        self._init_batch(
            num_envs,
            family_cls().default_task(),
            expose_task,
            spaces.Box(-np.inf, np.inf, (n_obs,), np.float32),
            spaces.Box(low, high, (nu,), np.float32),
        )
        self._init_generators()
        self.threads = _default_threads() if threads is None else int(threads)
        self._pool = ThreadPoolExecutor(self.threads - 1) if self.threads > 1 else None
        self._last_terms: dict[str, np.ndarray] = {}

    # -- tasks and resets --------------------------------------------------------------------
    def _task_params(self, tasks: list[Task]) -> dict[str, np.ndarray]:
        return _task_arrays(tasks)

    def _reset_envs(self, mask: np.ndarray) -> None:
        nq, nv = self.init_qpos.size, self.init_qvel.size
        for i, gen in self._generators(mask):
            m, d = self.models[i], self.datas[i]
            _apply_params(m, self._base_params, self.params, i)
            mujoco.mj_resetData(m, d)
            dq, dv = self.robot.reset_noise(gen, nq, nv)
            # Gymnasium's MujocoEnv.set_state: write qpos and qvel, then mj_forward
            d.qpos[:] = self.init_qpos + dq
            d.qvel[:] = self.init_qvel + dv
            mujoco.mj_forward(m, d)
            if self.robot.contact_forces:
                # Gymnasium's reset observes cfrc_ext as mj_resetData left it (zeros)
                self.ph.cfrc[i] = d.cfrc_ext  # type: ignore[index]
            self._read(i)

    def _read(self, i: int) -> None:
        d = self.datas[i]
        self.ph.qpos[i] = d.qpos
        self.ph.qvel[i] = d.qvel
        self.ph.xy[i] = d.xpos[1, :2]

    # -- stepping ----------------------------------------------------------------------------
    def _step_chunk(self, idx: np.ndarray, actions: np.ndarray) -> None:
        contact = self.robot.contact_forces
        for i in idx:
            m, d = self.models[i], self.datas[i]
            d.ctrl[:] = actions[i]
            mujoco.mj_step(m, d, nstep=self.frame_skip)  # C, GIL released
            if contact:
                mujoco.mj_rnePostConstraint(m, d)
                self.ph.cfrc[i] = d.cfrc_ext  # type: ignore[index]
            self._read(int(i))

    def _step_envs(self, actions: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = np.asarray(actions, dtype=np.float32).reshape(self.num_envs, -1)
        if a.shape[1] != self.single_action_space.shape[0]:  # type: ignore[index]
            raise ValueError(f"actions must have shape ({self.num_envs}, {self.single_action_space.shape[0]}), got {np.shape(actions)}")  # type: ignore[index]
        before = Physics(self.ph.qpos.copy(), self.ph.qvel.copy(), self.ph.xy.copy(), None)
        idx = np.flatnonzero(mask)
        if self._pool is None or len(idx) < INLINE_BELOW:
            self._step_chunk(idx, a)
        else:
            # the calling thread steps the first chunk while the pool steps the others
            first, *rest = np.array_split(idx, self.threads)
            futures = [self._pool.submit(self._step_chunk, c, a) for c in rest]
            self._step_chunk(first, a)
            for f in futures:
                f.result()
        healthy = self.robot.healthy(self.ph)
        terms = _family_terms(self.family_cls, self.params, before, self.ph, a.astype(np.float64), healthy, self.dt)
        self._last_terms = terms
        terminated = ~healthy if self.family_cls.terminates else np.zeros(self.num_envs, dtype=bool)  # type: ignore[attr-defined]
        return _total(terms), terminated

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        live = ~self._autoreset  # sub-envs that step (the others reset on this call)
        obs, reward, terminated, truncated, info = super().step(actions)
        for k, v in self._last_terms.items():  # Gymnasium's vector info layout: values and a mask
            info[k] = np.where(live, v, 0.0)
            info["_" + k] = live
        return obs, reward, terminated, truncated, info

    def _raw_obs(self) -> np.ndarray:
        return self.robot.observe(self.ph)

    def close_extras(self, **kwargs: Any) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


# --- families ------------------------------------------------------------------------------


class _LocomotionFamily(Family):
    """Shared parts of the locomotion families (horizon 200, Monte Carlo random reference)."""

    horizon = HORIZON
    robot: ClassVar[type[_Robot]]
    reward_kind: ClassVar[str]
    terminates: ClassVar[bool] = False
    mc_seed: ClassVar[int] = 12345
    # `metarl-bench perf`: time 64 sub-envs (as the harness batches test tasks x runs)
    # and require 2x Gymnasium's SyncVectorEnv over the same single envs
    perf_num_envs = 64
    # the harness stops stepping a sub-env once its episode of the stage has ended
    pause_finished = True
    perf_target_ratio = 2.0

    def random_return(self, tasks: list[Task], episodes: int = 8) -> np.ndarray:
        """Monte Carlo estimate (fixed seed, ``episodes`` per task) of the uniform random policy's return."""
        return monte_carlo_return(self, tasks, episodes, self.mc_seed)

    def oracle_return(self, tasks: list[Task]) -> None:
        """No closed-form reference: the task-conditioned ``task-ppo`` record is the upper reference."""
        return None


def _make_env_cls(name: str, family: type[_LocomotionFamily], doc: str) -> type[_LocomotionEnv]:
    """The family's single env: :class:`_LocomotionEnv` on its robot's Gymnasium v5 class."""
    attrs = {"robot": family.robot, "family_cls": family, "task_cls": family.task_cls,
             "terminates": family.terminates, "__doc__": doc, "__module__": __name__}
    return type(name, (_LocomotionEnv, family.robot.gym_cls), attrs)


def _make_vector_cls(name: str, family: type[_LocomotionFamily]) -> type[_LocomotionVectorEnv]:
    doc = f"``num_envs`` sub-envs of ``{family.id}`` stepped in C on a thread pool (see :mod:`{__name__}`)."
    return type(name, (_LocomotionVectorEnv,), {"family_cls": family, "task_cls": family.task_cls, "__doc__": doc,
                                                 "__module__": __name__})


class HalfCheetahVelFamily(_LocomotionFamily):
    """HalfCheetah running at a target velocity (the ProMP/PEARL/VariBAD definition, Gymnasium v5 model).

    | task | reward per step | horizon |
    |---|---|---|
    | velocity ~ U[0, 3] | -abs(v_x - velocity) - 0.05 sum(a^2) | 200 steps, never terminates |

    See :mod:`metarl_bench.envs.locomotion` for how the field's copies differ.
    """

    id = "MetaRL/HalfCheetahVel-v0"
    task_cls = HalfCheetahVelTask
    robot = _Cheetah
    reward_kind = "cheetah-vel"
    source = "Finn et al. 2017 (MAML); velocities U[0, 3] as ProMP, PEARL and VariBAD; Gymnasium HalfCheetah-v5 model"

    @property
    def distribution(self) -> TaskDistribution:
        return UniformVelocity()


class _DirectionFamily(_LocomotionFamily):
    """A family of two tasks, forward and backward."""

    # Train and test lists share the two directions, as in MAML: these benchmarks test
    # adaptation to which task the agent faces, not generalisation to unseen ones.
    finite_task_set = True

    def split_tasks(
        self, n_train: int, n_test: int, g_train: np.random.Generator, g_test: np.random.Generator
    ) -> tuple[list[Task], list[Task]]:
        """Benchmark task lists with the directions alternating (+1, -1, ...), so each list is
        balanced (random draws of 10 test tasks would weigh one direction up to 9 to 1)."""

        def alternating(n: int) -> list[Task]:
            return [self.task_cls(direction=1 if i % 2 == 0 else -1) for i in range(n)]  # type: ignore[call-arg]

        return alternating(n_train), alternating(n_test)


class HalfCheetahDirFamily(_DirectionFamily):
    """HalfCheetah running forward or backward (Gymnasium v5 model).

    | task | reward per step | horizon |
    |---|---|---|
    | direction -1 or +1, equally likely | direction * v_x - 0.05 sum(a^2) | 200 steps, never terminates |
    """

    id = "MetaRL/HalfCheetahDir-v0"
    task_cls = HalfCheetahDirTask
    robot = _Cheetah
    reward_kind = "cheetah-dir"
    source = "Finn et al. 2017 (MAML); Gymnasium HalfCheetah-v5 model"

    @property
    def distribution(self) -> TaskDistribution:
        return RandomDirection(HalfCheetahDirTask)


class AntDirFamily(_DirectionFamily):
    """Ant running forward or backward along x (Gymnasium Ant-v5 model and cost terms).

    | task | reward per step | horizon |
    |---|---|---|
    | direction -1 or +1, equally likely | direction * v_x - 0.5 sum(a^2) - 5e-4 sum(clip(cfrc_ext, -1, 1)^2) + 1 | 200 steps; terminates when unhealthy (z outside [0.2, 1]) |
    """

    id = "MetaRL/AntDir-v0"
    task_cls = AntDirTask
    robot = _Ant
    reward_kind = "ant-dir"
    terminates = True
    source = "Finn et al. 2017 (MAML); forward/backward as MAML and ProMP; Gymnasium Ant-v5 model and costs"

    @property
    def distribution(self) -> TaskDistribution:
        return RandomDirection(AntDirTask)


class AntGoalFamily(_LocomotionFamily):
    """Ant walking to a goal in the disc of radius 3 (ProMP's reward, Gymnasium Ant-v5 model).

    | task | reward per step | horizon |
    |---|---|---|
    | goal = 3 sqrt(u) (cos t, sin t), u ~ U[0, 1], t ~ U[0, 2 pi) | -(abs(x - goal_x) + abs(y - goal_y)) - 0.1 sum(a^2) | 200 steps, never terminates |
    """

    id = "MetaRL/AntGoal-v0"
    task_cls = AntGoalTask
    robot = _Ant
    reward_kind = "ant-goal"
    source = "Rothfuss et al. 2019 (ProMP) AntRandGoal; Gymnasium Ant-v5 model"

    @property
    def distribution(self) -> TaskDistribution:
        return UniformDiscGoal()


class _ParamsFamily(_LocomotionFamily):
    """A robot with randomised physical parameters: Gymnasium v5's reward and termination."""

    reward_kind = "v5"
    terminates = True

    @property
    def distribution(self) -> TaskDistribution:
        return UniformLogScales(self.task_cls)  # type: ignore[arg-type]  # a _BodyParamsTask subclass


class Walker2DParamsFamily(_ParamsFamily):
    """Walker2d with randomised physical parameters (rand_param_envs' scheme, Gymnasium Walker2d-v5).

    | task | reward per step | horizon |
    |---|---|---|
    | log-scales ~ U[-3, 3]: mass and inertia x 1.5^s per body, damping x 1.3^s per dof, friction x 1.5^s per geom | Walker2d-v5's: v_x + 1 (healthy) - 1e-3 sum(a^2) | 200 steps; terminates when unhealthy as Walker2d-v5 |
    """

    id = "MetaRL/Walker2DParams-v0"
    task_cls = Walker2DParamsTask
    robot = _Walker
    source = "Rakelly et al. 2019 (PEARL) Walker2DRandParams, after rand_param_envs; Gymnasium Walker2d-v5"


class HopperParamsFamily(_ParamsFamily):
    """Hopper with randomised physical parameters (rand_param_envs' scheme, Gymnasium Hopper-v5).

    | task | reward per step | horizon |
    |---|---|---|
    | log-scales ~ U[-3, 3]: mass and inertia x 1.5^s per body, damping x 1.3^s per dof, friction x 1.5^s per geom | Hopper-v5's: v_x + 1 (healthy) - 1e-3 sum(a^2) | 200 steps; terminates when unhealthy as Hopper-v5 |
    """

    id = "MetaRL/HopperParams-v0"
    task_cls = HopperParamsTask
    robot = _Hopper
    source = "Rakelly et al. 2019 (PEARL) HopperRandParams, after rand_param_envs; Gymnasium Hopper-v5"


_VERSION = "    Version history:\n        v0: initial release (Gymnasium 1.x v5 model, MuJoCo 3.x, horizon 200).\n"
HalfCheetahVelEnv = _make_env_cls("HalfCheetahVelEnv", HalfCheetahVelFamily, (
    "HalfCheetah-v5 rewarded for running at the task's velocity.\n\n    Observation: ``Box((17,))``, qpos[1:] and qvel "
    "(HalfCheetah-v5's). Action: ``Box(-1, 1, (6,))``.\n    Reward: ``-abs(v_x - velocity) - 0.05 sum(a^2)``. "
    "Truncation: 200 steps.\n\n" + _VERSION))
HalfCheetahDirEnv = _make_env_cls("HalfCheetahDirEnv", HalfCheetahDirFamily, (
    "HalfCheetah-v5 rewarded for running in the task's direction.\n\n    Observation: ``Box((17,))``. Action: "
    "``Box(-1, 1, (6,))``.\n    Reward: ``direction * v_x - 0.05 sum(a^2)``. Truncation: 200 steps.\n\n" + _VERSION))
AntDirEnv = _make_env_cls("AntDirEnv", AntDirFamily, (
    "Ant-v5 rewarded for running in the task's direction along x.\n\n    Observation: ``Box((105,))``, Ant-v5's "
    "(qpos[2:], qvel, clipped cfrc_ext). Action: ``Box(-1, 1, (8,))``.\n    Reward: ``direction * v_x - 0.5 sum(a^2) "
    "- 5e-4 sum(clip(cfrc_ext)^2) + 1``; terminates when z leaves [0.2, 1]. Truncation: 200 steps.\n\n" + _VERSION))
AntGoalEnv = _make_env_cls("AntGoalEnv", AntGoalFamily, (
    "Ant-v5 rewarded for walking to the task's goal.\n\n    Observation: ``Box((105,))``, Ant-v5's. Action: "
    "``Box(-1, 1, (8,))``.\n    Reward: ``-L1(xy - goal) - 0.1 sum(a^2)``; never terminates. Truncation: 200 steps.\n\n"
    + _VERSION))
Walker2DParamsEnv = _make_env_cls("Walker2DParamsEnv", Walker2DParamsFamily, (
    "Walker2d-v5 with the task's physical parameters.\n\n    Observation: ``Box((17,))``, Walker2d-v5's. Action: "
    "``Box(-1, 1, (6,))``.\n    Reward and termination: Walker2d-v5's. Truncation: 200 steps.\n\n" + _VERSION))
HopperParamsEnv = _make_env_cls("HopperParamsEnv", HopperParamsFamily, (
    "Hopper-v5 with the task's physical parameters.\n\n    Observation: ``Box((11,))``, Hopper-v5's. Action: "
    "``Box(-1, 1, (3,))``.\n    Reward and termination: Hopper-v5's. Truncation: 200 steps.\n\n" + _VERSION))

HalfCheetahVelVectorEnv = _make_vector_cls("HalfCheetahVelVectorEnv", HalfCheetahVelFamily)
HalfCheetahDirVectorEnv = _make_vector_cls("HalfCheetahDirVectorEnv", HalfCheetahDirFamily)
AntDirVectorEnv = _make_vector_cls("AntDirVectorEnv", AntDirFamily)
AntGoalVectorEnv = _make_vector_cls("AntGoalVectorEnv", AntGoalFamily)
Walker2DParamsVectorEnv = _make_vector_cls("Walker2DParamsVectorEnv", Walker2DParamsFamily)
HopperParamsVectorEnv = _make_vector_cls("HopperParamsVectorEnv", HopperParamsFamily)

FAMILIES: tuple[type[_LocomotionFamily], ...] = (
    HalfCheetahVelFamily,
    HalfCheetahDirFamily,
    AntDirFamily,
    AntGoalFamily,
    Walker2DParamsFamily,
    HopperParamsFamily,
)
for _fam, _env, _venv in zip(
    FAMILIES,
    (HalfCheetahVelEnv, HalfCheetahDirEnv, AntDirEnv, AntGoalEnv, Walker2DParamsEnv, HopperParamsEnv),
    (HalfCheetahVelVectorEnv, HalfCheetahDirVectorEnv, AntDirVectorEnv, AntGoalVectorEnv, Walker2DParamsVectorEnv,
     HopperParamsVectorEnv),
):
    _fam.env_cls = _env
    _fam.vector_env_cls = _venv
