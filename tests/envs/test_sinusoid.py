"""The sinusoid regression family (:mod:`metarl_bench.envs.sinusoid`): tasks, samplers, the prior-mean floor."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import metarl_bench
from metarl_bench.envs.sinusoid import SinusoidFamily, SinusoidTask


def test_task_validation_and_round_trip():
    fam = metarl_bench.family("MetaRL/Sinusoid-v0")
    assert fam.kind == "supervised"
    tasks = fam.sample_tasks(20, np.random.default_rng(0))
    assert tasks == fam.sample_tasks(20, np.random.default_rng(0))
    for t in tasks:
        assert 0.1 <= t.amplitude <= 5.0 and 0.0 <= t.phase <= math.pi
        assert fam.task_from_dict(json.loads(json.dumps(t.to_dict()))) == t
    with pytest.raises(ValueError, match="amplitude"):
        SinusoidTask(amplitude=6.0, phase=0.0)
    with pytest.raises(ValueError, match="phase"):
        SinusoidTask(amplitude=1.0, phase=-0.1)
    with pytest.raises(TypeError, match="Generator"):
        fam.sample_inputs(3, np.random.RandomState(0))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="supervised"):
        fam.make_env()


def test_support_sampler_and_targets():
    fam = SinusoidFamily()
    tasks = [SinusoidTask(2.0, 0.5), SinusoidTask(0.5, 3.0)]
    x, y = fam.sample_support(tasks, 7, np.random.default_rng(5))
    x2, _ = fam.sample_support(tasks, 7, np.random.default_rng(5))
    assert x.shape == y.shape == (2, 7) and np.array_equal(x, x2)
    assert x.min() >= -5 and x.max() <= 5
    np.testing.assert_allclose(y[1], 0.5 * np.sin(x[1] - 3.0))
    with pytest.raises(ValueError, match="k"):
        fam.sample_support(tasks, 0, np.random.default_rng(0))


def test_prior_mean_floor_is_exact():
    fam = SinusoidFamily()
    assert fam.prior_mean_mse() == pytest.approx(3.00567, abs=1e-4)  # the prior-mean predictor's floor: about 3.006
    # the closed form on U[-5, 5] agrees with a dense grid, and E[y | x] with a Monte Carlo average
    assert fam.prior_mean_mse(np.linspace(-5, 5, 200_001)) == pytest.approx(fam.prior_mean_mse(), abs=1e-4)
    tasks = fam.sample_tasks(40_000, np.random.default_rng(0))
    xs = np.array([-4.0, -1.0, 0.0, 2.5])
    ys = fam.targets(tasks, np.broadcast_to(xs, (len(tasks), 4)))
    np.testing.assert_allclose(ys.mean(axis=0), fam.prior_mean(xs), atol=0.05)  # 5 standard errors
    np.testing.assert_allclose(ys.var(axis=0), fam.prior_variance(xs), rtol=0.05)
