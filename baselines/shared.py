"""Plumbing shared by learners of several paradigms (classical references, gradient-based and
in-context meta-RL) and by the speed benchmarks: uniform action sampling, the per-sub-env
episode clock, generalised advantage estimation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from gymnasium import spaces

if TYPE_CHECKING:
    import torch

    from metarl_bench.benchmarks import Benchmark

# gae runs unchanged on numpy arrays (the speed benchmarks, tests) and torch tensors (the
# learners); the result has the type of the inputs.
ArrayT = TypeVar("ArrayT", np.ndarray, "torch.Tensor")


def sample_actions(space: spaces.Space, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` uniform actions from a single-env action space, drawn from ``rng``."""
    if isinstance(space, spaces.Discrete):
        return rng.integers(space.start, space.start + space.n, size=n)
    if isinstance(space, spaces.Box):
        low = np.broadcast_to(space.low, space.shape)
        high = np.broadcast_to(space.high, space.shape)
        return rng.uniform(low, high, size=(n, *space.shape)).astype(space.dtype)
    raise TypeError(f"unsupported action space {space}")


def fixed_horizon(benchmark: Benchmark, agent: str) -> int:
    """The episode length ``benchmark``'s family fixes (what ``agent`` plans or batches by);
    a ``ValueError`` naming both when the family sets none."""
    horizon = benchmark.family.horizon
    if horizon is None:
        raise ValueError(
            f"{agent} on {benchmark.id}: the family has no fixed horizon (episode length), which {agent} needs; "
            "run it on a family that sets horizon"
        )
    return int(horizon)


def advance_episode_clock(t: np.ndarray, active: np.ndarray, done: np.ndarray) -> np.ndarray:
    """Time step within the episode after one transition, per sub-env.

    Sub-envs still in their episode count up; those that just finished restart at 0;
    inactive ones (already finished this stage) keep their value.
    """
    return np.where(active & ~done, t + 1, np.where(active, 0, t))


def gae(
    rewards: ArrayT, values: ArrayT, last_values: ArrayT, dones: ArrayT, gamma: float, lam: float
) -> tuple[ArrayT, ArrayT]:
    """Generalised advantage estimation (Schulman et al. 2016) on time-major ``(T, N)`` arrays.

    ``dones[t]`` (0/1) ends the episode after step ``t``: nothing is bootstrapped across
    it (the finite-horizon convention of pytorch-maml-rl and RL^2, whose episodes end at
    the task's horizon). ``last_values`` bootstraps a rollout cut before its episode
    ended. Returns ``(advantages, returns)``; works on numpy arrays and torch tensors.
    """
    T = rewards.shape[0]
    adv = rewards * 0
    last = last_values * 0
    for t in reversed(range(T)):
        next_v = last_values if t == T - 1 else values[t + 1]
        nonterminal = 1 - dones[t]
        delta = rewards[t] + gamma * next_v * nonterminal - values[t]
        last = delta + gamma * lam * nonterminal * last
        adv[t] = last
    return adv, adv + values


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads, restoring the previous count after.

    Why: the learners' networks are small, and on a shared machine OpenMP threads that wait
    on busy cores cost far more than they save (10x slower with 2 threads on a loaded 2-core
    box, measured).
    """
    import torch  # here, so that the classical references never load torch

    before = torch.get_num_threads()
    if n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
