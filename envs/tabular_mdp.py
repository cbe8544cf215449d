"""Random tabular MDPs (Duan et al. 2016, RL², section 4.2; Osband et al. 2013, PSRL)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from metarl_bench.envbase import BatchedVectorEnv, MetaEnv
from metarl_bench.family import Family, TaskDistribution
from metarl_bench.tasks import Task, check_array

N_STATES = 10
N_ACTIONS = 5
HORIZON = 10
START_STATE = 0
ROW_TOL = 1e-6


@dataclass(frozen=True)
class TabularMDPTask(Task):
    """Mean rewards ``mu`` of shape (S, A) and transition probabilities ``P`` of shape (S, A, S).

    ``mu`` entries are finite reals; every row ``P[s, a]`` is non-negative and sums to 1
    (within 1e-6). S = 10 states, A = 5 actions.
    """

    mu: tuple[tuple[float, ...], ...] = ((1.0,) * N_ACTIONS,) * N_STATES
    P: tuple[tuple[tuple[float, ...], ...], ...] = (((1.0 / N_STATES,) * N_STATES,) * N_ACTIONS,) * N_STATES

    def validate(self) -> None:
        check_array("TabularMDPTask", "mu", self.mu, (N_STATES, N_ACTIONS), -np.inf, np.inf)
        p = check_array("TabularMDPTask", "P", self.P, (N_STATES, N_ACTIONS, N_STATES), 0.0, 1.0)
        sums = p.sum(axis=2)
        bad = np.abs(sums - 1.0) > ROW_TOL
        if bad.any():
            s, a = np.argwhere(bad)[0]
            raise ValueError(
                f"TabularMDPTask.P rows must sum to 1 (within {ROW_TOL}); P[{s}, {a}] sums to {sums[s, a]!r}"
            )

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mu, P)`` as float64 arrays of shapes (S, A) and (S, A, S)."""
        return np.asarray(self.mu, dtype=np.float64), np.asarray(self.P, dtype=np.float64)


class GaussianDirichletMDP(TaskDistribution):
    """mu(s, a) ~ N(1, 1) i.i.d.; P(. | s, a) ~ Dirichlet(1, ..., 1) i.i.d."""

    def __call__(self, rng: np.random.Generator) -> TabularMDPTask:
        mu = rng.normal(1.0, 1.0, size=(N_STATES, N_ACTIONS))
        p = rng.dirichlet(np.ones(N_STATES), size=(N_STATES, N_ACTIONS))
        return TabularMDPTask(mu=mu, P=p)  # type: ignore[arg-type]  # frozen to tuples

    def describe(self) -> str:
        return "mu(s,a) ~ N(1,1); P(.|s,a) ~ Dirichlet(1,...,1); S=10, A=5"


def _cumulative(p: np.ndarray) -> np.ndarray:
    # Single and batched envs compare the same precomputed cumsum, so their next states agree bitwise.
    return np.cumsum(p, axis=-1)


_OBS_SPACE = spaces.Box(0.0, 1.0, (N_STATES,), np.float32)


class TabularMDPEnv(MetaEnv):
    """A random MDP with 10 states and 5 actions, 10 steps per episode.

    Observation: ``Box(0, 1, (10,))``, the one-hot current state (plus the flattened
    ``mu`` and ``P``, 550 numbers, when ``expose_task=True``). Action: ``Discrete(5)``.
    Start: state 0 in every episode. Reward: ``mu(s, a) + N(0, 1)`` noise for the state
    the action is taken in. Transition: ``s' ~ P(. | s, a)``. Termination: never.
    Truncation: after 10 steps. Task parameters: ``mu`` (10 x 5 reals) and ``P``
    (10 x 5 x 10, rows on the simplex); distribution mu ~ N(1, 1), P rows ~ Dirichlet(1).

    Version history:
        v0: initial release (Duan et al. 2016 distribution).
    """

    task_cls = TabularMDPTask
    _task: TabularMDPTask  # the task in effect (narrows MetaEnv's Task)
    metadata = {"render_modes": []}

    def __init__(self, expose_task: bool = False) -> None:
        self.action_space = spaces.Discrete(N_ACTIONS)
        self._init_task(TabularMDPFamily().default_task(), expose_task, _OBS_SPACE)
        self._state = START_STATE
        self._t = 0
        self._arrays_of: Task | None = None

    def _one_hot(self) -> np.ndarray:
        obs = np.zeros(N_STATES, dtype=np.float32)
        obs[self._state] = 1.0
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._begin_reset(seed)
        task = self._task
        if self._arrays_of is not task:
            self._mu, p = task.arrays()
            self._cum = _cumulative(p)
            self._arrays_of = task
        self._state = START_STATE
        self._t = 0
        return self._observe(self._one_hot()), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = int(action)
        if not 0 <= a < N_ACTIONS:
            raise ValueError(f"action must be in [0, {N_ACTIONS}), got {action!r}")
        s = self._state
        reward = float(self._mu[s, a] + self.streams.normal()[0, 0])
        u = self.streams.uniform()[0, 0]
        self._state = min(int(np.count_nonzero(self._cum[s, a] <= u)), N_STATES - 1)
        self._t += 1
        return self._observe(self._one_hot()), reward, False, self._t >= HORIZON, {}


class TabularMDPVectorEnv(BatchedVectorEnv):
    """``num_envs`` random MDPs stepped by one array operation (see :class:`TabularMDPEnv`)."""

    task_cls = TabularMDPTask
    horizon = HORIZON

    def __init__(self, num_envs: int = 1, expose_task: bool = False) -> None:
        self.state = np.zeros(num_envs, dtype=np.int64)
        self._init_batch(num_envs, TabularMDPFamily().default_task(), expose_task, _OBS_SPACE, spaces.Discrete(N_ACTIONS))
        self._rows = np.arange(self.num_envs)
        self._eye = np.eye(N_STATES, dtype=np.float32)

    def _task_params(self, tasks: list[Task]) -> dict[str, np.ndarray]:
        # Identical task objects (e.g. E episodes of one run) share one conversion.
        cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        mus, cums = [], []
        for t in tasks:
            if id(t) not in cache:
                mu, p = t.arrays()  # type: ignore[attr-defined]
                cache[id(t)] = (mu, _cumulative(p))
            mus.append(cache[id(t)][0])
            cums.append(cache[id(t)][1])
        return {"mu": np.stack(mus), "cum": np.stack(cums)}

    def _reset_envs(self, mask: np.ndarray) -> None:
        self.state[mask] = START_STATE

    def _step_envs(self, actions: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = actions.astype(np.int64).reshape(self.num_envs)
        if (a < 0).any() or (a >= N_ACTIONS).any():
            raise ValueError(f"actions must be in [0, {N_ACTIONS}), got {a[(a < 0) | (a >= N_ACTIONS)][:5]}")
        s = self.state
        # One flat index per sub-env into (num_envs * S * A) rows: cheaper than 3-way fancy indexing.
        flat = (self._rows * N_STATES + s) * N_ACTIONS + a
        reward = self.params["mu"].reshape(-1)[flat] + self.streams.normal(mask)[:, 0]
        u = self.streams.uniform(mask)[:, 0]
        cum = self.params["cum"].reshape(-1, N_STATES)[flat]
        nxt = np.minimum(np.count_nonzero(cum <= u[:, None], axis=1), N_STATES - 1)
        self.state = np.where(mask, nxt, s)
        return reward, np.zeros(self.num_envs, dtype=bool)

    def _raw_obs(self) -> np.ndarray:
        return self._eye[self.state]


def value_iteration(mu: np.ndarray, P: np.ndarray, horizon: int = HORIZON) -> tuple[np.ndarray, np.ndarray]:
    """Finite-horizon optimal values of an MDP with mean rewards ``mu`` (S, A) and transitions ``P`` (S, A, S).

    Returns ``Q`` of shape (H, S, A), where ``Q[t, s, a]`` is the optimal expected return
    from taking ``a`` in ``s`` with ``H - t`` steps left, and ``V`` of shape (H + 1, S) with
    ``V[t] = max_a Q[t]`` and ``V[H] = 0``. The optimal episode return from the start is
    ``V[0, 0]``. Leading batch dimensions are allowed: ``mu`` (..., S, A), ``P`` (..., S, A, S).
    """
    mu = np.asarray(mu, dtype=np.float64)
    P = np.asarray(P, dtype=np.float64)
    if horizon < 1:
        raise ValueError(f"value_iteration: horizon must be >= 1, got {horizon}")
    if P.shape[:-1] != mu.shape or P.shape[-1] != mu.shape[-2]:
        raise ValueError(f"value_iteration: mu must be (..., S, A) and P (..., S, A, S), got {mu.shape} and {P.shape}")
    batch, n_s = mu.shape[:-2], mu.shape[-2]
    Q = np.zeros((horizon, *mu.shape))
    V = np.zeros((horizon + 1, *batch, n_s))
    for t in range(horizon - 1, -1, -1):
        Q[t] = mu + np.einsum("...sat,...t->...sa", P, V[t + 1])
        V[t] = Q[t].max(axis=-1)
    # Put the time axis after the batch axes: (..., H, S, A) and (..., H + 1, S).
    return np.moveaxis(Q, 0, len(batch)), np.moveaxis(V, 0, len(batch))


def policy_evaluation(
    mu: np.ndarray, P: np.ndarray, policy: np.ndarray, horizon: int = HORIZON
) -> np.ndarray:
    """Finite-horizon values ``V`` of shape (..., H + 1, S) of a stationary stochastic ``policy`` (S, A)."""
    mu = np.asarray(mu, dtype=np.float64)
    P = np.asarray(P, dtype=np.float64)
    batch, n_s = mu.shape[:-2], mu.shape[-2]
    V = np.zeros((horizon + 1, *batch, n_s))
    for t in range(horizon - 1, -1, -1):
        q = mu + np.einsum("...sat,...t->...sa", P, V[t + 1])
        V[t] = (q * policy).sum(axis=-1)
    return np.moveaxis(V, 0, len(batch))


class TabularMDPFamily(Family):
    """Random tabular MDPs with 10 states and 5 actions (Duan et al. 2016, RL² section 4.2).

    | task | dynamics and reward | horizon |
    |---|---|---|
    | mu(s,a) ~ N(1,1); P(. given s,a) ~ Dirichlet(1,...,1); S=10, A=5 | every episode starts in state 0; reward ~ N(mu(s,a), 1); observation is the one-hot state | 10 steps |

    References per task: ``random_return`` is the exact expected episode return of the
    uniform policy (policy evaluation; 10 in expectation over tasks) and
    ``oracle_return`` the exact optimal one (finite-horizon value iteration, about 21.83).
    """

    id = "MetaRL/TabularMDP-v0"
    task_cls = TabularMDPTask
    env_cls = TabularMDPEnv
    vector_env_cls = TabularMDPVectorEnv
    horizon = HORIZON
    source = "Duan et al. 2016 (RL^2), section 4.2"

    @property
    def distribution(self) -> GaussianDirichletMDP:
        return GaussianDirichletMDP()

    @staticmethod
    def _stack(tasks: list[TabularMDPTask]) -> tuple[np.ndarray, np.ndarray]:
        arrays = [t.arrays() for t in tasks]
        return np.stack([a[0] for a in arrays]), np.stack([a[1] for a in arrays])

    def random_return(self, tasks: list[TabularMDPTask]) -> np.ndarray:
        """Exact expected return of one episode under the uniform random policy, per task."""
        mu, P = self._stack(tasks)
        uniform = np.full((N_STATES, N_ACTIONS), 1.0 / N_ACTIONS)
        return policy_evaluation(mu, P, uniform)[:, 0, START_STATE]

    def oracle_return(self, tasks: list[TabularMDPTask]) -> np.ndarray:
        """Exact optimal expected return of one episode (finite-horizon value iteration), per task."""
        mu, P = self._stack(tasks)
        return value_iteration(mu, P)[1][:, 0, START_STATE]
