"""MAML and first-order MAML for supervised few-shot learning (Finn et al. 2017).

Meta-objective over a meta-batch of tasks T_i, each with support set S_i and query set Q_i:

    theta_i' = theta - alpha * grad_theta L_{S_i}(theta)            (inner step, repeated inner_steps times)
    min_theta  sum_i L_{Q_i}(theta_i')                              (outer loss, Adam with outer_lr)

The second-order meta-gradient is ``(I - alpha H_{S_i}) grad L_{Q_i}(theta_i')`` per inner
step; first-order MAML (``first_order=True``) drops the Hessian term and uses
``grad L_{Q_i}(theta_i')`` (Finn et al. 2017, section 5.2). All tasks of a meta-batch
adapt together (:func:`metarl_bench.baselines.fewshot.common.inner_update`).

Paper defaults for sinusoids: 1-40-40-1 ReLU net, meta-batch 25, K support and K query
points, one inner step with alpha = 0.01, Adam with beta = 0.001; at test time up to 10
steps with the same alpha.
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
    batched_forward,
    check_hidden,
    check_positive_int,
    check_sample_budget,
    diverged,
    expand_params,
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
    task_losses,
)


@dataclass
class SupervisedMAMLConfig(AgentConfig):
    """MAML for few-shot supervised learning (Finn et al. 2017)."""

    meta_batch_size: int = 25
    """tasks per meta-update"""
    inner_steps: int = 1
    """inner gradient steps during meta-training (test-time steps are set by the benchmark)"""
    inner_lr: float = 0.01
    """inner-loop step size alpha (training and test time)"""
    outer_lr: float = 0.001
    """Adam step size beta of the meta-update"""
    iterations: int = 10_000
    """meta-updates"""
    first_order: bool = False
    """drop the second-order term of the meta-gradient (first-order MAML)"""
    hidden_sizes: tuple[int, ...] = (40, 40)
    """hidden layer widths of the ReLU network"""
    lr_decay: bool = False
    """anneal outer_lr linearly to 0 over the iterations"""

    def validate(self) -> None:
        check_positive_int("maml", meta_batch_size=self.meta_batch_size, inner_steps=self.inner_steps,
                           iterations=self.iterations)
        positive("maml", inner_lr=self.inner_lr, outer_lr=self.outer_lr)
        check_hidden("maml", self.hidden_sizes)


def adapt(
    net: nn.Module, params: Params, episode: Episode, loss: str, inner_lr: float, steps: int, first_order: bool
) -> Params:
    """Per-task fast weights after ``steps`` inner steps on the support sets (batched over tasks)."""
    fast = expand_params(params, episode.num_tasks)
    for _ in range(steps):
        fast, _ = inner_update(net, fast, episode.support_x, episode.support_y, loss, inner_lr,
                               create_graph=not first_order)
    return fast


def outer_loss(net: nn.Module, params: Params, episode: Episode, loss: str, cfg: SupervisedMAMLConfig) -> torch.Tensor:
    """The meta-objective: mean over tasks of the query loss after adaptation."""
    fast = adapt(net, params, episode, loss, cfg.inner_lr, cfg.inner_steps, cfg.first_order)
    return task_losses(loss, batched_forward(net, fast, episode.query_x), episode.query_y).mean()


def maml_step(net: nn.Module, opt: torch.optim.Optimizer, episode: Episode, loss: str, cfg: SupervisedMAMLConfig) -> float:
    """One meta-update; returns the outer loss, or NaN (and no update) when it or a gradient is not finite."""
    opt.zero_grad(set_to_none=True)
    value = outer_loss(net, params_of(net), episode, loss, cfg)
    value.backward()
    if not all_finite(value, (p.grad for p in net.parameters())):
        return float("nan")
    opt.step()
    return float(value.detach())


def meta_train_maml(net: nn.Module, ctx: SupervisedTrainContext, cfg: SupervisedMAMLConfig, name: str) -> None:
    """The MAML meta-training loop on ``ctx``'s train tasks (a NaN loss raises a ``DivergenceError``
    carrying the last good parameters)."""
    opt = torch.optim.Adam(net.parameters(), lr=cfg.outer_lr)
    sched = (
        torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0 - i / cfg.iterations) if cfg.lr_decay else None
    )
    for it in training_iterations(ctx, cfg.iterations, f"{name}: meta-training"):
        episode = ctx.sample(cfg.meta_batch_size)
        value = maml_step(net, opt, episode, ctx.problem.loss, cfg)
        if value != value:  # NaN: the update was skipped
            raise diverged(ctx, name, it, net.state_dict(), cfg)
        if sched is not None:
            sched.step()
        if should_log(it, cfg.iterations):
            ctx.record(iteration=it, outer_loss=value)


class MAMLAgent(NetLearner):
    """Second-order MAML (Finn et al. 2017) on supervised few-shot benchmarks."""

    name = "maml"
    config_cls = SupervisedMAMLConfig
    learns = True
    description = "MAML, second order (Finn et al. 2017)"
    config: SupervisedMAMLConfig

    def check_benchmark(self, benchmark: Benchmark) -> None:
        # one support and one query set of K shots per task and iteration
        cfg = self.config
        check_sample_budget(self.name, benchmark, cfg.iterations, cfg.meta_batch_size * 2 * protocol_shots(benchmark, self.name))

    def meta_train(self, ctx: SupervisedTrainContext) -> None:
        self.net = ctx.problem.make_net(self.config.hidden_sizes, ctx.torch_generator())
        meta_train_maml(self.net, ctx, self.config, self.name)

    def adapter(self, ctx: SupervisedEvalContext) -> SupervisedAdapter:
        net = self.trained_net(ctx)
        return GradientAdapter(net, params_of(net), self.config.inner_lr, ctx.problem.loss)


@dataclass
class FOMAMLConfig(SupervisedMAMLConfig):
    """First-order MAML: MAML without the second-order term of the meta-gradient."""

    first_order: bool = True
    """drop the second-order term of the meta-gradient (first-order MAML)"""


class FOMAMLAgent(MAMLAgent):
    """First-order MAML (Finn et al. 2017, section 5.2)."""

    name = "fomaml"
    config_cls = FOMAMLConfig
    description = "first-order MAML (Finn et al. 2017)"
