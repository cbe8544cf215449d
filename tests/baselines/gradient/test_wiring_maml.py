"""Wiring of the MAML learners that a one-line change could break without other tests noticing:
the meta-gradient through several inner steps, the policy each inner batch is sampled with,
the meta-training step budget, and MAML-PPO's clipped surrogate."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import metarl_bench
from metarl_bench.baselines.gradient import common as rc
from metarl_bench.baselines.gradient import maml_rl
from metarl_bench.harness import MetaTrainContext

BANDIT = "MetaRL/Bandit-k5-n10-smoke-v0"


def _double_gaussian() -> rc.GaussianMLPPolicy:
    return rc.GaussianMLPPolicy(3, 2, (8, 8), "tanh", rc.torch_generator(1), init_std=0.7).double()


def _batch(groups: int, k: int, seed: int) -> rc.GroupBatch:
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(groups, k, generator=g, dtype=torch.float64)
    return rc.GroupBatch(
        obs=torch.randn(groups, k, 3, generator=g, dtype=torch.float64),
        actions=torch.randn(groups, k, 2, generator=g, dtype=torch.float64),
        advantages=torch.randn(groups, k, generator=g, dtype=torch.float64),
        weights=w / w.sum(-1, keepdim=True),
        episodes=1,
    )


def test_trpo_step_feeds_conjugate_gradient_the_meta_gradient_through_two_inner_steps(monkeypatch):
    """With two inner steps the adaptation's Jacobian ``J = J_2 J_1`` is not symmetric, so the
    meta-gradient ``J^T g`` differs from ``J g``: the vector TRPO solves for must be autograd's
    gradient of the surrogate through both (second-order) inner steps."""
    agent = maml_rl.MAMLTRPO(hidden_sizes=(8, 8), fast_lr=0.3, num_steps=2)
    agent.policy = _double_gaussian()
    train = [_batch(2, 12, seed=1), _batch(2, 12, seed=2)]
    valid = _batch(2, 12, seed=3)
    loss, _, _ = agent.surrogate_loss(train, valid)
    expected = rc.flat(torch.autograd.grad(loss, list(agent.policy.parameters()))).numpy()

    seen = {}
    original = maml_rl.conjugate_gradient

    def spy(f_ax, b, cg_iters=10, residual_tol=1e-10):
        seen["b"] = b.detach().clone()
        return original(f_ax, b, cg_iters, residual_tol)

    monkeypatch.setattr(maml_rl, "conjugate_gradient", spy)
    agent.step(train, valid, 1, {"inner": 0.0, "cg": 0.0, "line_search": 0.0})
    np.testing.assert_allclose(seen["b"].numpy(), expected, rtol=1e-9, atol=1e-12)
    # the two orders do differ here, so the check above tells J^T g from J g (J g has no public name)
    adapted, steps = agent.adapt_with_jacobian(train)
    leaves = {k: v.detach().requires_grad_(True) for k, v in adapted.items()}
    dist = agent.policy.call(leaves, valid.obs)
    outer, _ = agent._surrogate(dist, agent.policy.detach(dist), valid)
    g = dict(zip(leaves, torch.autograd.grad(outer, list(leaves.values()))))
    jg = agent._flatten_sum(agent._jacobian_product(steps, g, transpose=False)).numpy()
    assert np.abs(jg - expected).max() > 1e-6 * np.abs(expected).max()


def test_each_inner_batch_is_sampled_with_the_policy_adapted_so_far():
    """Training batch k is collected with the parameters after k inner steps, the post-adaptation
    (valid) batch after all of them, as pytorch-maml-rl's sampler does."""
    bench = metarl_bench.benchmark(BANDIT)
    agent = maml_rl.MAMLTRPO(num_steps=2, meta_batch_size=2, fast_batch_size=3, hidden_sizes=(8,))
    ctx = MetaTrainContext(bench, seed=0)
    # wiring: spy on the base learner's private sampling loop
    venv = agent._start_training(ctx)
    agent._next_meta_batch(ctx, venv)
    used = []
    collect = agent._collect

    def spy(ctx_, venv_, params, groups):
        used.append(None if params is None else {k: v.clone() for k, v in params.items()})
        return collect(ctx_, venv_, params, groups)

    agent._collect = spy
    train, valid, _, _ = agent.sample_meta_batch(ctx, venv, {"sampling": 0.0, "inner": 0.0})
    assert len(used) == 3 and used[0] is None
    after_one = agent.sampling_step(None, train[0])
    after_two = agent.sampling_step(after_one, train[1])
    for k in after_one:
        torch.testing.assert_close(used[1][k], after_one[k], rtol=0, atol=0)
        torch.testing.assert_close(used[2][k], after_two[k], rtol=0, atol=0)
    assert any(not torch.equal(after_two[k], agent.sampling_step(None, train[1])[k]) for k in after_one)


@pytest.mark.parametrize("name", ["maml-trpo", "maml-ppo"])
def test_meta_training_stops_before_an_iteration_that_would_overrun_the_budget(name):
    """An iteration samples ``num_steps + 1`` batches; with room for one and a half iterations,
    training stops cleanly after the first instead of running out of budget mid-iteration."""
    base = metarl_bench.benchmark(BANDIT)
    m, e, steps = 2, 2, 1
    per_iteration = (steps + 1) * m * e * (base.family.horizon or 1)
    bench = dataclasses.replace(base, meta_train_steps=per_iteration + per_iteration // 2)
    agent = metarl_bench.agent(name, num_steps=steps, meta_batch_size=m, fast_batch_size=e, iterations=5,
                               hidden_sizes=(8,))
    agent.configure(bench)
    ctx = MetaTrainContext(bench, seed=0)
    agent.meta_train(ctx)
    assert ctx.steps == per_iteration
    assert ctx.log[-1]["iteration"] == 2 and "budget" in ctx.log[-1]["stopped"]


def test_maml_ppo_surrogate_is_the_clipped_objective_against_the_given_old_log_probs():
    """``-mean_tasks sum_k w_k min(r_k A_k, clip(r_k, 1 - eps, 1 + eps) A_k)`` with
    ``r = exp(logp - old_logp)``, for ratios inside and outside the clip range and both signs of A."""
    eps = 0.3
    agent = maml_rl.MAMLPPO(hidden_sizes=(8, 8), fast_lr=0.3, clip_eps=eps)
    agent.policy = _double_gaussian()
    train, valid = [_batch(2, 6, seed=1)], _batch(2, 6, seed=2)
    valid.advantages = torch.tensor([[1.0, -1.0, 2.0, -2.0, 0.5, -0.5]] * 2, dtype=torch.float64)
    _, _, logp = agent.surrogate_loss(train, valid)  # old = current: the adapted log-probs
    ratios = torch.tensor([[1.5, 1.5, 0.5, 0.5, 1.1, 0.9], [0.6, 1.4, 1.0, 1.25, 0.2, 3.0]], dtype=torch.float64)
    loss, _, old = agent.surrogate_loss(train, valid, logp - torch.log(ratios))
    assert torch.equal(old, logp - torch.log(ratios))  # the given old log-probs are kept
    r, a, w = ratios.numpy(), valid.advantages.numpy(), valid.weights.numpy()
    # by cases: A > 0 caps the ratio's gain at 1 + eps; A < 0 caps it below at 1 - eps
    per = np.where(a > 0, np.minimum(r, 1 + eps) * a, np.maximum(r, 1 - eps) * a)
    expected = -(per * w).sum(-1).mean()
    assert float(loss) == pytest.approx(expected, rel=1e-9)

