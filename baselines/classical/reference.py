"""Reference agents for the RL families: ``random`` and ``oracle``."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from metarl_bench.agents import Adapter, Agent
from metarl_bench.baselines.shared import advance_episode_clock, fixed_horizon, sample_actions
from metarl_bench.benchmarks import Benchmark
from metarl_bench.harness import EvalContext, MetaTrainContext


class _RandomAdapter(Adapter):
    def __init__(self, ctx: EvalContext) -> None:
        self.space = ctx.action_space
        self.rng = ctx.rng

    def act(self, obs: np.ndarray) -> np.ndarray:
        return sample_actions(self.space, len(obs), self.rng)


class RandomAgent(Agent[MetaTrainContext, EvalContext, Adapter]):
    """Uniformly random actions; no meta-training, no adaptation (the normalisation floor)."""

    name = "random"
    description = "uniform random actions"

    def supports(self, benchmark: Benchmark) -> str | None:
        return None if benchmark.family.kind == "rl" else "random is an RL reference"

    def adapter(self, ctx: EvalContext) -> Adapter:
        return _RandomAdapter(ctx)


class _OracleAdapter(Adapter):
    """Acts optimally from the task features appended to the observation."""

    def __init__(self, ctx: EvalContext) -> None:
        self.family_id = ctx.family.id
        space = ctx.observation_space
        if not isinstance(space, spaces.Box):
            raise TypeError(f"oracle on {ctx.benchmark.id}: needs a Box observation space, got {space}")
        self.raw_dim = int(np.prod(space.shape)) - len(ctx.benchmark.test_tasks[0].features())
        self.horizon = fixed_horizon(ctx.benchmark, "oracle")

    def reset(self, groups: np.ndarray) -> None:
        super().reset(groups)
        self.t = np.zeros(len(groups), dtype=np.int64)
        self.q: np.ndarray | None = None

    def act(self, obs: np.ndarray) -> np.ndarray:
        raw, feat = obs[:, : self.raw_dim], obs[:, self.raw_dim :]
        fid = self.family_id
        if fid.startswith("MetaRL/Bandit"):
            return np.argmax(feat, axis=1)
        if fid.startswith("MetaRL/Navigation2D"):
            return np.clip(feat - raw, -0.1, 0.1).astype(np.float32)
        if fid.startswith("MetaRL/TabularMDP"):
            if self.q is None:
                self.q = self._plan(feat)
            state = np.argmax(raw, axis=1)
            t = np.minimum(self.t, self.horizon - 1)
            return np.argmax(self.q[np.arange(len(obs)), t, state], axis=1)
        raise NotImplementedError(fid)

    def _plan(self, feat: np.ndarray) -> np.ndarray:
        from metarl_bench.envs.tabular_mdp import N_ACTIONS, N_STATES, value_iteration

        f = feat.astype(np.float64)
        mu = f[:, : N_STATES * N_ACTIONS].reshape(-1, N_STATES, N_ACTIONS)
        p = f[:, N_STATES * N_ACTIONS :].reshape(-1, N_STATES, N_ACTIONS, N_STATES)
        p = p / p.sum(axis=-1, keepdims=True)  # features are float32: renormalise
        return value_iteration(mu, p, self.horizon)[0]  # (envs, H, S, A)

    def observe(self, tr: Any) -> None:
        done = tr.terminated | tr.truncated
        self.t = advance_episode_clock(self.t, tr.active, done)


class OracleAgent(Agent[MetaTrainContext, EvalContext, Adapter]):
    """Sees the task and acts optimally: the best arm (bandits), finite-horizon value
    iteration on the true MDP (tabular MDPs), straight at the goal (Navigation2D).

    On the Meta-World families it is Meta-World's scripted expert of the task's class
    (``metarl_bench.baselines.classical.metaworld_expert``): not optimal, but the reference
    Meta-World ships. On the dynamics-randomised classic-control families no cheap optimal
    policy exists; the oracle does not run there and those benchmarks have no oracle reference.
    """

    name = "oracle"
    sees_task = True
    description = "knows the task; optimal policy"
    _SUPPORTED = ("MetaRL/Bandit", "MetaRL/Navigation2D", "MetaRL/TabularMDP", "MetaRL/MetaWorld-")

    def supports(self, benchmark: Benchmark) -> str | None:
        if benchmark.family.id.startswith(self._SUPPORTED):
            return None
        return f"no cheap optimal policy for {benchmark.family.id}; supported families: {list(self._SUPPORTED)}"

    def adapter(self, ctx: EvalContext) -> Adapter:
        if ctx.family.id.startswith("MetaRL/MetaWorld-"):
            from metarl_bench.baselines.classical.metaworld_expert import MetaWorldExpertAdapter

            return MetaWorldExpertAdapter(ctx)
        return _OracleAdapter(ctx)
