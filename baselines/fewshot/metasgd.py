"""Meta-SGD for supervised few-shot learning (Li et al. 2017).

MAML with a learned step size per parameter: the inner update is

    theta_i' = theta - alpha (elementwise) grad_theta L_{S_i}(theta)

and the outer loss ``sum_i L_{Q_i}(theta_i')`` is minimised over both ``theta`` and the
vector ``alpha`` (same shape as theta) with Adam. Li et al. initialise ``alpha``
uniformly in [0.005, 0.1] and use one inner step.

At test time the adapter takes ``test_steps`` learned-rate steps (default: as many as in
meta-training) and ignores later ``adapt()`` calls, so its curve is flat afterwards: the
rates are meta-learned for exactly that many steps, and repeating them diverges
(measured on Sinusoid-K10 after 10,000 iterations: query MSE 0.23 after one step, 49
after three, inf after four).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from metarl_bench.agents import AgentConfig, positive
from metarl_bench.baselines.fewshot.common import (
    GradientAdapter,
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
    SupervisedAgent,
    SupervisedEvalContext,
    SupervisedTrainContext,
    task_losses,
)


@dataclass
class MetaSGDConfig(AgentConfig):
    """Meta-SGD (Li et al. 2017): MAML with learned per-parameter inner learning rates."""

    meta_batch_size: int = 25
    """tasks per meta-update"""
    inner_steps: int = 1
    """inner gradient steps during meta-training"""
    inner_lr: tuple[float, float] = (0.005, 0.1)
    """range of the uniform initialisation of the per-parameter step sizes alpha"""
    outer_lr: float = 0.001
    """Adam step size of the meta-update (for theta and alpha)"""
    iterations: int = 10_000
    """meta-updates"""
    first_order: bool = False
    """drop the second-order term of the meta-gradient"""
    hidden_sizes: tuple[int, ...] = (40, 40)
    """hidden layer widths of the ReLU network"""
    test_steps: int | None = None
    """learned-rate steps at test time (None: inner_steps); later adapt() calls are no-ops"""

    def validate(self) -> None:
        if self.test_steps is not None:
            check_positive_int("meta-sgd", test_steps=self.test_steps)
        check_positive_int("meta-sgd", meta_batch_size=self.meta_batch_size, inner_steps=self.inner_steps,
                           iterations=self.iterations)
        if len(self.inner_lr) != 2:
            raise ValueError(f"agent 'meta-sgd': config field 'inner_lr' must be a (low, high) range, got {self.inner_lr!r}")
        positive("meta-sgd", inner_lr=min(self.inner_lr), outer_lr=self.outer_lr)
        if self.inner_lr[0] > self.inner_lr[1]:
            raise ValueError(f"agent 'meta-sgd': config field 'inner_lr' must be (low, high) with low <= high, "
                             f"got {self.inner_lr!r}")
        check_hidden("meta-sgd", self.hidden_sizes)


class MetaSGDLearner(nn.Module):
    """The meta-learned state: the network (theta) and one step size per parameter (alpha)."""

    def __init__(self, net: nn.Module, low: float, high: float, generator: torch.Generator) -> None:
        super().__init__()
        self.net = net
        self.alpha = nn.ParameterDict({
            k.replace(".", "_"): nn.Parameter(torch.empty_like(v).uniform_(low, high, generator=generator))
            for k, v in net.named_parameters()
        })

    def rates(self) -> dict[str, torch.Tensor]:
        return {k: self.alpha[k.replace(".", "_")] for k, _ in self.net.named_parameters()}


def outer_loss(learner: MetaSGDLearner, episode: Episode, loss: str, cfg: MetaSGDConfig) -> torch.Tensor:
    """Mean query loss after ``inner_steps`` Meta-SGD steps, differentiable in theta and alpha."""
    net = learner.net
    fast: Params = expand_params(params_of(net), episode.num_tasks)
    rates = learner.rates()
    for _ in range(cfg.inner_steps):
        fast, _ = inner_update(net, fast, episode.support_x, episode.support_y, loss, rates,
                               create_graph=not cfg.first_order)
    return task_losses(loss, batched_forward(net, fast, episode.query_x), episode.query_y).mean()


class MetaSGDAgent(SupervisedAgent):
    """Meta-SGD (Li et al. 2017): learned initialisation and per-parameter step sizes."""

    name = "meta-sgd"
    config_cls = MetaSGDConfig
    learns = True
    description = "Meta-SGD (Li et al. 2017)"
    config: MetaSGDConfig
    _loaded: Mapping[str, Any] | None = None  # a saved state, until adapter() builds the learner

    def state_dict(self) -> dict[str, Any]:
        """``{"learner": the network's and the per-parameter rates' state dict}``, or ``{}``
        before meta-training."""
        if hasattr(self, "learner"):
            return {"learner": self.learner.state_dict()}
        return {} if self._loaded is None else {"learner": self._loaded}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if set(state) - {"learner"}:
            raise ValueError(f"agent 'meta-sgd': the saved state must hold only 'learner', got {sorted(state)}")
        if hasattr(self, "learner") and "learner" in state:  # already built: load in place (shapes must match)
            self.learner.load_state_dict(state["learner"])
            return
        self._loaded = state.get("learner")

    def check_benchmark(self, benchmark: Benchmark) -> None:
        # one support and one query set of K shots per task and iteration
        cfg = self.config
        check_sample_budget(self.name, benchmark, cfg.iterations, cfg.meta_batch_size * 2 * protocol_shots(benchmark, self.name))

    def meta_train(self, ctx: SupervisedTrainContext) -> None:
        cfg = self.config
        net = ctx.problem.make_net(cfg.hidden_sizes, ctx.torch_generator(0))
        self.learner = MetaSGDLearner(net, cfg.inner_lr[0], cfg.inner_lr[1], ctx.torch_generator(1))
        opt = torch.optim.Adam(self.learner.parameters(), lr=cfg.outer_lr)
        for it in training_iterations(ctx, cfg.iterations, f"{self.name}: meta-training"):
            episode = ctx.sample(cfg.meta_batch_size)
            opt.zero_grad(set_to_none=True)
            value = outer_loss(self.learner, episode, ctx.problem.loss, cfg)
            value.backward()
            if not all_finite(value, (p.grad for p in self.learner.parameters())):
                raise diverged(ctx, self.name, it, self.learner.state_dict(), cfg)
            opt.step()
            if should_log(it, cfg.iterations):
                ctx.record(iteration=it, outer_loss=float(value.detach()))

    def adapter(self, ctx: SupervisedEvalContext) -> SupervisedAdapter:
        if not hasattr(self, "learner"):
            if self._loaded is None:
                raise RuntimeError(f"{self.name}: call meta_train before adapter")
            # a saved agent: the network and rates built for this problem, then the saved values
            gen = torch.Generator().manual_seed(0)
            net = ctx.problem.make_net(self.config.hidden_sizes, gen)
            self.learner = MetaSGDLearner(net, self.config.inner_lr[0], self.config.inner_lr[1], gen)
            self.learner.load_state_dict(self._loaded)
            self._loaded = None
        steps = self.config.test_steps or self.config.inner_steps
        return GradientAdapter(
            self.learner.net, params_of(self.learner.net), self.learner.rates(), ctx.problem.loss, max_steps=steps
        )
