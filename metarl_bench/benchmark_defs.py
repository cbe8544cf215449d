"""The suite's benchmark definitions (quick tier, each with a smoke-tier variant), as data.

:data:`DEFINITIONS` lists ``(benchmark, smoke)`` pairs in registration order;
:mod:`metarl_bench.benchmarks` registers each with ``register_benchmark(benchmark,
smoke=smoke)`` on its first lookup. This module imports no registry, only the two
dataclasses of :mod:`metarl_bench.benchmark_spec`.

Sizes are chosen so that the standard error of a headline score is small against the
gaps between the classical references (e.g. bandits: 1,000 test tasks x 10 runs).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metarl_bench.benchmark_spec import Benchmark, Protocol

SMOKE = {"n_train": 64, "n_test": 8, "meta_train_steps": 200_000}


def _smoke(**protocol: int) -> dict[str, Any]:
    return {**SMOKE, "protocol": {"runs_per_task": 2, **protocol}}


# (benchmark, the fields its smoke-tier variant replaces, as register_benchmark's ``smoke``)
DEFINITIONS: list[tuple[Benchmark, dict[str, Any] | None]] = []


def _define(b: Benchmark, smoke: dict[str, Any] | None = None) -> None:
    DEFINITIONS.append((b, smoke))


# --- Bernoulli bandits (Duan et al. 2016, Table 1): online score = total reward of the trial
for k in (5, 10):
    for n in (10, 100):
        _define(
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


# --- Tabular MDPs (Duan et al. 2016, Table 2): online score = total reward over n episodes
for n in (10, 25):
    _define(
        Benchmark(
            id=f"MetaRL/TabularMDP-n{n}-v0",
            family_id="MetaRL/TabularMDP-v0",
            protocol=Protocol(budget_episodes=n, runs_per_task=4, final_episodes=4),
            n_train=2_000,
            n_test=500,
            task_seed=2000 + n,
            meta_train_steps=400_000_000,
            headline="online",
            description=f"10-state 5-action random MDPs, {n} episodes of 10 steps (RL^2 Table 2)",
        ),
        smoke=_smoke(),
    )

# --- 2-D navigation (Finn et al. 2017): final score = return after adaptation
_define(
    Benchmark(
        id="MetaRL/Navigation2D-v0",
        family_id="MetaRL/Navigation2D-v0",
        protocol=Protocol(budget_episodes=60, runs_per_task=4, final_episodes=20),
        n_train=2_000,
        n_test=100,
        task_seed=3000,
        meta_train_steps=100_000_000,
        headline="final",
        description="point navigation to a hidden goal in [-0.5,0.5]^2, 60 episodes to adapt (MAML section 5.3)",
    ),
    smoke=_smoke(budget_episodes=20, final_episodes=20),
)

# --- dynamics-randomised classic control: final score after a budget of episodes
for name, budget in (("CartPoleDynamics", 20), ("PendulumDynamics", 20)):
    _define(
        Benchmark(
            id=f"MetaRL/{name}-v0",
            family_id=f"MetaRL/{name}-v0",
            protocol=Protocol(budget_episodes=budget, runs_per_task=2, final_episodes=10),
            n_train=1_000,
            n_test=50,
            task_seed=4000 + len(name),
            meta_train_steps=50_000_000,
            headline="final",
            description=f"{name}: pole/pendulum length and mass scaled log-uniformly in [0.5, 2]",
        ),
        smoke=_smoke(budget_episodes=2, final_episodes=2),
    )


# --- sinusoid regression (Finn et al. 2017, section 5.1): supervised few-shot, query MSE
QUERY_POINTS = 100  # fixed query grid over [-5, 5]
INNER_STEPS = 10  # the curve's axis: inner gradient steps 0..10


def query_grid(points: int = QUERY_POINTS) -> np.ndarray:
    """The fixed query inputs of the sinusoid benchmarks: ``points`` evenly spaced over [-5, 5]."""
    return np.linspace(-5.0, 5.0, points)


def sinusoid_references(inner_steps: int = INNER_STEPS, points: int = QUERY_POINTS) -> dict[str, dict[str, float]]:
    """Random = the prior-mean predictor's exact expected MSE on the query grid; oracle = 0."""
    from metarl_bench.envs.sinusoid import SinusoidFamily

    floor = SinusoidFamily.prior_mean_mse(query_grid(points))
    return {
        "random": {"online": inner_steps * floor, "final": floor},
        "oracle": {"online": 0.0, "final": 0.0},
    }


# ``MetaRL/Sinusoid-K{5,10,20}-v0`` (and their smoke variants)
for k in (5, 10, 20):
    _define(
        Benchmark(
            id=f"MetaRL/Sinusoid-K{k}-v0",
            family_id="MetaRL/Sinusoid-v0",
            protocol=Protocol(
                budget_episodes=INNER_STEPS,
                runs_per_task=2,
                final_episodes=1,
                shots=k,
                inner_steps=INNER_STEPS,
                query_points=QUERY_POINTS,
            ),
            n_train=20_000,
            n_test=1_000,
            task_seed=5000 + k,
            meta_train_steps=1_000_000_000,  # labelled examples
            headline="final",
            lower_is_better=True,
            reference_overrides=sinusoid_references(),
            description=(
                f"sinusoid regression, {k} support points, query MSE on a 100-point grid over [-5,5] after "
                f"0..10 inner gradient steps (MAML section 5.1)"
            ),
        ),
        smoke={"n_train": 1_000, "n_test": 50, "meta_train_steps": 20_000_000},
    )



# --- MuJoCo locomotion (Finn et al. 2017; ProMP, PEARL, VariBAD): 200-step episodes -----
# Quick tier: 10 test tasks x 2 runs, 4 adaptation episodes (2 stages of 2) and 2 final
# episodes, online headline (the return summed over the 4 adaptation episodes, as RL^2
# and VariBAD score the first episodes of a task); evaluating one seed costs 10 x 2 x 6 x 200 = 24,000 env steps (1-4 s of physics
# on 2 cores). Full tier: the literature's sizes (pytorch-maml-rl's halfcheetah-vel.yaml:
# 40 tasks per meta-batch x 20 episodes, 500 meta-batches; 0 to 3 inner steps of 20
# episodes each), final headline as MAML reports it. Both records hold every episode's
# return, so both headline kinds (`online`, `final`) are computed for every record.
LOCOMOTION = (
    ("HalfCheetahVel", "HalfCheetah, target velocity ~ U[0, 3]"),
    ("HalfCheetahDir", "HalfCheetah, forward or backward"),
    ("AntDir", "Ant, forward or backward along x"),
    ("AntGoal", "Ant, goal uniform in the disc of radius 3"),
    ("Walker2DParams", "Walker2d, body mass/inertia/damping/friction log-scaled (rand_param_envs)"),
    ("HopperParams", "Hopper, body mass/inertia/damping/friction log-scaled (rand_param_envs)"),
)
for i, (name, what) in enumerate(LOCOMOTION):
    _define(
        Benchmark(
            id=f"MetaRL/{name}-v0",
            family_id=f"MetaRL/{name}-v0",
            protocol=Protocol(budget_episodes=4, runs_per_task=2, final_episodes=2, max_envs=256),
            n_train=200,
            n_test=10,
            task_seed=6000 + i,
            meta_train_steps=2_000_000,
            headline="online",
            description=f"{what}; quick tier: 10 test tasks, 4 + 2 episodes of 200 steps",
        ),
        smoke={**_smoke(budget_episodes=2, final_episodes=1), "n_train": 16, "n_test": 2, "meta_train_steps": 60_000},
    )
    _define(
        Benchmark(
            id=f"MetaRL/{name}-full-v0",
            family_id=f"MetaRL/{name}-v0",
            protocol=Protocol(budget_episodes=60, runs_per_task=2, final_episodes=20, max_envs=256),
            n_train=2_000,
            n_test=40,
            task_seed=6100 + i,
            meta_train_steps=160_000_000,  # 500 meta-batches x 40 tasks x 20 episodes x 2 (before/after) x 200 steps
            headline="final",
            tier="full",
            description=f"{what}; full tier (pytorch-maml-rl sizes): 40 test tasks, 60 + 20 episodes",
        ),
    )
