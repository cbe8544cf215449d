"""Bernoulli multi-armed bandit family (Duan et al. 2016, RL², section 4.1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from metarl_bench.envbase import BatchedVectorEnv, MetaEnv
from metarl_bench.family import Family, TaskDistribution
from metarl_bench.tasks import Task, check_array


@dataclass(frozen=True)
class BanditTask(Task):
    """Arm success probabilities ``means`` (k >= 2 entries in [0, 1])."""

    means: tuple[float, ...] = (0.5, 0.5)

    def validate(self) -> None:
        if not isinstance(self.means, tuple) or len(self.means) < 2:
            raise ValueError(f"BanditTask.means must list k >= 2 arm probabilities, got {self.means!r}")
        check_array("BanditTask", "means", self.means, (len(self.means),), 0.0, 1.0)

    @property
    def k(self) -> int:
        return len(self.means)


class UniformArmMeans(TaskDistribution):
    """p_i ~ U[0, 1] i.i.d. for i = 1..k."""

    def __init__(self, k: int) -> None:
        self.k = k

    def __call__(self, rng: np.random.Generator) -> BanditTask:
        return BanditTask(means=tuple(rng.uniform(0.0, 1.0, size=self.k).tolist()))

    def describe(self) -> str:
        return f"means ~ U[0,1]^{self.k}"


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"Bandit k (number of arms) must be an integer >= 2, got {k!r}")
    return int(k)


def _check_arms(owner: str, k: int, task: BanditTask) -> BanditTask:
    if task.k != k:
        raise ValueError(f"{owner} has k={k} arms but the task has {task.k} means; make the env with k={task.k}")
    return task


class BanditEnv(MetaEnv):
    """Bernoulli bandit: one pull per episode.

    Observation: ``Box(0, 1, (1,))``, the constant 0 (plus the k arm means when
    ``expose_task=True``). Action: ``Discrete(k)``, the arm. Reward: 1 with probability
    ``means[a]``, else 0. Termination: after the single pull; a trial of n episodes is n
    pulls. Task parameters: ``means`` (k floats in [0, 1]); distribution ``U[0,1]^k``.

    Version history:
        v0: initial release (Duan et al. 2016 distribution).
    """

    task_cls = BanditTask
    _task: BanditTask  # the task in effect (narrows MetaEnv's Task)
    metadata = {"render_modes": []}

    def __init__(self, k: int = 5, expose_task: bool = False) -> None:
        self.k = _check_k(k)
        self.action_space = spaces.Discrete(self.k)
        self._init_task(BanditFamily(k=self.k).default_task(), expose_task, spaces.Box(0.0, 1.0, (1,), np.float32))

    def _validate_task(self, task: Any) -> Task:
        return _check_arms(type(self).__name__, self.k, super()._validate_task(task))  # type: ignore[arg-type]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._begin_reset(seed)
        return self._observe(np.zeros(1)), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = int(action)
        u = float(self.streams.uniform()[0, 0])
        reward = 1.0 if u < self._task.means[a] else 0.0
        return self._observe(np.zeros(1)), reward, True, False, {}


class BanditVectorEnv(BatchedVectorEnv):
    """``num_envs`` Bernoulli bandits stepped by one array operation (see :class:`BanditEnv`)."""

    task_cls = BanditTask
    horizon = 1
    truncates = False

    def __init__(self, num_envs: int = 1, k: int = 5, expose_task: bool = False) -> None:
        self.k = _check_k(k)
        self._init_batch(
            num_envs,
            BanditFamily(k=self.k).default_task(),
            expose_task,
            spaces.Box(0.0, 1.0, (1,), np.float32),
            spaces.Discrete(self.k),
        )
        self._zeros = np.zeros((self.num_envs, 1), dtype=np.float32)

    def _validate_task(self, task: Any) -> Task:
        return _check_arms(type(self).__name__, self.k, super()._validate_task(task))  # type: ignore[arg-type]

    def _task_params(self, tasks: list[Task]) -> dict[str, np.ndarray]:
        return {"means": np.array([t.means for t in tasks], dtype=np.float64)}  # type: ignore[attr-defined]

    def _reset_envs(self, mask: np.ndarray) -> None:
        pass  # a bandit has no state

    def _step_envs(self, actions: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = actions.astype(np.int64).reshape(self.num_envs)
        if (a < 0).any() or (a >= self.k).any():
            raise ValueError(f"actions must be arms in [0, {self.k}), got {a[(a < 0) | (a >= self.k)][:5]}")
        u = self.streams.uniform(mask)[:, 0]
        p = np.take_along_axis(self.params["means"], a[:, None], axis=1)[:, 0]
        return (u < p).astype(np.float64), np.ones(self.num_envs, dtype=bool)

    def _raw_obs(self) -> np.ndarray:
        return self._zeros


class BanditFamily(Family):
    """Bernoulli bandits with k arms, arm means ~ U[0,1] i.i.d. (Duan et al. 2016).

    | task | dynamics and reward | horizon |
    |---|---|---|
    | means p_i ~ U[0,1] i.i.d. | one pull per episode, reward ~ Bernoulli(p_a); observation constant | 1 step |
    """

    id = "MetaRL/Bandit-v0"
    task_cls = BanditTask
    env_cls = BanditEnv
    vector_env_cls = BanditVectorEnv
    horizon = 1
    truncates = False
    source = "Duan et al. 2016 (RL^2), section 4.1"

    def __init__(self, k: int = 5, **kwargs: Any) -> None:
        super().__init__(k=_check_k(k), **kwargs)
        self.k = int(k)

    @property
    def distribution(self) -> UniformArmMeans:
        return UniformArmMeans(self.k)

    def random_return(self, tasks: list[BanditTask]) -> np.ndarray:
        """Expected return of one uniformly random pull, per task."""
        return np.array([np.mean(t.means) for t in tasks])

    def oracle_return(self, tasks: list[BanditTask]) -> np.ndarray:
        """Expected return of pulling the best arm, per task."""
        return np.array([np.max(t.means) for t in tasks])

