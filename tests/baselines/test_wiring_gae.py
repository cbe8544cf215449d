"""GAE end to end through rollout collection, for maml-rl's and RL²'s collection paths.

As Stable-Baselines3's ``tests/test_gae.py`` does: an environment with known rewards and episode
ends, and a constant value function, so that the advantages and returns the learners train on
have hand-derivable values for gamma != 1 and lambda != 1. Expected values come from the
definition ``A_t = sum_l (gamma * lambda)^l * delta_{t+l}``, ``delta_t = r_t + gamma * V_{t+1} - V_t``
(``V = 0`` after an episode's last step), not from the recursion the code uses.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from gymnasium import spaces

from metarl_bench.agents import Transition
from metarl_bench.baselines.gradient import common as rc
from metarl_bench.baselines.gradient import maml_rl
from metarl_bench.baselines.gradient.reptile_rl import ReptileRL
from metarl_bench.baselines.incontext import rl2  # wiring tests: spy on the learners' private batching steps

GAMMA, LAM = 0.9, 0.5
VALUE = 0.7  # the constant value function
HORIZON = 3
PAST_END = 1000.0  # what the env pays on steps after its episode ended; collection must drop it


def _length(env: int, episode: int) -> int:
    return 1 + (env + episode) % HORIZON


def _reward(env: int, episode: int, t: int) -> float:
    return 0.25 * (env + 1) + t - 0.75 * episode


class KnownRewardsVecEnv:
    """A vector env of ``n`` sub-envs; sub-env ``i``'s ``e``-th episode (counted in resets)
    lasts ``_length(i, e)`` steps and pays ``_reward(i, e, t)`` at step ``t``."""

    def __init__(self, n: int) -> None:
        self.num_envs = n
        self.single_observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.single_action_space = spaces.Discrete(2)
        self.episode = -1
        self.t = 0

    def set_tasks(self, tasks) -> None:
        pass

    def reset(self, seed=None, options=None):
        self.episode += 1
        self.t = 0
        return np.zeros((self.num_envs, 1), np.float32), {}

    def step(self, actions):
        assert len(actions) == self.num_envs
        lengths = np.array([_length(i, self.episode) for i in range(self.num_envs)])
        reward = np.array(
            [_reward(i, self.episode, self.t) if self.t < lengths[i] else PAST_END for i in range(self.num_envs)]
        )
        terminated = self.t >= lengths - 1
        self.t += 1
        return np.zeros((self.num_envs, 1), np.float32), reward, terminated, np.zeros(self.num_envs, bool), {}

    def close(self) -> None:
        pass


def _advantages_by_definition(rewards: list[float], value: float, gamma: float, lam: float) -> np.ndarray:
    """GAE of one episode that ends (no bootstrap) after its last reward, constant value."""
    n = len(rewards)
    v = [value] * n + [0.0]
    delta = [rewards[t] + gamma * v[t + 1] - v[t] for t in range(n)]
    return np.array([sum((gamma * lam) ** k * delta[t + k] for k in range(n - t)) for t in range(n)])


# --- maml-rl: collect_episodes -> group_batch (the linear baseline replaced by a constant) ------------


def _constant_baseline(monkeypatch) -> None:
    monkeypatch.setattr(rc, "linear_baseline_values", lambda episodes, groups, gamma, reg_coeff=1e-5: VALUE * episodes.mask)


def _expected_maml(n: int) -> np.ndarray:
    """Raw advantages (HORIZON, n) of one episode per sub-env, zero after each episode."""
    adv = np.zeros((HORIZON, n))
    for i in range(n):
        length = _length(i, 0)
        adv[:length, i] = _advantages_by_definition([_reward(i, 0, t) for t in range(length)], VALUE, GAMMA, LAM)
    return adv


def _normalised(adv: np.ndarray, groups: int) -> np.ndarray:
    """Per group: subtract the mean over its episodes of each episode's mean advantage, divide by
    the same weighting's standard deviation (+1e-8); zero after each episode."""
    n = adv.shape[1]
    e = n // groups
    out = np.zeros_like(adv)
    for g in range(groups):
        cols = range(g * e, (g + 1) * e)
        pairs = [(adv[t, i], 1.0 / (_length(i, 0) * e)) for i in cols for t in range(_length(i, 0))]
        mean = sum(a * w for a, w in pairs)
        std = np.sqrt(sum(w * (a - mean) ** 2 for a, w in pairs))
        for i in cols:
            length = _length(i, 0)
            out[:length, i] = (adv[:length, i] - mean) / (std + 1e-8)
    return out


def _group_major(x: np.ndarray, groups: int) -> np.ndarray:
    """(T, N) -> (G, T * E): group g holds sub-envs g*E .. g*E+E-1, step by step."""
    t, n = x.shape
    e = n // groups
    return np.stack([np.array([x[s, g * e + j] for s in range(t) for j in range(e)]) for g in range(groups)])


def _collect_maml(n: int) -> rc.Episodes:
    venv = KnownRewardsVecEnv(n)
    return rc.collect_episodes(venv, lambda obs: torch.zeros(obs.shape[0], dtype=torch.long), HORIZON, seed=0)


def test_maml_rollout_advantages_are_gae_of_the_known_rewards(monkeypatch):
    _constant_baseline(monkeypatch)
    groups, n = 2, 6
    episodes = _collect_maml(n)
    np.testing.assert_array_equal(episodes.mask.sum(0).numpy(), [_length(i, 0) for i in range(n)])
    raw = rc.compute_advantages(episodes, groups, GAMMA, LAM, normalize=False)
    # float32 rewards and a few products: 1e-5 relative is far above rounding
    np.testing.assert_allclose(raw.numpy(), _expected_maml(n), rtol=1e-5, atol=1e-6)
    # lambda matters on these episodes: lambda = 1 gives other values
    assert not np.allclose(_expected_maml(n), _lambda_one(n), atol=0.05)


def _lambda_one(n: int) -> np.ndarray:
    adv = np.zeros((HORIZON, n))
    for i in range(n):
        length = _length(i, 0)
        r = [_reward(i, 0, t) for t in range(length)]
        adv[:length, i] = [sum(GAMMA**k * r[t + k] for k in range(length - t)) - VALUE for t in range(length)]
    return adv


@pytest.mark.parametrize("cls", [maml_rl.MAMLTRPO, maml_rl.MAMLPPO, ReptileRL])
def test_learner_batches_use_the_configured_gamma_and_lambda(cls, monkeypatch):
    """The batch a learner trains its inner step on (``_batch``, through ``group_batch``) holds
    the normalised GAE advantages of the config's gamma and lambda, in group-major layout."""
    _constant_baseline(monkeypatch)
    groups, n = 2, 6
    agent = cls(gamma=GAMMA, gae_lambda=LAM)
    batch = agent._batch(_collect_maml(n), groups)
    expected = _group_major(_normalised(_expected_maml(n), groups), groups)
    np.testing.assert_allclose(batch.advantages.numpy(), expected, rtol=1e-4, atol=1e-5)
    weights = _group_major(np.array([[1.0 / (_length(i, 0) * 3) if t < _length(i, 0) else 0.0 for i in range(n)]
                                     for t in range(HORIZON)]), groups)
    np.testing.assert_allclose(batch.weights.numpy(), weights, rtol=1e-6)


def test_test_time_adapter_steps_on_the_configured_gae(monkeypatch):
    """maml's test-time adaptation: after one stage, each run's parameters are one policy-gradient
    step on that run's episodes with the normalised GAE advantages of the config's gamma and lambda."""
    _constant_baseline(monkeypatch)
    runs, per_run = 2, 3
    n = runs * per_run
    agent = maml_rl.MAMLTRPO(gamma=GAMMA, gae_lambda=LAM, hidden_sizes=(4,), fast_lr=0.5, fast_batch_size=per_run)
    obs_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
    ctx = SimpleNamespace(seed=0, rng=np.random.default_rng(0), observation_space=obs_space, benchmark=SimpleNamespace(id="Test/Known-v0"),
                          action_space=spaces.Discrete(2))
    agent._build_untrained(ctx)
    adapter = agent.adapter(ctx)
    groups = np.repeat(np.arange(runs), per_run)
    adapter.reset(groups)
    venv = KnownRewardsVecEnv(n)
    obs, _ = venv.reset(seed=0)
    active = np.ones(n, bool)
    acts, obs_seen = [], []
    for _ in range(HORIZON):
        action = adapter.act(obs)
        nxt, reward, term, trunc, _ = venv.step(action)
        adapter.observe(Transition(obs, action, reward, nxt, term, trunc, active.copy(), groups))
        acts.append(action)
        obs_seen.append(obs)
        active &= ~term
        obs = nxt
    theta = {k: v.detach().clone() for k, v in agent.policy.named_parameters()}
    adapter.adapt()

    adv = _group_major(_normalised(_expected_maml(n), runs), runs)
    mask = np.array([[1.0 if t < _length(i, 0) else 0.0 for i in range(n)] for t in range(HORIZON)])
    weights = _group_major(mask / np.array([_length(i, 0) * per_run for i in range(n)]), runs)
    actions = torch.as_tensor(_group_major(np.stack(acts).astype(np.int64), runs))
    o = torch.zeros(runs, HORIZON * per_run, 1)
    for r in range(runs):  # one policy-gradient step from theta on run r's episodes, by autograd
        p = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
        logp = agent.policy.log_prob(agent.policy.call(p, o[r]), actions[r])
        loss = -(logp * torch.as_tensor(adv[r] * weights[r], dtype=torch.float32)).sum()
        grads = torch.autograd.grad(loss, list(p.values()))
        for (k, v), g in zip(theta.items(), grads):
            torch.testing.assert_close(adapter.params[k][r], v - 0.5 * g, rtol=1e-4, atol=1e-6)


# --- RL²: _collect -> gae over each trial, through the training loop ------------------------------


class _Captured(Exception):
    pass


def test_rl2_training_targets_are_gae_of_the_known_rewards(monkeypatch):
    n, episodes, scale = 4, 2, 2.0
    agent = rl2.RL2Agent(gamma=GAMMA, gae_lambda=LAM, reward_scale=scale, num_trials=n, num_minibatches=1,
                         hidden_size=4)
    venv = KnownRewardsVecEnv(n)
    spec = rl2._Spec(venv.single_observation_space, venv.single_action_space)
    net = rl2._build_net(spec, agent.cfg, seed=0)
    with torch.no_grad():  # the constant value function
        net.v.weight.zero_()
        net.v.bias.fill_(VALUE)
    captured = {}

    def capture(batch, net, adv, ret, chunk, task=None):
        captured.update(batch=batch, adv=adv, ret=ret)
        raise _Captured

    monkeypatch.setattr(rl2, "_chunks", capture)
    ctx = SimpleNamespace(steps=0, progress=False, benchmark=SimpleNamespace(id="Test/Known-v0"), record=lambda **kw: None)
    opt = torch.optim.Adam(net.parameters())
    with pytest.raises(_Captured):
        agent._train(ctx, net, opt, venv, ["task"] * n, None, np.random.default_rng(0), torch.Generator().manual_seed(0),
                     episodes, HORIZON, 1)

    adv, ret, valid = captured["adv"].numpy(), captured["ret"].numpy(), captured["batch"].valid.numpy()
    for i in range(n):
        # a trial is its episodes back to back; only its end stops the bootstrap
        rewards = [scale * _reward(i, e, t) for e in range(episodes) for t in range(_length(i, e))]
        expected = _advantages_by_definition(rewards, VALUE, GAMMA, LAM)
        length = len(rewards)
        assert valid[:, i].sum() == length and valid[:length, i].all()
        np.testing.assert_allclose(adv[:length, i], expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ret[:length, i], expected + VALUE, rtol=1e-5, atol=1e-5)
