"""Non-meta-learning baselines and references of the supervised few-shot track.

- ``pretrained``: one network trained on all training tasks at once (regression on
  points pooled across tasks), then fine-tuned on the K shots: the comparison of Finn et
  al. 2017, Figure 2.
- ``scratch``: a randomly initialised network fine-tuned on the K shots.
- ``oracle``: knows the family's basis: least squares on ``[sin x, cos x]`` fits any
  sinusoid exactly from K >= 2 noise-free points (MSE 0).
- ``prior-mean``: predicts ``E[y | x]`` under the task distribution and never adapts; no
  predictor does better without adaptation (MSE about 3.006 on U[-5, 5]).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from metarl_bench.agents import AgentConfig, positive
from metarl_bench.baselines.fewshot.common import (
    GradientAdapter,
    NetLearner,
    all_finite,
    batched_forward,
    check_hidden,
    check_positive_int,
    check_sample_budget,
    diverged,
    expand_params,
    params_of,
    protocol_shots,
    should_log,
    training_iterations,
)
from metarl_bench.benchmarks import Benchmark
from metarl_bench.supervised import (
    SupervisedAdapter,
    SupervisedAgent,
    SupervisedEvalContext,
    SupervisedTrainContext,
    task_losses,
)

# --- pretrained ----------------------------------------------------------------------------


@dataclass
class PretrainedConfig(AgentConfig):
    """A network pretrained on all training tasks jointly, then fine-tuned on the K shots."""

    meta_batch_size: int = 25
    """tasks per training batch (2K points of each)"""
    inner_lr: float = 0.01
    """fine-tuning step size at test time"""
    outer_lr: float = 0.001
    """Adam step size of pretraining"""
    iterations: int = 10_000
    """pretraining updates"""
    hidden_sizes: tuple[int, ...] = (40, 40)
    """hidden layer widths of the ReLU network"""

    def validate(self) -> None:
        check_positive_int("pretrained", meta_batch_size=self.meta_batch_size, iterations=self.iterations)
        positive("pretrained", inner_lr=self.inner_lr, outer_lr=self.outer_lr)
        check_hidden("pretrained", self.hidden_sizes)


class PretrainedAgent(NetLearner):
    """Joint training on all training tasks, then fine-tuning (Finn et al. 2017's "pretrained")."""

    name = "pretrained"
    config_cls = PretrainedConfig
    learns = True
    description = "pretrained on all training tasks, fine-tuned on the K shots"
    config: PretrainedConfig

    def check_benchmark(self, benchmark: Benchmark) -> None:
        # a support and a query set of K shots per task and iteration, trained on jointly
        cfg = self.config
        check_sample_budget(self.name, benchmark, cfg.iterations, cfg.meta_batch_size * 2 * protocol_shots(benchmark, self.name))

    def meta_train(self, ctx: SupervisedTrainContext) -> None:
        cfg = self.config
        self.net = ctx.problem.make_net(cfg.hidden_sizes, ctx.torch_generator())
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.outer_lr)
        for it in training_iterations(ctx, cfg.iterations, f"{self.name}: meta-training"):
            ep = ctx.sample(cfg.meta_batch_size)
            x = torch.cat([ep.support_x, ep.query_x], dim=1)
            y = torch.cat([ep.support_y, ep.query_y], dim=1)
            opt.zero_grad(set_to_none=True)
            # the same network for every task: the batched parameters are broadcast views
            params = expand_params(params_of(self.net), ep.num_tasks)
            value = task_losses(ctx.problem.loss, batched_forward(self.net, params, x), y).mean()
            value.backward()
            if not all_finite(value, (p.grad for p in self.net.parameters())):
                raise diverged(ctx, self.name, it, self.net.state_dict(), cfg)
            opt.step()
            if should_log(it, cfg.iterations):
                ctx.record(iteration=it, loss=float(value.detach()))

    def adapter(self, ctx: SupervisedEvalContext) -> SupervisedAdapter:
        net = self.trained_net(ctx)
        return GradientAdapter(net, params_of(net), self.config.inner_lr, ctx.problem.loss)


# --- scratch -------------------------------------------------------------------------------


@dataclass
class ScratchConfig(AgentConfig):
    """A randomly initialised network fine-tuned on the K shots (no meta-training)."""

    inner_lr: float = 0.01
    """fine-tuning step size"""
    hidden_sizes: tuple[int, ...] = (40, 40)
    """hidden layer widths of the ReLU network"""

    def validate(self) -> None:
        positive("scratch", inner_lr=self.inner_lr)
        check_hidden("scratch", self.hidden_sizes)


class ScratchAgent(SupervisedAgent):
    """Gradient descent from a random initialisation (drawn from the evaluation seed)."""

    name = "scratch"
    config_cls = ScratchConfig
    description = "fine-tuning from a random initialisation"
    config: ScratchConfig

    def adapter(self, ctx: SupervisedEvalContext) -> SupervisedAdapter:
        g = torch.Generator().manual_seed(int(ctx.seed) % (2**63))
        net = ctx.problem.make_net(self.config.hidden_sizes, g)
        return GradientAdapter(net, params_of(net), self.config.inner_lr, ctx.problem.loss)


# --- references ----------------------------------------------------------------------------


def _require(problem: Any, attr: str, agent: str) -> Any:
    """``problem``'s optional attribute ``attr`` (not part of every few-shot problem), or a
    ``ValueError`` naming the agent that needs it."""
    if not hasattr(problem, attr):
        raise ValueError(f"agent {agent!r} needs a problem that knows its tasks' {attr}; {problem.name} does not")
    return getattr(problem, attr)


class _LeastSquaresAdapter(SupervisedAdapter):
    def __init__(self, basis: Any) -> None:
        self.basis = basis

    def reset(self, support_x: torch.Tensor, support_y: torch.Tensor) -> None:
        phi = self.basis(support_x.double())  # (tasks, K, 2)
        # minimum-norm least squares: exact for K >= 2, the best it can do for K = 1
        self.coef = torch.linalg.lstsq(phi, support_y.double(), driver="gelsd").solution  # (tasks, 2, 1)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return (self.basis(x.double()) @ self.coef).to(x.dtype)


class SupervisedOracleAgent(SupervisedAgent):
    """Least squares on the family's true basis ``[sin x, cos x]`` (the normalisation's oracle)."""

    name = "oracle"
    description = "least squares on [sin x, cos x] (knows the function class)"
    needs_task_knowledge = ("basis",)  # refused up front where the data has no known basis (images)

    def adapter(self, ctx: SupervisedEvalContext) -> SupervisedAdapter:
        return _LeastSquaresAdapter(_require(ctx.problem, "basis", self.name))


class _PriorMeanAdapter(SupervisedAdapter):
    def __init__(self, prior_mean: Any) -> None:
        self.prior_mean = prior_mean

    def reset(self, support_x: torch.Tensor, support_y: torch.Tensor) -> None:
        pass  # ignores the support set by design

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.prior_mean(x)


class PriorMeanAgent(SupervisedAgent):
    """Predicts the prior mean ``E[y | x]`` and never adapts (the normalisation's floor)."""

    name = "prior-mean"
    description = "the task distribution's mean function; no adaptation"
    needs_task_knowledge = ("prior_mean",)

    def adapter(self, ctx: SupervisedEvalContext) -> SupervisedAdapter:
        return _PriorMeanAdapter(_require(ctx.problem, "prior_mean", self.name))
