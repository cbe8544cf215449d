"""Classical Bernoulli-bandit references: Bayes-optimal, finite-horizon Gittins, UCB1,
Thompson sampling, greedy and epsilon-greedy (the classical columns of RL^2's Table 1).

All keep per-run success/failure counts ``(runs, k, 2)`` and act on every sub-env of a
run alike (bandit stages are one pull). During the final evaluation episodes they stop
updating and pull the arm with the highest posterior mean (the Bayes-optimal choice for
a pull that teaches nothing more).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import numpy as np
from gymnasium import spaces

from metarl_bench.agents import Adapter, Agent, AgentConfig, Transition, positive
from metarl_bench.benchmarks import Benchmark
from metarl_bench.envs.bandit import BanditFamily
from metarl_bench.harness import EvalContext, MetaTrainContext

# Exact dynamic programming is used while the number of canonical posterior states stays
# below this; beyond it the finite-horizon Gittins index approximates the optimal policy.
EXACT_STATE_LIMIT = 200_000


def _is_bandit(benchmark: Benchmark) -> str | None:
    if benchmark.family.id.startswith("MetaRL/Bandit"):
        return None
    return "a Bernoulli-bandit algorithm; it runs on the MetaRL/Bandit-* benchmarks only"


# --- exact Bayes-optimal value (Beta(1,1) priors, finite horizon) ---------------------------


class ExactBayesOptimal:
    """Finite-horizon DP over posterior counts; states are sorted tuples of (s, f) per arm.

    Arms are exchangeable under the prior, so sorting the per-arm counts loses nothing and
    shrinks the state space by up to k!.
    """

    def __init__(self, k: int, horizon: int) -> None:
        self.k, self.horizon = k, horizon
        sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
        self._value = lru_cache(maxsize=None)(self._value_uncached)

    def _value_uncached(self, state: tuple[tuple[int, int], ...]) -> float:
        used = sum(s + f for s, f in state)
        if used >= self.horizon:
            return 0.0
        return max(self.q_values(state))

    def q_values(self, state: tuple[tuple[int, int], ...]) -> list[float]:
        out = []
        for i, (s, f) in enumerate(state):
            p = (s + 1) / (s + f + 2)
            win = tuple(sorted(state[:i] + ((s + 1, f),) + state[i + 1 :]))
            loss = tuple(sorted(state[:i] + ((s, f + 1),) + state[i + 1 :]))
            out.append(p * (1.0 + self._value(win)) + (1 - p) * self._value(loss))
        return out

    def value(self) -> float:
        """Expected total reward of the Bayes-optimal policy over the horizon."""
        return self._value(tuple((0, 0) for _ in range(self.k)))

    @cache  # noqa: B019 - one solver per (k, horizon), kept for the process
    def best_pair(self, state: tuple[tuple[int, int], ...]) -> tuple[int, int]:
        """The (s, f) counts of an optimal arm to pull in canonical ``state``."""
        q = self.q_values(state)
        return state[int(np.argmax(q))]


def exact_state_count(k: int, horizon: int) -> int:
    """Number of canonical states (multisets of k count pairs with total <= horizon)."""
    # pairs (s, f) with s + f = m: m + 1 of them; count multisets via generating functions
    pairs_by_total = [m + 1 for m in range(horizon + 1)]
    # dp[j][t]: multisets of size j with total t
    dp = [[0] * (horizon + 1) for _ in range(k + 1)]
    dp[0][0] = 1
    for m, c in enumerate(pairs_by_total):
        for j in range(k, 0, -1):
            for t in range(horizon, -1, -1):
                total, r = 0, 1
                while r <= j and r * m <= t:
                    total += dp[j - r][t - r * m] * math.comb(c + r - 1, r)
                    r += 1
                    if m == 0 and r > j:
                        break
                dp[j][t] += total
    return sum(dp[k])


@lru_cache(maxsize=8)
def exact_solver(k: int, horizon: int) -> ExactBayesOptimal:
    return ExactBayesOptimal(k, horizon)


# --- finite-horizon Gittins index (Nino-Mora 2011) ----------------------------------------


@lru_cache(maxsize=8)
def fh_gittins_table(horizon: int, grid: int = 512) -> np.ndarray:
    """Index ``G[s, f, h]`` of a Beta(s+1, f+1) arm with ``h`` pulls left.

    The index is the largest per-pull reward lambda of a known arm at which pulling the
    unknown arm (with the option to retire to the known arm forever) is still at least as
    good as retiring now. One backward induction per lambda on a grid gives the decision
    for every (s, f, h) at once; the index is read off to within 1/grid.
    """
    n = horizon
    lam = ((np.arange(grid) + 0.5) / grid).astype(np.float32)  # (L,)
    s = np.arange(n + 2)[:, None]
    f = np.arange(n + 2)[None, :]
    p = ((s + 1) / (s + f + 2)).astype(np.float32)  # (n+2, n+2)
    w = np.zeros((grid, n + 2, n + 2), dtype=np.float32)
    index = np.zeros((n + 2, n + 2, n + 1))
    for h in range(1, n + 1):
        win = np.zeros_like(w)
        win[:, :-1, :] = w[:, 1:, :]
        loss = np.zeros_like(w)
        loss[:, :, :-1] = w[:, :, 1:]
        pull = p[None] * (1.0 + win) + (1 - p[None]) * loss
        retire = lam[:, None, None] * np.float32(h)
        prefer_pull = pull >= retire
        # largest lambda at which pulling is preferred (monotone in lambda)
        count = prefer_pull.sum(axis=0)
        index[:, :, h] = np.where(count > 0, lam[np.maximum(count - 1, 0)], 0.0)
        w = np.maximum(pull, retire)
    return index


# --- the adapters -------------------------------------------------------------------------


class _CountsAdapter(Adapter):
    """Per-run Beta posterior counts; the budget is ``B`` pulls, then final greedy pulls."""

    def __init__(self, ctx: EvalContext, rng: np.random.Generator) -> None:
        space = ctx.action_space
        if not isinstance(space, spaces.Discrete):
            raise TypeError(f"the bandit algorithms pull arms: they need a Discrete action space, got {space}")
        self.k = int(space.n)
        self.budget = int(ctx.benchmark.protocol.budget_episodes)
        self.rng = rng

    def reset(self, groups: np.ndarray) -> None:
        super().reset(groups)
        self.counts = np.zeros((self.num_runs, self.k, 2), dtype=np.int64)
        self.pulls_done = 0

    @property
    def final_phase(self) -> bool:
        return self.pulls_done >= self.budget

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self.final_phase:
            scores = self.posterior_mean()
        else:
            scores = self.scores()
        # random tie-breaking: tiny jitter below any real score difference
        jitter = self.rng.random(scores.shape) * 1e-9
        return np.argmax(scores + jitter, axis=1)[self.groups]

    def posterior_mean(self) -> np.ndarray:
        return (self.counts[..., 0] + 1) / (self.counts.sum(axis=2) + 2)

    def scores(self) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def observe(self, tr: Transition) -> None:
        if tr.final:
            return
        idx = np.flatnonzero(tr.active)
        g = self.groups[idx]
        a = np.asarray(tr.action)[idx].astype(np.int64)
        win = (tr.reward[idx] > 0.5).astype(np.int64)
        # numpy's stub for ufunc.at types the indices as one integer array, but a tuple of
        # index arrays (one per axis) is its documented multi-dimensional form
        np.add.at(self.counts, (g, a, 0), win)  # type: ignore[arg-type]
        np.add.at(self.counts, (g, a, 1), 1 - win)  # type: ignore[arg-type]

    def adapt(self) -> None:
        self.pulls_done += 1


class _BayesOptimalAdapter(_CountsAdapter):
    def __init__(self, ctx: EvalContext, rng: np.random.Generator, method: str) -> None:
        super().__init__(ctx, rng)
        self.method = method
        if method == "exact-dp":
            self.solver = exact_solver(self.k, self.budget)
        else:
            self.table = fh_gittins_table(self.budget)

    def scores(self) -> np.ndarray:
        if self.method == "exact-dp":
            return self._exact_scores()
        h = self.budget - self.pulls_done
        s, f = self.counts[..., 0], self.counts[..., 1]
        return self.table[s, f, h]

    def _exact_scores(self) -> np.ndarray:
        out = np.zeros((self.num_runs, self.k))
        cache: dict[tuple[tuple[int, int], ...], tuple[int, int]] = {}
        for g in range(self.num_runs):
            pairs = tuple((int(s), int(f)) for s, f in self.counts[g])
            state = tuple(sorted(pairs))
            best = cache.get(state)
            if best is None:
                best = cache[state] = self.solver.best_pair(state)
            out[g] = [1.0 if p == best else 0.0 for p in pairs]
        return out


class _UCB1Adapter(_CountsAdapter):
    def __init__(self, ctx: EvalContext, rng: np.random.Generator, c: float) -> None:
        super().__init__(ctx, rng)
        self.c = c

    def scores(self) -> np.ndarray:
        n = self.counts.sum(axis=2)
        t = max(self.pulls_done, 1)
        mean = self.counts[..., 0] / np.maximum(n, 1)
        bonus = self.c * np.sqrt(math.log(t) / np.maximum(n, 1))
        return np.where(n == 0, np.inf, mean + bonus)


class _ThompsonAdapter(_CountsAdapter):
    def scores(self) -> np.ndarray:
        return self.rng.beta(self.counts[..., 0] + 1, self.counts[..., 1] + 1)


class _EpsilonGreedyAdapter(_CountsAdapter):
    def __init__(self, ctx: EvalContext, rng: np.random.Generator, epsilon: float) -> None:
        super().__init__(ctx, rng)
        self.epsilon = epsilon

    def scores(self) -> np.ndarray:
        mean = self.posterior_mean()
        explore = self.rng.random(self.num_runs) < self.epsilon
        return np.where(explore[:, None], self.rng.random(mean.shape), mean)


# --- the agents ---------------------------------------------------------------------------


@dataclass
class BayesOptimalConfig(AgentConfig):
    method: str = "auto"
    """'exact-dp' (finite-horizon DP over posterior counts), 'gittins' (finite-horizon Gittins
    index approximation), or 'auto' (exact while tractable, else gittins)."""

    def validate(self) -> None:
        if self.method not in ("auto", "exact-dp", "gittins"):
            raise ValueError(f"agent 'bayes-optimal': config field 'method' must be auto, exact-dp or gittins, got {self.method!r}")


class BayesOptimalAgent(Agent[MetaTrainContext, EvalContext, Adapter]):
    """Bayes-optimal policy for Bernoulli bandits with Beta(1,1) priors over a finite horizon.

    Exact: dynamic programming over canonical posterior-count states while their number
    is below ``EXACT_STATE_LIMIT`` (k=5/10 with n=10). Beyond (n=100) the exact DP is
    intractable, and the finite-horizon Gittins index (Nino-Mora 2011), which is close
    to optimal, is used instead; the record's config says which method ran.
    """

    name = "bayes-optimal"
    config_cls = BayesOptimalConfig
    config: BayesOptimalConfig
    description = "Bayes-optimal (exact DP where tractable, finite-horizon Gittins beyond)"

    def supports(self, benchmark: Benchmark) -> str | None:
        return _is_bandit(benchmark)

    def configure(self, benchmark: Benchmark) -> AgentConfig:
        cfg = super().configure(benchmark)
        assert isinstance(cfg, BayesOptimalConfig)
        if cfg.method == "auto":
            family = benchmark.family
            if not isinstance(family, BanditFamily):
                raise ValueError(
                    f"{self.name} on {benchmark.id}: a Bernoulli-bandit algorithm; it needs a MetaRL/Bandit family "
                    "(it reads the number of arms, k)"
                )
            k, n = family.k, benchmark.protocol.budget_episodes
            cfg.method = "exact-dp" if exact_state_count(k, n) <= EXACT_STATE_LIMIT else "gittins"
        return cfg

    def adapter(self, ctx: EvalContext) -> Adapter:
        return _BayesOptimalAdapter(ctx, ctx.rng, self.config.method)


@dataclass
class NoConfig(AgentConfig):
    pass


class GittinsAgent(Agent[MetaTrainContext, EvalContext, Adapter]):
    """Finite-horizon Gittins index policy (Nino-Mora 2011) for Bernoulli bandits."""

    name = "gittins"
    config_cls = NoConfig
    description = "finite-horizon Gittins index"

    def supports(self, benchmark: Benchmark) -> str | None:
        return _is_bandit(benchmark)

    def adapter(self, ctx: EvalContext) -> Adapter:
        return _BayesOptimalAdapter(ctx, ctx.rng, "gittins")


@dataclass
class UCB1Config(AgentConfig):
    c: float = math.sqrt(2.0)
    """Exploration coefficient: index = mean + c * sqrt(ln t / n_i) (Auer et al. 2002: sqrt 2)."""

    def validate(self) -> None:
        positive("ucb1", c=self.c)


class UCB1Agent(Agent[MetaTrainContext, EvalContext, Adapter]):
    """UCB1 (Auer et al. 2002): pull each arm once, then the highest upper confidence bound."""

    name = "ucb1"
    config_cls = UCB1Config
    config: UCB1Config
    description = "UCB1, c = sqrt(2)"

    def supports(self, benchmark: Benchmark) -> str | None:
        return _is_bandit(benchmark)

    def adapter(self, ctx: EvalContext) -> Adapter:
        return _UCB1Adapter(ctx, ctx.rng, self.config.c)


class ThompsonAgent(Agent[MetaTrainContext, EvalContext, Adapter]):
    """Thompson sampling with Beta(1,1) priors: pull the arm whose posterior sample is highest."""

    name = "thompson"
    config_cls = NoConfig
    description = "Thompson sampling, Beta(1,1) prior"

    def supports(self, benchmark: Benchmark) -> str | None:
        return _is_bandit(benchmark)

    def adapter(self, ctx: EvalContext) -> Adapter:
        return _ThompsonAdapter(ctx, ctx.rng)


@dataclass
class EpsilonGreedyConfig(AgentConfig):
    epsilon: float = 0.1
    """Probability of a uniformly random pull; otherwise the highest posterior mean."""

    def validate(self) -> None:
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"agent 'epsilon-greedy': config field 'epsilon' must be in [0, 1], got {self.epsilon}")


class EpsilonGreedyAgent(Agent[MetaTrainContext, EvalContext, Adapter]):
    """Epsilon-greedy on posterior means: Beta(1,1) arm means on bandits (untried arms count
    as 0.5); on tabular MDPs, the optimal policy of the posterior-mean MDP (certainty
    equivalence, see :mod:`metarl_bench.baselines.classical.psrl`)."""

    name = "epsilon-greedy"
    config_cls = EpsilonGreedyConfig
    config: EpsilonGreedyConfig
    description = "epsilon-greedy on posterior means, epsilon = 0.1 (bandits, tabular MDPs)"

    def supports(self, benchmark: Benchmark) -> str | None:
        from metarl_bench.baselines.classical.psrl import is_tabular_mdp

        if is_tabular_mdp(benchmark):
            return None
        return _is_bandit(benchmark)

    def adapter(self, ctx: EvalContext) -> Adapter:
        from metarl_bench.baselines.classical.psrl import PosteriorMDPAdapter, is_tabular_mdp

        eps = self.config.epsilon
        if is_tabular_mdp(ctx.benchmark):
            return PosteriorMDPAdapter(ctx, "greedy", eps)
        return _EpsilonGreedyAdapter(ctx, ctx.rng, eps)


class GreedyAgent(EpsilonGreedyAgent):
    """Greedy: always the highest posterior mean (epsilon = 0), ties broken at random."""

    name = "greedy"
    description = "greedy on posterior means (bandits, tabular MDPs)"

    def __init__(self, **overrides: Any) -> None:
        super().__init__(**{"epsilon": 0.0, **overrides})
