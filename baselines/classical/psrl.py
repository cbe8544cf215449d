"""Bayesian references for tabular MDPs: PSRL, and greedy / epsilon-greedy certainty equivalence.

All keep the conjugate posterior of the family's prior per adaptation run:
transitions P(.|s,a) ~ Dirichlet(1 + counts), mean rewards mu(s,a) ~ N(m, 1/(1+n)) with
m = (1 + sum of rewards) / (1 + n) (prior N(1, 1), known unit reward noise).

- PSRL (Osband et al. 2013): at the start of every episode, sample an MDP from the
  posterior and follow its finite-horizon optimal policy for the episode.
- greedy: plan on the posterior-mean MDP (certainty equivalence), no exploration.
- epsilon-greedy: the same, with a uniformly random action with probability epsilon.

During the final evaluation episodes the posterior is frozen and every agent plans on
the posterior-mean MDP. Planning is batched over all runs with
``metarl_bench.envs.tabular_mdp.value_iteration``.
"""

from __future__ import annotations

import numpy as np

from metarl_bench.agents import Adapter, Agent, Transition
from metarl_bench.baselines.shared import advance_episode_clock, fixed_horizon
from metarl_bench.benchmarks import Benchmark
from metarl_bench.harness import EvalContext, MetaTrainContext


def is_tabular_mdp(benchmark: Benchmark) -> bool:
    return bool(benchmark.family.id.startswith("MetaRL/TabularMDP"))


class PosteriorMDPAdapter(Adapter):
    def __init__(self, ctx: EvalContext, mode: str, epsilon: float = 0.0) -> None:
        from metarl_bench.envs.tabular_mdp import N_ACTIONS, N_STATES

        self.mode, self.epsilon = mode, epsilon
        self.rng = ctx.rng
        self.n_s, self.n_a = N_STATES, N_ACTIONS
        self.horizon = fixed_horizon(ctx.benchmark, "psrl" if mode == "psrl" else "epsilon-greedy")
        self.budget = int(ctx.benchmark.protocol.budget_episodes)

    def reset(self, groups: np.ndarray) -> None:
        super().reset(groups)
        g, s, a = self.num_runs, self.n_s, self.n_a
        self.trans = np.zeros((g, s, a, s))
        self.visits = np.zeros((g, s, a))
        self.reward_sum = np.zeros((g, s, a))
        self.t = np.zeros(len(groups), dtype=np.int64)
        self.episodes = 0
        self.q: np.ndarray | None = None

    def plan(self) -> np.ndarray:
        """Q-values ``(runs, H, S, A)`` by value iteration on each run's MDP: one drawn from the
        posterior (``psrl`` while budget episodes remain), else the posterior mean (greedy and
        epsilon-greedy, and every mode in the final episodes)."""
        from metarl_bench.envs.tabular_mdp import value_iteration

        alpha = 1.0 + self.trans
        mean_mu = (1.0 + self.reward_sum) / (1.0 + self.visits)
        if self.mode == "psrl" and self.episodes < self.budget:
            p = self.rng.gamma(alpha)
            p /= p.sum(axis=-1, keepdims=True)
            mu = mean_mu + self.rng.standard_normal(mean_mu.shape) / np.sqrt(1.0 + self.visits)
        else:
            p = alpha / alpha.sum(axis=-1, keepdims=True)
            mu = mean_mu
        return value_iteration(mu, p, self.horizon)[0]  # (runs, H, S, A)

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self.q is None:
            self.q = self.plan()
        state = np.argmax(obs[:, : self.n_s], axis=1)
        t = np.minimum(self.t, self.horizon - 1)
        action = np.argmax(self.q[self.groups, t, state], axis=1)
        if self.epsilon > 0 and self.episodes < self.budget:
            explore = self.rng.random(len(obs)) < self.epsilon
            action = np.where(explore, self.rng.integers(0, self.n_a, len(obs)), action)
        return action

    def observe(self, tr: Transition) -> None:
        done = tr.terminated | tr.truncated
        if not tr.final:
            idx = np.flatnonzero(tr.active)
            g = self.groups[idx]
            s = np.argmax(tr.obs[idx, : self.n_s], axis=1)
            s2 = np.argmax(tr.next_obs[idx, : self.n_s], axis=1)
            a = np.asarray(tr.action)[idx].astype(np.int64)
            np.add.at(self.trans, (g, s, a, s2), 1.0)
            np.add.at(self.visits, (g, s, a), 1.0)
            np.add.at(self.reward_sum, (g, s, a), tr.reward[idx])
        self.t = advance_episode_clock(self.t, tr.active, done)
        if (tr.active & done).any() and not (tr.active & ~done).any():
            # every sub-env finished its episode: the next act starts a new one
            self.episodes += 1
            self.q = None


class PSRLAgent(Agent[MetaTrainContext, EvalContext, Adapter]):
    """Posterior sampling for reinforcement learning (Osband et al. 2013) on tabular MDPs."""

    name = "psrl"
    description = "posterior sampling RL (Dirichlet/Normal posterior, one sample per episode)"

    def supports(self, benchmark: Benchmark) -> str | None:
        return None if is_tabular_mdp(benchmark) else "PSRL runs on the MetaRL/TabularMDP-* benchmarks only"

    def adapter(self, ctx: EvalContext) -> Adapter:
        return PosteriorMDPAdapter(ctx, "psrl")
