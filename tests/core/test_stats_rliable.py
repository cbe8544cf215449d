"""The statistics against rliable's definitions, on (seeds, tasks) matrices small enough to
work out by hand, and the record -> (seeds, tasks) matrix layout."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy.stats import mannwhitneyu, trim_mean

from metarl_bench import stats
from metarl_bench.recording import build_record

# 3 seeds x 2 tasks
M = np.array([[1.0, 10.0], [2.0, 40.0], [3.0, 20.0]])


def test_iqm_is_rliables_trim_mean_over_seeds_x_tasks():
    # flattened 1 2 3 10 20 40; N = 6, int(0.25 * 6) = 1 cut from each end -> mean(2, 3, 10, 20) = 8.75
    assert stats.iqm(M) == pytest.approx(8.75)
    assert stats.iqm(M) == pytest.approx(trim_mean(M, 0.25, axis=None))


def test_probability_of_improvement_by_hand():
    x = np.array([[1.0, 5.0], [3.0, 5.0]])  # 2 seeds
    y = np.array([[2.0, 5.0], [2.0, 4.0], [0.0, 6.0]])  # 3 seeds
    # task 0: x {1, 3} vs y {2, 2, 0}: pairs x > y: 1>0; 3>2, 3>2, 3>0 -> 4 of 6, no ties -> 4/6
    # task 1: x {5, 5} vs y {5, 4, 6}: each x: > 4 (1), = 5 (0.5) -> 1.5 per x -> 3 of 6 -> 3/6
    # rliable: mean over tasks of U / (n m) = (4/6 + 3/6) / 2 = 7/12
    assert stats.probability_of_improvement(x, y) == pytest.approx(7 / 12)
    u = mannwhitneyu(x, y, axis=0).statistic / (2 * 3)
    assert stats.probability_of_improvement(x, y) == pytest.approx(float(u.mean()))


def test_performance_profile_by_hand():
    # fraction of the 6 seed x task scores strictly above tau: tau 2 -> {3, 10, 20, 40} = 4/6;
    # tau 10 -> {20, 40} = 2/6; tau 0 -> 6/6; tau 40 -> 0
    np.testing.assert_allclose(stats.performance_profile(M, [2.0, 10.0, 0.0, 40.0]), [4 / 6, 2 / 6, 1.0, 0.0])
    # lower is better: strictly below tau 10 -> {1, 2, 3} = 3/6
    np.testing.assert_allclose(stats.performance_profile(M, [10.0], lower_is_better=True), [0.5])


def test_stratified_bootstrap_resamples_seeds_within_each_task():
    # Task 0's seeds are {0, 1}, task 1's {5, 5}. Resampling seeds within each task: task 1 always
    # gives 5, 5; task 0 gives 0,0 / mixed / 1,1 with probabilities 1/4, 1/2, 1/4, so the mean of the
    # 4 entries is 10/4, 11/4 or 12/4 and the 95% interval is [2.5, 3.0]. Resampling whole rows
    # (seeds without strata) would give the same here; pooling tasks would not keep task 1 at 5.
    m = np.array([[0.0, 5.0], [1.0, 5.0]])
    ci = stats.stratified_bootstrap_ci(lambda s: s.mean(axis=(-2, -1)), [m], reps=4000)
    assert (ci.point, ci.low, ci.high) == (2.75, 2.5, 3.0)
    # Stratified by task: a task whose seeds agree contributes no spread at all.
    flat = np.array([[0.0, 10.0], [0.0, 10.0], [0.0, 10.0]])
    assert stats.iqm_ci(flat, reps=300) == (5.0, 5.0, 5.0)
    # Independently within each task: seeds {0, 1} on both tasks. Each task's two draws sum to
    # 0, 1, 2 (prob 1/4, 1/2, 1/4) independently, so the mean of the 4 entries is k/4 with
    # k ~ Binomial(4, 1/2): P(0) = 1/16, P(<= 1/4) = 5/16, P(<= 1/2) = 11/16, P(<= 3/4) = 15/16.
    # The 20% and 80% percentiles are 1/4 and 3/4. Drawing one set of seeds for all tasks
    # (whole rows) would give 0, 1/2, 1 with prob 1/4, 1/2, 1/4: percentiles 0 and 1.
    two = np.array([[0.0, 0.0], [1.0, 1.0]])
    for ci in (stats.stratified_bootstrap_ci(lambda s: s.mean(axis=(-2, -1)), [two], reps=4000, alpha=0.4),
               stats.performance_profile_ci(two, [0.5], reps=4000, alpha=0.4)):
        np.testing.assert_allclose(np.ravel([ci.low, ci.high]), [0.25, 0.75])


def test_counts_based_bootstrap_equals_resampling_the_matrices_draw_for_draw():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 6, size=(3, 9)).astype(float)  # ties on purpose
    y = rng.integers(0, 6, size=(4, 9)).astype(float)
    taus = np.array([0.5, 2.0, 2.5, 5.0])
    pairs = [
        (stats.iqm_ci(x, reps=400, seed=2), stats.stratified_bootstrap_ci(stats.iqm, [x], reps=400, seed=2)),
        (stats.iqm_difference_ci(x, y, reps=400, seed=2),
         stats.stratified_bootstrap_ci(lambda a, b: stats.iqm(a) - stats.iqm(b), [x, y], reps=400, seed=2)),
        (stats.probability_of_improvement_ci(x, y, reps=400, seed=2),
         stats.stratified_bootstrap_ci(stats.probability_of_improvement, [x, y], reps=400, seed=2)),
    ]
    for lower in (False, True):
        pairs.append((
            stats.performance_profile_ci(x, taus, lower, reps=400, seed=2),
            stats.stratified_bootstrap_ci(lambda a, lo=lower: stats.performance_profile(a, taus, lo), [x], reps=400, seed=2),
        ))
    for fast, direct in pairs:
        for a, b in zip(fast, direct):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_mean_ci_carries_the_seed_to_seed_spread():
    # Two seeds that disagree, tasks that agree within a seed: seed 0 scores 0 on both tasks,
    # seed 1 scores 1. Resampling seeds: both 0 (1/4), one each (1/2), both 1 (1/4) -> mean 0, 0.5
    # or 1, so the 95% interval is [0, 1]. An interval over tasks alone would be [0.5, 0.5].
    m = np.array([[0.0, 0.0], [1.0, 1.0]])
    assert stats.mean_ci(m, reps=4000) == (0.5, 0.0, 1.0)
    # One seed: only the tasks are resampled; tasks {0, 2}: means 0, 1, 2 -> [0, 2]
    assert stats.mean_ci(np.array([[0.0, 2.0]]), reps=4000) == (1.0, 0.0, 2.0)


# -- the record -> (seeds, tasks) layout ---------------------------------------------------------


def _bench(tasks: int, task_refs: dict | None = None, refs: dict | None = None) -> SimpleNamespace:
    none = {"random": {"online": None, "final": None}, "oracle": {"online": None, "final": None}}
    return SimpleNamespace(
        id="MetaRL/Layout-v0", version=0, task_hash="h", tier="smoke", headline="final", lower_is_better=False,
        test_tasks=list(range(tasks)), references=refs or none, task_references=task_refs,
        protocol=SimpleNamespace(budget_episodes=1), summary=lambda: {"protocol": {"budget_episodes": 1}},
    )


def _record(bench: SimpleNamespace, final: np.ndarray, seed: int = 0):
    """A record whose final score of (task i, run j) is ``final[i, j]`` (one budget, one final episode)."""
    returns = np.stack([np.zeros_like(final), final], axis=2)
    ag = SimpleNamespace(name="a", resolved_config=lambda: {})
    return build_record(ag, bench, seed, returns, np.array([0.0, 1.0]), ["budget", "final"], {}, {})


def test_record_to_seed_task_matrix_layout():
    # 3 tasks x 2 runs, every value different: task i, run j scores 10 i + j.
    final = np.array([[0.0, 1.0], [10.0, 11.0], [20.0, 21.0]])
    bench = _bench(3)
    r0, r1 = _record(bench, final, seed=0), _record(bench, final + 100.0, seed=1)
    # rliable's layout of one seed: (runs, tasks), row j = run j over the tasks
    np.testing.assert_array_equal(r0.score_matrix("final"), [[0.0, 10.0, 20.0], [1.0, 11.0, 21.0]])
    # (seeds, tasks): each seed's two runs averaged per task
    np.testing.assert_array_equal(stats.seed_task_matrix([r0, r1], "final"), [[0.5, 10.5, 20.5], [100.5, 110.5, 120.5]])
    agg = stats.aggregate([r1, r0], bench, normalized=False)
    np.testing.assert_array_equal(agg.scores, [[0.5, 10.5, 20.5], [100.5, 110.5, 120.5]])


def test_per_task_normalisation_uses_each_tasks_own_references():
    final = np.array([[0.0, 1.0], [10.0, 11.0], [20.0, 21.0]])  # per-task means 0.5, 10.5, 20.5
    task_refs = {"random": np.array([0.5, 0.5, 0.5]), "oracle": np.array([1.5, 20.5, 40.5])}
    bench = _bench(3, task_refs=task_refs)
    agg = stats.aggregate([_record(bench, final)], bench)
    # (0.5 - 0.5) / 1 = 0; (10.5 - 0.5) / 20 = 0.5; (20.5 - 0.5) / 40 = 0.5
    assert agg.normalization == "per-task"
    np.testing.assert_allclose(agg.scores, [[0.0, 0.5, 0.5]])
    # the record's own normalised score is the same per-task normalisation, averaged over tasks
    assert _record(bench, final).scores["normalized_final"]["value"] == pytest.approx(1.0 / 3.0)
    assert _record(bench, final).scores["normalized_final"]["normalization"] == "per-task"
