"""Reptile for reinforcement learning (``reptile``, RL track).

Nichol, Achiam & Schulman 2018, "On First-Order Meta-Learning Algorithms", algorithm 2
(batched Reptile), applied to policies. For each meta-batch of tasks i = 1..n:

    phi_i = U^k_i(theta)                                  k inner policy-gradient steps
    theta <- theta + epsilon * (1/n) sum_i (phi_i - theta)

where one inner step is the vanilla policy-gradient step of MAML's inner loop (fresh
``fast_batch_size`` episodes with the current adapted policy, linear baseline, GAE,
per-task normalisation, step ``fast_lr``), so meta-training and test-time adaptation run
the same update. The paper uses Adam inside and ``epsilon`` annealed linearly to zero;
here the inner optimiser is plain SGD (what the harness's adaptation stages apply) and
``meta_lr`` is annealed linearly to zero over ``iterations`` when ``anneal`` is set.
All tasks of a meta-batch adapt together: parameters carry a leading task axis.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from metarl_bench.agents import positive
from metarl_bench.baselines.gradient.common import Params, any_nonfinite, stack_params
from metarl_bench.baselines.gradient.meta_learner import GradientMetaLearner, MAMLConfig
from metarl_bench.benchmarks import Benchmark
from metarl_bench.harness import MetaTrainContext


@dataclass
class ReptileRLConfig(MAMLConfig):
    """Reptile on policies: inner SGD policy-gradient steps, outer interpolation."""

    num_steps: int = 3
    """Inner policy-gradient steps per task during meta-training (k)."""
    meta_lr: float = 1.0
    """Outer step size epsilon (fraction of the way towards the mean adapted parameters)."""
    anneal: bool = True
    """Anneal ``meta_lr`` linearly to zero over ``iterations`` (as in the paper)."""

    agent_name: ClassVar[str] = "reptile"

    def validate(self) -> None:
        super().validate()
        positive("reptile", meta_lr=self.meta_lr)


def reptile_update(theta: Params, adapted: Params, meta_lr: float) -> Params:
    """``theta + meta_lr * mean_i(adapted_i - theta)``; ``adapted`` carries a leading task axis."""
    return {k: theta[k] + meta_lr * (adapted[k].mean(0) - theta[k]) for k in theta}


class ReptileRL(GradientMetaLearner):
    """Reptile (Nichol et al. 2018) on policy-gradient inner loops."""

    name = "reptile"
    config_cls = ReptileRLConfig
    config: ReptileRLConfig
    description = "Reptile: k inner policy-gradient steps per task, move towards the adapted parameters"
    divergence_fix = "Lower fast_lr or meta_lr, or check the environment's rewards for NaN or huge values."

    def steps_per_iteration(self, benchmark: Benchmark) -> int:
        """The env steps one meta-iteration may take: ``num_steps`` batches, no separate validation batch."""
        cfg = self.config
        return cfg.num_steps * cfg.meta_batch_size * cfg.fast_batch_size * (benchmark.family.horizon or 1)

    def _meta_train(self, ctx: MetaTrainContext) -> None:
        cfg = self.config
        m = cfg.meta_batch_size
        venv = self._start_training(ctx)
        per_iteration = cfg.num_steps * venv.num_envs * (ctx.family.horizon or 1)
        with ctx.progress_bar(self.progress_total(ctx, per_iteration), "it", f"{self.name}: meta-training") as bar:
            for it in range(1, cfg.iterations + 1):
                if ctx.steps_left < per_iteration:
                    ctx.record(iteration=it, stopped="meta-training step budget exhausted")
                    break
                self._next_meta_batch(ctx, venv)
                t0, c0 = time.perf_counter(), time.process_time()
                t_sampling = 0.0
                theta = {k: v.detach().clone() for k, v in self.policy.params().items()}
                params = stack_params(theta, m)
                returns = []
                for _ in range(cfg.num_steps):
                    ts = time.perf_counter()
                    episodes = self._collect(ctx, venv, params, m)
                    t_sampling += time.perf_counter() - ts
                    returns.append(float(episodes.returns.mean()))  # return after len(returns) inner steps
                    batch = self._batch(episodes, m)
                    params = self.sampling_step(params, batch)
                    if any_nonfinite(*params.values()):
                        raise self._diverged(it, "inner-loop policy loss")
                eps = cfg.meta_lr * (1.0 - (it - 1) / cfg.iterations if cfg.anneal else 1.0)
                new = reptile_update(theta, params, eps)
                if any_nonfinite(*new.values()):
                    raise self._diverged(it, "policy parameters")
                with torch.no_grad():
                    for k, p in self.policy.named_parameters():
                        p.copy_(new[k])
                self._save_checkpoint(it)
                ctx.record(
                    iteration=it,
                    train_return=returns[0],
                    last_inner_return=returns[-1],
                    meta_lr=round(eps, 6),
                    seconds=round(time.perf_counter() - t0, 4),
                    cpu_seconds=round(time.process_time() - c0, 4),
                    t_sampling=round(t_sampling, 4),
                    step_norm=float(np.sqrt(sum(float(((new[k] - theta[k]) ** 2).sum()) for k in theta))),
                )
                bar.set_postfix(train_return=f"{returns[0]:.3g}", refresh=False)
                bar.update(1)
        venv.close()
