"""Dynamics-randomised classic control: Gymnasium's CartPole and Pendulum with scaled physical parameters.

Each task scales two physical parameters of Gymnasium's own env by factors drawn
log-uniformly from [0.5, 2] (``factor = 2 ** U[-1, 1]``, so a factor and its inverse are
equally likely). The single envs subclass Gymnasium's ``CartPoleEnv`` / ``PendulumEnv``
and keep their dynamics, rewards and initial-state sampling (from ``self.np_random``);
the batched envs replay the same arithmetic in numpy, one Gymnasium ``np_random``
generator per sub-env for the initial states.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, SupportsFloat

import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from gymnasium.envs.classic_control.pendulum import DEFAULT_X, DEFAULT_Y, PendulumEnv
from gymnasium.utils import seeding

from metarl_bench.envbase import BatchedVectorEnv, MetaEnv
from metarl_bench.family import BatchTolerance, Family, TaskDistribution
from metarl_bench.tasks import Task, check_number

SCALE_LOW, SCALE_HIGH = 0.5, 2.0
CARTPOLE_HORIZON = 500
PENDULUM_HORIZON = 200


def _check_scale(task: str, name: str, value: Any) -> None:
    check_number(task, name, value, SCALE_LOW, SCALE_HIGH)


@dataclass(frozen=True)
class CartPoleDynamicsTask(Task):
    """Scale factors in [0.5, 2] of the pole's length and the pole's mass (1 = Gymnasium's CartPole)."""

    length_scale: float = 1.0
    masspole_scale: float = 1.0

    def validate(self) -> None:
        _check_scale("CartPoleDynamicsTask", "length_scale", self.length_scale)
        _check_scale("CartPoleDynamicsTask", "masspole_scale", self.masspole_scale)


@dataclass(frozen=True)
class PendulumDynamicsTask(Task):
    """Scale factors in [0.5, 2] of the pendulum's mass and length (1 = Gymnasium's Pendulum)."""

    mass_scale: float = 1.0
    length_scale: float = 1.0

    def validate(self) -> None:
        _check_scale("PendulumDynamicsTask", "mass_scale", self.mass_scale)
        _check_scale("PendulumDynamicsTask", "length_scale", self.length_scale)


class LogUniformScales(TaskDistribution):
    """Every field of ``task_cls`` ~ 2 ** U[-1, 1] (log-uniform on [0.5, 2]), drawn in field order."""

    def __init__(self, task_cls: type[Task], names: Sequence[str]) -> None:
        self.task_cls = task_cls
        self.names = tuple(names)

    def __call__(self, rng: np.random.Generator) -> Task:
        exponents = rng.uniform(-1.0, 1.0, size=len(self.names))
        return self.task_cls(**{n: float(2.0**e) for n, e in zip(self.names, exponents)})

    def describe(self) -> str:
        return ", ".join(self.names) + " ~ log-uniform[0.5, 2] i.i.d."


class NpRandomBatch(BatchedVectorEnv):
    """Batched env whose initial states come from one Gymnasium ``np_random`` generator per sub-env.

    Sub-env ``i`` of a batch reset with seed ``s`` draws its initial states from
    ``seeding.np_random(s + i)``, exactly as a single Gymnasium env reset with ``s + i``
    does; later resets (autoreset) continue each generator. Python loops only over the
    sub-envs being reset, which is cheap next to episodes of hundreds of steps.
    """

    def _init_generators(self) -> None:
        self._gens: list[np.random.Generator | None] = [None] * self.num_envs

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if isinstance(seed, int):
            seeds: list[int | None] = [seed + i for i in range(self.num_envs)]
        elif seed is None:
            seeds = [None] * self.num_envs
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"reset got {len(seeds)} seeds for {self.num_envs} sub-envs")
        mask = np.ones(self.num_envs, dtype=bool)
        if options is not None and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"], dtype=bool)
        for i in np.flatnonzero(mask):
            if seeds[i] is not None:
                self._gens[i] = seeding.np_random(seeds[i])[0]
            elif self._gens[i] is None:
                # Unseeded: a fresh generator per sub-env, drawn from the env's own generator.
                self._gens[i] = seeding.np_random(int(self.np_random.integers(2**63 - 1)))[0]
        return super().reset(seed=seed, options=options)

    def _generators(self, mask: np.ndarray) -> list[tuple[int, np.random.Generator]]:
        out = []
        for i in np.flatnonzero(mask):
            gen = self._gens[i]
            if gen is None:  # pragma: no cover - reset() always creates one first
                raise RuntimeError("reset() must be called before step()")
            out.append((int(i), gen))
        return out


# --- CartPole ----------------------------------------------------------------------------

_CARTPOLE_BASE = CartPoleEnv()
_CP_GRAVITY = _CARTPOLE_BASE.gravity
_CP_MASSCART = _CARTPOLE_BASE.masscart
_CP_MASSPOLE = _CARTPOLE_BASE.masspole
_CP_LENGTH = _CARTPOLE_BASE.length
_CP_FORCE = _CARTPOLE_BASE.force_mag
_CP_TAU = _CARTPOLE_BASE.tau
_CP_THETA = _CARTPOLE_BASE.theta_threshold_radians
_CP_X = _CARTPOLE_BASE.x_threshold
_CP_OBS_HIGH = _CARTPOLE_BASE.observation_space.high  # type: ignore[attr-defined]  # Gymnasium types it as Space; CartPole's is a Box
del _CARTPOLE_BASE


class CartPoleDynamicsEnv(CartPoleEnv, MetaEnv):
    """Gymnasium's CartPole (v1 dynamics and reward) with the pole's length and mass scaled by the task.

    Observation: ``Box((4,))``, (cart position, cart velocity, pole angle, pole angular
    velocity) as in ``CartPole-v1`` (plus the two scale factors when ``expose_task=True``).
    Action: ``Discrete(2)``, push left / right with force 10. Reward: +1 per step,
    including the terminating one. Start: every state variable ~ U(-0.05, 0.05) from
    ``self.np_random``. Termination: |angle| > 12 degrees or |position| > 2.4.
    Truncation: 500 steps. Task parameters: ``length_scale`` (half-length 0.5 x factor)
    and ``masspole_scale`` (pole mass 0.1 x factor), both in [0.5, 2]; distribution
    log-uniform on [0.5, 2], independent.

    Version history:
        v0: initial release (Gymnasium 1.x CartPole-v1 dynamics, factors log-uniform on [0.5, 2]).
    """

    task_cls = CartPoleDynamicsTask
    _task: CartPoleDynamicsTask  # the task in effect (narrows MetaEnv's Task)
    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 50}

    def __init__(self, expose_task: bool = False, render_mode: str | None = None) -> None:
        CartPoleEnv.__init__(self, render_mode=render_mode)
        self._init_task(CartPoleDynamicsFamily().default_task(), expose_task, spaces.Box(-_CP_OBS_HIGH, _CP_OBS_HIGH))
        # Initial states come from np_random as in Gymnasium; the counter streams are unused,
        # so never draw their seed from np_random (that would shift Gymnasium's sequence).
        self._seeded = True
        self._apply(self._task)

    def _apply(self, task: CartPoleDynamicsTask) -> None:
        self.length = _CP_LENGTH * task.length_scale
        self.masspole = _CP_MASSPOLE * task.masspole_scale
        self.total_mass = self.masspole + self.masscart
        self.polemass_length = self.masspole * self.length

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        self._begin_reset(seed)
        self._apply(self._task)
        obs, info = CartPoleEnv.reset(self, seed=seed, options=options)
        return self._observe(obs), info

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = CartPoleEnv.step(self, action)
        return self._observe(obs), reward, terminated, truncated, info


class CartPoleDynamicsVectorEnv(NpRandomBatch):
    """``num_envs`` dynamics-randomised cart-poles in numpy (see :class:`CartPoleDynamicsEnv`)."""

    task_cls = CartPoleDynamicsTask
    horizon = CARTPOLE_HORIZON

    def __init__(self, num_envs: int = 1, expose_task: bool = False) -> None:
        self.state = np.zeros((num_envs, 4))
        self._init_batch(
            num_envs, CartPoleDynamicsFamily().default_task(), expose_task, spaces.Box(-_CP_OBS_HIGH, _CP_OBS_HIGH), spaces.Discrete(2)
        )
        self._init_generators()

    def _task_params(self, tasks: list[Task]) -> dict[str, np.ndarray]:
        # The same float64 arithmetic as CartPoleDynamicsEnv._apply, element by element.
        length = _CP_LENGTH * np.array([t.length_scale for t in tasks], dtype=np.float64)  # type: ignore[attr-defined]
        masspole = _CP_MASSPOLE * np.array([t.masspole_scale for t in tasks], dtype=np.float64)  # type: ignore[attr-defined]
        return {
            "length": length,
            "masspole": masspole,
            "total_mass": masspole + _CP_MASSCART,
            "polemass_length": masspole * length,
        }

    def _reset_envs(self, mask: np.ndarray) -> None:
        for i, gen in self._generators(mask):
            self.state[i] = gen.uniform(low=-0.05, high=0.05, size=(4,))

    def _step_envs(self, actions: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = actions.reshape(self.num_envs)
        if ((a != 0) & (a != 1)).any():
            raise ValueError(f"actions must be 0 (push left) or 1 (push right), got {a[(a != 0) & (a != 1)][:5]}")
        p = self.params
        x, x_dot, theta, theta_dot = self.state.T
        force = np.where(a == 1, _CP_FORCE, -_CP_FORCE)
        costheta = np.cos(theta)
        sintheta = np.sin(theta)
        temp = (force + p["polemass_length"] * np.square(theta_dot) * sintheta) / p["total_mass"]
        thetaacc = (_CP_GRAVITY * sintheta - costheta * temp) / (
            p["length"] * (4.0 / 3.0 - p["masspole"] * np.square(costheta) / p["total_mass"])
        )
        xacc = temp - p["polemass_length"] * thetaacc * costheta / p["total_mass"]
        new = np.stack(
            [x + _CP_TAU * x_dot, x_dot + _CP_TAU * xacc, theta + _CP_TAU * theta_dot, theta_dot + _CP_TAU * thetaacc],
            axis=1,
        )
        self.state = np.where(mask[:, None], new, self.state)
        x, theta = self.state[:, 0], self.state[:, 2]
        terminated = (x < -_CP_X) | (x > _CP_X) | (theta < -_CP_THETA) | (theta > _CP_THETA)
        return np.ones(self.num_envs), terminated

    def _raw_obs(self) -> np.ndarray:
        return self.state


# --- Pendulum ----------------------------------------------------------------------------

_PENDULUM_BASE = PendulumEnv()
_PD_G = _PENDULUM_BASE.g
_PD_M = _PENDULUM_BASE.m
_PD_L = _PENDULUM_BASE.l
_PD_DT = _PENDULUM_BASE.dt
_PD_MAX_SPEED = _PENDULUM_BASE.max_speed
_PD_MAX_TORQUE = _PENDULUM_BASE.max_torque
_PD_OBS_HIGH = _PENDULUM_BASE.observation_space.high  # type: ignore[attr-defined]  # Gymnasium types it as Space; Pendulum's is a Box
del _PENDULUM_BASE
_PD_RESET_HIGH = np.array([DEFAULT_X, DEFAULT_Y])


def _angle_normalize(x: np.ndarray) -> np.ndarray:
    return ((x + np.pi) % (2 * np.pi)) - np.pi


class PendulumDynamicsEnv(PendulumEnv, MetaEnv):
    """Gymnasium's Pendulum (v1 dynamics and reward) with the pendulum's mass and length scaled by the task.

    Observation: ``Box((3,))``, (cos theta, sin theta, angular velocity) as in
    ``Pendulum-v1`` (plus the two scale factors when ``expose_task=True``). Action:
    ``Box(-2, 2, (1,))``, the torque. Reward: ``-(theta^2 + 0.1 thetadot^2 + 0.001 u^2)``
    with theta normalised to [-pi, pi). Start: theta ~ U(-pi, pi), thetadot ~ U(-1, 1)
    from ``self.np_random``. Termination: never. Truncation: 200 steps. Task parameters:
    ``mass_scale`` (m = 1 x factor) and ``length_scale`` (l = 1 x factor), both in
    [0.5, 2]; distribution log-uniform on [0.5, 2], independent. The torque limit stays 2,
    so heavy long pendulums cannot be swung up directly.

    Version history:
        v0: initial release (Gymnasium 1.x Pendulum-v1 dynamics, g = 10, factors log-uniform on [0.5, 2]).
    """

    task_cls = PendulumDynamicsTask
    _task: PendulumDynamicsTask  # the task in effect (narrows MetaEnv's Task)
    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 30}

    def __init__(self, expose_task: bool = False, render_mode: str | None = None) -> None:
        PendulumEnv.__init__(self, render_mode=render_mode)
        self._init_task(PendulumDynamicsFamily().default_task(), expose_task, spaces.Box(-_PD_OBS_HIGH, _PD_OBS_HIGH))
        self._seeded = True  # see CartPoleDynamicsEnv: np_random draws the initial states
        self._apply(self._task)

    def _apply(self, task: PendulumDynamicsTask) -> None:
        self.m = _PD_M * task.mass_scale
        self.l = _PD_L * task.length_scale  # noqa: E741  (Gymnasium's attribute name)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        self._begin_reset(seed)
        self._apply(self._task)
        obs, info = PendulumEnv.reset(self, seed=seed, options=options)
        return self._observe(obs), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = PendulumEnv.step(self, action)
        return self._observe(obs), float(reward), terminated, truncated, info


class PendulumDynamicsVectorEnv(NpRandomBatch):
    """``num_envs`` dynamics-randomised pendulums in numpy (see :class:`PendulumDynamicsEnv`)."""

    task_cls = PendulumDynamicsTask
    horizon = PENDULUM_HORIZON

    def __init__(self, num_envs: int = 1, expose_task: bool = False) -> None:
        self.state = np.zeros((num_envs, 2))
        self._init_batch(
            num_envs,
            PendulumDynamicsFamily().default_task(),
            expose_task,
            spaces.Box(-_PD_OBS_HIGH, _PD_OBS_HIGH),
            spaces.Box(-_PD_MAX_TORQUE, _PD_MAX_TORQUE, (1,), np.float32),
        )
        self._init_generators()

    def _task_params(self, tasks: list[Task]) -> dict[str, np.ndarray]:
        m = _PD_M * np.array([t.mass_scale for t in tasks], dtype=np.float64)  # type: ignore[attr-defined]
        length = _PD_L * np.array([t.length_scale for t in tasks], dtype=np.float64)  # type: ignore[attr-defined]
        return {"gravity_coef": 3 * _PD_G / (2 * length), "torque_coef": 3.0 / (m * length**2)}

    def _reset_envs(self, mask: np.ndarray) -> None:
        for i, gen in self._generators(mask):
            self.state[i] = gen.uniform(low=-_PD_RESET_HIGH, high=_PD_RESET_HIGH)

    def _step_envs(self, actions: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not np.issubdtype(actions.dtype, np.floating):
            actions = actions.astype(np.float64)
        u = np.clip(actions.reshape(self.num_envs, 1), -_PD_MAX_TORQUE, _PD_MAX_TORQUE)[:, 0]
        th, thdot = self.state[:, 0], self.state[:, 1]
        costs = _angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * np.square(u)
        # Pendulum-v1 computes the torque term in the action's precision (a Python float
        # times a float32 action is float32 in NumPy); the batched env does the same.
        torque = self.params["torque_coef"].astype(u.dtype, copy=False) * u
        newthdot = thdot + (self.params["gravity_coef"] * np.sin(th) + torque) * _PD_DT
        newthdot = np.clip(newthdot, -_PD_MAX_SPEED, _PD_MAX_SPEED)
        newth = th + newthdot * _PD_DT
        self.state = np.where(mask[:, None], np.stack([newth, newthdot], axis=1), self.state)
        return -costs, np.zeros(self.num_envs, dtype=bool)

    def _raw_obs(self) -> np.ndarray:
        th, thdot = self.state[:, 0], self.state[:, 1]
        return np.stack([np.cos(th), np.sin(th), thdot], axis=1)


# --- families ----------------------------------------------------------------------------


def monte_carlo_return(
    family: Family, tasks: Sequence[Task], episodes: int, seed: int
) -> np.ndarray:
    """Mean return of the first episode of ``episodes`` uniformly random rollouts per task (vectorised)."""
    tasks = list(tasks)
    venv = family.make_vector_env([t for t in tasks for _ in range(episodes)])
    rng = np.random.default_rng(seed)
    venv.reset(seed=seed)
    n = venv.num_envs
    total = np.zeros(n)
    alive = np.ones(n, dtype=bool)
    space = venv.single_action_space
    while alive.any():
        if isinstance(space, spaces.Discrete):
            actions: np.ndarray = rng.integers(0, int(space.n), size=n)
        else:
            assert isinstance(space, spaces.Box)
            actions = rng.uniform(space.low, space.high, size=(n, *space.shape)).astype(space.dtype)
        _, reward, terminated, truncated, _ = venv.step(actions)
        total += np.where(alive, reward, 0.0)
        alive &= ~(terminated | truncated)
    venv.close()
    per_task: np.ndarray = total.reshape(len(tasks), episodes).mean(axis=1)
    return per_task


class _ClassicControlFamily(Family):
    mc_seed: ClassVar[int] = 12345

    def random_return(self, tasks: list[Task], episodes: int = 32) -> np.ndarray:
        """Monte Carlo estimate (fixed seed, ``episodes`` per task) of the uniform random policy's return."""
        return monte_carlo_return(self, tasks, episodes, self.mc_seed)

    def oracle_return(self, tasks: list[Task]) -> None:
        """No reference: no cheap optimal policy is known for these dynamics (the harness reports none)."""
        return None


class CartPoleDynamicsFamily(_ClassicControlFamily):
    """CartPole with randomised pole length and mass (Gymnasium ``CartPole-v1`` dynamics).

    | task | dynamics and reward | horizon |
    |---|---|---|
    | length_scale, masspole_scale ~ log-uniform[0.5, 2] i.i.d. (half-length 0.5 x factor, pole mass 0.1 x factor) | Gymnasium CartPole-v1: push left/right with force 10, +1 per step, terminated at 12 degrees or 2.4 off-centre | 500 steps |

    Source: Gymnasium's ``CartPoleEnv`` (Barto, Sutton and Anderson 1983); dynamics
    randomisation as in Packer et al. 2018 ("Assessing generalization in deep RL"), here
    with the log-uniform [0.5, 2] range fixed by this suite. References: ``random_return``
    is a Monte Carlo estimate with a fixed seed; there is no oracle reference.
    """

    id = "MetaRL/CartPoleDynamics-v0"
    task_cls = CartPoleDynamicsTask
    env_cls = CartPoleDynamicsEnv
    vector_env_cls = CartPoleDynamicsVectorEnv
    horizon = CARTPOLE_HORIZON
    source = "Gymnasium CartPole-v1; dynamics randomisation after Packer et al. 2018"
    # The batched env runs Gymnasium's arithmetic, but NumPy's cos and sin may come from
    # vectorised kernels that differ from the scalar path by a few ulp (say e <= 4 ulp of 1,
    # 2**-50). Each step feeds at most tau * 34 * 3e (<= 2e-15, 34 bounding the angular
    # acceleration's sensitivity for the shortest pole) into the state, and a step amplifies
    # a state difference by at most L = 1.8 (the largest row sum of the step's Jacobian over
    # |x| <= 2.4, |angle| <= 0.21, velocities <= 3.5, found by finite differences); over 10
    # steps from identical states that is <= 2e-15 * (L**10 - 1) / (L - 1) ~ 1e-12. Rewards
    # are exactly 1; observations are float32, whose rounding may move by one float32 ulp
    # (2**-23 relative) for any state difference: rtol two such ulps, atol 1e-10 (100 times
    # the drift bound).
    batch_tolerance = BatchTolerance(rtol=2.0**-22, atol=1e-10, steps=10)

    @property
    def distribution(self) -> LogUniformScales:
        return LogUniformScales(CartPoleDynamicsTask, ("length_scale", "masspole_scale"))


class PendulumDynamicsFamily(_ClassicControlFamily):
    """Pendulum with randomised mass and length (Gymnasium ``Pendulum-v1`` dynamics).

    | task | dynamics and reward | horizon |
    |---|---|---|
    | mass_scale, length_scale ~ log-uniform[0.5, 2] i.i.d. (m = 1 x factor, l = 1 x factor) | Gymnasium Pendulum-v1: torque in [-2, 2], reward -(theta^2 + 0.1 thetadot^2 + 0.001 u^2) | 200 steps |

    Source: Gymnasium's ``PendulumEnv``; dynamics randomisation as in Packer et al. 2018,
    here with the log-uniform [0.5, 2] range fixed by this suite. References:
    ``random_return`` is a Monte Carlo estimate with a fixed seed; there is no oracle
    reference.
    """

    id = "MetaRL/PendulumDynamics-v0"
    task_cls = PendulumDynamicsTask
    env_cls = PendulumDynamicsEnv
    vector_env_cls = PendulumDynamicsVectorEnv
    horizon = PENDULUM_HORIZON
    source = "Gymnasium Pendulum-v1; dynamics randomisation after Packer et al. 2018"
    # The batched env runs Gymnasium's arithmetic with two kinds of kernel difference:
    # - the single env squares the float32 torque through NumPy's scalar power (the C
    #   library's powf), the batched env with a correctly rounded multiplication; allowing
    #   4 float32 ulps of u**2 < 4 (ulp 2**-22), the reward's 0.001 * u**2 term differs by
    #   <= 0.001 * 4 * 2**-22 + 2**-31 (its own float32 rounding) ~ 1.4e-9;
    # - sin and cos may come from vectorised kernels a few ulp (e <= 2**-50) off the scalar
    #   path. A step feeds at most 3g/(2l) * dt * e <= 1.5e = 1.3e-15 into the state and
    #   amplifies a state difference by at most L = 1 + a dt + dt (1 + a dt) = 2.625 (a = 30
    #   for the shortest pendulum, dt = 0.05), so 10 steps from identical states drift by
    #   <= 1.3e-15 * (L**10 - 1) / (L - 1) ~ 1.3e-11, moving the cost by <= (2 pi + 1.6) times
    #   that. The pendulum is chaotic (a 1-ulp difference grew 9e6-fold over some 200-step
    #   random episodes), hence the 10-step horizon; states agree exactly after every reset.
    # Observations are float32, whose rounding may move by one float32 ulp (2**-23 relative):
    # rtol two such ulps; atol 2e-9 covers the reward bound 1.4e-9 + 1e-10.
    batch_tolerance = BatchTolerance(rtol=2.0**-22, atol=2e-9, steps=10)

    @property
    def distribution(self) -> LogUniformScales:
        return LogUniformScales(PendulumDynamicsTask, ("mass_scale", "length_scale"))

