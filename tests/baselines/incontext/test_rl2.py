"""RL²: config checks, the mathematics (GAE, PPO loss), hidden-state semantics, the task
inference head and determinism. The trial wrapper is tested in core/test_trial.py, the
learning checks in integration/test_rl_learning.py."""

from __future__ import annotations

import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import metarl_bench
from metarl_bench.agents import Transition, tuned_config
from metarl_bench.baselines.incontext import rl2  # private rollout/packing/builders: their mathematics tested
from metarl_bench.baselines.shared import gae

SMOKE = "MetaRL/Bandit-k5-n10-smoke-v0"
TINY = {"log_every": 1, "num_trials": 64, "num_minibatches": 2, "update_epochs": 2, "hidden_size": 16, "train_env_steps": 64 * 10 * 3}


def _bench(k: int = 2, n: int = 10, n_test: int = 8, runs: int = 2, **kw):
    """A small bandit benchmark built from the k5-n10 smoke one (k arms, trials of n pulls)."""
    base = metarl_bench.benchmark(SMOKE)
    proto = dataclasses.replace(base.protocol, budget_episodes=n, runs_per_task=runs)
    return dataclasses.replace(
        base, id=f"Test/Bandit-k{k}-n{n}-v0", family_kwargs={"k": k}, protocol=proto, n_test=n_test, **kw
    )


# --- configs and bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [("hidden_size", 0), ("gae_lambda", 1.5), ("gamma", 0.0), ("num_minibatches", 5000), ("ent_coef", -0.1), ("embed_size", -1), ("critic_hidden", 0),
     ("task_aux_coef", -0.5)],
)
def test_invalid_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        metarl_bench.agent("rl2", **{field: value})


def test_unknown_field_is_refused():
    with pytest.raises(TypeError, match="hidden_size"):
        metarl_bench.agent("rl2", hiden_size=8)


def test_tuned_defaults_apply_per_benchmark_and_overrides_win():
    tuned = tuned_config("rl2", "MetaRL/Bandit-k5-n10-v0")
    assert tuned, "baselines/configs/rl2.yaml has an entry for the bandit"
    cfg = metarl_bench.agent("rl2").configure(metarl_bench.benchmark("MetaRL/Bandit-k5-n10-v0"))
    assert all(getattr(cfg, k) == v for k, v in tuned.items())
    agent = metarl_bench.agent("rl2", hidden_size=7)
    assert agent.configure(metarl_bench.benchmark("MetaRL/Bandit-k5-n10-v0")).hidden_size == 7


def test_trial_longer_than_bptt_memory_suggests_a_chunk_length():
    bench = _bench(n=50)
    with pytest.raises(ValueError, match=r"bptt_chunk=20\b"):
        metarl_bench.evaluate(metarl_bench.agent("rl2", max_bptt_steps=20, **TINY), bench)
    # chunked BPTT then trains (the chunk does not divide the 50-step trial)
    rec = metarl_bench.evaluate(
        metarl_bench.agent("rl2", max_bptt_steps=20, bptt_chunk=15, **{**TINY, "train_env_steps": 64 * 50}), bench
    )
    assert np.isfinite(rec.scores["online"]["value"])


def test_budget_too_small_for_one_update_is_refused():
    with pytest.raises(ValueError, match="num_trials"):
        metarl_bench.evaluate(metarl_bench.agent("rl2", **{**TINY, "train_env_steps": 100}), _bench())


def test_nan_stops_with_the_update_named_and_keeps_the_last_good_parameters(tmp_path, monkeypatch):
    real = rl2.RL2Agent._ppo_epochs
    calls = {"n": 0}

    def poisoned(self, net, *args, **kwargs):
        stats = real(self, net, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:  # the third update (index 2) diverges
            with torch.no_grad():
                net.pi.weight.fill_(float("nan"))
        return stats

    monkeypatch.setattr(rl2.RL2Agent, "_ppo_epochs", poisoned)  # fault injection into the update
    agent = metarl_bench.agent("rl2", **{**TINY, "train_env_steps": 64 * 10 * 5})
    with pytest.raises(FloatingPointError, match="PPO update 3 of 5.*after PPO update 2") as info:
        metarl_bench.evaluate(agent, _bench(), checkpoints=tmp_path)
    saved = list(tmp_path.rglob("*.pt"))
    assert len(saved) == 1 and str(saved[0]) in str(info.value)
    state = torch.load(saved[0])["state"]
    assert all(torch.isfinite(v).all() for v in state.values())


# --- mathematics ----------------------------------------------------------------------------------


def test_gae_over_a_trial_matches_hand_computation():
    # one trial of 3 steps; gamma 0.9, lambda 0.8; only the trial's end is a value boundary
    rewards = torch.tensor([[1.0], [0.0], [1.0]])
    values = torch.tensor([[0.5], [0.4], [0.3]])
    ends = rl2._trial_ends(torch.ones(3, 1, dtype=torch.bool))
    assert ends[:, 0].tolist() == [0.0, 0.0, 1.0]
    adv, ret = gae(rewards, values, torch.zeros(1), ends, 0.9, 0.8)
    # d2 = 1 - 0.3 = 0.7; d1 = 0 + 0.9*0.3 - 0.4 = -0.13; d0 = 1 + 0.9*0.4 - 0.5 = 0.86
    # A2 = 0.7; A1 = -0.13 + 0.72*0.7 = 0.374; A0 = 0.86 + 0.72*0.374 = 1.12928
    assert adv[:, 0].tolist() == pytest.approx([1.12928, 0.374, 0.7])
    assert ret[:, 0].tolist() == pytest.approx([1.62928, 0.774, 1.0])


def test_trial_ends_follow_each_trials_length_after_packing():
    mask = np.array([[1, 1], [0, 1], [1, 1], [1, 1]], dtype=bool)  # trial 0 idles at step 1
    x = torch.arange(8.0).reshape(4, 2)
    valid, (packed,) = rl2._pack(mask, x)
    assert packed[:, 0].tolist() == [0.0, 4.0, 6.0, 0.0]
    assert packed[:, 1].tolist() == [1.0, 3.0, 5.0, 7.0]
    assert valid.tolist() == [[True, True], [True, True], [True, True], [False, True]]
    assert rl2._trial_ends(valid).tolist() == [[0, 0], [0, 0], [1, 0], [0, 1]]


def test_ppo_clipped_loss_matches_hand_computation():
    old = torch.zeros(2)
    new = torch.log(torch.tensor([1.5, 0.5]))  # ratios 1.5 and 0.5
    adv = torch.tensor([1.0, -1.0])
    loss, stats = rl2.ppo_loss(
        new, old, adv, torch.tensor([1.0, 2.0]), torch.zeros(2), torch.tensor([0.5, 1.5]),
        clip_coef=0.2, vf_coef=0.5, ent_coef=0.01,
    )
    # surrogates: min(1.5, 1.2) = 1.2 and min(-0.5, -0.8) = -0.8 -> policy loss -(0.4)/2 = -0.2
    # value loss 0.5 * (1 + 4) / 2 = 1.25; entropy 1.0
    assert stats["policy_loss"] == pytest.approx(-0.2)
    assert stats["value_loss"] == pytest.approx(1.25)
    assert stats["entropy"] == pytest.approx(1.0)
    assert stats["clip_frac"] == pytest.approx(1.0)
    assert float(loss) == pytest.approx(-0.2 + 0.5 * 1.25 - 0.01 * 1.0)
    # padding (weight 0) leaves every term unchanged
    pad = torch.tensor([1.0, 1.0, 0.0])
    loss2, _ = rl2.ppo_loss(
        torch.cat([new, torch.tensor([5.0])]), torch.zeros(3), torch.tensor([1.0, -1.0, 9.0]),
        torch.tensor([1.0, 2.0, 9.0]), torch.zeros(3), torch.tensor([0.5, 1.5, 9.0]), 0.2, 0.5, 0.01, pad,
    )
    assert float(loss2) == pytest.approx(float(loss))


def test_gaussian_log_prob_matches_torch_normal():
    spec = rl2._Spec(gym.spaces.Box(-1, 1, (2,)), gym.spaces.Box(-0.1, 0.1, (2,), np.float32))
    net = rl2.RL2Net(spec, 8, -0.5)
    mean = torch.tensor([[0.1, -0.2], [0.3, 0.0]])
    a = torch.tensor([[0.0, 0.5], [-1.0, 0.2]])
    logp, ent = net.log_prob_entropy(mean, a)
    ref = torch.distributions.Normal(mean, torch.full((2,), math.exp(-0.5)))
    assert torch.allclose(logp, ref.log_prob(a).sum(-1))
    assert torch.allclose(ent, ref.entropy().sum(-1))


# --- hidden state semantics -------------------------------------------------------------------------


def _adapter(k: int = 2, hidden: int = 16):
    spec = rl2._Spec(gym.spaces.Box(0, 1, (1,)), gym.spaces.Discrete(k))
    net = rl2._build_net(spec, rl2.RL2Config(hidden_size=hidden), seed=0)
    return rl2.RL2Adapter(net, seed=0)


def _pull(adapter, actions, rewards):
    """One bandit episode (one pull) for every sub-env, with the given actions and rewards."""
    n = len(actions)
    obs = np.zeros((n, 1), dtype=np.float32)
    adapter.act(obs)
    one = np.ones(n, dtype=bool)
    adapter.observe(
        Transition(obs, np.asarray(actions), np.asarray(rewards, float), obs, one, ~one, one, np.zeros(n, int))
    )


def test_hidden_state_is_kept_across_episodes_and_reset_only_by_a_new_trial():
    adapter = _adapter()
    adapter.reset(np.arange(2))
    _pull(adapter, [0, 0], [1.0, 0.0])  # episode 1: the two trials differ only in their reward
    _pull(adapter, [1, 1], [1.0, 1.0])  # episode 2: identical action and reward
    # episode 3: identical inputs (obs, previous action, reward, done) in both sub-envs, so only a
    # hidden state carried from episode 1 can tell them apart; an adapter that reset it at each
    # episode boundary would give both the same state
    assert torch.equal(adapter.inputs.prev[0], adapter.inputs.prev[1])
    assert not torch.allclose(adapter.h[0], adapter.h[1])
    assert adapter.h.abs().sum() > 0
    # a new trial starts from the zero state
    adapter.reset(np.arange(2))
    assert adapter.h.abs().sum() == 0 and adapter.inputs.prev.abs().sum() == 0


def test_inactive_sub_envs_keep_their_state():
    adapter = _adapter()
    adapter.reset(np.arange(2))
    _pull(adapter, [0, 1], [1.0, 1.0])
    before = adapter.h.clone()
    obs = np.zeros((2, 1), dtype=np.float32)
    adapter.act(obs)
    active = np.array([True, False])
    done = np.ones(2, dtype=bool)
    adapter.observe(Transition(obs, np.array([1, 1]), np.array([0.0, 0.0]), obs, done, ~done, active, np.zeros(2)))
    assert torch.equal(adapter.h[1], before[1]) and not torch.equal(adapter.h[0], before[0])


@pytest.mark.parametrize("value_hidden", [0, 8])
def test_training_rollouts_carry_the_hidden_state_through_the_trial(value_hidden):
    """The log-probabilities recorded in a rollout equal those of one GRU pass over the whole
    trial from a zero state: the rollout resets the state only when its trial begins."""
    bench = metarl_bench.benchmark(SMOKE)
    fam = bench.family
    venv = fam.make_vector_env(bench.train_tasks[:4])
    spec = rl2._Spec(venv.single_observation_space, venv.single_action_space)
    cfg = rl2.RL2Config(hidden_size=16, value_hidden_size=value_hidden)
    net = rl2._build_net(spec, cfg, seed=0)
    h0 = torch.zeros(4, 16 + value_hidden)
    with torch.no_grad():
        net.pi.weight.mul_(100.0)  # sharp policy, so that a wrong state shows in the log-probabilities
    batch = rl2._collect(net, venv, bench.train_tasks[:4], 10, 1, torch.Generator().manual_seed(0), 0)
    with torch.no_grad():
        _, out, values = net(batch.x, h0)
        logp, _ = net.log_prob_entropy(out, batch.actions)
    assert torch.allclose(logp, batch.logp, atol=1e-5)
    assert torch.allclose(values, batch.values, atol=1e-5)
    # and the prev-done input flags every episode boundary after the first step
    assert batch.x[1:, :, -1].eq(1).all() and batch.x[0, :, -1].eq(0).all()
    # a per-episode reset would give different numbers
    with torch.no_grad():
        per_episode = torch.cat([net(batch.x[t : t + 1], h0)[2] for t in range(10)])
    assert not torch.allclose(per_episode, batch.values, atol=1e-3)


def test_navigation_rollout_packs_early_terminations():
    """Continuous actions and episodes that end early: packed rollouts match a whole-trial pass."""
    fam = metarl_bench.family("MetaRL/Navigation2D-v0")
    tasks = fam.sample_tasks(3, np.random.default_rng(0))
    tasks[1] = type(tasks[1])(goal=(0.004, -0.003))  # next to the start: an almost still policy ends at once
    venv = fam.make_vector_env(tasks)
    spec = rl2._Spec(venv.single_observation_space, venv.single_action_space)
    net = rl2._build_net(spec, rl2.RL2Config(hidden_size=8, value_hidden_size=4, init_log_std=-6.0), seed=0)
    batch = rl2._collect(net, venv, tasks, 2, 100, torch.Generator().manual_seed(0), 0)
    assert batch.actions.shape[-1] == 2
    assert batch.valid.sum(0).tolist() == [200, 2, 200]  # trial 1: two one-step episodes, then padding
    # the time a time-aware critic reads is the fraction of each trial's steps taken before the step
    assert torch.allclose(batch.time[:2, 1], torch.tensor([0.0, 1 / 200])) and batch.time[199, 0] == 199 / 200
    with torch.no_grad():
        _, out, values = net(batch.x, torch.zeros(3, 12))
        logp, _ = net.log_prob_entropy(out, batch.actions)
    assert torch.allclose(logp[batch.valid], batch.logp[batch.valid], atol=1e-4)
    # the separate value GRU's state is frozen with the policy's on finished sub-envs
    assert torch.allclose(values[batch.valid], batch.values[batch.valid], atol=1e-4)


def _navigation_trials():
    """Three Navigation2D tasks, their batched vector env and RL²'s input/output spec."""
    fam = metarl_bench.family("MetaRL/Navigation2D-v0")
    tasks = fam.sample_tasks(3, np.random.default_rng(1))
    venv = fam.make_vector_env(tasks)
    return tasks, venv, rl2._Spec(venv.single_observation_space, venv.single_action_space)


@pytest.mark.parametrize("embed, timed", [(0, False), (6, False), (0, True)])
def test_bptt_chunks_start_from_the_rollout_states(embed, timed):
    """Chunked sequences, each run from its stored start state, reproduce the whole-trial pass
    (a separate value GRU's state travels with the policy's; with or without an input embedding;
    a time-aware critic's time travels with its chunk)."""
    tasks, venv, spec = _navigation_trials()
    cfg = rl2.RL2Config(hidden_size=8, value_hidden_size=4, embed_size=embed, critic_time=timed, critic_hidden=5)
    net = rl2._build_net(spec, cfg, seed=0)
    assert (net.embed is None) == (embed == 0) and net.timed == timed
    batch = rl2._collect(net, venv, tasks, 2, 100, torch.Generator().manual_seed(0), 0)
    adv, ret = torch.randn(batch.valid.shape), torch.randn(batch.valid.shape)
    seqs = rl2._chunks(batch, net, adv, ret, chunk=30)  # 200 steps -> 7 chunks, the last padded
    assert seqs["x"].shape[:2] == (30, 7 * 3) and seqs["h0"].shape == (21, 12)
    with torch.no_grad():
        _, out, values = net(seqs["x"], seqs["h0"], seqs["time"])
        logp, _ = net.log_prob_entropy(out, seqs["a"])
    valid = seqs["valid"].bool()
    assert int(valid.sum()) == 600
    assert torch.allclose(logp[valid], seqs["logp"][valid], atol=1e-4)
    # chunk-major layout: chunk c of trial j is column c * 3 + j; its values are the rollout's
    assert torch.allclose(values[:, 1 * 3 + 2], batch.values[30:60, 2], atol=1e-4)
    assert torch.allclose(seqs["time"][:, 1 * 3 + 2], torch.arange(30, 60) / 200)


def test_time_aware_critic_changes_the_values_but_never_the_policy():
    """``critic_time`` feeds the trial's elapsed fraction to the value head only: the policy's
    outputs (all that acts at test time) do not depend on it; the values do, and need it."""
    bench = metarl_bench.benchmark(SMOKE)
    venv = bench.family.make_vector_env(bench.train_tasks[:4])
    spec = rl2._Spec(venv.single_observation_space, venv.single_action_space)
    net = rl2._build_net(spec, rl2.RL2Config(hidden_size=16, critic_time=True, critic_hidden=8), seed=0)
    batch = rl2._collect(net, venv, bench.train_tasks[:4], 10, 1, torch.Generator().manual_seed(0), 0)
    h0 = torch.zeros(4, 16)
    with torch.no_grad():
        _, out, values = net(batch.x, h0, batch.time)
        _, out_late, values_late = net(batch.x, h0, batch.time + 0.5)
    assert torch.allclose(values, batch.values, atol=1e-5)  # the rollout's values used the same time
    assert torch.equal(out, out_late) and not torch.allclose(values, values_late, atol=1e-3)
    with pytest.raises(ValueError, match="time"):
        net(batch.x, h0)


def test_task_targets_are_the_task_parameters_standardised_with_each_field_weighed_equally():
    fam = metarl_bench.family("MetaRL/TabularMDP-v0")
    tasks = fam.sample_tasks(200, np.random.default_rng(0))
    y = rl2.task_targets(tasks).double()
    feats = np.stack([t.features() for t in tasks])
    assert y.shape == (200, 550) == feats.shape  # mu (10 x 5) then P (10 x 5 x 10)
    assert torch.allclose(y.mean(0), torch.zeros(550, dtype=torch.float64), atol=1e-5)
    # per parameter: standardised, times sqrt(550 / (2 x its field's size))
    std = y.std(0)
    assert torch.allclose(std[:50], torch.full((50,), math.sqrt(550 / 100), dtype=torch.float64), atol=1e-4)
    assert torch.allclose(std[50:], torch.full((500,), math.sqrt(550 / 1000), dtype=torch.float64), atol=1e-4)
    # so predicting the prior mean costs ~1, half of it from the 50 mean rewards
    zero_loss = (y**2).mean(1)
    assert float(zero_loss.mean()) == pytest.approx(199 / 200, rel=1e-4)
    assert float((y[:, :50] ** 2).sum(1).mean()) == pytest.approx(float((y[:, 50:] ** 2).sum(1).mean()), rel=1e-4)
    # affine per parameter: the task with the largest mu[0, 0] keeps the largest target
    assert int(y[:, 0].argmax()) == int(feats[:, 0].argmax())
    same = rl2.task_targets([tasks[0]] * 3)  # a parameter constant over the tasks is only centred
    assert torch.equal(same, torch.zeros(3, 550))


def test_task_targets_of_custom_features_weigh_each_feature_the_same():
    """A family whose tasks override ``features()`` (not the concatenation of their fields) gets
    plain per-feature standardisation."""

    fam = metarl_bench.family("MetaRL/TabularMDP-v0")
    tasks = fam.sample_tasks(50, np.random.default_rng(0))

    @dataclasses.dataclass(frozen=True)
    class Summary(type(tasks[0])):  # type: ignore[misc]
        def features(self):
            return super().features()[:3]

    y = rl2.task_targets([Summary(mu=t.mu, P=t.P) for t in tasks])
    assert torch.allclose(y, rl2.task_targets(tasks)[:, :3] / math.sqrt(550 / 100), atol=1e-5)


def test_task_head_leaves_the_acting_network_untouched_and_its_target_follows_each_chunk():
    """The task-inference head is an extra output: the same seed builds the same policy and
    value weights with or without it, and BPTT chunks carry their own trial's target."""
    tasks, venv, spec = _navigation_trials()
    cfg = rl2.RL2Config(hidden_size=8, embed_size=6)
    plain, aux = rl2._build_net(spec, cfg, seed=0), rl2._build_net(spec, cfg, seed=0, task_dim=2)
    with pytest.raises(ValueError, match="task_dim"):
        plain.task_prediction(torch.zeros(1, 3, 8))
    weights = aux.state_dict()
    assert set(weights) - set(plain.state_dict()) == {"task_head.weight", "task_head.bias"}
    assert all(torch.equal(v, weights[k]) for k, v in plain.state_dict().items())
    batch = rl2._collect(aux, venv, tasks, 2, 100, torch.Generator().manual_seed(0), 0)
    target = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    adv = ret = torch.zeros(batch.valid.shape)
    assert torch.equal(rl2._chunks(batch, aux, adv, ret, chunk=0, task=target)["task"], target)
    seqs = rl2._chunks(batch, aux, adv, ret, chunk=30, task=target)  # 7 chunks of each trial
    assert seqs["task"].shape == (21, 2)
    assert all(torch.equal(seqs["task"][c * 3 + j], target[j]) for c in range(7) for j in range(3))
    assert aux.task_prediction(seqs["h0"].unsqueeze(0)).shape == (1, 21, 2)


def test_task_inference_head_learns_the_belief_over_a_trial():
    """Trained with ``task_aux_coef``, the head's error on the arms' success probabilities falls
    from the prior's (first pull) to well below it by the trial's last pull; the loss is logged."""
    bench = _bench(k=2, n=10, n_test=8, n_train=500)
    over = {"train_env_steps": 64 * 10 * 40, "learning_rate": 0.01, "task_aux_coef": 1.0}
    agent = metarl_bench.agent("rl2", **{**TINY, **over})
    rec = metarl_bench.evaluate(agent, bench, seed=0)
    log = rec.extra["train_log"]
    assert all("task_loss" in row for row in log)
    tasks = bench.train_tasks[:256]
    venv = bench.family.make_vector_env(tasks)
    batch = rl2._collect(agent.net, venv, tasks, 10, 1, torch.Generator().manual_seed(1), 0)
    with torch.no_grad():
        hs, _, _ = agent.net(batch.x, torch.zeros(256, agent.net.state_size), batch.time)
        err = ((agent.net.task_prediction(hs) - rl2.task_targets(bench.train_tasks)[:256]) ** 2).mean((1, 2))
    # before any reward is seen nothing beats the prior mean (error ~1 in standardised units);
    # after n pulls of a uniform arm its posterior variance is 2 / (n + 2) of the prior's, so the
    # exact belief reaches ~0.35 by the last pull; this head (measured 0.65) must get below 0.8
    assert float(err[0]) > 0.9 and float(err[-1]) < 0.8 * float(err[0]), err
    assert log[-1]["task_loss"] < log[0]["task_loss"] - 0.1, log


# --- determinism and harness fit ------------------------------------------------------------------------


def test_seeded_short_run_is_deterministic():
    def run(seed):
        agent = metarl_bench.agent("rl2", **TINY)
        rec = metarl_bench.evaluate(agent, _bench(k=5), seed=seed)
        return rec, {k: v.clone() for k, v in agent.net.state_dict().items()}

    (r1, s1), (r2, s2), (r3, _) = run(0), run(0), run(1)
    assert np.array_equal(r1.returns, r2.returns)
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert not np.array_equal(r1.returns, r3.returns)
    assert r1.meta_train["env_steps"] == TINY["train_env_steps"]
    assert r1.evaluation["episodes_per_stage"] == 1
    assert [row["update"] for row in r1.extra["train_log"]] == [0, 1, 2]


def test_torch_global_generator_is_untouched():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    metarl_bench.evaluate(metarl_bench.agent("rl2", **TINY), _bench())
    assert torch.equal(torch.rand(3), expected)


