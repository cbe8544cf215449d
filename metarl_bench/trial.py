"""A trial of n episodes on one task, presented as one Gymnasium episode (the RL² setting).

:class:`TrialWrapper` lets any learner that handles a single Gymnasium env, recurrent or
not (e.g. Stable-Baselines3's ``RecurrentPPO`` or ``PPO`` with frame history), train
on the suite's families the way RL² does (Duan et al. 2016): the inner env's episodes
run back to back on the same task, and the previous action, reward and done flag are
appended to every observation so that a memory can learn from them::

    import gymnasium as gym, numpy as np, metarl_bench
    from metarl_bench.trial import TrialWrapper

    fam = metarl_bench.family("MetaRL/Bandit-k5-v0")
    tasks = fam.sample_tasks(1000, np.random.default_rng(0))
    env = TrialWrapper(gym.make("MetaRL/Bandit-k5-v0"), episodes=10, tasks=tasks)
    obs, info = env.reset(seed=0)  # a new trial: a task drawn from ``tasks``

Observation: the inner observation, then the previous action (one-hot for ``Discrete``;
the action clipped to the bounds for ``Box``), the previous reward and the previous
step's done flag (1 when the step ended an inner episode). All three are 0 at a
trial's first step. Action: the inner env's. Reward: the inner env's. Termination: the
trial ends (``terminated=True``) when its n-th inner episode ends, by termination or by
truncation: nothing of the trial is left to earn, whatever ended the last episode.
``info`` carries ``episode_index`` (inner episodes finished so far) and, on a step that
ends an inner episode, ``episode_terminated`` and ``episode_truncated``.

Task: with ``tasks`` given, every ``reset()`` draws the trial's task uniformly from
them with the wrapper's seeded ``np_random``; without it the inner env keeps its task
(set it with ``env.unwrapped.set_task``). Inner resets inside a trial never resample.

Version history:
    v0: initial release.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from metarl_bench.tasks import Task


class TrialWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Run ``episodes`` inner episodes on one task as one episode, with RL² inputs appended."""

    def __init__(self, env: gym.Env, episodes: int, tasks: Sequence[Task] | None = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, episodes=episodes, tasks=tasks)
        gym.Wrapper.__init__(self, env)
        if isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)) or episodes < 1:
            raise ValueError(f"TrialWrapper: episodes must be an integer >= 1, got {episodes!r}")
        inner_obs = env.observation_space
        if not isinstance(inner_obs, spaces.Box):
            raise TypeError(
                f"TrialWrapper needs a Box observation space, got {inner_obs}; flatten it first "
                f"(gymnasium.wrappers.FlattenObservation)"
            )
        act = env.action_space
        if isinstance(act, spaces.Discrete):
            self._act_dim = int(act.n)
            a_low, a_high = np.zeros(self._act_dim), np.ones(self._act_dim)
        elif isinstance(act, spaces.Box):
            self._act_dim = int(np.prod(act.shape))
            a_low, a_high = act.low.reshape(-1), act.high.reshape(-1)
        else:
            raise TypeError(f"TrialWrapper supports Discrete and Box action spaces, got {act}")
        self.episodes = int(episodes)
        self.tasks = list(tasks) if tasks is not None else None
        if self.tasks is not None and not self.tasks:
            raise ValueError("TrialWrapper: tasks is empty; pass at least one task or None")
        self.observation_space = spaces.Box(
            low=np.concatenate([inner_obs.low.reshape(-1), a_low, [-np.inf], [0.0]]).astype(np.float32),
            high=np.concatenate([inner_obs.high.reshape(-1), a_high, [np.inf], [1.0]]).astype(np.float32),
            dtype=np.float32,
        )
        self._episode = 0
        self._seed_inner: int | None = None

    def _encode_action(self, action: Any) -> np.ndarray:
        return encode_actions(self.env.action_space, np.asarray(action)[None])[0]

    def _observe(self, obs: Any, prev_action: np.ndarray, reward: float, done: bool) -> np.ndarray:
        return np.concatenate(
            [np.asarray(obs, dtype=np.float32).reshape(-1), prev_action, [np.float32(reward)], [np.float32(done)]]
        ).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Start a new trial (drawing its task from ``tasks`` when given)."""
        super().reset(seed=seed)  # seeds self.np_random when seed is given
        if self.tasks is not None:
            task = self.tasks[int(self.np_random.integers(len(self.tasks)))]
            self.env.unwrapped.set_task(task)  # type: ignore[attr-defined]
        obs, info = self.env.reset(seed=seed, options=options)
        self._episode = 0
        return self._observe(obs, np.zeros(self._act_dim, dtype=np.float32), 0.0, False), {
            **info,
            "episode_index": 0,
        }

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        done = bool(terminated or truncated)
        trial_over = False
        if done:
            self._episode += 1
            info["episode_terminated"] = bool(terminated)
            info["episode_truncated"] = bool(truncated)
            if self._episode >= self.episodes:
                trial_over = True
            else:
                obs, _ = self.env.reset()  # same task: reset never resamples it
        info["episode_index"] = self._episode
        out = self._observe(obs, self._encode_action(action), float(reward), done)
        return out, reward, trial_over, False, info


def encode_actions(space: spaces.Space, actions: np.ndarray) -> np.ndarray:
    """The previous-action input of a batch of ``actions`` (leading dimension the batch):
    one-hot rows for ``Discrete``, the actions clipped to the bounds and flattened for ``Box``."""
    if isinstance(space, spaces.Discrete):
        index = np.asarray(actions).reshape(len(actions)).astype(np.int64) - int(space.start)
        return np.eye(int(space.n), dtype=np.float32)[index]
    if isinstance(space, spaces.Box):
        flat = np.asarray(actions, dtype=np.float32).reshape(len(actions), -1)
        return np.clip(flat, space.low.reshape(-1), space.high.reshape(-1)).astype(np.float32)
    raise TypeError(f"trial inputs support Discrete and Box action spaces, got {space}")


class TrialInputs:
    """:class:`TrialWrapper`'s observation built for a batch of sub-envs that the caller steps
    itself (the harness's vector envs): ``build(obs)`` appends each sub-env's previous action,
    reward and done flag; ``update(...)`` records a step for the sub-envs where ``mask`` is true.
    All three inputs are 0 until a sub-env's first step (the start of its trial)."""

    def __init__(self, action_space: spaces.Space, n: int) -> None:
        self.action_space = action_space
        width = encode_actions(action_space, np.zeros((1, *(action_space.shape or ())))).shape[1]
        self.prev = np.zeros((n, width + 2), dtype=np.float32)

    def build(self, obs: np.ndarray) -> np.ndarray:
        flat = np.asarray(obs, dtype=np.float32).reshape(len(obs), -1)
        return np.concatenate([flat, self.prev], axis=1)

    def update(self, actions: np.ndarray, reward: np.ndarray, done: np.ndarray, mask: np.ndarray) -> None:
        new = np.concatenate(
            [
                encode_actions(self.action_space, actions),
                np.asarray(reward, dtype=np.float32).reshape(-1, 1),
                np.asarray(done, dtype=np.float32).reshape(-1, 1),
            ],
            axis=1,
        )
        self.prev = np.where(np.asarray(mask, dtype=bool)[:, None], new, self.prev)
