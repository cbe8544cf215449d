"""Counter-based random streams: exact agreement of single and batched draws."""

import numpy as np
from scipy import stats

from metarl_bench.streams import Streams


def test_batched_stream_i_equals_single_stream_seeded_s_plus_i():
    batch = Streams(4)
    batch.seed([10, 11, 12, 13])
    mask = np.array([True, False, True, True])
    draws_b = [batch.uniform(mask)[:, 0] for _ in range(5)]
    for i, s in enumerate([10, 11, 12, 13]):
        single = Streams(1)
        single.seed([s])
        n = 5 if mask[i] else 1  # an unmasked stream does not advance: always its first number
        expected = [single.uniform()[0, 0] for _ in range(n)]
        got = [d[i] for d in draws_b]
        assert got == (expected if mask[i] else expected * 5)


def test_uniforms_and_normals_have_the_right_distribution():
    s = Streams(1)
    s.seed([0])
    u = s.uniform(size=20000)[0]
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    z = s.normal(size=20000)[0]
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert 0.0 <= u.min() and u.max() < 1.0


def test_different_seeds_give_different_streams():
    s = Streams(2)
    s.seed([1, 2])
    u = s.uniform(size=8)
    assert not np.array_equal(u[0], u[1])
