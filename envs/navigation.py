"""2-D point navigation (Finn et al. 2017, MAML, section 5.3; pytorch-maml-rl's Navigation2D)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from metarl_bench.envbase import BatchedVectorEnv, MetaEnv
from metarl_bench.family import Family, TaskDistribution
from metarl_bench.tasks import Task, check_array

GOAL_LOW, GOAL_HIGH = -0.5, 0.5
MAX_STEP = 0.1
GOAL_TOL = 0.01
HORIZON = 100


@dataclass(frozen=True)
class NavigationTask(Task):
    """Goal position ``goal = (x, y)`` in [-0.5, 0.5]^2."""

    goal: tuple[float, float] = (0.0, 0.0)

    def validate(self) -> None:
        check_array("NavigationTask", "goal", self.goal, (2,), GOAL_LOW, GOAL_HIGH)


class UniformGoal(TaskDistribution):
    """goal ~ U[-0.5, 0.5]^2."""

    def __call__(self, rng: np.random.Generator) -> NavigationTask:
        return NavigationTask(goal=tuple(rng.uniform(GOAL_LOW, GOAL_HIGH, size=2).tolist()))

    def describe(self) -> str:
        return "goal ~ U[-0.5,0.5]^2"


_OBS_SPACE = spaces.Box(-np.inf, np.inf, (2,), np.float32)
_ACT_SPACE = spaces.Box(-MAX_STEP, MAX_STEP, (2,), np.float32)


class Navigation2DEnv(MetaEnv):
    """A point moves in the plane towards a hidden goal.

    Observation: ``Box(-inf, inf, (2,))``, the position (plus the goal when
    ``expose_task=True``). Action: ``Box(-0.1, 0.1, (2,))``, the displacement, clipped to
    [-0.1, 0.1] per coordinate. Start: (0, 0). Reward: minus the L2 distance to the goal
    after the move. Termination: |dx| < 0.01 and |dy| < 0.01. Truncation: 100 steps.
    Task parameters: ``goal`` in [-0.5, 0.5]^2, distribution U[-0.5, 0.5]^2.

    Version history:
        v0: initial release (pytorch-maml-rl's 2d-navigation task distribution).
    """

    task_cls = NavigationTask
    _task: NavigationTask  # the task in effect (narrows MetaEnv's Task)
    metadata = {"render_modes": []}

    def __init__(self, expose_task: bool = False) -> None:
        self.action_space = _ACT_SPACE
        self._init_task(Navigation2DFamily().default_task(), expose_task, _OBS_SPACE)
        self._pos = (0.0, 0.0)
        self._t = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._begin_reset(seed)
        self._pos = (0.0, 0.0)
        self._t = 0
        return self._observe(np.array(self._pos)), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -MAX_STEP, MAX_STEP)
        x, y = self._pos[0] + float(a[0]), self._pos[1] + float(a[1])
        gx, gy = self._task.goal
        dx, dy = x - gx, y - gy
        reward = -math.sqrt(dx * dx + dy * dy)
        terminated = abs(dx) < GOAL_TOL and abs(dy) < GOAL_TOL
        self._pos = (x, y)
        self._t += 1
        return self._observe(np.array(self._pos)), reward, terminated, self._t >= HORIZON, {}


class Navigation2DVectorEnv(BatchedVectorEnv):
    """``num_envs`` point navigators in one array (see :class:`Navigation2DEnv`)."""

    task_cls = NavigationTask
    horizon = HORIZON

    def __init__(self, num_envs: int = 1, expose_task: bool = False) -> None:
        self.pos = np.zeros((num_envs, 2))
        self._init_batch(num_envs, Navigation2DFamily().default_task(), expose_task, _OBS_SPACE, _ACT_SPACE)

    def _task_params(self, tasks: list[Task]) -> dict[str, np.ndarray]:
        return {"goal": np.array([t.goal for t in tasks], dtype=np.float64)}  # type: ignore[attr-defined]

    def _reset_envs(self, mask: np.ndarray) -> None:
        self.pos[mask] = 0.0

    def _step_envs(self, actions: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = np.clip(actions.astype(np.float64).reshape(self.num_envs, 2), -MAX_STEP, MAX_STEP)
        self.pos = np.where(mask[:, None], self.pos + a, self.pos)
        d = self.pos - self.params["goal"]
        reward = -np.sqrt(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1])
        terminated = (np.abs(d[:, 0]) < GOAL_TOL) & (np.abs(d[:, 1]) < GOAL_TOL)
        return reward, terminated

    def _raw_obs(self) -> np.ndarray:
        return self.pos


def straight_line_return(goal: tuple[float, float]) -> float:
    """Return of moving straight at the goal at full speed (clipped per coordinate), then stopping.

    Per step the point moves min(0.1, remaining) along each coordinate; the episode
    terminates once both coordinates are within 0.01 of the goal.
    """
    pos = np.zeros(2)
    g = np.asarray(goal, dtype=np.float64)
    total = 0.0
    for _ in range(HORIZON):
        pos = pos + np.clip(g - pos, -MAX_STEP, MAX_STEP)
        d = pos - g
        total -= math.sqrt(float(d @ d))
        if abs(d[0]) < GOAL_TOL and abs(d[1]) < GOAL_TOL:
            break
    return total


class Navigation2DFamily(Family):
    """2-D navigation to a hidden goal (Finn et al. 2017; pytorch-maml-rl).

    | task | dynamics and reward | horizon |
    |---|---|---|
    | goal ~ U[-0.5,0.5]^2 | start (0,0); action clipped to [-0.1,0.1] per coordinate; reward = -L2 distance to the goal after the move; terminated when abs(dx)<0.01 and abs(dy)<0.01 | 100 steps |
    """

    id = "MetaRL/Navigation2D-v0"
    task_cls = NavigationTask
    env_cls = Navigation2DEnv
    vector_env_cls = Navigation2DVectorEnv
    horizon = HORIZON
    source = "Finn et al. 2017 (MAML) section 5.3; pytorch-maml-rl 2d-navigation"

    @property
    def distribution(self) -> UniformGoal:
        return UniformGoal()

    def oracle_return(self, tasks: list[NavigationTask]) -> np.ndarray:
        """Return of the straight-line policy per task (optimal: each step closes the most distance)."""
        return np.array([straight_line_return(t.goal) for t in tasks])

    def random_return(self, tasks: list[NavigationTask], episodes: int = 64) -> np.ndarray:
        """Monte Carlo estimate (fixed seed, ``episodes`` per task) of the uniform random policy's return."""
        rng = np.random.default_rng(12345)
        goals = np.repeat(np.array([t.goal for t in tasks]), episodes, axis=0)
        pos = np.zeros_like(goals)
        total = np.zeros(len(goals))
        alive = np.ones(len(goals), dtype=bool)
        for _ in range(HORIZON):
            pos = pos + np.where(alive[:, None], rng.uniform(-MAX_STEP, MAX_STEP, size=pos.shape), 0.0)
            d = pos - goals
            total -= np.where(alive, np.sqrt((d * d).sum(axis=1)), 0.0)
            alive &= ~((np.abs(d[:, 0]) < GOAL_TOL) & (np.abs(d[:, 1]) < GOAL_TOL))
        per_task: np.ndarray = total.reshape(len(tasks), episodes).mean(axis=1)
        return per_task
