"""Statistics on tiny hand-made matrices with exact answers (layout: (runs, tasks), runs = seeds)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from metarl_bench import stats
from metarl_bench.recording import build_record
from metarl_bench.results import Record


def fake_bench(
    bench_id: str = "MetaRL/Fake-v0",
    task_hash: str = "h0",
    headline: str = "online",
    lower_is_better: bool = False,
    refs: dict | None = None,
    budget: int = 2,
    tasks: int = 2,
    task_refs: dict | None = None,
) -> SimpleNamespace:
    """A stand-in for a registered benchmark: what the harness and the statistics read."""
    return SimpleNamespace(
        id=bench_id, version=0, task_hash=task_hash, tier="smoke", headline=headline,
        lower_is_better=lower_is_better, test_tasks=list(range(tasks)),
        references=refs or {"random": {"online": None, "final": None}, "oracle": {"online": None, "final": None}},
        task_references=task_refs, protocol=SimpleNamespace(budget_episodes=budget),
        summary=lambda: {"protocol": {"budget_episodes": budget}},
    )


def fake_record(returns: np.ndarray, seed: int = 0, agent: str = "a", budget: int = 2, **bench_kw) -> Record:
    """A record built by the harness's own ``build_record`` from ``(tasks, runs, episodes)`` returns."""
    n_ep = returns.shape[2]
    bench = fake_bench(budget=budget, tasks=returns.shape[0], **bench_kw)
    ag = SimpleNamespace(name=agent, resolved_config=lambda: {"lr": 1.0})
    x = np.concatenate([np.arange(budget), np.full(n_ep - budget, budget)]).astype(float)
    phase = ["budget"] * budget + ["final"] * (n_ep - budget)
    return build_record(ag, bench, seed, returns, x, phase, {"env_steps": 10, "wall_seconds": 1.0}, {})


def test_normalize_maps_references_to_0_and_1_both_orientations():
    s = np.array([[5.0, 7.5], [10.0, 0.0]])
    np.testing.assert_allclose(stats.normalize(s, 5.0, 10.0), [[0.0, 0.5], [1.0, -1.0]])
    mse = np.array([[2.0, 1.0], [0.0, 4.0]])  # lower is better: random MSE 2, oracle 0
    np.testing.assert_allclose(stats.normalize(mse, 2.0, 0.0), [[0.0, 0.5], [1.0, -1.0]])
    with pytest.raises(ValueError, match="equal"):
        stats.normalize(s, 3.0, 3.0)


def test_iqm_of_4x2_matrix_by_hand():
    # flattened: 1 2 3 4 5 6 7 100; drop 2 lowest and 2 highest -> mean(3, 4, 5, 6) = 4.5
    m = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 100.0]])
    assert stats.iqm(m) == pytest.approx(4.5)
    batch = np.stack([m, m + 1.0])
    np.testing.assert_allclose(stats.iqm(batch), [4.5, 5.5])


def test_mean_and_se_averages_runs_then_tasks():
    m = np.array([[1.0, 4.0], [3.0, 8.0]])  # per-task means 2 and 6
    mean, se = stats.mean_and_se(m)
    assert mean == pytest.approx(4.0)
    assert se == pytest.approx(np.std([2.0, 6.0], ddof=1) / np.sqrt(2))


def test_probability_of_improvement_against_constants():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    y = np.full((3, 2), 2.0)
    # task 0: {1, 3} vs 2 -> 1/2; task 1: {2, 4} vs 2 -> 1/2 + 1/2 * 1/2 = 3/4; mean 5/8
    assert stats.probability_of_improvement(x, y) == pytest.approx(0.625)
    assert stats.probability_of_improvement(x, y, lower_is_better=True) == pytest.approx(0.375)
    assert stats.probability_of_improvement(x, x) == pytest.approx(0.5)
    assert stats.probability_of_improvement(x + 10, y) == pytest.approx(1.0)


def test_probability_of_improvement_equals_mann_whitney_u():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, size=(5, 7)).astype(float)  # many ties on purpose
    y = rng.integers(0, 4, size=(4, 7)).astype(float)
    u = mannwhitneyu(x, y, axis=0).statistic / (5 * 4)
    assert stats.probability_of_improvement(x, y) == pytest.approx(float(u.mean()))


def test_performance_profile_at_given_taus():
    s = np.array([[0.0, 0.5], [1.0, 2.0]])
    np.testing.assert_allclose(stats.performance_profile(s, [-1, 0, 0.5, 1.5, 3]), [1, 0.75, 0.5, 0.25, 0])
    np.testing.assert_allclose(stats.performance_profile(s, [0, 1.5], lower_is_better=True), [0, 0.75])


def test_bootstrap_reproducible_and_contains_point():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(10, 6))
    a = stats.iqm_ci(m, reps=300, seed=7)
    b = stats.iqm_ci(m, reps=300, seed=7)
    c = stats.iqm_ci(m, reps=300, seed=8)
    assert a == b
    assert a != c
    assert a.low < a.point < a.high
    assert a.point == pytest.approx(stats.iqm(m))
    loop = stats.stratified_bootstrap_ci(stats.iqm, [m], reps=300, seed=7, vectorized=False)
    assert loop.low == pytest.approx(a.low) and loop.high == pytest.approx(a.high)


def test_bootstrap_is_stratified_by_task():
    # Runs agree within each task, tasks differ: resampling runs within tasks changes nothing,
    # whereas pooling tasks would give a wide interval.
    m = np.array([[0.0, 10.0], [0.0, 10.0], [0.0, 10.0]])
    ci = stats.stratified_bootstrap_ci(lambda s: s.mean(axis=(-2, -1)), [m], reps=200)
    assert (ci.point, ci.low, ci.high) == (5.0, 5.0, 5.0)


def test_bootstrap_percentiles_exact_on_two_runs():
    # mean of 2 resampled runs of {0, 1} is 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4
    ci = stats.stratified_bootstrap_ci(lambda s: s.mean(axis=(-2, -1)), [np.array([[0.0], [1.0]])], reps=2000)
    assert (ci.point, ci.low, ci.high) == (0.5, 0.0, 1.0)


def test_poi_and_profile_cis():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    y = np.full((2, 2), 2.0)
    poi = stats.probability_of_improvement_ci(x, y, reps=500)
    assert poi.point == pytest.approx(0.625)
    assert 0.0 <= poi.low <= poi.point <= poi.high <= 1.0
    assert poi.low < poi.high
    prof = stats.performance_profile_ci(x, [0.0, 2.5, 5.0], reps=200)
    np.testing.assert_allclose(prof.point, [1.0, 0.5, 0.0])
    assert prof.low.shape == (3,)
    np.testing.assert_allclose([prof.low[0], prof.high[0], prof.low[2], prof.high[2]], [1, 1, 0, 0])
    diff = stats.iqm_difference_ci(x + 1.0, x, reps=200)
    assert diff.point == pytest.approx(1.0)


def test_aggregate_averages_runs_per_seed_and_normalizes():
    refs = {"random": {"online": 1.0, "final": 0.5}, "oracle": {"online": 3.0, "final": 1.5}}
    bench = fake_bench(refs=refs)
    r0 = fake_record(np.ones((2, 3, 4)), seed=0, refs=refs)  # online score 2 everywhere
    r1 = fake_record(np.zeros((2, 3, 4)), seed=1, refs=refs)  # online score 0
    agg = stats.aggregate([r1, r0], bench)
    assert agg.seeds == (0, 1)
    assert agg.scores.shape == (2, 2)  # (seeds, tasks): the 3 runs of a seed are averaged
    assert agg.normalized and agg.normalization == "benchmark" and not agg.lower_is_better and agg.which == "online"
    np.testing.assert_allclose(agg.scores[0], 0.5)  # (2 - 1) / (3 - 1)
    np.testing.assert_allclose(agg.scores[1], -0.5)
    raw = stats.aggregate([r0, r1], bench, which="final", normalized=False)
    np.testing.assert_allclose(raw.scores[0], 1.0)
    assert not raw.normalized


def test_aggregate_lower_is_better_without_references_keeps_orientation():
    bench = fake_bench(headline="final", lower_is_better=True)
    r = fake_record(np.ones((2, 3, 4)), headline="final", lower_is_better=True)
    agg = stats.aggregate([r], bench)
    assert not agg.normalized and agg.lower_is_better and agg.which == "final"


def test_aggregate_takes_headline_and_direction_from_the_benchmark_not_the_record():
    r = fake_record(np.ones((2, 3, 4)), headline="final", lower_is_better=True)
    agg = stats.aggregate([r], fake_bench(headline="online"))
    assert agg.which == "online" and not agg.lower_is_better
    np.testing.assert_allclose(agg.scores, 2.0)  # online: 2 budget episodes of return 1


def test_aggregate_refuses_mixed_or_stale_task_lists():
    r0 = fake_record(np.ones((2, 3, 4)), seed=0, task_hash="aaa")
    r1 = fake_record(np.ones((2, 3, 4)), seed=1, task_hash="bbb")
    with pytest.raises(ValueError, match="task list"):
        stats.aggregate([r0, r1], fake_bench(task_hash="aaa"))
    with pytest.raises(ValueError, match="task list"):
        stats.aggregate([r0], fake_bench(task_hash="current"))


def test_performance_profile_matches_direct_count_with_ties_and_batches():
    rng = np.random.default_rng(1)
    s = rng.integers(0, 5, size=(3, 4, 6)).astype(float)
    taus = np.array([3.0, -1.0, 2.0, 2.0, 0.5, 4.0])  # unsorted, repeated, equal to scores
    for lower in (False, True):
        direct = np.stack([((s < t) if lower else (s > t)).mean(axis=(-2, -1)) for t in taus], axis=-1)
        np.testing.assert_allclose(stats.performance_profile(s, taus, lower_is_better=lower), direct)
