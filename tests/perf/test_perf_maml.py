"""``metarl-bench perf maml`` (:mod:`metarl_bench.perf.maml`): the time breakdown, the same-run
reference and the lower bound on conjugate gradient's time that it reports."""

from __future__ import annotations

import pytest

from metarl_bench.baselines.gradient.maml_rl import MAMLTRPOConfig
from metarl_bench.perf.maml import cg_floor_seconds, maml_bench


def test_maml_bench_reports_the_time_breakdown_and_the_same_run_reference(capsys):
    out = maml_bench(iterations=1, warmup=0, meta_batch_size=2, fast_batch_size=2, verbose=True)
    for row in (out, out["cg_subsample"], out["reference"]):
        for key in ("seconds_per_meta_batch", "sampling_seconds", "inner_seconds", "cg_seconds", "line_search_seconds"):
            assert row[key] >= 0.0
    assert out["reference"]["seconds_per_meta_batch"] > 0.0
    assert out["speedup"] == out["reference"]["seconds_per_meta_batch"] / out["seconds_per_meta_batch"]
    assert out["env_steps_per_meta_batch"] > 0
    report = capsys.readouterr().out
    assert "pytorch-maml-rl structure (same run)" in report and "speed-up against the same-run reference" in report
    assert out["cg_floor_seconds"] > 0.0 and "lower bound for exact conjugate gradient" in report
    verdict = "met" if out["seconds_per_meta_batch"] <= 0.5 else "missed"
    assert f"the config (exact) {out['seconds_per_meta_batch']:.2f} s ({verdict})" in report


def test_cg_floor_counts_the_direction_dependent_products():
    cfg = MAMLTRPOConfig(meta_batch_size=2, hidden_sizes=(16, 16), cg_iters=10)
    floor = cg_floor_seconds(cfg, samples_per_task=50, repeats=2)
    assert floor["cg_floor_per_iteration_seconds"] > 0.0
    assert floor["cg_floor_seconds"] == pytest.approx(10 * floor["cg_floor_per_iteration_seconds"])
    # the rate is that of 16 products a CG iteration (one inner step: 2 x 6 + 4), 2 tasks x 50 samples, 16 x 16
    flops = floor["cg_floor_gflop_per_second"] * 1e9 * floor["cg_floor_per_iteration_seconds"]
    assert flops == pytest.approx(16 * 2 * 2 * 50 * 16 * 16)
    assert floor["square_matmul_gflop_per_second"] > 0.0
    # one hidden layer has no hidden-to-hidden product to bound the time with
    assert cg_floor_seconds(MAMLTRPOConfig(hidden_sizes=(16,)), samples_per_task=50)["cg_floor_seconds"] == 0.0
