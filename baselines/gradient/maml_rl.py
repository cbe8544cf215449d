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
to that axis is the per-task gradient, in one backward pass. The inner loop, sampling, the
meta-training loop and the test-time adapter are the base shared with Reptile
(:mod:`metarl_bench.baselines.gradient.meta_learner`); this file adds the outer loops.

Outer loop, ``maml-trpo`` (Schulman et al. 2015): on post-adaptation episodes,

    minimise  L(theta) = - mean_i mean [ pi_theta'_i(a|s) / pi_old(a|s) * A ]
    s.t.      mean_i KL(pi_theta'_i || pi_old) <= max_kl,

with the true second-order meta-gradient (``create_graph`` through the inner update
unless ``first_order``), the step direction from ``cg_iters`` conjugate-gradient
iterations on Hessian-vector products of the KL (damped by ``cg_damping``), scaled to the
trust region, then a backtracking line search (``ls_max_steps`` x ``ls_backtrack_ratio``)
accepting the first step that lowers the surrogate and keeps the KL under ``max_kl``. A
line search that never succeeds keeps the old parameters and is logged.

How the meta-gradient and the KL's Hessian-vector products are computed is a switch,
``curvature``: ``"autograd"`` is the plain definition, autograd differentiating the
surrogate once and the KL twice through the inner steps (pytorch-maml-rl's code, and the
one to read first); ``"factored"`` (the default, and the measured speed: a product about
4x faster than autograd's double backward) evaluates the same products with the
hand-written Jacobian and Fisher products of :mod:`~metarl_bench.baselines.gradient.mlp_curvature` (see
:class:`MAMLTRPO`). Tests check that both sides give the same meta-update.

Outer loop, ``maml-ppo``: the clipped surrogate of PPO (Schulman et al. 2017) over the
post-adaptation episodes, optimised with Adam for ``ppo_epochs`` epochs per meta-batch,
the gradient flowing through the inner update: the PPO-MAML formulation of ProMP
(Rothfuss et al. 2019, section 6 and appendix; clip 0.3, Adam 1e-3, 5 steps).

Test-time adaptation (the harness's protocol): one stage is ``fast_batch_size``
episodes per run, and ``adapt()`` takes one inner step per run on them, so the
adaptation curve shows the return after 0, 1, 2, ... gradient steps
(:class:`~metarl_bench.baselines.gradient.meta_learner.PolicyGradientAdapter`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from metarl_bench.agents import positive
from metarl_bench.baselines.gradient.common import (
    GroupBatch,
    Params,
    any_nonfinite,
    conjugate_gradient,
    flat,
    kl_hessian_vector_product,
    set_flat_params,
    stack_params,
    subsample_steps,
)
from metarl_bench.baselines.gradient.meta_learner import GradientMetaLearner, MAMLConfig
from metarl_bench.baselines.gradient.mlp_curvature import FisherProduct, InnerLossCurvature

log = logging.getLogger(__name__)


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
    curvature: str = "factored"
    """How the meta-gradient and the KL's Hessian-vector products are computed: 'autograd'
    differentiates through the inner steps (the plain definition, pytorch-maml-rl's code);
    'factored' evaluates the same products with the hand-written Jacobian and Fisher products
    of :mod:`mlp_curvature` (the measured speed). The two agree to rounding."""
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
        if self.curvature not in ("factored", "autograd"):
            raise ValueError(
                f"agent 'maml-trpo': config field 'curvature' must be 'factored' or 'autograd', got {self.curvature!r}"
            )
        if self.curvature == "autograd" and self.cg_subsample < 1.0:
            raise ValueError(
                f"agent 'maml-trpo': config field 'cg_subsample' = {self.cg_subsample!r} needs curvature='factored' "
                f"(the subsampled products are built from the factored ones)"
            )
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


class MAMLTRPO(GradientMetaLearner):
    """MAML with a TRPO meta-update (Finn et al. 2017; pytorch-maml-rl).

    The Hessian-vector product is that of pytorch-maml-rl (the KL's Hessian through the
    inner update). With ``curvature="autograd"`` it is computed as defined, by double
    backward (:meth:`meta_gradient`); by default it is evaluated in factored form. With
    ``theta'_i = U(theta)`` the adapted parameters and ``J_i = d theta'_i / d theta``, the
    chain rule gives

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
        only values are needed: the inner step uses the hand-written gradient (autograd's with
        ``curvature="autograd"``) and nothing keeps a graph.
        """
        if old_dist is None:
            params = self.adapt(train)
        elif self.config.curvature == "autograd":
            params = {k: v.detach() for k, v in self.adapt(train, first_order=True).items()}
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

    def meta_gradient(
        self, train: list[GroupBatch], valid: GroupBatch, iteration: int = 0
    ) -> tuple[Tensor, tuple[Tensor, ...], Tensor, Callable[[], Callable[[Tensor], Tensor]]]:
        """The surrogate loss at the current parameters, the adapted policy's distribution on
        ``valid`` (the old one of the trust region), the flat meta-gradient, and a builder of
        ``v -> (H + cg_damping I) v`` with ``H`` the Hessian of the mean KL, all computed as
        ``curvature`` says. A non-finite loss raises :class:`TrainingDiverged`."""
        if self.config.curvature == "autograd":
            return self._autograd_meta_gradient(train, valid, iteration)
        return self._factored_meta_gradient(train, valid, iteration)

    def _autograd_meta_gradient(
        self, train: list[GroupBatch], valid: GroupBatch, iteration: int
    ) -> tuple[Tensor, tuple[Tensor, ...], Tensor, Callable[[], Callable[[Tensor], Tensor]]]:
        """The plain computation (pytorch-maml-rl's ``MAMLTRPO.step``): adapt with a graph,
        differentiate the surrogate loss once and the KL twice through the inner steps."""
        loss, kl, old_dist = self.surrogate_loss(train, valid)
        if any_nonfinite(loss.detach()):
            raise self._diverged(iteration, "policy loss")
        params = list(self.policy.parameters())
        grads = flat(torch.autograd.grad(loss, params, retain_graph=True)).detach()
        return loss, old_dist, grads, lambda: kl_hessian_vector_product(kl, params, self.config.cg_damping)

    def _factored_meta_gradient(
        self, train: list[GroupBatch], valid: GroupBatch, iteration: int
    ) -> tuple[Tensor, tuple[Tensor, ...], Tensor, Callable[[], Callable[[Tensor], Tensor]]]:
        """The same with the hand-written products: the meta-gradient is ``sum_i J_i^T g_i``
        with ``g_i`` the surrogate's gradient at the adapted parameters (see the class docstring)."""
        cfg = self.config
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

        def hvp() -> Callable[[Tensor], Tensor]:
            curvature_steps, curvature_valid = steps, valid
            if cfg.cg_subsample < 1.0:
                # Curvature on a subsample: the inner losses' Hessians at the same points and the
                # Fisher at the same adapted parameters, on samples evenly spaced along the episodes.
                curvature_steps = [
                    InnerLossCurvature(self.policy, curvature.params, subsample_steps(batch, cfg.cg_subsample))
                    for curvature, batch in zip(steps, train)
                ]
                curvature_valid = subsample_steps(valid, cfg.cg_subsample)
            return self.hessian_vector_product(curvature_steps, leaves, curvature_valid, cfg.cg_damping)

        return old_loss, old_dist, grads, hvp

    def step(self, train: list[GroupBatch], valid: GroupBatch, iteration: int, timing: dict[str, float]) -> dict:
        """One TRPO meta-update; returns statistics for the training log."""
        cfg = self.config
        t0 = time.perf_counter()
        old_loss, old_dist, grads, make_hvp = self.meta_gradient(train, valid, iteration)
        t1 = time.perf_counter()
        timing["inner"] += t1 - t0
        if any_nonfinite(grads):
            raise self._diverged(iteration, "meta-gradient")

        hvp = make_hvp()
        stepdir, h_stepdir = conjugate_gradient(hvp, grads, cfg.cg_iters)
        shs = 0.5 * torch.dot(stepdir, h_stepdir)
        del hvp, make_hvp  # free the graphs before the line search
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


class MAMLPPO(GradientMetaLearner):
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
