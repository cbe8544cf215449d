"""maml-trpo's outer step on a problem whose Fisher matrix and KL are known in closed form.

The policy is a Gaussian MLP whose hidden ReLU units are all switched off (their biases are
far below zero), so its mean is its output bias ``b`` and nothing else moves it: a
state-independent linear-Gaussian policy ``N(b, diag(exp(2 l)))``. The inner loop sees zero
advantages, so the adapted policy is the meta-policy (the adaptation's Jacobian is the
identity) and the trust region acts on ``(b, l)`` directly, where

    KL(new || old) = sum_d [ (l_old - l_new) + (exp(2 (l_new - l_old)) + (b_new - b_old)^2 / s^2) / 2 - 1/2 ],

``s = exp(l_old)``, with the Fisher matrix ``diag(1 / s^2, 2)`` per action dimension (the KL
weighs every sample the same, so its sample mean is this value). Along ``b`` the KL is exactly
quadratic, so the step scaled to the trust region lands on the bound (less the damping's
share, ``c / (c + damping)`` with ``c = 1 / s^2``); along ``l`` it grows faster than its
quadratic model when ``l`` grows, so the scaled step overshoots the bound and the line search
must reject it and backtrack.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from gymnasium import spaces

from metarl_bench.baselines.gradient import common as rc
from metarl_bench.baselines.gradient.maml_rl import MAMLTRPO

OBS_DIM, ACT_DIM, GROUPS = 3, 2, 2
INIT_STD = 0.5


def _agent(**overrides) -> MAMLTRPO:
    agent = MAMLTRPO(hidden_sizes=(4,), nonlinearity="relu", init_std=INIT_STD, **overrides)
    obs_space = spaces.Box(-1.0, 1.0, (OBS_DIM,), np.float32)
    act_space = spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)
    # the base learner's private setup builds the policy for known spaces, without a benchmark
    agent._build(SimpleNamespace(seed=0, benchmark=SimpleNamespace(id="Test/Known-v0")), obs_space, act_space)
    with torch.no_grad():
        agent.policy.b0.fill_(-100.0)  # every hidden unit off for |obs| <= 1: the mean is b1
    return agent


def _batches(z: np.ndarray, advantages: np.ndarray) -> tuple[list[rc.GroupBatch], rc.GroupBatch]:
    """Train (zero advantages) and valid batches of ``GROUPS`` tasks; valid actions are
    ``b + s * z`` (``z`` of shape (K, ACT_DIM), the same in every task), equal weights."""
    k = z.shape[0]
    g = torch.Generator().manual_seed(0)
    obs = torch.rand(GROUPS, k, OBS_DIM, generator=g) * 2 - 1
    actions = torch.as_tensor(INIT_STD * z, dtype=torch.float32).expand(GROUPS, k, ACT_DIM).clone()  # b starts at 0
    weights = torch.full((GROUPS, k), 1.0 / k)
    adv = torch.as_tensor(advantages, dtype=torch.float32).expand(GROUPS, k).clone()
    train = rc.GroupBatch(obs=obs, actions=actions, advantages=torch.zeros(GROUPS, k), weights=weights, episodes=k)
    valid = rc.GroupBatch(obs=obs, actions=actions, advantages=adv, weights=weights, episodes=k)
    return [train], valid


def _gaussian_kl(db: np.ndarray, dl: np.ndarray, s: float) -> float:
    """KL(new || old) of diagonal Gaussians, new = old shifted by ``db`` in mean and ``dl`` in log-std."""
    return float(np.sum(-dl + 0.5 * (np.exp(2 * dl) + db**2 / s**2) - 0.5))


def _params(agent: MAMLTRPO) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().astype(np.float64).copy() for k, v in agent.policy.named_parameters()}


def test_trpo_step_along_the_mean_lands_on_the_kl_bound():
    max_kl, damping = 1e-3, 0.04
    agent = _agent(max_kl=max_kl, cg_damping=damping)
    # |z| = 1 everywhere: the log-likelihood's gradient in l is sum (z^2 - 1) = 0, only b moves
    z = np.array([[1.0, -1.0], [-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    adv = np.array([1.0, -0.5, 2.0, 0.25])
    train, valid = _batches(z, adv)
    before = _params(agent)
    stats = agent.step(train, valid, 1, {"inner": 0.0, "cg": 0.0, "line_search": 0.0})
    after = _params(agent)

    s = INIT_STD
    c = 1.0 / s**2  # the Fisher matrix on b: every sample weighs 1/K, the tasks are averaged
    # gradient of the surrogate -mean(ratio * A) at the old policy: -mean_k A_k z_k / s
    grad_b = -(adv[:, None] * z).mean(0) / s
    # the natural-gradient step on (F + damping I), scaled so that its quadratic KL model is max_kl
    expected_db = -grad_b / np.linalg.norm(grad_b) * math.sqrt(2 * max_kl / (c + damping))
    # float32 parameters and sums of a few terms: relative rounding well under 1e-5
    np.testing.assert_allclose(after["b1"] - before["b1"], expected_db, rtol=1e-5)
    np.testing.assert_allclose(after["log_std"], before["log_std"], atol=1e-6)
    for name in ("w0", "b0", "w1"):  # no gradient and no curvature there: untouched
        np.testing.assert_array_equal(after[name], before[name])

    # the step is taken whole (the first line-search step) and its KL is the bound, less the
    # share of the damping: max_kl * c / (c + damping) = max_kl / 1.01
    kl = _gaussian_kl(after["b1"] - before["b1"], after["log_std"] - before["log_std"], s)
    assert stats["ls_accepted"] is True and stats["ls_steps"] == 1 and stats["step_size"] == 1.0
    assert kl == pytest.approx(max_kl * c / (c + damping), rel=1e-4)
    assert stats["kl"] == pytest.approx(kl, rel=1e-4)
    assert kl < max_kl


def test_trpo_step_beyond_the_kl_bound_is_rejected_and_backtracked():
    max_kl, damping, ratio = 0.05, 0.02, 0.8
    agent = _agent(max_kl=max_kl, cg_damping=damping, ls_backtrack_ratio=ratio)
    # pairs +z, -z with the same advantage: the gradient in b cancels; samples far from the mean
    # are good (A = 1) and near it bad (A = -1), so the step widens the policy (l grows)
    z = np.array([[2.0, 2.0], [-2.0, -2.0], [0.5, 0.5], [-0.5, -0.5]])
    adv = np.array([1.0, 1.0, -1.0, -1.0])
    train, valid = _batches(z, adv)
    before = _params(agent)
    stats = agent.step(train, valid, 1, {"inner": 0.0, "cg": 0.0, "line_search": 0.0})
    after = _params(agent)

    s = INIT_STD
    grad_l = -(adv[:, None] * (z**2 - 1)).mean(0)  # d/dl of -mean(A log pi), per dimension
    assert (grad_l < 0).all()
    # Fisher 2 on l: the scaled step's quadratic model 0.5 * sum (2 + damping) dl^2 equals max_kl
    full = -grad_l / np.linalg.norm(grad_l) * math.sqrt(2 * max_kl / (2 + damping))
    kl_full = _gaussian_kl(np.zeros(ACT_DIM), full, s)
    assert kl_full > max_kl * 1.05  # the exact KL overshoots its quadratic model here

    # the full step would have lowered the surrogate: only the KL check can reject it
    def surrogate(dl: np.ndarray) -> float:
        logratio = (-0.5 * z**2 * np.exp(-2 * dl) - dl + 0.5 * z**2).sum(-1)
        return float(-(np.exp(logratio) * adv).mean())

    assert surrogate(full) < surrogate(np.zeros(ACT_DIM)) - 0.1

    # so the line search rejects it and accepts the next, ratio times as long
    kl_back = _gaussian_kl(np.zeros(ACT_DIM), ratio * full, s)
    assert kl_back < max_kl and surrogate(ratio * full) < surrogate(np.zeros(ACT_DIM))
    assert stats["ls_accepted"] is True and stats["ls_steps"] == 2
    assert stats["step_size"] == pytest.approx(ratio)
    np.testing.assert_allclose(after["log_std"] - before["log_std"], ratio * full, rtol=1e-5)
    np.testing.assert_allclose(after["b1"], before["b1"], atol=1e-6)
    assert stats["kl"] == pytest.approx(kl_back, rel=1e-4)
