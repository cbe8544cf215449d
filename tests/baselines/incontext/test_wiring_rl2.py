"""Wiring of RL²'s PPO update that one-line changes could break unseen: what reaches the
clipped loss (old log-probabilities, normalised advantages), gradient clipping before Adam,
and the learning-rate and entropy schedules over updates."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from gymnasium import spaces

import metarl_bench
from metarl_bench.baselines.incontext import rl2  # wiring tests spy on its private update and builders

SMOKE = "MetaRL/Bandit-k5-n10-smoke-v0"


def _net(cfg: rl2.RL2Config) -> rl2.RL2Net:
    spec = rl2._Spec(spaces.Box(0.0, 1.0, (1,), np.float32), spaces.Discrete(3))
    return rl2._build_net(spec, cfg, seed=0)


def test_ppo_update_passes_the_rollout_log_probs_and_normalised_advantages_and_clips_gradients(monkeypatch):
    t, m = 5, 6
    max_norm = 1e-3  # far below the gradient's norm, so clipping is active
    agent = rl2.RL2Agent(num_trials=m, num_minibatches=1, update_epochs=1, hidden_size=8, max_grad_norm=max_norm,
                         clip_coef=0.15, vf_coef=0.7)
    net = _net(agent.cfg)
    g = torch.Generator().manual_seed(0)
    valid = torch.ones(t, m)
    valid[3:, 1] = 0.0  # a shorter trial: padding must not enter the advantage statistics
    seqs = {
        "x": torch.randn(t, m, net.spec.in_dim, generator=g),
        "a": torch.randint(0, 3, (t, m), generator=g),
        "logp": torch.arange(m, dtype=torch.float32).expand(t, m) * -0.1 - 1.0,  # column j: -1 - 0.1 j
        "adv": torch.randn(t, m, generator=g) * 3 + 2,
        "ret": torch.randn(t, m, generator=g),
        "valid": valid,
        "time": torch.zeros(t, m),
        "h0": torch.zeros(m, net.state_size),
    }
    calls = []
    original_loss = rl2.ppo_loss

    def loss_spy(new_logp, old_logp, adv, new_values, returns, entropy, clip_coef, vf_coef, ent_coef, weight=None):
        calls.append(dict(new=new_logp.detach().clone(), old=old_logp.clone(), adv=adv.clone(), clip=clip_coef,
                          vf=vf_coef, ent=ent_coef, w=weight.clone()))
        return original_loss(new_logp, old_logp, adv, new_values, returns, entropy, clip_coef, vf_coef, ent_coef, weight)

    monkeypatch.setattr(rl2, "ppo_loss", loss_spy)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    norms = []
    step = opt.step

    def step_spy(*args, **kwargs):
        norms.append(float(torch.sqrt(sum((p.grad**2).sum() for p in net.parameters() if p.grad is not None))))
        return step(*args, **kwargs)

    monkeypatch.setattr(opt, "step", step_spy)
    stats = agent._ppo_epochs(net, opt, seqs, 0.03, torch.Generator().manual_seed(1))

    assert len(calls) == 1 and len(norms) == 1
    c = calls[0]
    idx = torch.round((-1.0 - c["old"][0]) / 0.1).long()  # which trial each column is
    assert sorted(idx.tolist()) == list(range(m))
    torch.testing.assert_close(c["old"], seqs["logp"][:, idx])  # the rollout's, not the current policy's
    assert not torch.allclose(c["new"], c["old"])
    torch.testing.assert_close(c["w"], valid[:, idx])
    # advantages standardised over the minibatch's valid steps only
    raw = seqs["adv"][:, idx].numpy()
    keep = valid[:, idx].numpy() > 0
    expected = (raw - raw[keep].mean()) / (raw[keep].std() + 1e-8)
    np.testing.assert_allclose(c["adv"].numpy()[keep], expected[keep], rtol=1e-5, atol=1e-5)
    assert (c["clip"], c["vf"], c["ent"]) == (0.15, 0.7, 0.03)
    # the recorded norm is the gradient's before clipping; Adam sees the clipped gradient
    assert stats["grad_norm"] > 10 * max_norm
    assert norms[0] == pytest.approx(max_norm, rel=1e-4)


def test_learning_rate_and_entropy_bonus_follow_their_linear_schedules(monkeypatch):
    bench = metarl_bench.benchmark(SMOKE)
    n, updates = 4, 4
    lr, ent0, ent1 = 0.01, 0.1, 0.02
    agent = rl2.RL2Agent(num_trials=n, num_minibatches=1, update_epochs=1, hidden_size=4, learning_rate=lr,
                         anneal_lr=True, ent_coef=ent0, ent_coef_final=ent1)
    venv = bench.family.make_vector_env(bench.train_tasks[:n])
    net = rl2._build_net(rl2._Spec(venv.single_observation_space, venv.single_action_space), agent.cfg, seed=0)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    seen = []

    def ppo_spy(net_, opt_, seqs, ent_coef, gen):
        seen.append((opt_.param_groups[0]["lr"], ent_coef))
        return {"entropy": 1.0}

    monkeypatch.setattr(agent, "_ppo_epochs", ppo_spy)
    ctx = SimpleNamespace(steps=0, progress=False, benchmark=bench, record=lambda **kw: None)
    agent._train(ctx, net, opt, venv, list(bench.train_tasks), None, np.random.default_rng(0),
                 torch.Generator().manual_seed(0), 2, 1, updates)
    fractions = [u / updates for u in range(updates)]
    assert [s[0] for s in seen] == pytest.approx([lr * (1 - f) for f in fractions])
    assert [s[1] for s in seen] == pytest.approx([ent0 + (ent1 - ent0) * f for f in fractions])
