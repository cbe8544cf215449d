"""Reptile for supervised few-shot learning (Nichol, Achiam and Schulman 2018).

For every task of a meta-batch, run ``inner_steps`` steps of SGD from the shared
initialisation (each step on a fresh mini-batch of K points of that task), giving
``phi_i``; then move the initialisation towards the adapted weights:

    theta <- theta + epsilon_t * mean_i (phi_i - theta),   epsilon_t = outer_lr * (1 - t / iterations)

(the linear annealing of Nichol et al.'s sine example; ``anneal=False`` keeps it
constant). No second derivatives; the tasks of a meta-batch adapt together. At test
time the adapter takes SGD steps with ``inner_lr`` on the K support points.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from metarl_bench.agents import AgentConfig, positive
from metarl_bench.baselines.fewshot.common import (
    GradientAdapter,
    NetLearner,
    Params,
    all_finite,
    check_hidden,
    check_positive_int,
    check_sample_budget,
    diverged,
    inner_update,
    params_of,
    protocol_shots,
    should_log,
    training_iterations,
)
from metarl_bench.benchmarks import Benchmark
from metarl_bench.supervised import (
    Episode,
    SupervisedAdapter,
    SupervisedEvalContext,
    SupervisedTrainContext,
)


@dataclass
class ReptileConfig(AgentConfig):
    """Reptile (Nichol et al. 2018) for few-shot supervised learning."""

    meta_batch_size: int = 5
    """tasks per meta-update"""
    inner_steps: int = 5
    """SGD steps per task in the inner loop (each on a fresh mini-batch of K points)"""
    inner_lr: float = 0.02
    """inner SGD step size (training and test time)"""
    outer_lr: float = 0.1
    """Reptile step size epsilon (initial value when annealed)"""
    iterations: int = 30_000
    """meta-updates"""
    anneal: bool = True
    """decay the outer step size linearly to 0"""
    first_order: bool = True
    """Reptile is first order by construction (kept for a uniform config; must be True)"""
    hidden_sizes: tuple[int, ...] = (40, 40)
    """hidden layer widths of the ReLU network"""

    def validate(self) -> None:
        check_positive_int("reptile", meta_batch_size=self.meta_batch_size, inner_steps=self.inner_steps,
                           iterations=self.iterations)
        positive("reptile", inner_lr=self.inner_lr, outer_lr=self.outer_lr)
        if not self.first_order:
            raise ValueError("agent 'reptile': config field 'first_order' must be True (Reptile has no second-order form)")
        check_hidden("reptile", self.hidden_sizes)


def inner_loop(net: nn.Module, params: Params, episode: Episode, loss: str, inner_lr: float, steps: int) -> Params:
    """``phi_i``: ``steps`` SGD steps per task from ``params``, step ``j`` on support points
    ``[j*K, (j+1)*K)`` of ``episode`` (which holds ``steps * K`` support points per task)."""
    n, total = episode.num_tasks, int(episode.support_x.shape[1])
    k = total // steps
    phi = {name: v.detach().unsqueeze(0).expand(n, *v.shape).clone().requires_grad_(True) for name, v in params.items()}
    for j in range(steps):
        x, y = episode.support_x[:, j * k : (j + 1) * k], episode.support_y[:, j * k : (j + 1) * k]
        new, _ = inner_update(net, phi, x, y, loss, inner_lr, create_graph=False)
        phi = {name: v.detach().requires_grad_(True) for name, v in new.items()}
    return {name: v.detach() for name, v in phi.items()}


@torch.no_grad()
def reptile_update_(params: Params, phi: Params, step_size: float) -> None:
    """In place: ``theta <- theta + step_size * mean_i (phi_i - theta)``."""
    for name, theta in params.items():
        theta.add_(step_size * (phi[name].mean(dim=0) - theta))


class ReptileAgent(NetLearner):
    """Reptile (Nichol et al. 2018), batched over the tasks of a meta-batch."""

    name = "reptile"
    config_cls = ReptileConfig
    learns = True
    description = "Reptile (Nichol et al. 2018)"
    config: ReptileConfig

    def check_benchmark(self, benchmark: Benchmark) -> None:
        # inner_steps fresh support sets of K shots per task and iteration, no query set
        cfg = self.config
        check_sample_budget(self.name, benchmark, cfg.iterations,
                            cfg.meta_batch_size * cfg.inner_steps * protocol_shots(benchmark, self.name))

    def meta_train(self, ctx: SupervisedTrainContext) -> None:
        cfg = self.config
        self.net = ctx.problem.make_net(cfg.hidden_sizes, ctx.torch_generator())
        params = params_of(self.net)
        for it in training_iterations(ctx, cfg.iterations, f"{self.name}: meta-training"):
            episode = ctx.sample(cfg.meta_batch_size, n_support=ctx.shots * cfg.inner_steps, n_query=0)
            phi = inner_loop(self.net, params, episode, ctx.problem.loss, cfg.inner_lr, cfg.inner_steps)
            step = cfg.outer_lr * (1.0 - it / cfg.iterations) if cfg.anneal else cfg.outer_lr
            moved = torch.stack([(phi[k] - v.detach()).abs().sum() for k, v in params.items()]).sum()
            if not all_finite(moved):
                raise diverged(ctx, self.name, it, self.net.state_dict(), cfg)
            reptile_update_(params, phi, step)
            if should_log(it, cfg.iterations):
                ctx.record(iteration=it, step_size=step, mean_abs_move=float(moved) / cfg.meta_batch_size)

    def adapter(self, ctx: SupervisedEvalContext) -> SupervisedAdapter:
        net = self.trained_net(ctx)
        return GradientAdapter(net, params_of(net), self.config.inner_lr, ctx.problem.loss)
