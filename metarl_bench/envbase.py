"""Base classes for family envs: the single env and the native batched vector env.

Both carry the task contract that ``metarl-bench check-env`` checks: ``set_task`` takes
effect at the next reset (never in the middle of an episode), reset never resamples, the
task is hidden from observations unless ``expose_task=True`` (then ``task.features()`` is
appended). Random numbers come from
:class:`metarl_bench.streams.Streams` so that a batched env reproduces single envs
exactly (sub-env ``i`` of a batch seeded ``s`` equals a single env seeded ``s + i``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from metarl_bench.streams import Streams, entropy_seeds
from metarl_bench.tasks import Task


def _check_task(task_cls: type[Task], task: Any, owner: str) -> Task:
    if not isinstance(task, task_cls):
        raise TypeError(
            f"{owner}.set_task takes a {task_cls.__name__}, got a {type(task).__name__}: "
            f"that task belongs to another family"
        )
    return task


def _with_task_space(space: spaces.Box, n_features: int) -> spaces.Box:
    low = np.concatenate([space.low.ravel(), np.full(n_features, -np.inf, dtype=np.float32)])
    high = np.concatenate([space.high.ravel(), np.full(n_features, np.inf, dtype=np.float32)])
    return spaces.Box(low=low, high=high, dtype=np.float32)


class MetaEnv(gym.Env):
    """Mixin for a family's single env.

    Subclasses set ``task_cls``, call :meth:`_init_task` in ``__init__`` with the task to
    start with (the suite's envs pass their family's ``default_task()``; ``gym.make`` sets
    the family's default task, or the ``task=`` given, on any registered env), and call
    :meth:`_begin_reset` at the top of ``reset`` and :meth:`_observe` on every observation
    they return.
    """

    task_cls: ClassVar[type[Task]]
    expose_task: bool = False

    def _init_task(self, default_task: Task, expose_task: bool, raw_space: spaces.Box) -> None:
        self.expose_task = bool(expose_task)
        self._pending_task: Task = self._validate_task(default_task)
        self._task: Task = self._pending_task
        self.streams = Streams(1)
        self._seeded = False
        n_feat = len(default_task.features())
        self.observation_space = _with_task_space(raw_space, n_feat) if self.expose_task else raw_space

    def _validate_task(self, task: Any) -> Task:
        """Type check; families override to check extra constraints (e.g. number of arms)."""
        return _check_task(self.task_cls, task, type(self).__name__)

    def set_task(self, task: Task) -> None:
        """Set the task; it takes effect at the next ``reset()``."""
        self._pending_task = self._validate_task(task)

    @property
    def task(self) -> Task:
        """The task set last (in effect since the last reset, unless set after it)."""
        return self._pending_task

    def _begin_reset(self, seed: int | None) -> Task:
        """Seed the streams and swap in the pending task. Returns the task now in effect."""
        if seed is not None:
            self.streams.seed([seed])
            self._seeded = True
        elif not self._seeded:
            self.streams.seed(entropy_seeds(self.np_random, 1))
            self._seeded = True
        self._task = self._pending_task
        return self._task

    def _observe(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float32).ravel()
        if self.expose_task:
            return np.concatenate([raw, self._task.features()])
        return raw


class BatchedVectorEnv(gym.vector.VectorEnv):
    """A native numpy vector env: one array operation steps every sub-env.

    Semantics are those of ``num_envs`` single envs under Gymnasium's default NEXT_STEP
    autoreset: the step after a sub-env terminates or truncates resets it (its action is
    ignored, its reward is 0). Subclasses implement:

    - ``_task_params(tasks) -> dict[str, ndarray]`` stacking task parameters, shape (n, ...);
    - ``_reset_envs(mask)``: reset the state of the masked sub-envs (using ``self.params``);
    - ``_step_envs(actions, mask) -> (reward, terminated)`` for the masked sub-envs only
      (draw random numbers with ``self.streams.uniform(mask)`` so unmasked streams stay put);
    - ``_raw_obs() -> ndarray`` of shape (num_envs, obs_dim).
    """

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}
    task_cls: ClassVar[type[Task]]
    horizon: ClassVar[int]
    # False for families whose episodes always end by termination (bandit pulls); else
    # sub-envs truncate at ``horizon`` exactly as Gymnasium's TimeLimit does (even on
    # the step that also terminates).
    truncates: ClassVar[bool] = True

    def _init_batch(
        self,
        num_envs: int,
        default_task: Task,
        expose_task: bool,
        raw_space: spaces.Box,
        action_space: spaces.Space,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = int(num_envs)
        self.expose_task = bool(expose_task)
        n_feat = len(default_task.features())
        self.single_observation_space = _with_task_space(raw_space, n_feat) if self.expose_task else raw_space
        self.single_action_space = action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.streams = Streams(self.num_envs)
        self._seeded = False
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._paused = np.zeros(self.num_envs, dtype=bool)  # see pause_until_reset
        self.elapsed = np.zeros(self.num_envs, dtype=np.int64)
        self.set_tasks([default_task] * self.num_envs)
        self.params = {k: v.copy() for k, v in self._pending.items()}
        self._features = self._pending_features.copy()
        self._tasks = list(self._pending_tasks)
        self._stale[:] = False

    # -- tasks ---------------------------------------------------------------------------
    def _validate_task(self, task: Any) -> Task:
        return _check_task(self.task_cls, task, type(self).__name__)

    def set_tasks(self, tasks: Sequence[Task] | Task) -> None:
        """One task per sub-env (or one task for all); each takes effect at that sub-env's next reset."""
        if isinstance(tasks, Task):
            tasks = [tasks] * self.num_envs
        tasks = list(tasks)
        if len(tasks) != self.num_envs:
            raise ValueError(f"set_tasks got {len(tasks)} tasks for {self.num_envs} sub-envs; pass one per sub-env")
        tasks = [self._validate_task(t) for t in tasks]
        self._pending_tasks = tasks
        self._pending = self._task_params(tasks)
        features: dict[int, np.ndarray] = {}  # a task repeated over sub-envs is converted once
        for t in tasks:
            if id(t) not in features:
                features[id(t)] = t.features()
        self._pending_features = np.stack([features[id(t)] for t in tasks]).astype(np.float32)
        self._stale = np.ones(self.num_envs, dtype=bool)  # sub-envs whose pending task is not yet in effect

    @property
    def tasks(self) -> list[Task]:
        """The tasks set last, one per sub-env."""
        return list(self._pending_tasks)

    def _task_params(self, tasks: list[Task]) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _swap_tasks(self, mask: np.ndarray) -> None:
        # Only sub-envs with a task set since their last reset need copying; autoresets of
        # unchanged tasks (every episode of a harness stage) then cost nothing here.
        mask = mask & self._stale
        if not mask.any():
            return
        self._stale[mask] = False
        for k, v in self._pending.items():
            self.params[k][mask] = v[mask]
        self._features[mask] = self._pending_features[mask]
        for i in np.flatnonzero(mask):
            self._tasks[i] = self._pending_tasks[i]

    # -- gymnasium API -------------------------------------------------------------------
    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if isinstance(seed, int):
            seeds: list[int | None] = [seed + i for i in range(self.num_envs)]
            super().reset(seed=seed)
        elif seed is None:
            seeds = [None] * self.num_envs
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"reset got {len(seeds)} seeds for {self.num_envs} sub-envs")
        mask = np.ones(self.num_envs, dtype=bool)
        if options is not None and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"], dtype=bool)
        given = np.array([s is not None for s in seeds], dtype=bool) & mask
        if given.any():
            self.streams.seed([int(s) for s, g in zip(seeds, given) if g and s is not None], index=given)
        if not self._seeded:
            fresh = mask & ~given
            if fresh.any():
                self.streams.seed(entropy_seeds(self.np_random, int(fresh.sum())), index=fresh)
            self._seeded = True
        self._reset_masked(mask)
        return self._obs(), {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = np.asarray(actions)
        # A copy: _reset_masked clears self._autoreset in place, which would empty the mask.
        # Paused sub-envs neither step nor autoreset (their pending autoreset waits).
        resetting = self._autoreset & ~self._paused
        live = ~self._autoreset & ~self._paused
        waiting = self._autoreset & self._paused
        reward, terminated = self._step_envs(actions, live)
        reward = np.where(live, reward, 0.0)
        terminated = terminated & live
        self.elapsed += live
        truncated = live & (self.elapsed >= self.horizon) if self.truncates else np.zeros_like(live)
        if resetting.any():
            self._reset_masked(resetting)
        self._autoreset = terminated | truncated | waiting
        return self._obs(), reward.astype(np.float64), terminated, truncated, {}

    def _reset_masked(self, mask: np.ndarray) -> None:
        self._paused[mask] = False
        self._swap_tasks(mask)
        self.elapsed[mask] = 0
        self._autoreset[mask] = False
        self._reset_envs(mask)

    def pause_until_reset(self, mask: np.ndarray) -> None:
        """Stop stepping the masked sub-envs until their next ``reset()``: they cost nothing,
        return reward 0 and their last observation, and do not autoreset (so they draw no
        initial state). The harness pauses sub-envs whose episode of the stage has ended, on
        families that set ``pause_finished = True`` (costly physics; the older families keep
        their autoreset draws, so their committed records replay exactly)."""
        self._paused |= np.asarray(mask, dtype=bool)

    def _obs(self) -> np.ndarray:
        raw = self._raw_obs().astype(np.float32, copy=False)
        if self.expose_task:
            return np.concatenate([raw, self._features], axis=1)
        return raw

    def _reset_envs(self, mask: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _step_envs(self, actions: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def _raw_obs(self) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError
