"""Speed benchmark of the supervised few-shot track (``metarl-bench perf fewshot``).

Milliseconds per meta-iteration of ``maml`` (second order, one inner step, a 1-40-40-1
network on sinusoids), batched over the meta-batch's tasks, against the straightforward
reference that loops over the tasks one at a time, both measured in the same run.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from torch.func import functional_call

from metarl_bench.baselines.fewshot.maml import SupervisedMAMLConfig, maml_step
from metarl_bench.envs.sinusoid import SinusoidFamily
from metarl_bench.fewshot_nets import MLP
from metarl_bench.supervised import Episode, SinusoidProblem


def _loop_maml_step(net: torch.nn.Module, opt: torch.optim.Optimizer, ep: Episode, inner_lr: float) -> float:
    """Second-order MAML, one task at a time (the straightforward reference implementation)."""
    opt.zero_grad()
    names = [n for n, _ in net.named_parameters()]
    params = [p for _, p in net.named_parameters()]
    total = torch.zeros(())
    for i in range(ep.num_tasks):
        inner = ((net(ep.support_x[i]) - ep.support_y[i]) ** 2).mean()
        grads = torch.autograd.grad(inner, params, create_graph=True)
        fast = {n: p - inner_lr * g for n, p, g in zip(names, params, grads)}
        total = total + ((functional_call(net, fast, (ep.query_x[i],)) - ep.query_y[i]) ** 2).mean()
    loss = total / ep.num_tasks
    loss.backward()
    opt.step()
    return float(loss.detach())


def supervised_perf(iterations: int = 300, repeats: int = 3, meta_batch_size: int = 25, shots: int = 10) -> dict:
    """Milliseconds per meta-iteration of ``maml`` (second order, 1 inner step, 1-40-40-1) against a
    per-task loop, measured in the same run; prints and returns both and their ratio.

    Both run the same network, data and optimiser on one intra-op thread (as the harness
    does); the best of ``repeats`` timings of ``iterations`` iterations each is kept (the
    usual guard against a busy machine).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _supervised_perf(iterations, repeats, meta_batch_size, shots)
    finally:
        torch.set_num_threads(threads)


def _supervised_perf(iterations: int, repeats: int, meta_batch_size: int, shots: int) -> dict:
    fam = SinusoidFamily()
    problem = SinusoidProblem(fam, fam.sample_tasks(1000, np.random.default_rng(0)))
    cfg = SupervisedMAMLConfig(meta_batch_size=meta_batch_size, inner_steps=1)
    rng = np.random.default_rng(0)
    episodes = [problem.sample(meta_batch_size, shots, shots, rng) for _ in range(50)]

    def timed(fn: Any) -> float:
        best = math.inf
        for _ in range(repeats):
            for i in range(10):  # warm-up
                fn(episodes[i % len(episodes)])
            t = time.perf_counter()
            for i in range(iterations):
                fn(episodes[i % len(episodes)])
            best = min(best, (time.perf_counter() - t) / iterations * 1e3)
        return best

    net = MLP(1, (40, 40), 1, torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(net.parameters(), lr=cfg.outer_lr)
    batched_ms = timed(lambda ep: maml_step(net, opt, ep, "mse", cfg))
    with torch.random.fork_rng():  # nn.Linear initialises from the global generator
        torch.manual_seed(0)
        loop_net = torch.nn.Sequential(
            torch.nn.Linear(1, 40), torch.nn.ReLU(), torch.nn.Linear(40, 40), torch.nn.ReLU(), torch.nn.Linear(40, 1)
        )
    loop_opt = torch.optim.Adam(loop_net.parameters(), lr=cfg.outer_lr)
    loop_ms = timed(lambda ep: _loop_maml_step(loop_net, loop_opt, ep, cfg.inner_lr))
    out = {
        "maml_batched_ms": round(batched_ms, 3),
        "maml_loop_ms": round(loop_ms, 3),
        "speedup": round(loop_ms / batched_ms, 2),
        "torch_threads": torch.get_num_threads(),
        "meta_batch_size": meta_batch_size,
        "shots": shots,
    }
    print(
        f"maml (meta-batch {meta_batch_size}, K={shots}, 1 inner step, second order, 1-40-40-1), "
        f"{torch.get_num_threads()} torch threads: batched {batched_ms:.2f} ms/iteration, "
        f"per-task loop {loop_ms:.2f} ms/iteration, speed-up {loop_ms / batched_ms:.1f}x"
    )
    return out
