"""Speed benchmark of ``maml-trpo`` (``metarl-bench perf maml``).

Seconds per meta-batch of ``maml-trpo`` on Navigation2D with its tuned config (pytorch-maml-rl's
``2d-navigation.yaml``), broken into sampling, inner step, conjugate gradient and line
search, against pytorch-maml-rl's task-by-task computation rebuilt and timed in the same
run (:mod:`metarl_bench.perf.maml_reference`), with a lower bound on exact conjugate
gradient's time on this machine (:func:`cg_floor_seconds`).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import torch

from metarl_bench.agents import ProgressBar
from metarl_bench.baselines.gradient.maml_rl import MAMLTRPO, MAMLTRPOConfig
from metarl_bench.baselines.shared import torch_threads
from metarl_bench.benchmarks import benchmark
from metarl_bench.harness import MetaTrainContext, progress_bar
from metarl_bench.perf.maml_reference import reference_meta_batch


def _time_meta_batches(
    benchmark_id: str, iterations: int, warmup: int, seed: int, overrides: dict[str, Any]
) -> tuple[MAMLTRPO, Any, dict[str, Any]]:
    """Meta-train ``maml-trpo`` for ``warmup + iterations`` meta-batches; mean timings of the
    last ``iterations``."""
    bench = benchmark(benchmark_id)
    agent = MAMLTRPO(**{**overrides, "iterations": warmup + iterations})
    agent.configure(bench)
    ctx = MetaTrainContext(bench, seed=seed)
    agent.meta_train(ctx)
    rows = [r for r in ctx.log if "seconds" in r][warmup:]
    if not rows:
        raise ValueError(f"maml_bench: no timed meta-batch (iterations={iterations}); use iterations >= 1")
    out: dict[str, Any] = {
        "seconds_per_meta_batch": float(np.mean([r["seconds"] for r in rows])),
        # CPU time of this process: the better figure on a shared machine
        "cpu_seconds_per_meta_batch": float(np.mean([r["cpu_seconds"] for r in rows])),
        "env_steps_per_meta_batch": ctx.steps / (warmup + iterations),
    }
    for part in ("sampling", "inner", "cg", "line_search"):
        out[f"{part}_seconds"] = float(np.mean([r[f"t_{part}"] for r in rows]))
    out["env_steps_per_second_sampling"] = out["env_steps_per_meta_batch"] / max(out["sampling_seconds"], 1e-9)
    return agent, ctx, out


def cg_floor_seconds(cfg: MAMLTRPOConfig, samples_per_task: int, repeats: int = 20) -> dict[str, float]:
    """A lower bound on exact conjugate gradient's time per meta-batch on this machine.

    Counts only the matrix products with hidden-to-hidden weights whose inputs change
    with the CG direction v, as if every v-independent activation and gradient were
    cached: per inner-loss Hessian-vector product and hidden layer, 4 activation products
    (R-forward 2, R-backward 2) and 2 weight-gradient products; per Fisher product, 3 and
    1. One CG iteration needs ``2 * num_steps`` inner products (the adaptation Jacobian J
    and its transpose around the Fisher, J^T F J v) and one Fisher product. Each product
    is timed on the meta-batch's shapes (best of ``repeats``, the current torch threads).
    Also returned: the rate those products run at and, for comparison, the rate of one
    large square matrix product (1024 x 1024), near the CPU's practical peak.
    """
    tasks, widths = cfg.meta_batch_size, [int(h) for h in cfg.hidden_sizes]
    layers = list(zip(widths[:-1], widths[1:]))
    if not layers:  # one hidden layer: no hidden-to-hidden product, so no meaningful bound
        return {"cg_floor_seconds": 0.0, "cg_floor_per_iteration_seconds": 0.0}
    # (activation, weight-gradient) products per hidden-to-hidden layer
    inner, fisher, n_inner = (4, 2), (3, 1), 2 * cfg.num_steps

    def best(x: torch.Tensor, y: torch.Tensor) -> float:
        torch.bmm(x, y)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.bmm(x, y)
            times.append(time.perf_counter() - t0)
        return min(times)

    per_iteration = flops = 0.0
    for h_in, h_out in layers:
        a, w = torch.randn(tasks, samples_per_task, h_in), torch.randn(tasks, h_in, h_out)
        g = torch.randn(tasks, samples_per_task, h_out)
        act, wgrad = best(a, w), best(a.transpose(1, 2), g)
        per_iteration += n_inner * (inner[0] * act + inner[1] * wgrad) + fisher[0] * act + fisher[1] * wgrad
        flops += (n_inner * sum(inner) + sum(fisher)) * 2.0 * tasks * samples_per_task * h_in * h_out
    square = torch.randn(1, 1024, 1024)
    return {
        "cg_floor_seconds": cfg.cg_iters * per_iteration,
        "cg_floor_per_iteration_seconds": per_iteration,
        "cg_floor_gflop_per_second": flops / per_iteration / 1e9,
        "square_matmul_gflop_per_second": 2.0 * 1024**3 / best(square, square) / 1e9,
    }


def maml_bench(
    iterations: int = 3,
    warmup: int = 1,
    seed: int = 0,
    benchmark_id: str = "MetaRL/Navigation2D-v0",
    subsample: float | None = 0.2,
    reference_batches: int = 1,
    verbose: bool = False,
    progress: bool | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Seconds per meta-batch of ``maml-trpo`` with the benchmark's tuned config (on
    Navigation2D, pytorch-maml-rl's ``2d-navigation.yaml``), broken into sampling, inner
    step (advantages, adaptation and the meta-gradient), conjugate gradient and line
    search, against pytorch-maml-rl's task-by-task computation measured in the same run
    (:mod:`metarl_bench.perf.maml_reference`, ``reference_batches`` meta-batches; 0
    skips it). With ``subsample`` set, the same is timed with ``cg_subsample=subsample``.
    The first ``warmup`` meta-batches are run but not timed.

    pytorch-maml-rl itself took 5-9 s per meta-batch with this config on a 2-core CPU
    machine class (measured on 2-core CPUs). ``verbose`` prints a report. With ``progress``
    (``None``: when stderr is a terminal), a progress bar of the measurements on stderr.
    """
    with progress_bar(progress, 4, "perf maml", unit="measurement") as bar:
        out = _maml_bench(iterations, warmup, seed, benchmark_id, subsample, reference_batches, bar, overrides)
    if verbose:
        print(format_maml_bench(out))
    return out


def _maml_bench(
    iterations: int,
    warmup: int,
    seed: int,
    benchmark_id: str,
    subsample: float | None,
    reference_batches: int,
    bar: ProgressBar,
    overrides: dict[str, Any],
) -> dict[str, Any]:
    bar.set_postfix(step="ours")
    agent, ctx, ours = _time_meta_batches(benchmark_id, iterations, warmup, seed, overrides)
    bar.update(1)
    out: dict[str, Any] = {
        "benchmark": benchmark_id,
        "config": dict(agent.resolved_config()),
        "meta_batches": iterations,
        **ours,
        "torch_threads": agent.config.torch_threads,
        "pytorch_maml_rl_seconds": "5-9 (same config, 2-core CPU)",
    }
    if subsample is not None and subsample < 1.0:
        bar.set_postfix(step="cg_subsample")
        _, _, fast = _time_meta_batches(benchmark_id, iterations, warmup, seed, {**overrides, "cg_subsample": subsample})
        out["cg_subsample"] = {"fraction": subsample, **fast}
    bar.update(1)
    if reference_batches > 0:
        bar.set_postfix(step="reference")
        times = []
        with torch_threads(agent.config.torch_threads):
            for _ in range(reference_batches):
                idx = ctx.rng.choice(len(ctx.train_tasks), size=agent.config.meta_batch_size)
                times.append(reference_meta_batch(agent, ctx, [ctx.train_tasks[int(i)] for i in idx]))
        ref = {f"{k}_seconds" if k != "total" else "seconds_per_meta_batch": float(np.mean([t[k] for t in times]))
               for k in times[0]}
        out["reference"] = ref
        out["speedup"] = ref["seconds_per_meta_batch"] / out["seconds_per_meta_batch"]
        if "cg_subsample" in out:
            out["speedup_cg_subsample"] = ref["seconds_per_meta_batch"] / out["cg_subsample"]["seconds_per_meta_batch"]
    bar.update(1)
    bar.set_postfix(step="cg floor")
    with torch_threads(agent.config.torch_threads):  # a task's samples: its fast batch of whole-horizon episodes
        out.update(cg_floor_seconds(agent.config, agent.config.fast_batch_size * (ctx.family.horizon or 1)))
    bar.update(1)
    if hasattr(os, "getloadavg"):  # wall times mean little on a busy machine: say how busy it was
        out["load_average_1min"] = os.getloadavg()[0]
        out["cpu_count"] = os.cpu_count()
    return out


TARGET_SECONDS = 0.5  # seconds per Navigation2D meta-batch: >= 10x pytorch-maml-rl's 5-9 s


def format_maml_bench(out: dict[str, Any]) -> str:
    """The report of :func:`maml_bench` as a table."""
    parts = ("sampling", "inner", "cg", "line_search")
    rows = [("maml-trpo (exact, the config)", out)]
    if "cg_subsample" in out:
        rows.append((f"maml-trpo, cg_subsample={out['cg_subsample']['fraction']:g}", out["cg_subsample"]))
    if "reference" in out:
        rows.append(("pytorch-maml-rl structure (same run)", out["reference"]))
    lines = [
        f"maml-trpo on {out['benchmark']}: seconds per meta-batch ({out['env_steps_per_meta_batch']:,.0f} env steps, "
        f"{out['torch_threads']} torch thread(s), load {out.get('load_average_1min', float('nan')):.2f} "
        f"on {out.get('cpu_count')} cores)",
        f"{'':40s} {'total':>7s} " + " ".join(f"{p:>11s}" for p in parts),
    ]
    for name, r in rows:
        lines.append(
            f"{name:40s} {r['seconds_per_meta_batch']:7.2f} "
            + " ".join(f"{r.get(p + '_seconds', float('nan')):11.2f}" for p in parts)
        )
    if "speedup" in out:
        line = f"speed-up against the same-run reference: {out['speedup']:.1f}x exact"
        if "speedup_cg_subsample" in out:
            line += f", {out['speedup_cg_subsample']:.1f}x with cg_subsample"
        lines.append(line)
    if "cg_floor_seconds" in out:
        lines.append(
            f"lower bound for exact conjugate gradient on this machine: {out['cg_floor_seconds']:.2f} s "
            f"({out['cg_floor_per_iteration_seconds'] * 1e3:.0f} ms per iteration: the direction-dependent "
            "hidden-layer matrix products alone, see cg_floor_seconds)"
        )
        if "cg_floor_gflop_per_second" in out:
            lines.append(
                f"those products run at {out['cg_floor_gflop_per_second']:.0f} GFLOP/s; a 1024x1024 matrix product "
                f"at {out['square_matmul_gflop_per_second']:.0f} GFLOP/s"
            )
    lines.append("pytorch-maml-rl itself: 5-9 s per meta-batch on this machine class")
    ours = [("the config (exact)", out["seconds_per_meta_batch"])]
    if "cg_subsample" in out:
        ours.append((f"cg_subsample={out['cg_subsample']['fraction']:g}", out["cg_subsample"]["seconds_per_meta_batch"]))
    lines.append(f"target <= {TARGET_SECONDS:g} s per meta-batch: " + ", ".join(
        f"{name} {t:.2f} s ({'met' if t <= TARGET_SECONDS else 'missed'})" for name, t in ours))
    return "\n".join(lines)
