"""``metarl-bench perf fewshot`` (:mod:`metarl_bench.perf.fewshot`): batched MAML against the
per-task-loop reference."""

from __future__ import annotations

import torch

from metarl_bench.perf.fewshot import supervised_perf

torch.set_num_threads(1)


def test_supervised_perf_reports_both_timings(capsys):
    out = supervised_perf(iterations=2, repeats=1, meta_batch_size=3, shots=4)
    assert out["maml_batched_ms"] > 0 and out["maml_loop_ms"] > 0
    assert "speed-up" in capsys.readouterr().out
