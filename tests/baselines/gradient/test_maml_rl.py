"""Tests of the gradient-based meta-RL baselines (maml-trpo, maml-ppo, reptile) and their plumbing."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

import metarl_bench
from metarl_bench.baselines.gradient import common as rc
from metarl_bench.baselines.gradient.maml_rl import MAMLTRPO
from metarl_bench.baselines.gradient.meta_learner import TrainingDiverged, reinforce_loss
from metarl_bench.baselines.gradient.mlp_curvature import InnerLossCurvature
from metarl_bench.baselines.gradient.reptile_rl import reptile_update
from metarl_bench.baselines.shared import gae
from metarl_bench.harness import MetaTrainContext

BANDIT = "MetaRL/Bandit-k5-n10-smoke-v0"


def _gen(seed: int = 0) -> torch.Generator:
    return rc.torch_generator(seed)


def _gaussian(obs_dim: int = 3, act_dim: int = 2, hidden: tuple[int, ...] = (8, 8)) -> rc.GaussianMLPPolicy:
    policy = rc.GaussianMLPPolicy(obs_dim, act_dim, hidden, "tanh", _gen(1), init_std=0.7)
    return policy.double()


def _group_batch(groups: int, k: int, obs_dim: int = 3, act_dim: int = 2, seed: int = 0) -> rc.GroupBatch:
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(groups, k, generator=g, dtype=torch.float64)
    return rc.GroupBatch(
        obs=torch.randn(groups, k, obs_dim, generator=g, dtype=torch.float64),
        actions=torch.randn(groups, k, act_dim, generator=g, dtype=torch.float64),
        advantages=torch.randn(groups, k, generator=g, dtype=torch.float64),
        weights=w / w.sum(-1, keepdim=True),
    )


# --- optimisation helpers ----------------------------------------------------------------------


def test_conjugate_gradient_solves_random_spd_system():
    g = torch.Generator().manual_seed(3)
    q = torch.randn(12, 12, generator=g, dtype=torch.float64)
    a = q @ q.T + 0.5 * torch.eye(12, dtype=torch.float64)
    b = torch.randn(12, generator=g, dtype=torch.float64)
    x, ax = rc.conjugate_gradient(lambda v: a @ v, b, cg_iters=40, residual_tol=1e-24)
    np.testing.assert_allclose(x.numpy(), torch.linalg.solve(a, b).numpy(), rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(ax.numpy(), (a @ x).numpy(), rtol=1e-8, atol=1e-8)
    # a few iterations: x is approximate, the accumulated A x still matches it
    x3, ax3 = rc.conjugate_gradient(lambda v: a @ v, b, cg_iters=3)
    np.testing.assert_allclose(ax3.numpy(), (a @ x3).numpy(), rtol=1e-8, atol=1e-10)


def test_kl_hessian_vector_product_matches_autograd_functional_hvp():
    policy = _gaussian()
    batch = _group_batch(1, 16)
    obs = batch.obs[0]
    shapes = [p.shape for p in policy.parameters()]
    theta0 = rc.flat([p.detach() for p in policy.parameters()])
    ref = policy.detach(policy(obs))
    ref = (ref[0] + 0.3, ref[1] - 0.2)  # a different distribution, so the Hessian has curvature terms

    def unflat(vec):
        out, i = {}, 0
        for (name, _), shape in zip(policy.named_parameters(), shapes):
            n = math.prod(shape)
            out[name] = vec[i : i + n].view(shape)
            i += n
        return out

    def kl_of(vec):
        return policy.kl(policy.call(unflat(vec), obs), ref).mean()

    v = torch.randn(theta0.numel(), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    _, expected = torch.autograd.functional.hvp(kl_of, theta0, v)
    theta = theta0.clone().requires_grad_(True)
    params = unflat(theta)
    kl = policy.kl(policy.call(params, obs), ref).mean()
    got = rc.kl_hessian_vector_product(kl, [theta], damping=0.0)(v)
    np.testing.assert_allclose(got.detach().numpy(), expected.numpy(), rtol=1e-8, atol=1e-10)
    damped = rc.kl_hessian_vector_product(kl, [theta], damping=0.1)(v)
    np.testing.assert_allclose((damped - got).detach().numpy(), (0.1 * v).numpy(), atol=1e-12)


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_kl_is_zero_with_zero_gradient_at_identical_parameters(kind):
    if kind == "gaussian":
        policy = _gaussian()
        obs = _group_batch(1, 10).obs[0]
    else:
        policy = rc.CategoricalMLPPolicy(3, 4, (8,), "relu", _gen(2)).double()
        obs = torch.randn(10, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    dist = policy(obs)
    kl = policy.kl(dist, policy.detach(dist)).mean()
    assert abs(float(kl.detach())) < 1e-12
    grads = torch.autograd.grad(kl, list(policy.parameters()), allow_unused=True)
    for g in grads:
        assert g is None or float(g.abs().max()) < 1e-12


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    p = (torch.randn(5, 2, generator=g, dtype=torch.float64), torch.randn(5, 2, generator=g, dtype=torch.float64))
    q = (torch.randn(5, 2, generator=g, dtype=torch.float64), torch.randn(5, 2, generator=g, dtype=torch.float64))
    dp = torch.distributions.Normal(p[0], p[1].exp())
    dq = torch.distributions.Normal(q[0], q[1].exp())
    expected = torch.distributions.kl_divergence(dp, dq).sum(-1)
    np.testing.assert_allclose(rc.GaussianMLPPolicy.kl(p, q).numpy(), expected.numpy(), rtol=1e-10)
    a = torch.randn(5, 2, generator=g, dtype=torch.float64)
    np.testing.assert_allclose(rc.GaussianMLPPolicy.log_prob(p, a).numpy(), dp.log_prob(a).sum(-1).numpy(), rtol=1e-10)


def test_fast_tanh_equals_tanh_to_second_order():
    x = torch.randn(40, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    np.testing.assert_allclose(rc.fast_tanh(x).detach().numpy(), np.tanh(x.detach().numpy()), atol=1e-15)
    assert torch.autograd.gradgradcheck(rc.fast_tanh, (x,))


def test_fast_tanh_without_autograd_is_the_same_value():
    x = torch.randn(6, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        direct = rc.fast_tanh(x)
    assert torch.equal(direct, rc.fast_tanh(x.requires_grad_(True)).detach())


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_policy_call_is_functional_call_bit_for_bit(kind):
    """``call`` evaluates the network on a parameter dict directly; values and gradients are
    those of ``torch.func.functional_call``, exactly (the committed records replay)."""
    if kind == "gaussian":
        policy = rc.GaussianMLPPolicy(3, 2, (16, 16), "tanh", _gen(4))
    else:
        policy = rc.CategoricalMLPPolicy(3, 4, (16, 16), "relu", _gen(4))
    obs = torch.randn(5, 7, 3, generator=torch.Generator().manual_seed(3))
    stacked = rc.stack_params(policy.params(), 5)
    partial = {k: v.detach().clone().requires_grad_(True) for k, v in policy.params().items() if k != "w0"}
    for params, x in ((stacked, obs), (partial, obs[0])):  # group-stacked; w0 from the module
        leaves = [*params.values(), policy.w0]
        ours, theirs = policy.call(params, x), torch.func.functional_call(policy, params, (x,))
        for a, b in zip(ours, theirs, strict=True):
            assert torch.equal(a, b)
        g_ours = torch.autograd.grad(sum(t.square().sum() for t in ours), leaves, allow_unused=True)
        g_theirs = torch.autograd.grad(sum(t.square().sum() for t in theirs), leaves, allow_unused=True)
        for a, b in zip(g_ours, g_theirs, strict=True):
            assert (a is None and b is None) or torch.equal(a, b)
        with torch.no_grad():  # sampling's path: no autograd.Function
            assert torch.equal(policy.call(params, x)[0], theirs[0].detach())


# --- baseline, GAE, advantages ---------------------------------------------------------------------


def test_linear_baseline_is_weighted_least_squares():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 50, 6, generator=g, dtype=torch.float64)
    y = torch.randn(3, 50, generator=g, dtype=torch.float64)
    w = (torch.rand(3, 50, generator=g) > 0.3).double()
    coef = rc.fit_linear_baseline(x, y, w, reg_coeff=0.0)
    for i in range(3):
        keep = w[i].bool().numpy()
        expected, *_ = np.linalg.lstsq(x[i].numpy()[keep], y[i].numpy()[keep], rcond=None)
        np.testing.assert_allclose(coef[i].numpy(), expected, rtol=1e-8, atol=1e-10)


def test_linear_baseline_regularises_singular_features():
    x = torch.zeros(1, 10, 4, dtype=torch.float64)
    x[..., -1] = 1.0  # only the constant feature is informative (a bandit's observation)
    y = torch.arange(10, dtype=torch.float64).view(1, 10)
    coef = rc.fit_linear_baseline(x, y, torch.ones(1, 10, dtype=torch.float64))
    assert abs(float(coef[0, -1]) - 4.5) < 1e-4
    assert float(coef[0, :-1].abs().max()) == 0.0


def test_baseline_features_are_pytorch_maml_rl_features():
    obs = torch.tensor([[[1.0, 2.0]], [[3.0, 4.0]]])  # (T=2, N=1, 2)
    mask = torch.tensor([[1.0], [1.0]])
    f = rc.baseline_features(obs, mask)
    np.testing.assert_allclose(f[1, 0].numpy(), [3, 4, 9, 16, 0.01, 1e-4, 1e-6, 1], rtol=1e-6)


def test_gae_matches_hand_computation():
    r = np.array([[1.0], [2.0], [3.0]])
    v = np.array([[0.5], [1.0], [1.5]])
    dones = np.array([[0.0], [1.0], [0.0]])
    adv, ret = gae(r, v, np.array([2.0]), dones, gamma=0.9, lam=0.8)
    # step 2: delta = 3 + 0.9*2 - 1.5 = 3.3 (bootstrapped); step 1 ends its episode: 2 - 1 = 1;
    # step 0: delta = 1 + 0.9*1 - 0.5 = 1.4, A = 1.4 + 0.72 * 1 = 2.12
    np.testing.assert_allclose(adv[:, 0], [2.12, 1.0, 3.3])
    np.testing.assert_allclose(ret, adv + v)


def test_advantages_are_normalised_per_group_like_pytorch_maml_rl():
    g = torch.Generator().manual_seed(0)
    T, groups, e = 5, 2, 3
    mask = torch.ones(T, groups * e)
    mask[3:, 0] = 0.0  # one shorter episode
    dones = torch.zeros(T, groups * e)
    dones[2, 0] = 1.0
    dones[T - 1, 1:] = 1.0
    eps = rc.Episodes(
        obs=torch.randn(T, groups * e, 2, generator=g),
        actions=torch.randn(T, groups * e, 2, generator=g),
        rewards=torch.randn(T, groups * e, generator=g) * mask,
        mask=mask,
        dones=dones,
    )
    adv = rc.compute_advantages(eps, groups, gamma=0.95, gae_lambda=1.0)
    w = rc.episode_weights(mask, groups)
    np.testing.assert_allclose(rc.group_sum(w * adv, groups).numpy(), [0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(rc.group_sum(w * adv**2, groups).numpy(), [1.0, 1.0], atol=1e-5)
    assert float(adv[3:, 0].abs().max()) == 0.0


# --- the MAML mathematics ----------------------------------------------------------------------


def _agent(**overrides) -> MAMLTRPO:
    agent = MAMLTRPO(hidden_sizes=(8, 8), fast_lr=0.3, **overrides)
    agent.policy = _gaussian()
    return agent


def test_first_order_meta_gradient_equals_hand_built_reference():
    agent = _agent(first_order=True)
    policy = agent.policy
    train, valid = _group_batch(3, 20, seed=1), _group_batch(3, 20, seed=2)
    loss, _, _ = agent.surrogate_loss([train], valid)
    got = rc.flat(torch.autograd.grad(loss, list(policy.parameters())))

    # Reference: task by task, plain tensors, the inner gradient treated as a constant.
    theta = {k: v.detach() for k, v in policy.named_parameters()}
    total = torch.zeros_like(got)
    for i in range(3):
        p = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
        logp = policy.log_prob(policy.call(p, train.obs[i]), train.actions[i])
        inner = -(logp * train.advantages[i] * train.weights[i]).sum()
        g = torch.autograd.grad(inner, list(p.values()))
        adapted = {k: (v - 0.3 * gi).detach().requires_grad_(True) for (k, v), gi in zip(p.items(), g)}
        logp_v = policy.log_prob(policy.call(adapted, valid.obs[i]), valid.actions[i])
        outer = -(torch.exp(logp_v - logp_v.detach()) * valid.advantages[i] * valid.weights[i]).sum()
        total += rc.flat(torch.autograd.grad(outer, list(adapted.values())))
    np.testing.assert_allclose(got.numpy(), (total / 3).numpy(), rtol=1e-9, atol=1e-12)


def _categorical_batch(groups: int, k: int, seed: int) -> rc.GroupBatch:
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(groups, k, generator=g, dtype=torch.float64)
    return rc.GroupBatch(
        obs=torch.randn(groups, k, 3, generator=g, dtype=torch.float64),
        actions=torch.randint(0, 4, (groups, k), generator=g),
        advantages=torch.randn(groups, k, generator=g, dtype=torch.float64),
        weights=w / w.sum(-1, keepdim=True),
    )


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("hidden", [(8,), (8, 6, 5)])
def test_hand_written_inner_curvature_matches_autograd(kind, nonlinearity, hidden):
    """InnerLossCurvature's gradient and Hessian-vector product of the summed inner loss
    equal autograd's (gradient, then double backward), per task, for both heads."""
    if kind == "gaussian":
        policy = rc.GaussianMLPPolicy(3, 2, hidden, nonlinearity, _gen(3), init_std=0.7).double()
        batch = _group_batch(3, 10, seed=40)
    else:
        policy = rc.CategoricalMLPPolicy(3, 4, hidden, nonlinearity, _gen(3)).double()
        batch = _categorical_batch(3, 10, seed=40)
    g = torch.Generator().manual_seed(41)
    # distinct parameters per task, as after an inner step
    params = {k: (v.detach() + 0.3 * torch.randn(3, *v.shape, generator=g, dtype=v.dtype)).requires_grad_(True)
              for k, v in policy.named_parameters()}
    names = list(params)
    grads = torch.autograd.grad(reinforce_loss(policy, params, batch).sum(), [params[k] for k in names], create_graph=True)
    v = {k: torch.randn(params[k].shape, generator=g, dtype=torch.float64) for k in names}
    expected = torch.autograd.grad(sum((gr * v[k]).sum() for gr, k in zip(grads, names)), [params[k] for k in names])
    curvature = InnerLossCurvature(policy, params, batch)
    got = curvature.hvp(v)
    for k, gr, hv in zip(names, grads, expected):
        np.testing.assert_allclose(curvature.grad[k].numpy(), gr.detach().numpy(), rtol=1e-9, atol=1e-12, err_msg=k)
        np.testing.assert_allclose(got[k].numpy(), hv.numpy(), rtol=1e-8, atol=1e-11, err_msg=k)
    assert max(float(h.abs().max()) for h in expected) > 1e-2  # not a trivially zero product


def test_line_search_adaptation_equals_the_autograd_inner_steps():
    """The line search's gradient-only adaptation gives the same parameters as ``adapt``."""
    agent = _agent(num_steps=2)
    train = [_group_batch(3, 12, seed=50 + s) for s in range(2)]
    fast, steps = agent.adapt_with_jacobian(train, values_only=True)
    assert steps == []
    reference = agent.adapt(train)
    for k, v in reference.items():
        np.testing.assert_allclose(fast[k].numpy(), v.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
@pytest.mark.parametrize("num_steps", [1, 2])
def test_factored_hessian_vector_product_matches_direct_autograd(num_steps, kind):
    """The factored HVP (Jacobian products, forward-mode Fisher) equals pytorch-maml-rl's:
    the double backward of the KL through the inner steps."""
    agent = _agent()
    if kind == "gaussian":
        train = [_group_batch(2, 12, seed=10 + s) for s in range(num_steps)]
        valid = _group_batch(2, 12, seed=20)
    else:
        agent.policy = rc.CategoricalMLPPolicy(3, 4, (8, 8), "tanh", _gen(2)).double()
        train = [_categorical_batch(2, 12, seed=10 + s) for s in range(num_steps)]
        valid = _categorical_batch(2, 12, seed=20)
    params = list(agent.policy.parameters())
    # pytorch-maml-rl: Hessian of the KL through the (second-order) adaptation graph
    _, kl, _ = agent.surrogate_loss(train, valid)
    direct = rc.kl_hessian_vector_product(kl, params, damping=1e-3)
    # ours
    adapted, steps = agent.adapt_with_jacobian(train)
    ours = agent.hessian_vector_product(steps, adapted, valid, damping=1e-3)
    v = torch.randn(sum(p.numel() for p in params), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = direct(v).detach().numpy()
    assert np.abs(expected).max() > 1e-3  # not a trivially zero product
    np.testing.assert_allclose(ours(v).numpy(), expected, rtol=1e-7, atol=1e-10)


def test_second_order_meta_gradient_matches_direct_autograd():
    agent = _agent()
    train, valid = [_group_batch(2, 12, seed=3)], _group_batch(2, 12, seed=4)
    loss, _, _ = agent.surrogate_loss(train, valid)
    direct = rc.flat(torch.autograd.grad(loss, list(agent.policy.parameters())))
    _, _, ours, _ = agent.meta_gradient(train, valid)  # the factored J^T g (curvature's default)
    np.testing.assert_allclose(ours.numpy(), direct.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
@pytest.mark.parametrize("num_steps, first_order", [(1, False), (2, False), (2, True)])
def test_curvature_switch_factored_equals_autograd(kind, num_steps, first_order):
    """The two sides of the ``curvature`` switch: the hand-written products ('factored', the
    default) give autograd's surrogate loss, meta-gradient, KL Hessian-vector product and TRPO
    step ('autograd': double backward through the inner steps)."""
    out = {}
    for curvature in ("autograd", "factored"):
        agent = _agent(num_steps=num_steps, first_order=first_order, curvature=curvature, cg_damping=0.1)
        if kind == "gaussian":
            train = [_group_batch(2, 12, seed=10 + s) for s in range(num_steps)]
            valid = _group_batch(2, 12, seed=20)
        else:
            agent.policy = rc.CategoricalMLPPolicy(3, 4, (8, 8), "tanh", _gen(2)).double()
            train = [_categorical_batch(2, 12, seed=10 + s) for s in range(num_steps)]
            valid = _categorical_batch(2, 12, seed=20)
        before = rc.flat([p.detach() for p in agent.policy.parameters()])
        loss, _, grads, make_hvp = agent.meta_gradient(train, valid)
        v = torch.randn(grads.numel(), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        hv = make_hvp()(v).detach() - 0.1 * v  # H v without the damping
        stats = agent.step(train, valid, 0, {"inner": 0.0, "cg": 0.0, "line_search": 0.0})
        after = rc.flat([p.detach() for p in agent.policy.parameters()])
        out[curvature] = (float(loss.detach()), grads, hv, stats, after - before)
    (loss_a, grads_a, hv_a, stats_a, step_a), (loss_f, grads_f, hv_f, stats_f, step_f) = out["autograd"], out["factored"]
    assert loss_f == pytest.approx(loss_a, rel=1e-12)
    assert float(grads_a.abs().max()) > 1e-3 and float(hv_a.abs().max()) > 1e-3  # not trivially zero
    np.testing.assert_allclose(grads_f.numpy(), grads_a.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(hv_f.numpy(), hv_a.numpy(), rtol=1e-10, atol=1e-12)
    assert stats_a["ls_accepted"] and stats_f["ls_steps"] == stats_a["ls_steps"]
    # The products agree to rounding (1e-16 here), but ten conjugate-gradient iterations on the
    # rank-deficient KL Hessian (damping 0.1 against eigenvalues up to about 1e3) amplify it.
    assert stats_f["kl"] == pytest.approx(stats_a["kl"], rel=1e-4)
    np.testing.assert_allclose(step_f.numpy(), step_a.numpy(), rtol=1e-4, atol=1e-4 * float(step_a.abs().max()))


def test_batched_inner_step_equals_per_task_steps():
    policy = _gaussian()
    batch = _group_batch(3, 15)
    theta = {k: v.detach() for k, v in policy.named_parameters()}
    stacked = {k: v.requires_grad_(True) for k, v in rc.stack_params(theta, 3).items()}
    from metarl_bench.baselines.gradient.meta_learner import inner_step

    new = inner_step(policy, stacked, batch, lr=0.2, create_graph=False)
    for i in range(3):
        p = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
        one = rc.GroupBatch(batch.obs[i : i + 1], batch.actions[i : i + 1], batch.advantages[i : i + 1],
                            batch.weights[i : i + 1])
        loss = reinforce_loss(policy, p, one).sum()
        g = torch.autograd.grad(loss, list(p.values()))
        for (k, v), gi in zip(p.items(), g):
            np.testing.assert_allclose(new[k][i].detach().numpy(), (v - 0.2 * gi).detach().numpy(), rtol=1e-10)


def test_reptile_update_formula():
    theta = {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([0.0])}
    adapted = {"w": torch.tensor([[3.0, 2.0], [1.0, 6.0]]), "b": torch.tensor([[1.0], [3.0]])}
    new = reptile_update(theta, adapted, meta_lr=0.5)
    # mean adapted w = (2, 4): theta + 0.5 * ((2, 4) - (1, 2)) = (1.5, 3); b: 0 + 0.5 * 2 = 1
    np.testing.assert_allclose(new["w"].numpy(), [1.5, 3.0])
    np.testing.assert_allclose(new["b"].numpy(), [1.0])


# --- configs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, field, value",
    [
        ("maml-trpo", "max_kl", -0.01),
        ("maml-trpo", "fast_batch_size", 0),
        ("maml-trpo", "ls_backtrack_ratio", 1.5),
        ("maml-trpo", "gamma", 1.5),
        ("maml-trpo", "curvature", "hand-written"),
        ("maml-ppo", "clip_eps", 0.0),
        ("maml-ppo", "meta_batch_size", 0),
        ("reptile", "meta_lr", 0.0),
    ],
)
def test_bad_config_values_are_refused_naming_the_field(name, field, value):
    with pytest.raises(ValueError, match=field):
        agent = metarl_bench.agent(name, **{field: value})
        agent.configure(metarl_bench.benchmark(BANDIT))


def test_navigation_defaults_are_pytorch_maml_rl_2d_navigation():
    agent = metarl_bench.agent("maml-trpo")
    cfg = agent.configure(metarl_bench.benchmark("MetaRL/Navigation2D-v0"))
    expected = dict(meta_batch_size=20, fast_batch_size=20, num_steps=1, fast_lr=0.1, first_order=False,
                    max_kl=0.01, cg_iters=10, cg_damping=1e-5, ls_max_steps=15, ls_backtrack_ratio=0.8,
                    gamma=0.99, gae_lambda=1.0, hidden_sizes=(64, 64), nonlinearity="tanh", iterations=500)
    assert {k: getattr(cfg, k) for k in expected} == expected
    # keyword arguments override the tuned YAML
    cfg = metarl_bench.agent("maml-trpo", fast_lr=0.05).configure(metarl_bench.benchmark("MetaRL/Navigation2D-v0"))
    assert cfg.fast_lr == 0.05 and cfg.meta_batch_size == 20


# --- training behaviour ----------------------------------------------------------------------------


def _train(name: str, seed: int = 0, **overrides):
    bench = metarl_bench.benchmark(BANDIT)
    agent = metarl_bench.agent(name, **{"iterations": 2, **overrides})
    agent.configure(bench)
    ctx = MetaTrainContext(bench, seed=seed)
    agent.meta_train(ctx)
    return agent, ctx


@pytest.mark.parametrize("name", ["maml-trpo", "maml-ppo", "reptile"])
def test_seeded_training_is_deterministic(name):
    a1, c1 = _train(name, seed=3)
    a2, c2 = _train(name, seed=3)
    a3, _ = _train(name, seed=4)
    for (k, p1), p2 in zip(a1.policy.named_parameters(), a2.policy.parameters()):
        assert torch.equal(p1, p2), k
    assert any(not torch.equal(p1, p3) for p1, p3 in zip(a1.policy.parameters(), a3.policy.parameters()))
    def strip(log):  # timings differ between runs; everything else must not
        return [{k: v for k, v in r.items() if not k.endswith("seconds") and not k.startswith("t_")} for r in log]

    assert strip(c1.log) == strip(c2.log)


class _NaNRewards:
    """Wraps a counted vector env: rewards become NaN from the ``after``-th step call on."""

    def __init__(self, venv, after: int) -> None:
        self.venv, self.after, self.calls = venv, after, 0

    def step(self, actions):
        obs, r, term, trunc, info = self.venv.step(actions)
        self.calls += 1
        if self.calls >= self.after:
            r = np.full_like(r, np.nan)
        return obs, r, term, trunc, info

    def __getattr__(self, item):
        return getattr(self.venv, item)


@pytest.mark.parametrize("name", ["maml-trpo", "maml-ppo", "reptile"])
def test_nan_stops_training_naming_the_iteration_and_keeps_the_last_good_parameters(name, monkeypatch):
    bench = metarl_bench.benchmark(BANDIT)
    reference, _ = _train(name, seed=1, iterations=1)
    agent = metarl_bench.agent(name, iterations=5)
    agent.configure(bench)
    ctx = MetaTrainContext(bench, seed=1)
    make = ctx.make_vector_env
    per_iteration = agent.config.num_steps + (0 if name == "reptile" else 1)  # bandit: one step call per collect
    monkeypatch.setattr(ctx, "make_vector_env", lambda tasks, **kw: _NaNRewards(make(tasks, **kw), per_iteration + 1))
    with pytest.raises(TrainingDiverged, match="meta-iteration 2"):
        agent.meta_train(ctx)
    assert agent.checkpoint["iteration"] == 1
    for p, q in zip(agent.policy.parameters(), reference.policy.parameters()):
        assert torch.equal(p, q)


def test_failed_line_search_keeps_old_parameters_and_is_logged(monkeypatch, caplog):
    bench = metarl_bench.benchmark(BANDIT)
    agent = metarl_bench.agent("maml-trpo", iterations=1, ls_max_steps=3)
    agent.configure(bench)
    original = MAMLTRPO.surrogate_loss

    def never_better(self, train, valid, old_dist=None):
        loss, kl, old = original(self, train, valid, old_dist)
        return (loss + 1.0, kl, old) if old_dist is not None else (loss, kl, old)

    monkeypatch.setattr(MAMLTRPO, "surrogate_loss", never_better)
    ctx = MetaTrainContext(bench, seed=0)
    before: list[torch.Tensor] = []
    build = agent._build  # spy on the private setup to see the parameters training starts from

    def build_and_remember(*args):
        build(*args)
        before.extend(p.detach().clone() for p in agent.policy.parameters())

    monkeypatch.setattr(agent, "_build", build_and_remember)
    with caplog.at_level(logging.WARNING, logger="metarl_bench.baselines.gradient.maml_rl"):
        agent.meta_train(ctx)
    assert ctx.log[-1]["ls_accepted"] is False and ctx.log[-1]["ls_steps"] == 3
    assert "line search failed" in caplog.text
    for p, q in zip(agent.policy.parameters(), before):
        assert torch.equal(p, q)


def test_adapter_takes_one_inner_step_per_run_per_stage():
    bench = metarl_bench.benchmark(BANDIT)
    agent = metarl_bench.agent("maml-trpo", iterations=1)
    agent.configure(bench)
    agent.meta_train(MetaTrainContext(bench, seed=0))
    from metarl_bench.harness import EvalContext

    venv = bench.family.make_vector_env(bench.test_tasks[:2] * 10)
    ectx = EvalContext(bench, 0, venv.single_observation_space, venv.single_action_space)
    adapter = agent.adapter(ectx)
    groups = np.repeat(np.arange(2), 10)
    adapter.reset(groups)
    theta = {k: v.detach().clone() for k, v in agent.policy.named_parameters()}
    obs, _ = venv.reset(seed=0)
    action = adapter.act(obs)
    _, reward, term, trunc, _ = venv.step(action)
    from metarl_bench.agents import Transition

    tr = Transition(obs, action, reward, obs, term, trunc, np.ones(20, bool), np.zeros(20, int))
    adapter.observe(tr)
    adapter.adapt()
    for k, v in theta.items():
        assert adapter.params[k].shape == (2, *v.shape)
    assert any(not torch.equal(adapter.params[k][0], theta[k]) for k in theta)
    assert any(not torch.equal(adapter.params[k][0], adapter.params[k][1]) for k in theta)


# --- cg_subsample ----------------------------------------------------------------------------------


def _episodes_batch(T: int, groups: int, e: int, lengths: dict[int, int] | None = None) -> rc.GroupBatch:
    """A group batch whose observation is ``t * N + sub-env``; ``lengths`` ends some sub-envs early."""
    n = groups * e
    mask, dones = torch.ones(T, n), torch.zeros(T, n)
    dones[-1] = 1.0
    for env, length in (lengths or {}).items():
        mask[length:, env], dones[length - 1, env] = 0.0, 1.0
    eps = rc.Episodes(obs=torch.arange(T * n, dtype=torch.float32).reshape(T, n, 1), actions=torch.zeros(T, n, 1),
                      rewards=torch.ones(T, n), mask=mask, dones=dones)
    return rc.group_batch(eps, groups, gamma=0.9, gae_lambda=1.0)


def test_subsample_steps_takes_evenly_spaced_samples_along_the_episodes():
    T, groups, e = 10, 2, 3
    batch = _episodes_batch(T, groups, e, lengths={4: 6})  # sub-env 4, group 1's second episode, ends after 6 steps
    sub = rc.subsample_steps(batch, 0.2)  # 6 of the 30 samples: every 5th, steps 0 and 5 of every episode
    assert sub.episodes == e and sub.obs.shape == (groups, 2 * e, 1)
    # obs = t * 6 + sub-env; group 1 holds sub-envs 3, 4 and 5; step-major order
    np.testing.assert_array_equal(sub.obs[1, :, 0].numpy(), [3, 4, 5, 33, 34, 35])
    np.testing.assert_array_equal(sub.advantages.numpy(), batch.advantages[:, [0, 1, 2, 15, 16, 17]].numpy())
    # each episode's mean over its kept steps, averaged over the episodes: as the full batch
    np.testing.assert_allclose(sub.weights.numpy(), np.full((groups, 2 * e), 1 / (2 * e)), rtol=1e-6)
    # 8 of 30: positions 0, 3, 7 | 11, 15, 18 | 22, 26 along the episodes; when T is not a
    # multiple of the spacing, the kept steps shift from one episode to the next
    sub = rc.subsample_steps(batch, 0.25)
    np.testing.assert_array_equal(sub.obs[1, :, 0].numpy(), [3, 10, 17, 21, 34, 41, 45, 52])
    # sub-env 4 has ended by its kept step 8: its weight goes to its kept steps 1 and 5
    np.testing.assert_allclose(sub.weights[1].numpy(), [1 / 9, 1 / 6, 1 / 6, 1 / 9, 1 / 6, 1 / 6, 1 / 9, 0.0], rtol=1e-6)
    assert rc.subsample_steps(batch, 1.0) is batch
    with pytest.raises(ValueError, match="episode count"):
        rc.subsample_steps(rc.GroupBatch(batch.obs, batch.actions, batch.advantages, batch.weights), 0.5)


def test_subsample_steps_of_one_step_episodes_keeps_every_fifth_episode():
    batch = _episodes_batch(1, 2, 10)  # bandit-like: one step per episode
    sub = rc.subsample_steps(batch, 0.2)
    np.testing.assert_array_equal(sub.obs[:, :, 0].numpy(), [[0, 5], [10, 15]])
    # the dropped episodes' weight goes to the kept ones: still a mean over episodes
    np.testing.assert_allclose(sub.weights.numpy(), np.full((2, 2), 0.5), rtol=1e-6)


def test_subsampled_curvature_is_the_product_on_the_subsample():
    """With cg_subsample, the TRPO step's products are exactly the full products computed on
    the kept samples, at the same (full-batch) adapted parameters."""
    agent = _agent(cg_subsample=0.5)
    train = rc.GroupBatch(**{**vars(_group_batch(2, 12, seed=30)), "episodes": 4})
    valid = rc.GroupBatch(**{**vars(_group_batch(2, 12, seed=31)), "episodes": 4})
    sub_t, sub_v = rc.subsample_steps(train, 0.5), rc.subsample_steps(valid, 0.5)
    assert sub_t.obs.shape[1] == 6  # every other sample of the 4 episodes' 12
    adapted, _ = agent.adapt_with_jacobian([train])  # adapted on every episode
    point = rc.stack_params(agent.policy.params(), 2)
    steps = [InnerLossCurvature(agent.policy, point, sub_t)]
    ours = agent.hessian_vector_product(steps, adapted, sub_v, damping=0.0)
    # reference: Hessian of the subsample's KL through an inner step whose *value* is the
    # full-batch step (the subsample's gradient enters only through its derivative)
    params = list(agent.policy.parameters())
    full_step = {k: v.detach() for k, v in adapted.items()}
    theta = rc.stack_params(agent.policy.params(), 2)
    names = list(theta)
    g_sub = torch.autograd.grad(reinforce_loss(agent.policy, theta, sub_t).sum(), [theta[k] for k in names], create_graph=True)
    shifted = {k: full_step[k] + (theta[k] - 0.3 * g) - (theta[k] - 0.3 * g).detach() for k, g in zip(names, g_sub)}
    dist = agent.policy.call(shifted, sub_v.obs)
    kl = (agent.policy.kl(dist, agent.policy.detach(dist)) * sub_v.weights).sum(-1).mean()
    direct = rc.kl_hessian_vector_product(kl, params, damping=0.0)
    v = torch.randn(sum(p.numel() for p in params), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    np.testing.assert_allclose(ours(v).numpy(), direct(v).detach().numpy(), rtol=1e-7, atol=1e-10)


def test_maml_trpo_refuses_bad_cg_subsample():
    with pytest.raises(ValueError, match="cg_subsample"):
        metarl_bench.agent("maml-trpo", cg_subsample=0.0).configure(metarl_bench.benchmark(BANDIT))
    with pytest.raises(ValueError, match="cg_subsample.*needs curvature='factored'"):
        metarl_bench.agent("maml-trpo", cg_subsample=0.2, curvature="autograd").configure(metarl_bench.benchmark(BANDIT))
