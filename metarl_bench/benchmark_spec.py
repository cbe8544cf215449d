"""What a benchmark is: a frozen declaration of a family, fixed task lists and a protocol.

A benchmark fixes: the family id and its kwargs; train and test task
lists generated from a recorded seed (hashed, disjoint), optionally an out-of-distribution
test list; the adaptation protocol (experience budget B in episodes per task, independent
runs R per task, final evaluation episodes V); the meta-training budget in env steps; the
headline metric; and the random and oracle reference scores used for normalisation.
Every record names the benchmark id, its version and the task-list hash.

Tiers: ``smoke`` (seconds, for tests: ids end in ``-smoke-vN``), ``quick`` (CPU minutes),
``full`` (hours).

This module holds the two dataclasses and nothing else, so that the suite's definitions
(:mod:`metarl_bench.benchmark_defs`) are plain data that import no registry; the registry
(:mod:`metarl_bench.benchmarks`) imports both and registers the definitions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from metarl_bench.family import Family, family
from metarl_bench.tasks import Task


@dataclass(frozen=True)
class Protocol:
    """How each test task is evaluated: the experience budget, the runs per task and the final
    evaluation episodes (see :mod:`metarl_bench.harness`)."""

    budget_episodes: int  # B: episodes of experience per adaptation run
    runs_per_task: int  # R: independent adaptation runs per test task
    final_episodes: int  # V: evaluation episodes after the budget, no adapt() between
    max_envs: int = 16384  # sub-envs per harness batch (test tasks are chunked to fit)
    # supervised track: K support points, inner steps 0..inner_steps, query points
    shots: int | None = None
    inner_steps: int | None = None
    query_points: int | None = None

    def validate(self, where: str) -> None:
        for name in ("budget_episodes", "runs_per_task"):
            if getattr(self, name) < 1:
                raise ValueError(f"{where}: protocol.{name} must be >= 1, got {getattr(self, name)}")
        if self.final_episodes < 0:
            raise ValueError(f"{where}: protocol.final_episodes must be >= 0")


@dataclass(frozen=True)
class Benchmark:
    id: str
    family_id: str
    protocol: Protocol
    n_train: int
    n_test: int
    task_seed: int
    meta_train_steps: int
    headline: str  # "online" or "final"
    tier: str = "quick"
    family_kwargs: dict[str, Any] = field(default_factory=dict)
    n_ood: int = 0
    ood_kwargs: dict[str, Any] | None = None  # family kwargs of the out-of-distribution split
    lower_is_better: bool = False
    description: str = ""
    # Fixed references where known exactly (else computed from the family on the test tasks)
    reference_overrides: dict[str, dict[str, float]] = field(default_factory=dict)
    # A benchmark over data that is not a registered family (an image folder): builds the
    # family-like object (``kind``, ``id``, ``horizon``, ``split_tasks``) instead of
    # looking ``family_id`` up in the registry. Such benchmarks are never registered.
    family_factory: Callable[[], Any] | None = field(default=None, compare=False, repr=False)
    # What an episode scores in records: its "return", or "success" (1 if info["success"] was 1
    # at any step, else 0; the harness then keeps the returns beside it). Meta-World's is "success".
    episode_score: ClassVar[str] = "return"

    @property
    def version(self) -> int:
        m = re.search(r"-v(\d+)$", self.id)
        return int(m.group(1)) if m else 0

    @cached_property
    def family(self) -> Family:
        if self.family_factory is not None:
            return self.family_factory()  # type: ignore[no-any-return]
        return family(self.family_id, **self.family_kwargs)

    @cached_property
    def _tasks(self) -> tuple[list[Task], list[Task], list[Task]]:
        ss = np.random.SeedSequence(self.task_seed)
        g_train, g_test, g_ood = (np.random.default_rng(s) for s in ss.spawn(3))
        split = getattr(self.family, "split_tasks", None)
        if split is not None:  # train and test lists drawn together (e.g. from disjoint class sets)
            train, test = split(self.n_train, self.n_test, g_train, g_test)
        else:
            train = self.family.sample_tasks(self.n_train, g_train)
            test = self.family.sample_tasks(self.n_test, g_test)
        ood: list[Task] = []
        if self.n_ood:
            ood = family(self.family_id, **{**self.family_kwargs, **(self.ood_kwargs or {})}).sample_tasks(
                self.n_ood, g_ood
            )
        overlap = set(train) & set(test)
        # A family with a handful of tasks (forward/backward) tests adaptation to which task
        # it faces, not generalisation to unseen ones: its train and test lists share tasks.
        if overlap and not getattr(self.family, "finite_task_set", False):  # family-like objects may lack it
            raise RuntimeError(f"{self.id}: train and test task lists overlap in {len(overlap)} tasks")
        return train, test, ood

    @property
    def train_tasks(self) -> list[Task]:
        return self._tasks[0]

    @property
    def test_tasks(self) -> list[Task]:
        return self._tasks[1]

    @property
    def ood_tasks(self) -> list[Task]:
        return self._tasks[2]

    @cached_property
    def task_hash(self) -> str:
        """sha256 over the canonical JSON of the train, test and OOD task lists."""
        h = hashlib.sha256()
        for name, tasks in (("train", self.train_tasks), ("test", self.test_tasks), ("ood", self.ood_tasks)):
            h.update(name.encode())
            for t in tasks:
                h.update(json.dumps(_task_json(t), sort_keys=True).encode())
        return h.hexdigest()[:16]

    @cached_property
    def _family_references(self) -> dict[str, np.ndarray | None]:
        """The family's per-test-task random and oracle returns of one episode (or None)."""
        out: dict[str, np.ndarray | None] = {}
        for name in ("random", "oracle"):
            fn = getattr(self.family, f"{name}_return", None)
            per_task = fn(self.test_tasks) if fn is not None else None
            out[name] = None if per_task is None else np.asarray(per_task, dtype=np.float64).reshape(-1)
        return out

    @cached_property
    def references(self) -> dict[str, dict[str, float | None]]:
        """``{"random"|"oracle": {"online": ..., "final": ...}}`` on the test tasks: the
        benchmark-level references (the mean over test tasks of the per-task values, or the
        fixed ``reference_overrides``)."""
        out: dict[str, dict[str, float | None]] = {}
        budget = self.protocol.budget_episodes
        for name in ("random", "oracle"):
            if name in self.reference_overrides:
                out[name] = dict(self.reference_overrides[name])
                continue
            per_task = self._family_references[name]
            if per_task is None:
                out[name] = {"online": None, "final": None}
            else:
                mean = float(np.mean(per_task))
                out[name] = {"online": budget * mean, "final": mean}
        return out

    @cached_property
    def task_references(self) -> dict[str, np.ndarray] | None:
        """Per test task, the random and oracle returns of one episode, ``{"random"|"oracle":
        (n_test,) array}``, where the family computes both for every test task (bandits:
        the mean and the best arm mean; tabular MDPs: exact policy evaluation and value
        iteration; navigation: a fixed-seed Monte Carlo estimate of the random policy and
        the straight-line return) and no fixed references override them; else None.

        Scores normalised by these, task by task, put the oracle at 1 on every task in
        expectation (the online score's references are ``budget_episodes`` times these).
        """
        if self.reference_overrides:
            return None
        rand, orac = self._family_references["random"], self._family_references["oracle"]
        if rand is None or orac is None or rand.shape != (self.n_test,) or orac.shape != rand.shape:
            return None
        if not (np.all(np.isfinite(rand)) and np.all(np.isfinite(orac))) or np.any(rand == orac):
            return None
        return {"random": rand, "oracle": orac}

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "version": self.version,
            "tier": self.tier,
            "family": self.family_id,
            "family_kwargs": self.family_kwargs,
            "task_hash": self.task_hash,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "n_ood": self.n_ood,
            "protocol": dataclasses.asdict(self.protocol),
            "meta_train_steps": self.meta_train_steps,
            "headline": self.headline,
            "lower_is_better": self.lower_is_better,
        }


def _task_json(t: Task) -> Any:
    """What ``json.dumps`` hashes for task ``t``: ``t.to_dict()``. A task that keeps the base
    ``to_dict`` is dumped from its frozen fields directly (nested tuples dump as the same
    JSON arrays as the lists ``to_dict`` makes, so the bytes are identical), skipping the
    conversion that dominates hashing large task lists."""
    if type(t).to_dict is Task.to_dict:
        return {f.name: getattr(t, f.name) for f in dataclasses.fields(t)}
    return t.to_dict()
