"""The Meta-World benchmarks (ML1 per environment, ML10, ML45), as data.

Goals are Meta-World 3.1.1's own: for each class, 50 ``rand_vec``s drawn the way its
``metaworld._make_tasks`` draws them (NumPy's global generator seeded with the benchmark's
``task_seed``, a fresh env per class, 50 unfrozen resets), with Meta-World's seeds: ML1's
train goals from ``task_seed`` and its test goals from ``task_seed + 1``; ML10's and ML45's
train classes and test classes each from ``task_seed``. The suite draws them itself (not
through Meta-World's benchmark registrations, whose ML1 train split hands out test
tasks), so a test compares them with ``metaworld.ML1/ML10/ML45(seed=...)``. A tier keeps
the first ``train_goals_per_class`` and ``test_goals_per_class`` goals of every class.

Scores count success, not return: an episode scores 1 if ``info["success"]`` was 1 at any
step (Meta-World's metric), so the final score is the success rate after adaptation and
the online score the number of successful episodes in the budget; the records keep the
returns beside them. The protocol follows Meta-World's ``metalearning_evaluation``: 10
adaptation episodes, then 3 evaluation episodes, on every test goal.

:data:`DEFINITIONS` lists ``(benchmark, smoke)`` pairs as :mod:`metarl_bench.benchmark_defs`
does; :mod:`metarl_bench.benchmarks` registers them when ``metaworld`` is installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from metarl_bench.benchmark_spec import Benchmark, Protocol
from metarl_bench.envs.metaworld import ENV_NAMES, ID_PREFIX, SPLITS, MetaWorldTask, available, env_class
from metarl_bench.tasks import Task

N_GOALS = 50  # goals per class (Meta-World's _N_GOALS)
SEED = 0  # Meta-World's benchmark seed for every split (ML1's test goals use SEED + 1)
PROTOCOL = Protocol(budget_episodes=10, runs_per_task=1, final_episodes=3, max_envs=20)
QUICK_TEST_GOALS = {"ML1": 10, "ML10": 2, "ML45": 2}  # test goals per class in the quick tier
FULL_STEPS = 50_000_000  # meta-training budget of the full tier (env steps)
QUICK_STEPS = 2_000_000
SMOKE_STEPS = 20_000


def metaworld_goals(names: tuple[str, ...], seed: int, per_class: int = N_GOALS) -> list[MetaWorldTask]:
    """Meta-World's goals of ``names`` for ``seed`` (its ``_make_tasks``, partially observable):
    the first ``per_class`` of the 50 of every class, in Meta-World's order."""
    state = np.random.get_state()
    np.random.seed(seed)
    tasks: list[MetaWorldTask] = []
    try:
        for name in names:
            env = env_class(name)()
            env._freeze_rand_vec = False
            env._set_task_called = True
            env._set_task_inner()
            vecs = []
            for _ in range(N_GOALS):
                env.reset()
                vecs.append(tuple(float(v) for v in env._last_rand_vec))
            env.close()
            tasks += [MetaWorldTask(env_name=name, rand_vec=v, partially_observable=True) for v in vecs[:per_class]]
    finally:
        np.random.set_state(state)
    return tasks


@dataclass(frozen=True)
class MetaWorldBenchmark(Benchmark):
    """A benchmark of Meta-World's ML1, ML10 or ML45 split (``split``), ML1 of ``env_name``."""

    split: str = "ML1"
    env_name: str = ""
    train_goals_per_class: int = N_GOALS
    test_goals_per_class: int = N_GOALS
    episode_score: ClassVar[str] = "success"

    def __post_init__(self) -> None:
        train, test = self.classes
        want = (len(train) * self.train_goals_per_class, len(test) * self.test_goals_per_class)
        if (self.n_train, self.n_test) != want:
            raise ValueError(f"{self.id}: n_train, n_test must be {want} (classes x goals per class)")
        if not 1 <= self.train_goals_per_class <= N_GOALS or not 1 <= self.test_goals_per_class <= N_GOALS:
            raise ValueError(f"{self.id}: goals per class must lie in [1, {N_GOALS}]")

    @property
    def classes(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The train and test classes (ML1: the one env for both)."""
        if self.split == "ML1":
            return (self.env_name,), (self.env_name,)
        return SPLITS[self.split]["train"], SPLITS[self.split]["test"]

    @cached_property
    def _tasks(self) -> tuple[list[Task], list[Task], list[Task]]:
        train_classes, test_classes = self.classes
        test_seed = self.task_seed + 1 if self.split == "ML1" else self.task_seed
        train: list[Task] = list(metaworld_goals(train_classes, self.task_seed, self.train_goals_per_class))
        test: list[Task] = list(metaworld_goals(test_classes, test_seed, self.test_goals_per_class))
        overlap = set(train) & set(test)
        if overlap:
            raise RuntimeError(f"{self.id}: train and test task lists overlap in {len(overlap)} tasks")
        return train, test, []


def _benchmarks(split: str, env_name: str = "") -> list[tuple[Benchmark, dict[str, Any] | None]]:
    key = f"ML1-{env_name}" if split == "ML1" else split
    family_id = f"{ID_PREFIX}{env_name if split == 'ML1' else split}-v0"
    n_train_classes = 1 if split == "ML1" else len(SPLITS[split]["train"])
    n_test_classes = 1 if split == "ML1" else len(SPLITS[split]["test"])
    what = f"Meta-World {split} {env_name}".rstrip()

    def make(tier: str, suffix: str, train_goals: int, test_goals: int, steps: int, **kw: Any) -> MetaWorldBenchmark:
        return MetaWorldBenchmark(
            id=f"{ID_PREFIX}{key}{suffix}-v0",
            family_id=family_id,
            protocol=kw.pop("protocol", PROTOCOL),
            n_train=n_train_classes * train_goals,
            n_test=n_test_classes * test_goals,
            task_seed=SEED,
            meta_train_steps=steps,
            headline="final",
            tier=tier,
            split=split,
            env_name=env_name,
            train_goals_per_class=train_goals,
            test_goals_per_class=test_goals,
            description=(
                f"{what}: success rate after 10 adaptation episodes ({n_test_classes * test_goals} test goals of "
                f"{n_test_classes} class{'es' if n_test_classes > 1 else ''}, Meta-World's)"
            ),
        )

    full = make("full", "", N_GOALS, N_GOALS, FULL_STEPS)
    smoke = {
        "n_train": n_train_classes * 2, "n_test": n_test_classes * 2, "train_goals_per_class": 2,
        "test_goals_per_class": 2, "meta_train_steps": SMOKE_STEPS,
        "protocol": {"budget_episodes": 2, "final_episodes": 1},
    }  # fmt: skip
    quick = make("quick", "-quick", N_GOALS, QUICK_TEST_GOALS[split], QUICK_STEPS)
    return [(full, smoke), (quick, None)]


def definitions() -> list[tuple[Benchmark, dict[str, Any] | None]]:
    """Every Meta-World benchmark with its smoke-tier fields; none if ``metaworld`` is not installed."""
    if not available():
        return []
    out: list[tuple[Benchmark, dict[str, Any] | None]] = []
    for name in ENV_NAMES:
        out += _benchmarks("ML1", name)
    for split in SPLITS:
        out += _benchmarks(split)
    return out

