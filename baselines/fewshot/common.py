"""Plumbing shared by the supervised few-shot learners: batched functional calls, the plain
gradient-descent adapter, divergence checks and config validation. The networks are the
problem's (``ctx.problem.make_net``), defined in :mod:`metarl_bench.fewshot_nets`.

Each algorithm's own mathematics (inner and outer loops, updates) lives in its file
(``maml.py``, ``metasgd.py``, ``reptile.py``, ``references.py`` in this package).

Batched parameters. A learner keeps one set of parameters ``{name: tensor}``; during
adaptation every task of a batch gets its own copy, a dict of tensors with a leading
``tasks`` dimension. :func:`batched_forward` evaluates a network on such batched
parameters with ``torch.func.functional_call``: the core's :class:`~metarl_bench.fewshot_nets.MLP` accepts batched
parameters natively (one ``baddbmm`` per layer), any other module is mapped over tasks
with ``torch.func.vmap``. Because task ``t``'s loss depends only on its own copy, the
gradient of the summed task losses with respect to the batched parameters is every
task's own gradient, all from one ``torch.autograd.grad`` call (:func:`inner_update`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from metarl_bench.agents import DivergenceError
from metarl_bench.benchmarks import Benchmark
from metarl_bench.supervised import (
    SupervisedAdapter,
    SupervisedAgent,
    SupervisedEvalContext,
    SupervisedTrainContext,
    task_losses,
)

Params = dict[str, torch.Tensor]


# --- batched functional calls --------------------------------------------------------------


def params_of(net: nn.Module) -> Params:
    """The network's parameters as a ``{name: tensor}`` dict (the tensors themselves)."""
    return dict(net.named_parameters())


def expand_params(params: Mapping[str, torch.Tensor], n_tasks: int) -> Params:
    """One copy of ``params`` per task: views of shape ``(n_tasks, *shape)`` that keep the graph."""
    return {k: v.unsqueeze(0).expand(n_tasks, *v.shape) for k, v in params.items()}


def batched_forward(net: nn.Module, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``net`` with task ``t``'s parameters ``params[name][t]`` applied to ``x[t]``, for every task."""
    if getattr(net, "supports_batched_params", False):
        return functional_call(net, dict(params), (x,))
    return vmap(lambda p, xi: functional_call(net, p, (xi,)))(dict(params), x)


LearningRate = float | Mapping[str, torch.Tensor]


def inner_update(
    net: nn.Module,
    params: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    loss: str,
    lr: LearningRate,
    create_graph: bool,
) -> tuple[Params, torch.Tensor]:
    """One gradient step of every task on its own data: ``theta_t' = theta_t - lr * grad L_t(theta_t)``.

    ``params`` are batched (leading ``tasks`` dimension). ``lr`` is a float or, for
    Meta-SGD, a dict of per-parameter rates shaped like one task's parameters. With
    ``create_graph`` the step stays differentiable (second-order MAML); without it the
    gradients are constants (first-order MAML, Reptile, fine-tuning). Returns the new
    parameters and the task losses before the step, shape ``(tasks,)``.
    """
    losses = task_losses(loss, batched_forward(net, params, x), y)
    names = list(params)
    grads = torch.autograd.grad(losses.sum(), [params[n] for n in names], create_graph=create_graph)
    if isinstance(lr, Mapping):
        new = {n: params[n] - lr[n] * g for n, g in zip(names, grads)}
    else:
        new = {n: params[n] - lr * g for n, g in zip(names, grads)}
    return new, losses


# --- adaptation ----------------------------------------------------------------------------


class GradientAdapter(SupervisedAdapter):
    """Fine-tuning from learned initial parameters: ``adapt()`` is one gradient step per task.

    Used by MAML, first-order MAML, Reptile, Meta-SGD (per-parameter rates), the
    pretrained and the from-scratch baselines. With ``max_steps`` set, ``adapt()`` calls
    beyond that many are no-ops (Meta-SGD's rates are learned for a fixed number of steps).
    """

    def __init__(
        self,
        net: nn.Module,
        init: Mapping[str, torch.Tensor],
        lr: LearningRate,
        loss: str,
        max_steps: int | None = None,
    ) -> None:
        self.net = net
        self.max_steps = max_steps
        self.init = {k: v.detach().clone() for k, v in init.items()}
        self.lr = {k: v.detach().clone() for k, v in lr.items()} if isinstance(lr, Mapping) else float(lr)
        self.loss = loss

    def reset(self, support_x: torch.Tensor, support_y: torch.Tensor) -> None:
        self.x, self.y = support_x, support_y
        n = int(support_x.shape[0])
        self.params = {k: v.expand(n, *v.shape).clone() for k, v in self.init.items()}
        self.steps = 0

    def adapt(self) -> None:
        if self.max_steps is not None and self.steps >= self.max_steps:
            return
        self.steps += 1
        with torch.enable_grad():
            params = {k: v.requires_grad_(True) for k, v in self.params.items()}
            new, _ = inner_update(self.net, params, self.x, self.y, self.loss, self.lr, create_graph=False)
        self.params = {k: v.detach() for k, v in new.items()}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return batched_forward(self.net, self.params, x)


# --- meta-training guards ------------------------------------------------------------------


def all_finite(loss: torch.Tensor, grads: Any = ()) -> bool:
    """True when the loss and every gradient tensor are finite (one reduction, one sync)."""
    parts = [loss.detach().reshape(-1).sum()] + [g.detach().sum() for g in grads if g is not None]
    return bool(torch.isfinite(torch.stack(parts).sum()))


def diverged(
    ctx: SupervisedTrainContext, agent: str, iteration: int, state: Mapping[str, Any], config: Any
) -> DivergenceError:
    """The error to raise for a NaN/inf loss or gradient at loop index ``iteration`` (from 0).

    ``state`` holds the parameters before this iteration's update (the update is skipped),
    i.e. the result of the last iteration whose loss and gradients were finite; the error
    carries a copy, which :func:`metarl_bench.evaluate` saves (see :class:`DivergenceError`).
    """
    cfg = dataclasses.asdict(config)
    return DivergenceError(
        agent, ctx.name, "meta-training loss or gradient", iteration + 1, cfg.get("iterations"), state,
        "Lower outer_lr or inner_lr, or check the data for NaN.", config=cfg,
    )


def protocol_shots(benchmark: Benchmark, agent: str) -> int:
    """The support examples per task (K) ``benchmark``'s protocol sets; a ``ValueError`` naming
    the agent when it sets none (an RL benchmark)."""
    shots = benchmark.protocol.shots
    if shots is None:
        raise ValueError(
            f"agent {agent!r} on {benchmark.id}: the protocol sets no shots (support examples per task); "
            f"{agent} runs on supervised few-shot benchmarks"
        )
    return shots


def check_sample_budget(agent: str, benchmark: Benchmark, iterations: int, per_iteration: int) -> None:
    """Refuse, before any work, a config whose meta-training would draw more labelled
    examples than ``benchmark`` allows (``per_iteration`` shots in each of ``iterations``;
    a classification shot is one example per class, ``points_per_shot``)."""
    per_iteration *= int(getattr(benchmark.family, "points_per_shot", 1))
    need, budget = iterations * per_iteration, benchmark.meta_train_steps
    if need > budget:
        raise ValueError(
            f"agent {agent!r} on {benchmark.id}: {iterations:,} iterations x {per_iteration:,} labelled examples "
            f"= {need:,}, over the meta-training budget of {budget:,}; lower iterations or meta_batch_size"
        )


def should_log(iteration: int, iterations: int) -> bool:
    """About 100 log rows per run, plus the first and the last iteration."""
    return iteration == 0 or iteration == iterations - 1 or iteration % max(1, iterations // 100) == 0


def training_iterations(ctx: SupervisedTrainContext, total: int, desc: str) -> Iterator[int]:
    """``range(total)``, shown as a progress bar (:meth:`SupervisedTrainContext.progress_bar`)
    when the run asks for progress."""
    with ctx.progress_bar(total, "it", desc) as bar:
        for it in range(total):
            yield it
            bar.update(1)


# --- saving --------------------------------------------------------------------------------


class NetLearner(SupervisedAgent):
    """A supervised learner whose learned state is one network, ``self.net``, built by
    ``meta_train`` with ``ctx.problem.make_net(config.hidden_sizes, ...)``.

    Saving (see :class:`~metarl_bench.agents.Agent`): ``state_dict()`` is ``{"net": its
    state dict}``; after ``load_state_dict``, :meth:`trained_net` builds the network for the
    adapter's problem and gives it the saved weights.
    """

    net: nn.Module
    _loaded_net: Mapping[str, Any] | None = None

    def trained_net(self, ctx: SupervisedEvalContext) -> nn.Module:
        """The meta-trained network (a loaded agent's is built here, for ``ctx.problem``)."""
        if not hasattr(self, "net"):
            if self._loaded_net is None:
                raise RuntimeError(f"{self.name}: call meta_train before adapter")
            hidden = tuple(vars(self.config)["hidden_sizes"])  # every NetLearner config has hidden_sizes
            net = ctx.problem.make_net(hidden, torch.Generator().manual_seed(0))
            net.load_state_dict(self._loaded_net)
            self.net, self._loaded_net = net, None
        return self.net

    def state_dict(self) -> dict[str, Any]:
        """``{"net": the meta-trained network's state dict}``, or ``{}`` before meta-training."""
        if hasattr(self, "net"):
            return {"net": self.net.state_dict()}
        return {} if self._loaded_net is None else {"net": self._loaded_net}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if set(state) - {"net"}:
            raise ValueError(f"agent {self.name!r}: the saved state must hold only 'net', got {sorted(state)}")
        if hasattr(self, "net") and "net" in state:  # already built: load in place (shapes must match)
            self.net.load_state_dict(state["net"])
            return
        self._loaded_net = state.get("net")


def check_hidden(agent: str, hidden_sizes: tuple[int, ...]) -> None:
    if not hidden_sizes or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden_sizes):
        raise ValueError(f"agent {agent!r}: config field 'hidden_sizes' must list layer widths >= 1, got {hidden_sizes!r}")


def check_positive_int(agent: str, **fields: int) -> None:
    for key, value in fields.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"agent {agent!r}: config field {key!r} must be an integer >= 1, got {value!r}")
