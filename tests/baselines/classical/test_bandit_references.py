"""Classical bandit references: exact Bayes-optimal values, Gittins index, posterior updates."""

import numpy as np
import pytest

import metarl_bench
from metarl_bench.baselines.classical.bandits import ExactBayesOptimal, exact_state_count, fh_gittins_table


@pytest.mark.parametrize("k, n, value", [(5, 10, 6.6600), (10, 10, 6.7140), (2, 1, 0.5)])
def test_exact_bayes_optimal_value(k, n, value):
    assert ExactBayesOptimal(k, n).value() == pytest.approx(value, abs=5e-5)


def test_two_arm_two_pull_value_by_hand():
    # pull arm 1: win (p=1/2) -> pull it again (p=2/3): 1 + 2/3; lose -> pull the fresh arm (1/2)
    expected = 0.5 * (1 + 2 / 3) + 0.5 * 0.5
    assert ExactBayesOptimal(2, 2).value() == pytest.approx(expected)


def test_state_count_formula_matches_enumeration():
    import itertools

    for k, n in [(2, 3), (3, 4), (4, 2)]:
        pairs = [(s, f) for s in range(n + 1) for f in range(n + 1) if s + f <= n]
        brute = sum(1 for c in itertools.combinations_with_replacement(pairs, k) if sum(map(sum, c)) <= n)
        assert exact_state_count(k, n) == brute


def test_gittins_index_properties():
    g = fh_gittins_table(10)
    # one pull left: the index is the posterior mean (to grid precision)
    for s, f in [(0, 0), (3, 1), (0, 4)]:
        assert g[s, f, 1] == pytest.approx((s + 1) / (s + f + 2), abs=2e-3)
    # more pulls left -> more value of information -> higher index for an untried arm
    assert g[0, 0, 10] > g[0, 0, 2] > g[0, 0, 1]


def test_bayes_optimal_is_not_beaten_by_other_classical_agents():
    bench = metarl_bench.benchmark("MetaRL/Bandit-k5-n10-v0")
    bo = metarl_bench.evaluate(metarl_bench.agent("bayes-optimal"), bench, seed=0).score_matrix("online")
    for name in ("thompson", "ucb1", "greedy"):
        other = metarl_bench.evaluate(metarl_bench.agent(name), bench, seed=0).score_matrix("online")
        # same test tasks: compare per task
        diff = bo.mean(axis=0) - other.mean(axis=0)
        assert diff.mean() > -3 * diff.std(ddof=1) / np.sqrt(len(diff)), name
