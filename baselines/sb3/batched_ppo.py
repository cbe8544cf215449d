"""Stable-Baselines3's PPO update, run for every independent adaptation run at once.

The ``ppo`` and ``multitask-ppo-finetune`` baselines learn with PPO on each test task, from
scratch or from a pretrained policy, within the benchmark's budget of episodes. The harness
runs hundreds to thousands of such runs side by side (1,000 bandit tasks x 10 runs), one
``stable_baselines3.PPO`` object per run would cost seconds per update in Python overhead
alone, so this module keeps one copy of SB3's ``MlpPolicy`` per run as stacked tensors (a
leading run dimension) and applies SB3's ``PPO.train()`` to all of them in one batched
computation. It is written by hand because neither SB3 nor torch runs many independent
optimisers in one step; what it computes is SB3's, and ``tests/baselines/sb3`` checks it
against ``PPO.train()`` run on each run's data:

- the network: SB3's ``ActorCriticPolicy`` with ``net_arch=[h, h]``: separate tanh MLPs
  for policy and value, a linear action head (logits, or Gaussian means with a
  state-independent ``log_std`` initialised at 0) and a linear value head, orthogonally
  initialised with SB3's gains (sqrt 2, 0.01, 1);
- the data: a stage's episodes in the order SB3's rollout buffer would hold them, GAE
  with SB3's conventions (a truncated episode bootstraps ``gamma * V(final obs)`` into its
  last reward, a terminated one does not);
- the update: ``n_epochs`` passes over random minibatches of ``batch_size`` transitions,
  advantages normalised per minibatch, the clipped surrogate, ``vf_coef`` times the value
  MSE, ``ent_coef`` times the negative entropy, the gradient clipped to ``max_grad_norm``
  and an Adam step (eps 1e-5, SB3's default for PPO).

Adam is applied per run with the run's own step count, so a run with fewer transitions in a
stage (episodes that terminated early) takes fewer steps, as its own SB3 model would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from metarl_bench.agents import Adapter, Transition
from metarl_bench.baselines.shared import gae, torch_threads

# SB3's ActorCriticPolicy parameter names for net_arch=[h, h] (mlp_extractor layers 0 and 2).
LAYERS = ("mlp_extractor.policy_net.0", "mlp_extractor.policy_net.2", "mlp_extractor.value_net.0",
          "mlp_extractor.value_net.2", "action_net", "value_net")


@dataclass
class PPOUpdate:
    """The PPO hyperparameters of one update, named and defaulted as in ``stable_baselines3.PPO``
    (the base of the SB3 baselines' configs)."""

    learning_rate: float = 3e-4
    """Adam step size."""
    n_epochs: int = 10
    """Passes over each batch of experience."""
    batch_size: int = 64
    """Transitions per minibatch."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE λ."""
    clip_range: float = 0.2
    """PPO ratio clip ε."""
    ent_coef: float = 0.0
    """Entropy bonus weight."""
    vf_coef: float = 0.5
    """Value loss weight."""
    max_grad_norm: float = 0.5
    """Gradient norm clip."""


def _orthogonal(n: int, rows: int, cols: int, gain: float, gen: torch.Generator) -> torch.Tensor:
    """``n`` independent draws of ``torch.nn.init.orthogonal_`` (batched QR, same distribution)."""
    flat = torch.randn(n, max(rows, cols), min(rows, cols), generator=gen)
    q, r = torch.linalg.qr(flat)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    if rows < cols:
        q = q.transpose(-2, -1)
    return gain * q[:, :rows, :cols].contiguous()


def init_params(n: int, obs_dim: int, act_space: spaces.Space, hidden: int, gen: torch.Generator,
                log_std_init: float = 0.0) -> dict[str, torch.Tensor]:
    """``n`` freshly initialised SB3 ``MlpPolicy`` networks (``net_arch=[hidden, hidden]``),
    as stacked tensors keyed by SB3's ``state_dict`` names."""
    out_dim = int(act_space.n) if isinstance(act_space, spaces.Discrete) else int(np.prod(act_space.shape or ()))
    shapes = {
        "mlp_extractor.policy_net.0": (hidden, obs_dim, math.sqrt(2)),
        "mlp_extractor.policy_net.2": (hidden, hidden, math.sqrt(2)),
        "mlp_extractor.value_net.0": (hidden, obs_dim, math.sqrt(2)),
        "mlp_extractor.value_net.2": (hidden, hidden, math.sqrt(2)),
        "action_net": (out_dim, hidden, 0.01),
        "value_net": (1, hidden, 1.0),
    }
    params: dict[str, torch.Tensor] = {}
    for name, (rows, cols, gain) in shapes.items():
        params[f"{name}.weight"] = _orthogonal(n, rows, cols, gain, gen)
        params[f"{name}.bias"] = torch.zeros(n, rows)
    if isinstance(act_space, spaces.Box):
        params["log_std"] = torch.full((n, out_dim), float(log_std_init))
    return params


def stack_state(state: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    """``n`` copies of one SB3 policy's ``state_dict`` (e.g. a pretrained policy), stacked."""
    return {k: v.detach().float().unsqueeze(0).repeat(n, *([1] * v.dim())).contiguous() for k, v in state.items()}


def _linear(p: dict[str, torch.Tensor], name: str, x: torch.Tensor) -> torch.Tensor:
    return torch.baddbmm(p[f"{name}.bias"].unsqueeze(1), x, p[f"{name}.weight"].transpose(1, 2))


def forward(p: dict[str, torch.Tensor], obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Action-head output and values for ``obs`` of shape ``(runs, batch, obs_dim)``."""
    pi = torch.tanh(_linear(p, LAYERS[1], torch.tanh(_linear(p, LAYERS[0], obs))))
    vf = torch.tanh(_linear(p, LAYERS[3], torch.tanh(_linear(p, LAYERS[2], obs))))
    return _linear(p, "action_net", pi), _linear(p, "value_net", vf).squeeze(-1)


class Head:
    """Log-probability, entropy and sampling of SB3's Categorical / diagonal Gaussian heads."""

    def __init__(self, act_space: spaces.Space) -> None:
        self.space = act_space
        self.discrete = isinstance(act_space, spaces.Discrete)

    def log_prob_entropy(self, p: dict[str, torch.Tensor], out: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.discrete:
            logp = torch.log_softmax(out, dim=-1)
            chosen = logp.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
            return chosen, -(logp.exp() * logp).sum(-1)
        log_std = p["log_std"].unsqueeze(1)
        z = (actions - out) * torch.exp(-log_std)
        logp = (-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        entropy = (0.5 + 0.5 * math.log(2 * math.pi) + log_std).sum(-1).expand_as(logp)
        return logp, entropy

    def sample(self, p: dict[str, torch.Tensor], out: torch.Tensor, gen: torch.Generator, deterministic: bool) -> torch.Tensor:
        if self.discrete:
            if deterministic:
                return out.argmax(-1)
            u = torch.rand(out.shape, generator=gen).clamp_min(1e-20)
            return (out - torch.log(-torch.log(u))).argmax(-1)  # Gumbel-max: a Categorical draw
        if deterministic:
            return out
        return out + torch.exp(p["log_std"]).unsqueeze(1) * torch.randn(out.shape, generator=gen)

    def to_env(self, actions: torch.Tensor) -> np.ndarray:
        """Actions as the env takes them: SB3 clips Gaussian actions to the box (the buffer keeps them unclipped)."""
        a = actions.numpy()
        if self.discrete:
            return a.astype(np.int64) + int(self.space.start)  # type: ignore[attr-defined]
        box = self.space
        assert isinstance(box, spaces.Box)
        return np.clip(a.reshape(a.shape[0], *box.shape), box.low, box.high).astype(box.dtype)


class BatchedAdam:
    """Adam (SB3's PPO default, eps 1e-5) over stacked per-run parameters, with a per-run
    step count so that a run can skip a step (torch.optim steps every row together)."""

    def __init__(self, params: dict[str, torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-5) -> None:
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        n = next(iter(params.values())).shape[0]
        self.steps = torch.zeros(n)
        self.m = {k: torch.zeros_like(v) for k, v in params.items()}
        self.v = {k: torch.zeros_like(v) for k, v in params.items()}

    def step(self, grads: dict[str, torch.Tensor], take: torch.Tensor) -> None:
        """One Adam step for the runs where ``take`` is true; the others are left untouched
        (their moments decay with factor 1, their parameters move by 0). In place, with
        ``torch.optim.Adam``'s arithmetic."""
        b1, b2 = self.betas
        self.steps = self.steps + take.float()
        t = self.steps.clamp_min(1)
        step_size = torch.where(take, self.lr / (1 - b1**t), torch.zeros(()))
        bc2_sqrt = torch.sqrt(1 - b2**t)
        beta1 = torch.where(take, torch.tensor(b1), torch.tensor(1.0))
        beta2 = torch.where(take, torch.tensor(b2), torch.tensor(1.0))
        for k, p in self.params.items():
            shape = (-1,) + (1,) * (p.dim() - 1)
            g, m, v = grads[k], self.m[k], self.v[k]
            m.mul_(beta1.view(shape)).addcmul_(g, (1 - beta1).view(shape))
            v.mul_(beta2.view(shape)).addcmul_(g * g, (1 - beta2).view(shape))
            denom = (v.sqrt() / bc2_sqrt.view(shape)).add_(self.eps)
            p.addcdiv_(m * step_size.view(shape), denom, value=-1.0)


@dataclass
class Rollout:
    """One stage's transitions of every run, flattened per run in SB3's buffer order:
    arrays of shape ``(runs, slots)``, ``valid`` marking real transitions."""

    obs: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    valid: torch.Tensor


def ppo_update(p: dict[str, torch.Tensor], opt: BatchedAdam, head: Head, data: Rollout, cfg: PPOUpdate,
               gen: torch.Generator) -> dict[str, float]:
    """SB3's ``PPO.train()`` on every run's rollout at once; returns mean losses over runs."""
    n_runs, slots = data.valid.shape
    counts = data.valid.sum(1)
    n_batches = int(math.ceil(int(counts.max()) / cfg.batch_size)) if int(counts.max()) else 0
    stats = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0, "clip_fraction": 0.0}
    leaves = {k: v.detach().requires_grad_(True) for k, v in p.items()}
    for _ in range(cfg.n_epochs):
        # a random order of each run's real transitions (padding sorts last), as SB3's buffer.get()
        keys = torch.rand(n_runs, slots, generator=gen) + (~data.valid).float() * 2
        order = keys.argsort(dim=1)
        for b in range(n_batches):
            idx = order[:, b * cfg.batch_size : (b + 1) * cfg.batch_size]
            mask = torch.gather(data.valid, 1, idx)
            take = mask.any(1)
            if not take.any():
                continue
            m = mask.float()
            n = m.sum(1).clamp_min(1)
            obs = torch.gather(data.obs, 1, idx.unsqueeze(-1).expand(-1, -1, data.obs.shape[-1]))
            act_idx = idx if data.actions.dim() == 2 else idx.unsqueeze(-1).expand(-1, -1, data.actions.shape[-1])
            actions = torch.gather(data.actions, 1, act_idx)
            old_logp, adv, ret = (torch.gather(t, 1, idx) for t in (data.log_probs, data.advantages, data.returns))
            # SB3 normalises advantages per minibatch when it holds more than one transition
            mean = (adv * m).sum(1, keepdim=True) / n.unsqueeze(1)
            var = (((adv - mean) * m) ** 2).sum(1, keepdim=True) / (n - 1).clamp_min(1).unsqueeze(1)
            norm = (n > 1).unsqueeze(1)
            adv = torch.where(norm, (adv - mean) / (var.sqrt() + 1e-8), adv)
            for v in leaves.values():
                v.grad = None
            out, values = forward(leaves, obs)
            logp, entropy = head.log_prob_entropy(leaves, out, actions)
            ratio = torch.exp(logp - old_logp)
            surrogate = torch.min(adv * ratio, adv * ratio.clamp(1 - cfg.clip_range, 1 + cfg.clip_range))
            policy_loss = -(surrogate * m).sum(1) / n
            value_loss = (((ret - values) ** 2) * m).sum(1) / n
            entropy_loss = -(entropy * m).sum(1) / n
            loss = policy_loss + cfg.ent_coef * entropy_loss + cfg.vf_coef * value_loss
            grads = torch.autograd.grad(loss.sum(), list(leaves.values()))
            named = dict(zip(leaves, grads))
            # clip_grad_norm_ per run: the norm over all of one run's parameters
            total = torch.sqrt(sum(g.reshape(n_runs, -1).pow(2).sum(1) for g in grads))  # type: ignore[arg-type]
            coef = (cfg.max_grad_norm / (total + 1e-6)).clamp(max=1.0)
            named = {k: g * coef.view((-1,) + (1,) * (g.dim() - 1)) for k, g in named.items()}
            with torch.no_grad():
                opt.step(named, take)
            clipped = ((ratio - 1).abs() > cfg.clip_range).float()
            stats["policy_loss"] += float(policy_loss.detach()[take].mean())
            stats["value_loss"] += float(value_loss.detach()[take].mean())
            stats["entropy"] += float(-entropy_loss.detach()[take].mean())
            stats["clip_fraction"] += float(((clipped.detach() * m).sum(1) / n)[take].mean())
    steps = max(cfg.n_epochs * n_batches, 1)
    for k, v in leaves.items():
        p[k] = v.detach()
    return {k: v / steps for k, v in stats.items()}


class BatchedPPOAdapter(Adapter):
    """PPO on each test task: every run holds its own policy, updated after each stage of
    ``episodes_per_stage`` episodes with :func:`ppo_update` (SB3's PPO).

    ``init`` builds the runs' initial parameters (fresh SB3 initialisations for ``ppo``,
    copies of the pretrained policy for ``multitask-ppo-finetune``). The final evaluation
    episodes act with the mean action (``deterministic_eval``, as SB3's ``evaluate_policy``).
    """

    def __init__(self, obs_space: spaces.Space, act_space: spaces.Space, cfg: PPOUpdate, episodes_per_stage: int,
                 budget_episodes: int, init: Any, seed: int, deterministic_eval: bool = True, num_threads: int = 1) -> None:
        if not isinstance(obs_space, spaces.Box):
            raise TypeError(f"PPO needs a Box observation space, got {obs_space}")
        if not isinstance(act_space, (spaces.Discrete, spaces.Box)):
            raise TypeError(f"PPO supports Discrete and Box action spaces, got {act_space}")
        self.obs_dim = int(np.prod(obs_space.shape))
        self.head = Head(act_space)
        self.cfg = cfg
        self.episodes_per_stage = int(episodes_per_stage)
        self.budget_stages = int(budget_episodes) // self.episodes_per_stage
        self.init = init
        self.gen = torch.Generator().manual_seed(int(seed) % 2**63)
        self.deterministic_eval = deterministic_eval
        self.num_threads = num_threads
        self.log: list[dict[str, float]] = []

    def reset(self, groups: np.ndarray) -> None:
        super().reset(groups)
        counts = np.bincount(self.groups, minlength=self.num_runs)
        if np.any(counts != counts[0]):
            raise ValueError("PPO adapter: every run needs the same number of sub-envs per stage")
        self.order = np.argsort(self.groups, kind="stable")  # sub-envs grouped by run
        self.params = self.init(self.num_runs, self.gen)
        self.opt = BatchedAdam(self.params, self.cfg.learning_rate)
        self.steps: list[dict[str, Any]] = []
        self._pending: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.stages_done = 0

    @property
    def final(self) -> bool:
        """In the final evaluation episodes: every budget stage has been adapted on."""
        return self.stages_done >= self.budget_stages

    def _by_run(self, x: np.ndarray) -> torch.Tensor:
        """``(envs, ...)`` -> ``(runs, envs per run, ...)``."""
        t = torch.as_tensor(np.asarray(x, dtype=np.float32)[self.order])
        return t.reshape(self.num_runs, -1, *t.shape[1:])

    def _from_run(self, t: torch.Tensor) -> torch.Tensor:
        flat = t.reshape(len(self.order), *t.shape[2:])
        out = torch.empty_like(flat)
        out[torch.as_tensor(self.order)] = flat
        return out

    def act(self, obs: np.ndarray) -> np.ndarray:
        with torch_threads(self.num_threads), torch.no_grad():
            o = self._by_run(np.asarray(obs).reshape(len(obs), -1))
            out, values = forward(self.params, o)
            actions = self.head.sample(self.params, out, self.gen, self.final and self.deterministic_eval)
            logp, _ = self.head.log_prob_entropy(self.params, out, actions)
        flat_actions = self._from_run(actions)
        self._pending = (self._from_run(o), flat_actions, self._from_run(logp), self._from_run(values))
        return self.head.to_env(flat_actions)

    def observe(self, tr: Transition) -> None:
        assert self._pending is not None, "observe() follows act()"
        if tr.final:
            self._pending = None
            return
        obs, actions, logp, values = self._pending
        reward = torch.as_tensor(np.asarray(tr.reward, dtype=np.float32))
        truncated = np.asarray(tr.truncated & ~tr.terminated & tr.active, dtype=bool)
        if truncated.any():  # SB3: a time-limit end bootstraps gamma * V(final observation)
            with torch.no_grad():
                _, v_next = forward(self.params, self._by_run(np.asarray(tr.next_obs).reshape(len(tr.next_obs), -1)))
            reward = reward + self.cfg.gamma * self._from_run(v_next) * torch.as_tensor(truncated, dtype=torch.float32)
        self.steps.append({
            "obs": obs, "actions": actions, "log_probs": logp, "values": values, "rewards": reward,
            "done": torch.as_tensor(np.asarray(tr.done | ~tr.active, dtype=np.float32)),
            "valid": torch.as_tensor(np.asarray(tr.active, dtype=bool)),
        })
        self._pending = None

    def rollout(self) -> Rollout:
        """The stage's transitions as :func:`ppo_update` takes them, with SB3's GAE."""
        col = {k: torch.stack([s[k] for s in self.steps]) for k in self.steps[0]}  # (T, envs, ...)
        valid = col["valid"]
        rewards = col["rewards"] * valid
        values = col["values"] * valid
        adv, ret = gae(rewards, values, torch.zeros_like(values[0]), col["done"], self.cfg.gamma, self.cfg.gae_lambda)
        order = torch.as_tensor(self.order)

        def runs(t: torch.Tensor) -> torch.Tensor:
            """(T, envs, ...) -> (runs, envs per run * T, ...): each run's episodes one after
            another, the order in which SB3's rollout buffer would hold them."""
            t = t.transpose(0, 1)[order]
            return t.reshape(self.num_runs, -1, *t.shape[2:])

        return Rollout(runs(col["obs"]), runs(col["actions"]), runs(col["log_probs"]), runs(adv), runs(ret), runs(valid))

    def adapt(self) -> None:
        self.stages_done += 1
        if not self.steps:
            return
        data = self.rollout()
        with torch_threads(self.num_threads):
            self.log.append(ppo_update(self.params, self.opt, self.head, data, self.cfg, self.gen))
        self.steps = []
