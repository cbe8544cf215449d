"""Benchmarks without analytic references (the dynamics families) are normalised by the
records of `random` and `task-ppo`: per test task where task-ppo beats random on every task."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from metarl_bench import stats
from metarl_bench.recording import build_record


def _bench(tasks: int) -> SimpleNamespace:
    none = {"random": {"online": None, "final": None}, "oracle": {"online": None, "final": None}}
    return SimpleNamespace(
        id="MetaRL/NoRefs-v0", version=0, task_hash="h", tier="smoke", headline="final", lower_is_better=False,
        test_tasks=list(range(tasks)), references=none, task_references=None,
        protocol=SimpleNamespace(budget_episodes=1), summary=lambda: {"protocol": {"budget_episodes": 1}},
    )


def _record(bench: SimpleNamespace, final: np.ndarray, seed: int = 0, name: str = "a"):
    """A record whose final score of (task i, run j) is ``final[i, j]``."""
    final = np.asarray(final, dtype=float)
    returns = np.stack([np.zeros_like(final), final], axis=2)
    ag = SimpleNamespace(name=name, resolved_config=lambda: {})
    return build_record(ag, bench, seed, returns, np.array([0.0, 1.0]), ["budget", "final"], {}, {})


def test_per_task_references_from_the_random_and_task_ppo_records():
    bench = _bench(2)
    group = {
        "random": [_record(bench, [[10, 12], [0, 2]], 0, "random"), _record(bench, [[14, 16], [4, 6]], 1, "random")],
        "task-ppo": [_record(bench, [[110, 110], [40, 42]], 0, "task-ppo")],
    }
    # random's per-task means over seeds and runs: 13 and 3; task-ppo's: 110 and 41
    agent = [_record(bench, [[61.5, 61.5], [22, 22]])]
    agg = stats.aggregate(agent, bench, references=group)
    assert agg.normalization == "per-task-records"
    np.testing.assert_allclose(agg.scores, [[(61.5 - 13) / 97, (22 - 3) / 38]])  # 0.5 on each task
    assert stats.aggregate(group["task-ppo"], bench, references=group).scores.mean() == pytest.approx(1.0)
    # without the group, or without either reference agent, the scores stay raw
    assert stats.aggregate(agent, bench).normalization is None
    assert stats.aggregate(agent, bench, references={"random": group["random"]}).normalization is None


def test_benchmark_level_when_task_ppo_loses_a_task_and_none_when_it_loses_on_average():
    bench = _bench(2)
    rand = [_record(bench, [[10, 10], [50, 50]], 0, "random")]
    agent = [_record(bench, [[30, 30], [30, 30]])]
    better_on_average = {"random": rand, "task-ppo": [_record(bench, [[90, 90], [40, 40]], 0, "task-ppo")]}
    agg = stats.aggregate(agent, bench, references=better_on_average)
    assert agg.normalization == "benchmark-records"  # task-ppo < random on task 1: per-task would divide by < 0
    np.testing.assert_allclose(agg.scores, [[(30 - 30) / 35, (30 - 30) / 35]])
    worse = {"random": rand, "task-ppo": [_record(bench, [[20, 20], [30, 30]], 0, "task-ppo")]}
    assert stats.aggregate(agent, bench, references=worse).normalization is None


def test_records_of_another_task_list_do_not_count():
    bench = _bench(2)
    group = {"random": [_record(bench, [[0, 0], [0, 0]], 0, "random")],
             "task-ppo": [_record(bench, [[10, 10], [10, 10]], 0, "task-ppo")]}
    stale = _bench(2)
    stale.task_hash = "other"
    assert stats.record_normalizer(group, stale, "final") is None
    assert stats.record_normalizer(group, bench, "final") is not None
