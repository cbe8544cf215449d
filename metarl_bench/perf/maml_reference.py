"""The same-run speed reference of ``maml-trpo``: pytorch-maml-rl's computation, task by task.

pytorch-maml-rl (Deleu 2018) cannot be installed next to Gymnasium 1.x, so ``maml_bench``
measures its *structure* in our code on the same machine and in the same run:

- sampling, per task: a ``gymnasium.vector.SyncVectorEnv`` of ``fast_batch_size`` single
  ``gym.make`` envs (pytorch-maml-rl's ``MultiTaskSampler`` worker), the linear baseline and
  the inner step fitted on that task alone, then the task's post-adaptation episodes;
- the meta-update, per task: adaptation with ``create_graph`` and the surrogate loss and
  KL of that task, averaged over tasks; the KL's Hessian-vector product by double
  backward through the whole graph (``rc.kl_hessian_vector_product``, pytorch-maml-rl's
  ``hessian_vector_product``); conjugate gradient; a line search that re-adapts every task.

The mathematics is ``maml-trpo``'s (a test checks the two HVPs agree), so the ratio of the
two timings is the speed-up of batching all tasks in one vector env and one set of tensor
operations, with the factored Hessian-vector product.
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import torch

from metarl_bench.baselines.gradient.common import (
    GroupBatch,
    conjugate_gradient,
    flat,
    group_batch,
    kl_hessian_vector_product,
    set_flat_params,
)
from metarl_bench.baselines.gradient.maml_rl import MAMLTRPO


def reference_meta_batch(agent: MAMLTRPO, ctx: Any, tasks: list[Any]) -> dict[str, float]:
    """One meta-batch of ``agent`` (built, with its policy) on ``tasks``, task by task as
    pytorch-maml-rl computes it; returns seconds spent in each part and in all."""
    cfg = agent.config
    policy = agent.policy
    e = cfg.fast_batch_size
    timing = {"sampling": 0.0, "inner": 0.0, "cg": 0.0, "line_search": 0.0}
    t_start = time.perf_counter()

    # -- sampling: one synchronous vector env of single envs per task ------------------------
    train: list[list[GroupBatch]] = []
    valid: list[GroupBatch] = []
    venv = gym.vector.SyncVectorEnv([lambda: ctx.family.make_env() for _ in range(e)])
    for task in tasks:
        venv.call("set_task", task)
        params = None
        task_train = []
        for _ in range(cfg.num_steps):
            t0 = time.perf_counter()
            eps = agent._collect(ctx, venv, params, 1)
            t1 = time.perf_counter()
            batch = group_batch(eps, 1, cfg.gamma, cfg.gae_lambda)
            params = agent.sampling_step(params, batch)
            task_train.append(batch)
            timing["sampling"] += t1 - t0
            timing["inner"] += time.perf_counter() - t1
        t0 = time.perf_counter()
        eps = agent._collect(ctx, venv, params, 1)
        t1 = time.perf_counter()
        valid.append(group_batch(eps, 1, cfg.gamma, cfg.gae_lambda))
        train.append(task_train)
        timing["sampling"] += t1 - t0
        timing["inner"] += time.perf_counter() - t1
    venv.close()

    # -- the meta-update, task by task ---------------------------------------------------------
    t0 = time.perf_counter()
    parts = [agent.surrogate_loss(tr, va) for tr, va in zip(train, valid)]
    old_loss = torch.stack([p[0] for p in parts]).mean()
    old_kl = torch.stack([p[1] for p in parts]).mean()
    old_dists = [p[2] for p in parts]
    theta = list(policy.parameters())
    grads = flat(torch.autograd.grad(old_loss, theta, retain_graph=True))
    old_loss = old_loss.detach()
    t1 = time.perf_counter()
    timing["inner"] += t1 - t0
    hvp = kl_hessian_vector_product(old_kl, theta, cfg.cg_damping)
    stepdir, h_stepdir = conjugate_gradient(hvp, grads, cfg.cg_iters)
    shs = 0.5 * torch.dot(stepdir, h_stepdir)
    t2 = time.perf_counter()
    timing["cg"] += t2 - t1
    old_params = flat([p.detach() for p in theta])
    if float(shs) > 0:
        step = stepdir / torch.sqrt(shs / cfg.max_kl)
        step_size = 1.0
        for _ in range(cfg.ls_max_steps):
            set_flat_params(policy, old_params - step_size * step)
            losses = [agent.surrogate_loss(tr, va, old_dist=od) for tr, va, od in zip(train, valid, old_dists)]
            loss = torch.stack([x[0] for x in losses]).mean()
            kl = torch.stack([x[1] for x in losses]).mean()
            if float(loss - old_loss) < 0.0 and float(kl) < cfg.max_kl:
                break
            step_size *= cfg.ls_backtrack_ratio
    set_flat_params(policy, old_params)  # a speed probe: leave the agent as it was
    timing["line_search"] += time.perf_counter() - t2
    timing["total"] = time.perf_counter() - t_start
    return timing
