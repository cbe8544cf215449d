"""The suite's benchmark definitions (quick tier, each with a smoke-tier variant).

Sizes are chosen so that the standard error of a headline score is small against the
gaps between the classical references (e.g. bandits: 1,000 test tasks x 10 runs).
"""

from __future__ import annotations

from metarl_bench.benchmarks import Benchmark, Protocol, register_benchmark

SMOKE = {"n_train": 64, "n_test": 8, "meta_train_steps": 200_000}


def _smoke(**protocol: int) -> dict:
    return {**SMOKE, "protocol": {"runs_per_task": 2, **protocol}}


# --- Bernoulli bandits (Duan et al. 2016, Table 1): online score = total reward of the trial
for k in (5, 10):
    for n in (10, 100):
        register_benchmark(
            Benchmark(
                id=f"MetaRL/Bandit-k{k}-n{n}-v0",
                family_id="MetaRL/Bandit-v0",
                family_kwargs={"k": k},
                protocol=Protocol(budget_episodes=n, runs_per_task=10 if n == 10 else 4, final_episodes=10),
                n_train=10_000,
                n_test=1_000,
                task_seed=1000 + 10 * k + n,
                meta_train_steps=200_000_000,
                headline="online",
                description=f"{k}-armed Bernoulli bandit, trials of {n} pulls (RL^2 Table 1)",
            ),
            smoke=_smoke(),
        )
