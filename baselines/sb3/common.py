"""What the Stable-Baselines3 baselines share: training envs over the train tasks, counted by
the harness; a callback that logs SB3's rollouts into the record; the saved policy."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

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


class SavedPolicy:
    """``state_dict``/``load_state_dict`` of an SB3 baseline whose learned state is one SB3
    policy: ``self.model`` after meta-training, or the weights a save held
    (``self.saved_policy``), from which the agent rebuilds the policy for the evaluation's spaces."""

    name: ClassVar[str]

    def __init__(self, **overrides: Any) -> None:
        super().__init__(**overrides)  # the Agent's
        self.model: Any = None  # set by meta_train
        self.saved_policy: dict[str, torch.Tensor] | None = None  # set by load_state_dict

    def check_rollout(self, total_timesteps: int, n_steps: int, n_envs: int, benchmark: Any) -> None:
        """Before any work: one SB3 rollout (``n_steps * n_envs`` env steps) fits the steps allowed."""
        if min(total_timesteps, benchmark.meta_train_steps) < n_steps * n_envs:
            raise ValueError(
                f"{self.name} on {benchmark.id}: total_timesteps={total_timesteps:,} is less than one rollout "
                f"(n_steps * n_envs = {n_steps * n_envs:,}); raise total_timesteps or lower n_steps"
            )

    def state_dict(self) -> dict[str, Any]:
        """The trained policy's weights (SB3's ``policy.state_dict()``)."""
        if self.model is not None:
            return {"policy": {k: v.detach().clone() for k, v in self.model.policy.state_dict().items()}}
        if self.saved_policy is not None:
            return {"policy": self.saved_policy}
        raise RuntimeError(f"{self.name}: nothing to save before meta-training")

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if set(state) != {"policy"}:
            raise ValueError(f"{self.name}: a saved state holds 'policy', got {sorted(state)}; it was saved by another agent")
        self.model, self.saved_policy = None, dict(state["policy"])
