"""What the Stable-Baselines3 baselines share: training envs over the train tasks, counted by
the harness; a callback that logs SB3's rollouts into the record; thread limits."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from metarl_bench.harness import MetaTrainContext
from metarl_bench.tasks import Task


class TaskSampling(gym.Wrapper):
    """Draw the episode's task uniformly from ``tasks`` at every ``reset()`` (with the
    wrapper's seeded ``np_random``): one env that serves the whole train distribution."""

    def __init__(self, env: gym.Env, tasks: Sequence[Task]) -> None:
        super().__init__(env)
        if not tasks:
            raise ValueError("TaskSampling: tasks is empty")
        self.tasks = list(tasks)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)  # seeds self.np_random when seed is given
        self.env.unwrapped.set_task(self.tasks[int(self.np_random.integers(len(self.tasks)))])  # type: ignore[attr-defined]
        return self.env.reset(seed=seed, options=options)


def train_vec_env(
    ctx: MetaTrainContext, n_envs: int, expose_task: bool = False, wrap: Callable[[gym.Env], gym.Env] | None = None
) -> DummyVecEnv:
    """``n_envs`` envs over ``ctx``'s train tasks for SB3, each step counted against the budget.

    Each env draws a train task per episode (``TaskSampling``), or per trial when ``wrap``
    builds one that draws its own (the ``TrialWrapper``); SB3's ``Monitor`` records episode
    returns for the training log.
    """

    def make(i: int) -> Callable[[], gym.Env]:
        def thunk() -> gym.Env:
            env = ctx.make_env(expose_task=expose_task)
            env = wrap(env) if wrap is not None else TaskSampling(env, ctx.train_tasks)
            return Monitor(env)

        return thunk

    venv = DummyVecEnv([make(i) for i in range(n_envs)])
    venv.seed(int(ctx.rng.integers(2**31)))
    return venv


def learn_steps(ctx: MetaTrainContext, total_timesteps: int, n_steps: int, n_envs: int, agent: str) -> int:
    """The env steps SB3 will take: ``total_timesteps`` cut to what the budget has left and
    rounded down to whole rollouts of ``n_steps * n_envs`` (SB3 finishes a started rollout)."""
    per_rollout = n_steps * n_envs
    steps = min(total_timesteps, ctx.steps_left) // per_rollout * per_rollout
    if steps < per_rollout:
        raise ValueError(
            f"{agent} on {ctx.benchmark.id}: total_timesteps={total_timesteps:,} (budget left {ctx.steps_left:,}) "
            f"is less than one rollout of n_steps * n_envs = {per_rollout:,}; raise total_timesteps"
        )
    return steps


class RecordRollouts(BaseCallback):
    """Logs each SB3 rollout into the record's training log (``ctx.record``): the mean
    training episode return over SB3's last 100 episodes, and SB3's own train/ metrics."""

    def __init__(self, ctx: MetaTrainContext, every: int = 1, bar: Any = None) -> None:
        super().__init__()
        self.ctx = ctx
        self.every = max(int(every), 1)
        self.rollouts = 0
        self.bar = bar  # ctx.progress_bar(...), advanced by the env steps of each rollout
        self.shown = 0

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.rollouts += 1
        if self.bar is not None:
            self.bar.update(self.model.num_timesteps - self.shown)
            self.shown = self.model.num_timesteps
        if self.rollouts % self.every:
            return
        row: dict[str, Any] = {"rollout": self.rollouts}
        episodes = self.model.ep_info_buffer
        if episodes:
            row["train_return"] = float(np.mean([e["r"] for e in episodes]))
        for key, value in self.model.logger.name_to_value.items():
            if key.startswith("train/"):
                row[key.removeprefix("train/")] = float(value)
        self.ctx.record(**row)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch threads (SB3's small networks are fastest on one), then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
