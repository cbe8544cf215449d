"""MAML for reinforcement learning: ``maml-trpo`` and ``maml-ppo``.

Finn, Abbeel & Levine 2017, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
Networks", section 3.2 / 5.3, as reproduced by pytorch-maml-rl (Deleu 2018), whose
decomposition this file keeps: :meth:`MAMLTRPO.adapt`, :meth:`MAMLTRPO.surrogate_loss`,
:meth:`MAMLTRPO.hessian_vector_product`, :meth:`MAMLTRPO.step`.

Inner loop (per task i, ``num_steps`` times, each on ``fast_batch_size`` fresh episodes):

    theta'_i = theta - fast_lr * grad_theta L_i(theta),
    L_i(theta) = - mean_episodes mean_t [ log pi_theta(a_t | s_t) * A_t ]

with ``A_t`` from GAE(gamma, lambda) against a linear feature baseline fitted on the
task's episodes, normalised per task. The meta-batch's tasks are adapted together: the
parameters get a leading task axis and the inner gradient of ``sum_i L_i`` with respect
to that axis is the per-task gradient, in one backward pass.

Outer loop, ``maml-trpo`` (Schulman et al. 2015): on post-adaptation episodes,

    minimise  L(theta) = - mean_i mean [ pi_theta'_i(a|s) / pi_old(a|s) * A ]
    s.t.      mean_i KL(pi_theta'_i || pi_old) <= max_kl,

with the true second-order meta-gradient (``create_graph`` through the inner update
unless ``first_order``), the step direction from ``cg_iters`` conjugate-gradient
iterations on Hessian-vector products of the KL (damped by ``cg_damping``), scaled to the
trust region, then a backtracking line search (``ls_max_steps`` x ``ls_backtrack_ratio``)
accepting the first step that lowers the surrogate and keeps the KL under ``max_kl``. A
line search that never succeeds keeps the old parameters and is logged.

Outer loop, ``maml-ppo``: the clipped surrogate of PPO (Schulman et al. 2017) over the
post-adaptation episodes, optimised with Adam for ``ppo_epochs`` epochs per meta-batch,
the gradient flowing through the inner update: the PPO-MAML formulation of ProMP
(Rothfuss et al. 2019, section 6 and appendix; clip 0.3, Adam 1e-3, 5 steps).

Test-time adaptation (the harness's protocol): one stage is ``fast_batch_size``
episodes per run, and ``adapt()`` takes one inner step per run on them, so the
adaptation curve shows the return after 0, 1, 2, ... gradient steps.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from metarl_bench.agents import Adapter, Agent, AgentConfig, DivergenceError, Transition, positive
from metarl_bench.baselines.gradient.common import (
    Episodes,
    GroupBatch,
    MLPPolicy,
    Params,
    any_nonfinite,
    collect_episodes,
    conjugate_gradient,
    flat,
    group_batch,
    group_runs,
    make_policy,
    set_flat_params,
    stack_params,
    subsample_steps,
    torch_generator,
    torch_threads,
)
from metarl_bench.baselines.gradient.mlp_curvature import FisherProduct, InnerLossCurvature

log = logging.getLogger(__name__)


class TrainingDiverged(DivergenceError):
    """A non-finite loss, gradient or parameter stopped meta-training; the policy keeps its
    last good parameters, which the error carries (and the harness saves)."""


# --- configs -------------------------------------------------------------------------------


@dataclass
class MAMLConfig(AgentConfig):
    """Sampling, policy and inner-loop settings shared by the gradient-based meta-learners
    (pytorch-maml-rl's names; defaults are its ``2d-navigation.yaml``)."""

    meta_batch_size: int = 20
    """Tasks per meta-batch (outer update)."""
    fast_batch_size: int = 20
    """Episodes per task for each inner step; also the adaptation stage size at test time."""
    num_steps: int = 1
    """Inner policy-gradient steps per task during meta-training."""
    fast_lr: float = 0.1
    """Inner-loop step size."""
    first_order: bool = False
    """Drop the second-order terms of the meta-gradient (first-order MAML)."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 1.0
    """GAE lambda."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden layer widths of the policy MLP."""
    nonlinearity: str = "tanh"
    """Hidden activation: 'tanh' or 'relu'."""
    init_std: float = 1.0
    """Initial standard deviation of Gaussian policies."""
    iterations: int = 500
    """Meta-batches (outer updates); training also stops when the step budget runs out."""
    torch_threads: int = 1
    """torch CPU threads while training and adapting (1 is fastest for these small networks)."""

    agent_name: ClassVar[str] = "maml"

    def validate(self) -> None:
        agent = self.agent_name
        for name in ("meta_batch_size", "fast_batch_size", "num_steps", "iterations", "torch_threads"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"agent {agent!r}: config field {name!r} must be an integer >= 1, got {value!r}")
        positive(agent, fast_lr=self.fast_lr, init_std=self.init_std)
        for name in ("gamma", "gae_lambda"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"agent {agent!r}: config field {name!r} must be in [0, 1], got {value!r}")
        if not self.hidden_sizes or any(int(h) < 1 for h in self.hidden_sizes):
            raise ValueError(
                f"agent {agent!r}: config field 'hidden_sizes' must list positive widths, got {self.hidden_sizes!r}"
            )
        if self.nonlinearity not in ("tanh", "relu"):
            raise ValueError(
                f"agent {agent!r}: config field 'nonlinearity' must be 'tanh' or 'relu', got {self.nonlinearity!r}"
            )


@dataclass
class MAMLTRPOConfig(MAMLConfig):
    """MAML with a TRPO outer loop (pytorch-maml-rl's ``2d-navigation.yaml`` defaults)."""

    max_kl: float = 1e-2
    """Trust-region size: bound on the mean KL between old and new adapted policies."""
    cg_iters: int = 10
    """Conjugate-gradient iterations for the step direction."""
    cg_damping: float = 1e-5
    """Damping added to the KL Hessian in conjugate gradient."""
    cg_subsample: float = 1.0
    """Fraction of each task's samples used for the KL Hessian-vector products of conjugate
    gradient, evenly spaced along its episodes (1 = all, as pytorch-maml-rl; 0.2 = every 5th
    sample, as OpenAI Baselines' TRPO: steps 0, 5, ..., 95 of every 100-step episode). The
    meta-gradient, the trust-region check and the line search always use every sample."""
    ls_max_steps: int = 15
    """Maximum backtracking steps in the line search."""
    ls_backtrack_ratio: float = 0.8
    """Step shrink factor per backtracking step."""

    agent_name: ClassVar[str] = "maml-trpo"

    def validate(self) -> None:
        super().validate()
        positive("maml-trpo", max_kl=self.max_kl, cg_iters=self.cg_iters, ls_max_steps=self.ls_max_steps)
        if self.cg_damping < 0:
            raise ValueError(f"agent 'maml-trpo': config field 'cg_damping' must be >= 0, got {self.cg_damping!r}")
        if not 0.0 < self.cg_subsample <= 1.0:
            raise ValueError(f"agent 'maml-trpo': config field 'cg_subsample' must be in (0, 1], got {self.cg_subsample!r}")
        if not 0.0 < self.ls_backtrack_ratio < 1.0:
            raise ValueError(
                f"agent 'maml-trpo': config field 'ls_backtrack_ratio' must be in (0, 1), got {self.ls_backtrack_ratio!r}"
            )


@dataclass
class MAMLPPOConfig(MAMLConfig):
    """MAML with a PPO-clip outer loop (ProMP's PPO-MAML settings)."""

    outer_lr: float = 1e-3
    """Adam learning rate of the outer (meta) update."""
    ppo_epochs: int = 5
    """Gradient steps on the clipped surrogate per meta-batch."""
    clip_eps: float = 0.3
    """PPO clipping range of the likelihood ratio."""

    agent_name: ClassVar[str] = "maml-ppo"

    def validate(self) -> None:
        super().validate()
        positive("maml-ppo", outer_lr=self.outer_lr, ppo_epochs=self.ppo_epochs, clip_eps=self.clip_eps)


# --- the shared machinery -----------------------------------------------------------------


def reinforce_loss(policy: MLPPolicy, params: Params, batch: GroupBatch) -> Tensor:
    """Per-group REINFORCE loss ``(G,)``: ``- sum_k w_k * A_k * log pi(a_k | s_k)``."""
    dist = policy.call(params, batch.obs)
    logp = policy.log_prob(dist, batch.actions)
    return -(logp * batch.advantages * batch.weights).sum(-1)


def inner_step(policy: MLPPolicy, params: Params, batch: GroupBatch, lr: float, create_graph: bool) -> Params:
    """One policy-gradient step per group: ``params`` carry a leading group axis.

    The groups' losses are summed; since group g's loss depends only on slice g of the
    parameters, the gradient with respect to the stacked tensors is the per-group
    gradient. With ``create_graph`` the result stays differentiable (second-order MAML).
    """
    names = list(params)
    loss = reinforce_loss(policy, params, batch).sum()
    grads = torch.autograd.grad(loss, [params[k] for k in names], create_graph=create_graph)
    return {k: params[k] - lr * g for k, g in zip(names, grads)}


class _GradientMetaLearner(Agent):
    """Common meta-training plumbing: policy, batched sampling, adaptation, checkpoints."""

    config_cls = MAMLConfig
    learns = True
    config: MAMLConfig
    divergence_fix: ClassVar[str] = "Lower fast_lr, or check the environment's rewards for NaN or huge values."

    def supports(self, benchmark: Any) -> str | None:
        if benchmark.family.kind != "rl":
            return "an RL meta-learner"
        return None

    def check_benchmark(self, benchmark: Any) -> None:
        """The test-time stage (``fast_batch_size`` episodes) must divide the benchmark's
        budget of episodes, and one meta-iteration must fit its meta-training budget."""
        if benchmark.family.kind != "rl":
            return
        cfg, budget = self.config, benchmark.protocol.budget_episodes
        if cfg.fast_batch_size < budget and budget % cfg.fast_batch_size:
            divisors = [d for d in range(1, budget + 1) if budget % d == 0]
            raise ValueError(
                f"agent {self.name!r} on {benchmark.id}: fast_batch_size={cfg.fast_batch_size} (the episodes of one "
                f"adaptation stage) does not divide the budget of {budget} episodes; choose one of {divisors}"
            )
        steps = self.steps_per_iteration(benchmark)
        if 0 < benchmark.meta_train_steps < steps:
            raise ValueError(
                f"agent {self.name!r} on {benchmark.id}: one meta-iteration takes {steps:,} env steps but the "
                f"meta-training budget is {benchmark.meta_train_steps:,}; lower meta_batch_size, fast_batch_size "
                "or num_steps"
            )

    def steps_per_iteration(self, benchmark: Any) -> int:
        """The env steps one meta-iteration may take (whole-horizon episodes)."""
        cfg = self.config
        return (cfg.num_steps + 1) * cfg.meta_batch_size * cfg.fast_batch_size * (benchmark.family.horizon or 1)

    # -- construction --------------------------------------------------------------------
    def _build(self, ctx: Any, observation_space: Any, action_space: Any) -> None:
        seeds = np.random.SeedSequence(ctx.seed).generate_state(2)
        self.policy = make_policy(
            observation_space,
            action_space,
            self.config.hidden_sizes,
            self.config.nonlinearity,
            torch_generator(int(seeds[0])),
            init_std=self.config.init_std,
        )
        self.generator = torch_generator(int(seeds[1]))
        self.benchmark_id = ctx.benchmark.id
        self.checkpoint: dict[str, Any] = {"iteration": 0, "state_dict": copy.deepcopy(self.policy.state_dict())}

    def _save_checkpoint(self, iteration: int) -> None:
        self.checkpoint = {"iteration": iteration, "state_dict": copy.deepcopy(self.policy.state_dict())}

    def _diverged(self, iteration: int, what: str) -> TrainingDiverged:
        """Restore the last good parameters (those after ``iteration - 1``) and return the error to raise."""
        assert self.checkpoint["iteration"] == iteration - 1, "a checkpoint is taken after every meta-iteration"
        self.policy.load_state_dict(self.checkpoint["state_dict"])
        return TrainingDiverged(
            self.name, self.benchmark_id, what, iteration, self.config.iterations, self.checkpoint["state_dict"],
            self.divergence_fix, config=self.resolved_config(), unit="meta-iteration",
        )

    # -- sampling ------------------------------------------------------------------------
    def _act_fn(self, params: Params | None, groups: int) -> Any:
        policy, gen = self.policy, self.generator

        def act(obs: Tensor) -> Tensor:
            if params is None:
                return policy.sample(policy(obs), gen)
            o = obs.reshape(groups, obs.shape[0] // groups, *obs.shape[1:])
            a = policy.sample(policy.call(params, o), gen)
            return a.reshape(obs.shape[0], *a.shape[2:])

        return act

    def _collect(self, ctx: Any, venv: Any, params: Params | None, groups: int) -> Episodes:
        seed = int(ctx.rng.integers(0, 2**31 - 1))
        return collect_episodes(venv, self._act_fn(params, groups), ctx.family.horizon, seed=seed)

    def _batch(self, episodes: Episodes, groups: int) -> GroupBatch:
        return group_batch(episodes, groups, self.config.gamma, self.config.gae_lambda)

    def sample_meta_batch(
        self, ctx: Any, venv: Any, timing: dict[str, float], iteration: int = 0
    ) -> tuple[list[GroupBatch], GroupBatch, list[Episodes], Episodes]:
        """Tasks of this meta-batch are set on ``venv``; sample ``num_steps`` train batches
        (each with the policy adapted so far, first-order for sampling only, as
        pytorch-maml-rl's sampler) and one batch of post-adaptation (valid) episodes.
        """
        cfg = self.config
        m = cfg.meta_batch_size
        params: Params | None = None
        train_batches, train_eps = [], []
        for _ in range(cfg.num_steps):
            t0 = time.perf_counter()
            eps = self._collect(ctx, venv, params, m)
            t1 = time.perf_counter()
            batch = self._batch(eps, m)
            params = self.sampling_step(params, batch)
            if any_nonfinite(*params.values()):
                raise self._diverged(iteration, "inner-loop policy loss")
            timing["sampling"] += t1 - t0
            timing["inner"] += time.perf_counter() - t1
            train_batches.append(batch)
            train_eps.append(eps)
        t0 = time.perf_counter()
        valid_eps = self._collect(ctx, venv, params, m)
        t1 = time.perf_counter()
        valid = self._batch(valid_eps, m)
        timing["sampling"] += t1 - t0
        timing["inner"] += time.perf_counter() - t1
        return train_batches, valid, train_eps, valid_eps

    def sampling_step(self, params: Params | None, batch: GroupBatch) -> Params:
        """The next per-group parameters to sample with: one first-order inner step from
        ``params`` (the meta-parameters when None), detached."""
        base = stack_params(self.policy.params(), batch.groups) if params is None else params
        base = {k: v.detach().requires_grad_(True) for k, v in base.items()}
        return {k: v.detach() for k, v in inner_step(self.policy, base, batch, self.config.fast_lr, False).items()}

    # -- the MAML decomposition ----------------------------------------------------------
    def adapt(self, train_batches: list[GroupBatch], first_order: bool | None = None) -> Params:
        """Per-task adapted parameters ``(G, ...)`` from the meta-parameters, differentiable
        with respect to them (second order unless ``first_order``)."""
        if first_order is None:
            first_order = self.config.first_order
        params = stack_params(self.policy.params(), train_batches[0].groups)
        for batch in train_batches:
            params = inner_step(self.policy, params, batch, self.config.fast_lr, create_graph=not first_order)
        return params

    # -- meta-training loop --------------------------------------------------------------
    def meta_train(self, ctx: Any) -> None:
        with torch_threads(self.config.torch_threads):
            self._meta_train(ctx)

    def _start_training(self, ctx: Any) -> Any:
        """Build the policy (and optimiser) and return the vector env of one meta-batch:
        ``meta_batch_size`` tasks x ``fast_batch_size`` episodes."""
        cfg = self.config
        venv = ctx.make_vector_env([ctx.train_tasks[0]] * (cfg.meta_batch_size * cfg.fast_batch_size))
        self._build(ctx, venv.single_observation_space, venv.single_action_space)
        self._setup_optimiser()
        return venv

    def _next_meta_batch(self, ctx: Any, venv: Any) -> None:
        """Draw ``meta_batch_size`` training tasks and give each ``fast_batch_size`` sub-envs."""
        m, e = self.config.meta_batch_size, self.config.fast_batch_size
        idx = ctx.rng.choice(len(ctx.train_tasks), size=m, replace=len(ctx.train_tasks) < m)
        venv.set_tasks([ctx.train_tasks[int(i)] for i in idx for _ in range(e)])

    def _meta_train(self, ctx: Any) -> None:
        cfg = self.config
        venv = self._start_training(ctx)
        per_iteration = (cfg.num_steps + 1) * venv.num_envs * (ctx.family.horizon or 1)
        for it in range(1, cfg.iterations + 1):
            if ctx.steps_left < per_iteration:
                ctx.record(iteration=it, stopped="meta-training step budget exhausted")
                break
            self._next_meta_batch(ctx, venv)
            timing = {"sampling": 0.0, "inner": 0.0, "cg": 0.0, "line_search": 0.0, "outer": 0.0}
            t0, c0 = time.perf_counter(), time.process_time()
            train, valid, train_eps, valid_eps = self.sample_meta_batch(ctx, venv, timing, it)
            stats = self.step(train, valid, it, timing)
            self._save_checkpoint(it)
            ctx.record(
                iteration=it,
                train_return=float(train_eps[0].returns.mean()),
                valid_return=float(valid_eps.returns.mean()),
                seconds=round(time.perf_counter() - t0, 4),
                cpu_seconds=round(time.process_time() - c0, 4),
                **{f"t_{k}": round(v, 4) for k, v in timing.items()},
                **stats,
            )
        venv.close()

    def _setup_optimiser(self) -> None:
        pass

    def step(self, train: list[GroupBatch], valid: GroupBatch, iteration: int, timing: dict[str, float]) -> dict:
        raise NotImplementedError

    def adapter(self, ctx: Any) -> Adapter:
        if getattr(self, "policy", None) is None:
            self._build_untrained(ctx)
        return PolicyGradientAdapter(self.policy, self.config, ctx)

    def _build_untrained(self, ctx: Any) -> None:
        """Adapter without meta-training (a benchmark with no budget): the initial policy."""
        self._build(ctx, ctx.observation_space, ctx.action_space)


class MAMLTRPO(_GradientMetaLearner):
    """MAML with a TRPO meta-update (Finn et al. 2017; pytorch-maml-rl).

    The Hessian-vector product is that of pytorch-maml-rl (the KL's Hessian through the
    inner update), evaluated in factored form. With ``theta'_i = U(theta)`` the adapted
    parameters and ``J_i = d theta'_i / d theta``, the chain rule gives

        d^2 KL / d theta^2 = sum_i J_i^T F_i J_i + sum_i (dKL / d theta'_i) . d^2 theta'_i / d theta^2,

    and the second sum vanishes exactly because KL(pi || pi_old) has zero gradient where
    pi = pi_old, which is where TRPO evaluates it. Each inner step's Jacobian is
    ``I - fast_lr * H_k`` with ``H_k`` the symmetric Hessian of the inner loss, so ``J v``
    and ``J^T w`` are products with ``H_k`` (Pearlmutter's R-operator written out for the
    MLP in :mod:`mlp_curvature`, its direction-independent parts computed once per
    meta-batch). ``F_i`` is the KL's Hessian with respect to the adapted
    parameters, the Fisher information of the policy: ``F_i u = D^T M D u`` with ``D``
    the network's Jacobian on the post-adaptation episodes and ``M`` the KL's Hessian in
    distribution coordinates (``diag(1/std^2, 2)`` for Gaussians, ``diag(p)`` on
    log-probabilities), so ``D u`` is one forward-mode pass and ``D^T`` one backward pass
    (``fisher_cotangent`` of the policy supplies ``M``). This avoids differentiating the
    network to third order on every conjugate-gradient iteration; tests check it against
    the direct product, for both policy kinds.

    With ``cg_subsample < 1`` the products use samples evenly spaced along each task's
    episodes (:func:`subsample_steps`; OpenAI Baselines' TRPO computes its Fisher-vector
    products on every 5th sample): the curvature is then an estimate, while the meta-gradient, the KL
    bound and the line search still use every sample.
    """

    name = "maml-trpo"
    config_cls = MAMLTRPOConfig
    config: MAMLTRPOConfig
    divergence_fix = "Lower fast_lr or max_kl, or check the environment's rewards for NaN or huge values."
    description = "MAML, vanilla-PG inner step, TRPO outer step with the second-order meta-gradient"

    def surrogate_loss(
        self, train: list[GroupBatch], valid: GroupBatch, old_dist: tuple[Tensor, ...] | None = None
    ) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
        """Mean over tasks of the importance-weighted surrogate loss and of KL(new || old).

        With ``old_dist`` None (the first evaluation of a step) the adapted policy is the
        old policy and the graph is kept for the meta-gradient; otherwise (line search)
        only values are needed: the inner step uses the hand-written gradient and nothing
        keeps a graph.
        """
        if old_dist is None:
            params = self.adapt(train)
        else:
            params = self.adapt_with_jacobian(train, values_only=True)[0]
        with torch.set_grad_enabled(old_dist is None):
            dist = self.policy.call(params, valid.obs)
            if old_dist is None:
                old_dist = self.policy.detach(dist)
            return (*self._surrogate(dist, old_dist, valid), old_dist)

    def _surrogate(self, dist: tuple[Tensor, ...], old_dist: tuple[Tensor, ...], valid: GroupBatch) -> tuple[Tensor, Tensor]:
        ratio = torch.exp(self.policy.log_prob(dist, valid.actions) - self.policy.log_prob(old_dist, valid.actions))
        loss = -(ratio * valid.advantages * valid.weights).sum(-1).mean()
        kl = (self.policy.kl(dist, old_dist) * valid.weights).sum(-1).mean()
        return loss, kl

    # -- Jacobian products of the adaptation ---------------------------------------------
    def adapt_with_jacobian(
        self, train: list[GroupBatch], values_only: bool = False
    ) -> tuple[Params, list[InnerLossCurvature]]:
        """Adapted parameters ``(G, ...)`` (detached) and, per inner step k, the inner
        loss's curvature at ``theta^(k-1)`` (its Hessian ``H_k``; empty when ``first_order``
        or ``values_only``)."""
        params = stack_params(self.policy.params(), train[0].groups)
        steps: list[InnerLossCurvature] = []
        second_order = not (self.config.first_order or values_only)
        for batch in train:
            curvature = InnerLossCurvature(self.policy, params, batch, second_order=second_order)
            if second_order:
                steps.append(curvature)
            params = {k: params[k].detach() - self.config.fast_lr * g for k, g in curvature.grad.items()}
        return params, steps

    def _jacobian_product(self, steps: list[InnerLossCurvature], v: Params, transpose: bool) -> Params:
        """``J v`` (or ``J^T v``) for per-task vectors ``v`` ``(G, ...)``: each step's
        Jacobian ``I - fast_lr H_k`` is symmetric, so only the order differs."""
        for curvature in reversed(steps) if transpose else steps:
            hv = curvature.hvp(v)
            v = {k: v[k] - self.config.fast_lr * hv[k] for k in v}
        return v

    def _unflatten(self, vector: Tensor, groups: int) -> Params:
        out, i = {}, 0
        for k, p in self.policy.named_parameters():
            out[k] = vector[i : i + p.numel()].view_as(p).unsqueeze(0).expand(groups, *p.shape)
            i += p.numel()
        return out

    def _flatten_sum(self, per_task: Params) -> Tensor:
        return flat([per_task[k].sum(0) for k, _ in self.policy.named_parameters()])

    def hessian_vector_product(
        self, steps: list[InnerLossCurvature], adapted: Params, valid: GroupBatch, damping: float
    ) -> Any:
        """``v -> (H + damping I) v`` with ``H`` the Hessian of the mean KL with respect to
        the meta-parameters: ``sum_i J_i^T F_i J_i v`` (see the class docstring), at the
        adapted parameters ``adapted`` ``(G, ...)`` on ``valid``'s observations."""
        groups = valid.groups
        fisher = FisherProduct(self.policy, {k: v.detach() for k, v in adapted.items()}, valid.obs,
                               valid.weights / groups)  # the KL is a weighted mean over tasks

        def product(vector: Tensor) -> Tensor:
            u = self._jacobian_product(steps, self._unflatten(vector, groups), transpose=False)
            w = self._jacobian_product(steps, fisher(u), transpose=True)
            return self._flatten_sum(w).detach() + damping * vector

        return product

    def step(self, train: list[GroupBatch], valid: GroupBatch, iteration: int, timing: dict[str, float]) -> dict:
        """One TRPO meta-update; returns statistics for the training log."""
        cfg = self.config
        t0 = time.perf_counter()
        adapted, steps = self.adapt_with_jacobian(train)
        leaves = {k: v.detach().requires_grad_(True) for k, v in adapted.items()}
        names = list(leaves)
        dist = self.policy.call(leaves, valid.obs)
        old_dist = self.policy.detach(dist)
        old_loss, _ = self._surrogate(dist, old_dist, valid)
        if any_nonfinite(old_loss.detach()):
            raise self._diverged(iteration, "policy loss")
        grad_out = dict(zip(names, torch.autograd.grad(old_loss, [leaves[k] for k in names], retain_graph=True)))
        grads = self._flatten_sum(self._jacobian_product(steps, grad_out, transpose=True)).detach()
        t1 = time.perf_counter()
        timing["inner"] += t1 - t0
        if any_nonfinite(grads):
            raise self._diverged(iteration, "meta-gradient")

        curvature_valid = valid
        if cfg.cg_subsample < 1.0:
            # Curvature on a subsample: the inner losses' Hessians at the same points and the
            # Fisher at the same adapted parameters, on samples evenly spaced along the episodes.
            steps = [
                InnerLossCurvature(self.policy, curvature.params, subsample_steps(batch, cfg.cg_subsample))
                for curvature, batch in zip(steps, train)
            ]
            curvature_valid = subsample_steps(valid, cfg.cg_subsample)
        hvp = self.hessian_vector_product(steps, leaves, curvature_valid, cfg.cg_damping)
        stepdir, h_stepdir = conjugate_gradient(hvp, grads, cfg.cg_iters)
        shs = 0.5 * torch.dot(stepdir, h_stepdir)
        del hvp, dist, steps, adapted  # free the graphs before the line search
        t2 = time.perf_counter()
        timing["cg"] += t2 - t1
        stats: dict[str, Any] = {"loss_before": float(old_loss.detach())}
        if not bool(torch.isfinite(shs)) or float(shs) <= 0.0:
            # A zero gradient (e.g. every advantage equal) leaves nothing to step along.
            log.warning("%s: iteration %d: degenerate step (s^T H s = %s); parameters unchanged", self.name,
                        iteration, float(shs))
            return {**stats, "ls_accepted": False, "ls_steps": 0, "kl": 0.0}
        step = stepdir / torch.sqrt(shs / cfg.max_kl)

        params = list(self.policy.parameters())
        old_params = flat([p.detach() for p in params])
        old_loss = old_loss.detach()
        step_size = 1.0
        accepted = False
        loss = kl = old_loss
        ls_steps = 0
        for ls_steps in range(1, cfg.ls_max_steps + 1):  # noqa: B007  (reported below)
            set_flat_params(self.policy, old_params - step_size * step)
            loss, kl, _ = self.surrogate_loss(train, valid, old_dist=old_dist)
            if float(loss - old_loss) < 0.0 and float(kl) < cfg.max_kl:
                accepted = True
                break
            step_size *= cfg.ls_backtrack_ratio
        if not accepted:
            set_flat_params(self.policy, old_params)
            log.warning(
                "%s: iteration %d: line search failed after %d steps (last KL %.3g, improvement %.3g); "
                "parameters unchanged", self.name, iteration, ls_steps, float(kl), float(loss - old_loss),
            )
        timing["line_search"] += time.perf_counter() - t2
        stats.update(
            loss_after=float(loss) if accepted else float(old_loss),
            kl=float(kl) if accepted else 0.0,
            ls_accepted=accepted,
            ls_steps=ls_steps,
            step_size=step_size if accepted else 0.0,
        )
        return stats


class MAMLPPO(_GradientMetaLearner):
    """MAML with a PPO-clip meta-update (ProMP's PPO-MAML formulation, Rothfuss et al. 2019)."""

    name = "maml-ppo"
    config_cls = MAMLPPOConfig
    config: MAMLPPOConfig
    divergence_fix = "Lower outer_lr or fast_lr, or check the environment's rewards for NaN or huge values."
    description = "MAML, vanilla-PG inner step, PPO-clip outer step (Adam) through the inner update"

    def _setup_optimiser(self) -> None:
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.config.outer_lr)

    def surrogate_loss(
        self, train: list[GroupBatch], valid: GroupBatch, old_logp: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Clipped surrogate ``- mean_i mean min(r A, clip(r, 1 +- eps) A)``, the ratio
        against the adapted policy of the meta-parameters the batch was sampled with."""
        params = self.adapt(train)
        dist = self.policy.call(params, valid.obs)
        logp = self.policy.log_prob(dist, valid.actions)
        if old_logp is None:
            old_logp = logp.detach()
        ratio = torch.exp(logp - old_logp)
        eps = self.config.clip_eps
        adv = valid.advantages
        objective = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - eps, 1 + eps) * adv)
        loss = -(objective * valid.weights).sum(-1).mean()
        approx_kl = ((old_logp - logp) * valid.weights).sum(-1).mean().detach()
        return loss, approx_kl, old_logp

    def step(self, train: list[GroupBatch], valid: GroupBatch, iteration: int, timing: dict[str, float]) -> dict:
        """``ppo_epochs`` Adam steps on the clipped surrogate, differentiating through adaptation."""
        t0 = time.perf_counter()
        old_logp = None
        first_loss = loss = approx_kl = torch.zeros(())
        for epoch in range(self.config.ppo_epochs):
            loss, approx_kl, old_logp = self.surrogate_loss(train, valid, old_logp)
            if any_nonfinite(loss):
                raise self._diverged(iteration, "policy loss")
            if epoch == 0:
                first_loss = loss.detach()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        if any_nonfinite(*[p.detach() for p in self.policy.parameters()]):
            raise self._diverged(iteration, "policy parameters")
        timing["outer"] += time.perf_counter() - t0
        return {"loss_before": float(first_loss), "loss_last": float(loss.detach()), "approx_kl": float(approx_kl)}


# --- test-time adaptation --------------------------------------------------------------------


class PolicyGradientAdapter(Adapter):
    """Per-run inner policy-gradient steps at test time (MAML, Reptile).

    Each run starts from the meta-parameters; after every stage of ``fast_batch_size``
    episodes, ``adapt()`` takes one vanilla policy-gradient step per run on that stage's
    episodes (linear baseline, GAE, per-run normalisation), all runs in one batched pass.
    """

    max_samples_per_chunk = 400_000  # bounds the memory of one batched backward pass

    def __init__(self, policy: MLPPolicy, config: MAMLConfig, ctx: Any) -> None:
        self.policy = policy
        self.config = config
        self.episodes_per_stage = int(config.fast_batch_size)
        self.generator = torch_generator(int(ctx.rng.integers(0, 2**63 - 1)))
        self.discrete = isinstance(ctx.action_space, spaces.Discrete)

    def reset(self, groups: np.ndarray) -> None:
        super().reset(groups)
        layout = group_runs(self.groups)
        if layout is None:
            raise ValueError("PolicyGradientAdapter needs the same number of sub-envs in every run")
        self.order, self.runs, self.per_run = layout
        self.inverse = np.argsort(self.order)
        self.params = {k: v.detach().clone() for k, v in stack_params(self.policy.params(), self.runs).items()}
        self._clear()

    def _clear(self) -> None:
        self.buf: dict[str, list[Any]] = {"obs": [], "actions": [], "rewards": [], "mask": [], "dones": []}

    def act(self, obs: np.ndarray) -> np.ndarray:
        with torch_threads(self.config.torch_threads):
            return self._act(obs)

    def _act(self, obs: np.ndarray) -> np.ndarray:
        o = torch.as_tensor(np.asarray(obs, dtype=np.float32).reshape(len(obs), -1))[self.order]
        o = o.reshape(self.runs, self.per_run, -1)
        with torch.no_grad():
            a = self.policy.sample(self.policy.call(self.params, o), self.generator)
        a = a.reshape(self.runs * self.per_run, *a.shape[2:])[self.inverse]
        return a.numpy()

    def observe(self, tr: Transition) -> None:
        if tr.final:
            return
        o = torch.as_tensor(np.asarray(tr.obs, dtype=np.float32).reshape(len(tr.obs), -1))
        self.buf["obs"].append(o[self.order])
        self.buf["actions"].append(torch.as_tensor(np.asarray(tr.action))[self.order])
        active = np.asarray(tr.active)[self.order]
        self.buf["rewards"].append(np.where(active, np.asarray(tr.reward, dtype=np.float32)[self.order], 0.0))
        self.buf["mask"].append(active)
        self.buf["dones"].append(active & np.asarray(tr.done)[self.order])

    def adapt(self) -> None:
        with torch_threads(self.config.torch_threads):
            self._adapt()

    def _adapt(self) -> None:
        if not self.buf["obs"]:
            return
        f32 = torch.float32
        actions = torch.stack(self.buf["actions"])
        if self.discrete:
            actions = actions.long()
        else:
            actions = actions.to(f32)
        episodes = Episodes(
            obs=torch.stack(self.buf["obs"]),
            actions=actions,
            rewards=torch.as_tensor(np.stack(self.buf["rewards"]), dtype=f32),
            mask=torch.as_tensor(np.stack(self.buf["mask"]), dtype=f32),
            dones=torch.as_tensor(np.stack(self.buf["dones"]), dtype=f32),
        )
        self._clear()
        batch = group_batch(episodes, self.runs, self.config.gamma, self.config.gae_lambda)
        chunk = max(1, self.max_samples_per_chunk // max(1, batch.obs.shape[1]))
        new: dict[str, list[Tensor]] = {k: [] for k in self.params}
        for s in range(0, self.runs, chunk):
            sl = slice(s, s + chunk)
            part = GroupBatch(batch.obs[sl], batch.actions[sl], batch.advantages[sl], batch.weights[sl], batch.episodes)
            p = {k: v[sl].detach().requires_grad_(True) for k, v in self.params.items()}
            with torch.enable_grad():
                updated = inner_step(self.policy, p, part, self.config.fast_lr, create_graph=False)
            for k, v in updated.items():
                new[k].append(v.detach())
        self.params = {k: torch.cat(v) for k, v in new.items()}


# --- speed benchmark ------------------------------------------------------------------------


def _time_meta_batches(
    benchmark_id: str, iterations: int, warmup: int, seed: int, overrides: dict[str, Any]
) -> tuple[MAMLTRPO, Any, dict[str, Any]]:
    """Meta-train ``maml-trpo`` for ``warmup + iterations`` meta-batches; mean timings of the
    last ``iterations``."""
    from metarl_bench.benchmarks import benchmark
    from metarl_bench.harness import MetaTrainContext

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
    machine class (measured on 2-core CPUs). ``verbose`` prints a report.
    """
    from metarl_bench.perf.maml_reference import reference_meta_batch

    agent, ctx, ours = _time_meta_batches(benchmark_id, iterations, warmup, seed, overrides)
    out: dict[str, Any] = {
        "benchmark": benchmark_id,
        "config": dict(agent.resolved_config()),
        "meta_batches": iterations,
        **ours,
        "torch_threads": agent.config.torch_threads,
        "pytorch_maml_rl_seconds": "5-9 (same config, 2-core CPU)",
    }
    if subsample is not None and subsample < 1.0:
        _, _, fast = _time_meta_batches(benchmark_id, iterations, warmup, seed, {**overrides, "cg_subsample": subsample})
        out["cg_subsample"] = {"fraction": subsample, **fast}
    if reference_batches > 0:
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
    with torch_threads(agent.config.torch_threads):  # a task's samples: its fast batch of whole-horizon episodes
        out.update(cg_floor_seconds(agent.config, agent.config.fast_batch_size * (ctx.family.horizon or 1)))
    if hasattr(os, "getloadavg"):  # wall times mean little on a busy machine: say how busy it was
        out["load_average_1min"] = os.getloadavg()[0]
        out["cpu_count"] = os.cpu_count()
    if verbose:
        print(format_maml_bench(out))
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
