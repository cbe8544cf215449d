"""The batched per-run PPO computes what Stable-Baselines3's ``PPO.train()`` computes on
each run's data (network, log-probabilities, losses, clipping, Adam), and starts from SB3's
initialisation."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import DummyVecEnv

from metarl_bench.baselines.sb3.batched_ppo import (
    BatchedAdam,
    Head,
    PPOUpdate,
    Rollout,
    init_params,
    ppo_update,
)


class _Spaces(gym.Env):
    def __init__(self, obs: gym.Space, act: gym.Space) -> None:
        self.observation_space, self.action_space = obs, act

    def reset(self, *, seed=None, options=None):  # type: ignore[no-untyped-def]
        return self.observation_space.sample(), {}

    def step(self, action):  # type: ignore[no-untyped-def]
        return self.observation_space.sample(), 0.0, False, False, {}


def _sb3_train(obs_space, act_space, state, data, run, cfg):  # type: ignore[no-untyped-def]
    """SB3's own PPO.train() on run ``run``'s valid transitions, from parameters ``state``."""
    n = int(data.valid[run].sum())
    env = DummyVecEnv([lambda: _Spaces(obs_space, act_space)])
    model = PPO("MlpPolicy", env, n_steps=n, batch_size=max(n, 2), n_epochs=cfg.n_epochs, learning_rate=cfg.learning_rate,
                gamma=cfg.gamma, gae_lambda=cfg.gae_lambda, clip_range=cfg.clip_range, ent_coef=cfg.ent_coef,
                vf_coef=cfg.vf_coef, max_grad_norm=cfg.max_grad_norm, device="cpu", seed=0,
                policy_kwargs={"net_arch": [16, 16]})
    model.policy.load_state_dict({k: v[run] for k, v in state.items()})
    buf = model.rollout_buffer
    keep = data.valid[run]
    buf.observations[:, 0] = data.obs[run][keep].numpy()
    acts = data.actions[run][keep].numpy()
    buf.actions[:, 0] = acts.reshape(n, -1)
    buf.log_probs[:, 0] = data.log_probs[run][keep].numpy()
    buf.advantages[:, 0] = data.advantages[run][keep].numpy()
    buf.returns[:, 0] = data.returns[run][keep].numpy()
    buf.values[:, 0] = 0.0
    buf.full, buf.pos = True, n
    model.set_logger(configure(None, []))
    model.train()
    return model.policy.state_dict()


@pytest.mark.parametrize("act_space", [gym.spaces.Discrete(4), gym.spaces.Box(-1, 1, (2,), np.float32)], ids=["discrete", "box"])
def test_batched_update_equals_sb3_train_per_run(act_space: gym.Space) -> None:
    obs_space = gym.spaces.Box(-1, 1, (3,), np.float32)
    runs, slots = 3, 24
    gen = torch.Generator().manual_seed(0)
    params = init_params(runs, 3, act_space, 16, gen)
    start = {k: v.clone() for k, v in params.items()}
    g = torch.Generator().manual_seed(1)
    valid = torch.ones(runs, slots, dtype=torch.bool)
    valid[1, 17:] = False  # a run whose episodes ended early: fewer transitions
    valid[2, 5:] = False
    if isinstance(act_space, gym.spaces.Discrete):
        actions = torch.randint(0, 4, (runs, slots), generator=g)
    else:
        actions = torch.randn(runs, slots, 2, generator=g)
    data = Rollout(
        obs=torch.rand(runs, slots, 3, generator=g) * 2 - 1,
        actions=actions,
        log_probs=torch.randn(runs, slots, generator=g) * 0.3 - 1.2,  # an older policy's log-probabilities
        advantages=torch.randn(runs, slots, generator=g),
        returns=torch.randn(runs, slots, generator=g),
        valid=valid,
    )
    # one minibatch per epoch (batch_size >= transitions) makes SB3's shuffling irrelevant
    cfg = PPOUpdate(learning_rate=3e-3, n_epochs=4, batch_size=64, ent_coef=0.01, max_grad_norm=0.5)
    ppo_update(params, BatchedAdam(params, cfg.learning_rate), Head(act_space), data, cfg, torch.Generator().manual_seed(2))
    for run in range(runs):
        want = _sb3_train(obs_space, act_space, start, data, run, cfg)
        assert not torch.allclose(want["action_net.weight"], start["action_net.weight"][run])  # it did learn
        for key, value in want.items():
            torch.testing.assert_close(params[key][run], value, rtol=1e-4, atol=2e-6, msg=f"run {run}, {key}")


def test_init_is_sb3_orthogonal_with_its_gains() -> None:
    params = init_params(5, 7, gym.spaces.Discrete(3), 32, torch.Generator().manual_seed(0))
    for name, gain in [("mlp_extractor.policy_net.0", 2**0.5), ("mlp_extractor.value_net.2", 2**0.5),
                       ("action_net", 0.01), ("value_net", 1.0)]:
        w = params[f"{name}.weight"]
        small = min(w.shape[1:])
        gram = w @ w.transpose(1, 2) if w.shape[1] == small else w.transpose(1, 2) @ w
        torch.testing.assert_close(gram, gain**2 * torch.eye(small).expand_as(gram), rtol=1e-4, atol=1e-5)
        assert not torch.allclose(w[0], w[1])  # every run draws its own initialisation
        assert torch.count_nonzero(params[f"{name}.bias"]) == 0


def test_stage_rollout_matches_sb3_rollout_buffer() -> None:
    """Episodes that end at different steps, by termination or by truncation, give the
    advantages and returns SB3's RolloutBuffer computes for the same episodes in a row."""
    from stable_baselines3.common.buffers import RolloutBuffer

    from metarl_bench.agents import Transition
    from metarl_bench.baselines.sb3.batched_ppo import BatchedPPOAdapter, forward

    obs_space, act_space = gym.spaces.Box(-1, 1, (2,), np.float32), gym.spaces.Discrete(3)
    cfg = PPOUpdate(gamma=0.9, gae_lambda=0.8)
    adapter = BatchedPPOAdapter(obs_space, act_space, cfg, episodes_per_stage=2, budget_episodes=4,
                                init=lambda n, gen: init_params(n, 2, act_space, 8, gen), seed=0)
    adapter.reset(np.array([0, 1, 0, 1]))  # runs interleaved: sub-envs 0 and 2 are run 0
    # last step of each sub-env's episode, and how it ended
    last, ends = [1, 3, 3, 2], ["terminated", "truncated", "terminated", "truncated"]
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, (4, 2)).astype(np.float32)
    history: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for t in range(4):
        action = adapter.act(obs)
        active = np.array([t <= k for k in last])
        terminated = np.array([t == k and e == "terminated" for k, e in zip(last, ends)])
        truncated = np.array([t == k and e == "truncated" for k, e in zip(last, ends)])
        reward = rng.normal(size=4)
        next_obs = rng.uniform(-1, 1, (4, 2)).astype(np.float32)
        pending = adapter._pending
        assert pending is not None
        history.append((obs, action, reward, next_obs, pending[3].numpy()))
        adapter.observe(Transition(obs, action, reward, next_obs, terminated, truncated, active, np.full(4, t)))
        obs = next_obs
    got = adapter.rollout()

    for run, envs in [(0, [0, 2]), (1, [1, 3])]:
        n = sum(last[e] + 1 for e in envs)
        buf = RolloutBuffer(n, obs_space, act_space, gae_lambda=cfg.gae_lambda, gamma=cfg.gamma, n_envs=1)
        for e in envs:  # SB3's collect_rollouts, one env whose episodes follow each other
            for t in range(last[e] + 1):
                o, a, r, nxt, v = (h[e] for h in history[t])
                reward = float(r)
                if t == last[e] and ends[e] == "truncated":  # SB3 bootstraps a time-limit end
                    with torch.no_grad():
                        _, v_final = forward({k: p[run : run + 1] for k, p in adapter.params.items()},
                                             torch.as_tensor(nxt).view(1, 1, -1))
                    reward += cfg.gamma * float(v_final)
                buf.add(o[None], np.array([[a]]), np.array([reward]), np.array([t == 0]),
                        torch.tensor([float(v)]), torch.tensor([0.0]))
        buf.compute_returns_and_advantage(last_values=torch.zeros(1), dones=np.array([1.0]))
        valid = got.valid[run]
        assert int(valid.sum()) == n
        np.testing.assert_allclose(got.advantages[run][valid].numpy(), buf.advantages[:, 0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got.returns[run][valid].numpy(), buf.returns[:, 0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got.obs[run][valid].numpy(), buf.observations[:, 0], rtol=0, atol=0)
