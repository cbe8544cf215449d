"""RL² (Duan et al. 2016, "RL²: Fast Reinforcement Learning via Slow Reinforcement Learning").

A recurrent policy whose hidden state is the learning algorithm. The GRU reads, at each
step, the observation, the previous action (one-hot for discrete actions, the clipped
action rescaled to [-1, 1] for boxes), the previous reward and the previous step's done
flag, optionally embedded first by a ReLU layer (``embed_size``). The hidden state
persists across every episode of a *trial* (the benchmark's experience budget of
episodes on one task) and is reset only when a new trial, i.e. a new task, begins. The
outer loop is PPO (Schulman et al. 2017) on whole trials:

    r_t(θ) = π_θ(a_t | h_t) / π_θ_old(a_t | h_t)
    L^CLIP = E[min(r_t A_t, clip(r_t, 1 - ε, 1 + ε) A_t)]
    L = -L^CLIP + c_v · ½ (V_θ(h_t) - R_t)² - c_e · H[π_θ(· | h_t)]

with A_t from GAE over the trial (episode ends inside a trial are *not* value
boundaries: the objective is the trial's total return, so exploration pays), thousands
of trials stepped in parallel by one batched vector env, and backpropagation through
time over whole trials (or over chunks of ``bptt_chunk`` steps for long ones). With
``critic_time`` the value head also reads how much of the trial has passed; only the
value baseline sees it, so acting at test time is unchanged. With ``task_aux_coef`` a linear
head on the GRU state is also trained to predict the trial's task parameters (which the
harness hands to meta-training with the train tasks): the squared error's minimiser is their
posterior mean given the trial so far, so the loss asks the hidden state to hold the belief
(belief supervision, Humplik et al. 2019, "Meta reinforcement learning as task inference").
The head is unused at test time, where no task parameters are seen.

Evaluation fits the harness as in the paper: one stage is one episode, ``adapt()`` is a
no-op, and the hidden state carries the experience, so the online score of the bandit
and MDP benchmarks is exactly the RL² paper's metric.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from metarl_bench.agents import (
    Adapter,
    Agent,
    AgentConfig,
    DivergenceError,
    ProgressBar,
    Transition,
    positive,
)
from metarl_bench.baselines.shared import fixed_horizon, gae, torch_threads
from metarl_bench.benchmarks import Benchmark
from metarl_bench.harness import EvalContext, MetaTrainContext


@dataclass
class RL2Config(AgentConfig):
    """RL² hyperparameters (tuned values per benchmark in ``baselines/configs/rl2.yaml``)."""

    hidden_size: int = 128
    """GRU hidden units."""
    num_trials: int = 1024
    """Trials (tasks) collected in parallel per PPO update."""
    train_env_steps: int = 10_000_000
    """Meta-training environment steps (capped by the benchmark's budget)."""
    trial_episodes: int = 0
    """Episodes per training trial; 0 = the benchmark's budget (+ its final episodes when the headline is final)."""
    learning_rate: float = 1e-3
    """Adam step size."""
    anneal_lr: bool = True
    """Decay the step size linearly to 0 over training."""
    gamma: float = 1.0
    """Discount over the whole trial (1 = the trial's total return, the online score)."""
    gae_lambda: float = 0.3
    """GAE λ."""
    clip_coef: float = 0.2
    """PPO ratio clip ε."""
    update_epochs: int = 4
    """PPO epochs per batch of trials."""
    num_minibatches: int = 4
    """Minibatches per epoch (split over trials or BPTT chunks)."""
    ent_coef: float = 0.01
    """Entropy bonus at the start of training."""
    ent_coef_final: float = 0.0
    """Entropy bonus at the end (linear schedule)."""
    vf_coef: float = 0.5
    """Value loss weight."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
    norm_adv: bool = True
    """Normalise advantages per minibatch."""
    reward_scale: float = 1.0
    """Multiplies rewards in the PPO targets (not in the GRU input), to keep value losses O(1)."""
    bptt_chunk: int = 0
    """Truncate backpropagation through time to chunks of this many steps; 0 = whole trials."""
    max_bptt_steps: int = 1000
    """Longest trial (in steps) trained without chunking; longer ones need ``bptt_chunk``."""
    value_hidden_size: int = 0
    """0: the value head shares the policy's GRU; > 0: a separate value GRU of this size (the RL² paper's RNN baseline)."""
    embed_size: int = 0
    """0: the GRU reads the raw inputs; > 0: a ReLU layer of this size embeds them first (as VariBAD's encoder does)."""
    critic_time: bool = False
    """The value head also reads the step's position in the trial (steps taken / trial length), as
    time-aware values of finite horizons do (Pardo et al. 2018); the policy never sees it."""
    critic_hidden: int = 256
    """Hidden units of the value MLP over (GRU state, time) when ``critic_time`` is on."""
    task_aux_coef: float = 0.0
    """Weight of a task-inference loss in meta-training: a linear head on the policy GRU's state
    predicts the trial's task parameters (``Task.features()``, standardised over the train tasks)
    by squared error, whose minimiser is their posterior mean given the trial so far (belief
    supervision, Humplik et al. 2019). The head is unused at test time; 0 = off."""
    init_log_std: float = -0.5
    """Initial log standard deviation of the Gaussian head (continuous actions, in [-1, 1] units)."""
    deterministic_eval: bool = False
    """Act greedily (argmax / mean) during evaluation instead of sampling."""
    num_threads: int = 1
    """torch CPU threads while training and acting (1 is fastest on a shared 2-core machine)."""
    checkpoint_dir: str = ""
    """Folder for the last good parameters if training hits a NaN; empty: the harness's checkpoint
    folder (beside the results, see ``metarl_bench.agents.checkpoint_folder``)."""
    log_every: int = 10
    """Record training metrics every this many updates."""

    def validate(self) -> None:
        positive(
            "rl2",
            hidden_size=self.hidden_size,
            critic_hidden=self.critic_hidden,
            num_trials=self.num_trials,
            train_env_steps=self.train_env_steps,
            learning_rate=self.learning_rate,
            gamma=self.gamma,
            clip_coef=self.clip_coef,
            update_epochs=self.update_epochs,
            num_minibatches=self.num_minibatches,
            max_grad_norm=self.max_grad_norm,
            reward_scale=self.reward_scale,
            max_bptt_steps=self.max_bptt_steps,
            num_threads=self.num_threads,
            log_every=self.log_every,
        )
        for name in ("gamma", "gae_lambda"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"agent 'rl2': config field {name!r} must be in [0, 1], got {value!r}")
        for name in (
            "trial_episodes", "value_hidden_size", "embed_size", "bptt_chunk", "ent_coef", "ent_coef_final", "vf_coef",
            "task_aux_coef",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"agent 'rl2': config field {name!r} must be >= 0, got {getattr(self, name)!r}")
        if self.num_minibatches > self.num_trials:
            raise ValueError(
                f"agent 'rl2': config field 'num_minibatches' ({self.num_minibatches}) must not exceed "
                f"'num_trials' ({self.num_trials})"
            )


# --- inputs and network --------------------------------------------------------------------


class _Spec:
    """How observations and actions of one family enter and leave the network."""

    def __init__(self, obs_space: spaces.Space, act_space: spaces.Space) -> None:
        if not isinstance(obs_space, spaces.Box):
            raise TypeError(f"rl2 needs a Box observation space, got {obs_space}")
        self.obs_dim = int(np.prod(obs_space.shape))
        self.discrete = isinstance(act_space, spaces.Discrete)
        if isinstance(act_space, spaces.Discrete):
            self.act_dim = int(act_space.n)
            self.start = int(act_space.start)
        elif isinstance(act_space, spaces.Box):
            self.act_dim = int(np.prod(act_space.shape))
            low, high = act_space.low.reshape(-1), act_space.high.reshape(-1)
            if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
                raise TypeError(f"rl2 needs a bounded Box action space, got {act_space}")
            self.center = torch.as_tensor((high + low) / 2, dtype=torch.float32)
            self.scale = torch.as_tensor((high - low) / 2, dtype=torch.float32)
            self.shape = act_space.shape
        else:
            raise TypeError(f"rl2 supports Discrete and Box action spaces, got {act_space}")
        self.in_dim = self.obs_dim + self.act_dim + 2  # obs, previous action, reward, done

    def encode_action(self, a: torch.Tensor) -> torch.Tensor:
        """Previous-action input: one-hot, or the clipped action in [-1, 1]."""
        if self.discrete:
            return nn.functional.one_hot(a.long(), self.act_dim).float()
        return a.float().clamp(-1.0, 1.0)

    def to_env(self, a: torch.Tensor) -> np.ndarray:
        """Network action -> env action (arm index, or [-1, 1] units rescaled to the box)."""
        if self.discrete:
            return (a + self.start).numpy().astype(np.int64)
        return (a * self.scale + self.center).numpy().reshape(-1, *self.shape).astype(np.float32)

    def from_env(self, a: np.ndarray) -> torch.Tensor:
        if self.discrete:
            return torch.as_tensor(np.asarray(a, dtype=np.int64) - self.start)
        u = (torch.as_tensor(np.asarray(a, dtype=np.float32)).reshape(len(a), -1) - self.center) / self.scale
        return u


def _layer(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def _gru(in_dim: int, hidden: int) -> nn.GRUCell:
    gru = nn.GRUCell(in_dim, hidden)
    for name, p in gru.named_parameters():
        if "weight" in name:
            nn.init.orthogonal_(p)
        else:
            nn.init.zeros_(p)
    return gru


def _unroll(gru: nn.GRUCell, x: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """GRU states (T, N, H) over inputs ``x`` (T, N, in_dim) from ``h0`` (N, H)."""
    h, out = h0, []
    for t in range(x.shape[0]):
        h = gru(x[t], h)
        out.append(h)
    return torch.stack(out)


class RL2Net(nn.Module):
    """GRU trunk with a policy head (categorical or diagonal Gaussian) and a value head, which
    reads the same GRU or, with ``value_hidden > 0``, a GRU of its own."""

    def __init__(
        self,
        spec: _Spec,
        hidden: int,
        init_log_std: float,
        value_hidden: int = 0,
        embed: int = 0,
        time_critic: int = 0,
        task_dim: int = 0,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.embed = nn.Sequential(_layer(nn.Linear(spec.in_dim, embed), math.sqrt(2)), nn.ReLU()) if embed else None
        gru_in = embed or spec.in_dim
        # A GRUCell stepped in Python: on 1-2 CPU threads it beats nn.GRU's fused kernel
        # for these batch and hidden sizes, and rollouts and training share one code path.
        self.gru = _gru(gru_in, hidden)
        self.vgru = _gru(gru_in, value_hidden) if value_hidden else None
        self.state_size = hidden + value_hidden  # the rollout state: policy GRU's, then the value GRU's
        self.pi = _layer(nn.Linear(hidden, spec.act_dim), 0.01)
        v_in = value_hidden or hidden
        self.timed = time_critic > 0  # the value head reads (GRU state, time in trial) through an MLP
        self.v: nn.Module = (
            nn.Sequential(_layer(nn.Linear(v_in + 1, time_critic), math.sqrt(2)), nn.Tanh(), _layer(nn.Linear(time_critic, 1), 1.0))
            if self.timed
            else _layer(nn.Linear(v_in, 1), 1.0)
        )
        # Task-inference head (meta-training only): policy GRU state -> standardised task parameters.
        self.task_head = _layer(nn.Linear(hidden, task_dim), 1.0) if task_dim else None
        if not spec.discrete:
            self.log_std = nn.Parameter(torch.full((spec.act_dim,), float(init_log_std)))

    def task_prediction(self, hs: torch.Tensor) -> torch.Tensor:
        """Rollout states (T, N, state_size) -> predicted standardised task parameters (T, N, task_dim)."""
        if self.task_head is None:
            raise ValueError("this RL2Net has no task-inference head: build it with task_dim > 0 (task_aux_coef > 0)")
        return self.task_head(hs[..., : self.gru.hidden_size])

    def _embedded(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.embed is None else self.embed(x)

    def _policy(self, e: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hs = _unroll(self.gru, e, h0)
        return hs, self.pi(hs)

    def policy(self, x: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (T, N, in_dim), ``h0`` (N, H) -> the policy GRU's states (T, N, H) and policy outputs."""
        return self._policy(self._embedded(x), h0)

    def _value(self, hv: torch.Tensor, time: torch.Tensor | None) -> torch.Tensor:
        if self.timed:
            if time is None:
                raise ValueError("this RL2Net's value head reads the time in the trial: pass time (T, N)")
            hv = torch.cat([hv, time.unsqueeze(-1)], dim=-1)
        return self.v(hv).squeeze(-1)

    def forward(
        self, x: torch.Tensor, h0: torch.Tensor, time: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` (T, N, in_dim), ``h0`` (N, state_size) -> rollout states (T, N, state_size), policy
        outputs and values (T, N). ``time`` (T, N), the fraction of the trial taken before each
        step, is read by a time-aware value head only."""
        hidden = self.gru.hidden_size
        e = self._embedded(x)  # once, for both GRUs
        hs, out = self._policy(e, h0[:, :hidden])
        if self.vgru is None:
            return hs, out, self._value(hs, time)
        hv = _unroll(self.vgru, e, h0[:, hidden:])
        return torch.cat([hs, hv], dim=-1), out, self._value(hv, time)

    def log_prob_entropy(self, out: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.spec.discrete:
            logp_all = torch.log_softmax(out, dim=-1)
            logp = logp_all.gather(-1, a.long().unsqueeze(-1)).squeeze(-1)
            ent = -(logp_all.exp() * logp_all).sum(-1)
            return logp, ent
        std = self.log_std.exp()
        z = (a - out) / std
        logp = (-0.5 * z * z - self.log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        ent = (self.log_std + 0.5 * math.log(2 * math.pi * math.e)).sum().expand_as(logp)
        return logp, ent

    def sample(self, out: torch.Tensor, gen: torch.Generator, greedy: bool = False) -> torch.Tensor:
        if self.spec.discrete:
            if greedy:
                return out.argmax(-1)
            u = torch.rand(out.shape, generator=gen).clamp_min(1e-12)
            return (out - torch.log(-torch.log(u))).argmax(-1)  # Gumbel-max
        if greedy:
            return out
        return out + self.log_std.exp() * torch.randn(out.shape, generator=gen)


class _Inputs:
    """Previous action, reward and done flag of each trial (zeros at a trial's start)."""

    def __init__(self, spec: _Spec, n: int) -> None:
        self.spec = spec
        self.prev = torch.zeros(n, spec.act_dim + 2)

    def build(self, obs: np.ndarray) -> torch.Tensor:
        o = torch.as_tensor(np.asarray(obs, dtype=np.float32)).reshape(len(obs), -1)
        return torch.cat([o, self.prev], dim=1)

    def update(self, a: torch.Tensor, reward: np.ndarray, done: np.ndarray, mask: torch.Tensor) -> None:
        new = torch.cat(
            [
                self.spec.encode_action(a),
                torch.as_tensor(np.asarray(reward, dtype=np.float32)).unsqueeze(1),
                torch.as_tensor(np.asarray(done, dtype=np.float32)).unsqueeze(1),
            ],
            dim=1,
        )
        self.prev = torch.where(mask.unsqueeze(1), new, self.prev)


def _build_net(spec: _Spec, cfg: RL2Config, seed: int, task_dim: int = 0) -> RL2Net:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        time_critic = cfg.critic_hidden if cfg.critic_time else 0
        return RL2Net(
            spec, cfg.hidden_size, cfg.init_log_std, cfg.value_hidden_size, cfg.embed_size, time_critic, task_dim
        )


def task_targets(tasks: Sequence[Any]) -> torch.Tensor:
    """The task-inference head's targets (N, D): each task's ``features()``, standardised per
    parameter over ``tasks`` (a parameter constant over them is only centred), then scaled so that
    every field of the task weighs the same in the mean squared error (the tabular MDP's 50 mean
    rewards as much as its 500 transition probabilities). A task whose ``features()`` is not the
    default concatenation of its fields weighs every feature the same."""
    feats = torch.as_tensor(np.stack([np.asarray(t.features(), dtype=np.float64) for t in tasks]))
    std = feats.std(0)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    fields = dataclasses.fields(tasks[0]) if dataclasses.is_dataclass(tasks[0]) else ()
    sizes = [int(np.size(getattr(tasks[0], f.name))) for f in fields]
    dim = feats.shape[1]
    if sum(sizes) != dim:
        sizes = [dim]
    scale = torch.cat([torch.full((n,), math.sqrt(dim / (n * len(sizes))), dtype=torch.float64) for n in sizes])
    return ((feats - feats.mean(0)) / std * scale).float()


# --- rollouts --------------------------------------------------------------------------------


def _pack(mask: np.ndarray, *arrays: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Left-pack each column's active steps (T, N) so that padding only trails a trial.

    A frozen GRU step (inactive sub-env) leaves the hidden state unchanged, so running the
    GRU over the packed sequence reproduces the rollout exactly.
    """
    if mask.all():
        return torch.ones(mask.shape, dtype=torch.bool), list(arrays)
    pos = np.cumsum(mask, axis=0) - 1
    t_idx, n_idx = np.nonzero(mask)
    new_t = pos[t_idx, n_idx]
    length = int(mask.sum(axis=0).max())
    out = []
    for arr in arrays:
        packed = arr.new_zeros((length, *arr.shape[1:]))
        packed[new_t, n_idx] = arr[t_idx, n_idx]
        out.append(packed)
    valid = torch.zeros((length, mask.shape[1]), dtype=torch.bool)
    valid[new_t, n_idx] = True
    return valid, out


@dataclass
class _Batch:
    x: torch.Tensor  # (T, N, in_dim) network inputs
    actions: torch.Tensor  # (T, N) or (T, N, act_dim), network units
    logp: torch.Tensor  # (T, N)
    values: torch.Tensor  # (T, N)
    rewards: torch.Tensor  # (T, N)
    valid: torch.Tensor  # (T, N) bool; padding only after a trial's last step
    time: torch.Tensor  # (T, N) fraction of the trial taken before each step
    trial_return: float  # mean total reward of a trial


def _collect(
    net: RL2Net,
    venv: Any,
    tasks: list[Any],
    episodes: int,
    horizon: int,
    gen: torch.Generator,
    reset_seed: int | None,
) -> _Batch:
    """Run one trial per task: ``episodes`` episodes in a row, hidden state carried throughout."""
    spec, n = net.spec, len(tasks)
    venv.set_tasks(tasks)
    h = torch.zeros(n, net.state_size)
    inputs = _Inputs(spec, n)
    xs, acts, logps, vals, rews, times, masks = [], [], [], [], [], [], []
    taken = torch.zeros(n)  # steps taken in each trial so far
    trial_steps = float(episodes * horizon)
    with torch.no_grad():
        for e in range(episodes):
            obs, _ = venv.reset(seed=reset_seed if e == 0 else None)
            active = np.ones(n, dtype=bool)
            for _ in range(horizon):
                x = inputs.build(obs)
                t_frac = taken / trial_steps
                hs, out, v = net(x.unsqueeze(0), h, t_frac.unsqueeze(0))
                a = net.sample(out[0], gen)
                obs, reward, terminated, truncated, _ = venv.step(spec.to_env(a))
                logp, _ = net.log_prob_entropy(out[0], a)
                m = torch.as_tensor(active)
                xs.append(x)
                acts.append(a)
                logps.append(logp)
                vals.append(v[0])
                times.append(t_frac)
                rews.append(torch.as_tensor(np.where(active, reward, 0.0), dtype=torch.float32))
                masks.append(active.copy())
                h = torch.where(m.unsqueeze(1), hs[0], h)
                taken += m.float()
                done = terminated | truncated
                inputs.update(a, reward, done, m)
                active = active & ~done
                if not active.any():
                    break
            if active.any():
                raise RuntimeError(f"an episode ran past the family's horizon {horizon}; the env never ended it")
    mask = np.stack(masks)
    valid, (x, a, lp, v, r, tm) = _pack(mask, *(torch.stack(t) for t in (xs, acts, logps, vals, rews, times)))
    return _Batch(x, a, lp, v, r, valid, tm, float(r.sum(0).mean()))


def _trial_ends(valid: torch.Tensor) -> torch.Tensor:
    """(T, N) 0/1: 1 at each trial's last step (the only value boundary inside a batch)."""
    length = valid.sum(0)
    ends = torch.zeros(valid.shape)
    ends[length - 1, torch.arange(valid.shape[1])] = 1.0
    return ends


# --- PPO -------------------------------------------------------------------------------------


def ppo_loss(
    new_logp: torch.Tensor,
    old_logp: torch.Tensor,
    adv: torch.Tensor,
    new_values: torch.Tensor,
    returns: torch.Tensor,
    entropy: torch.Tensor,
    clip_coef: float,
    vf_coef: float,
    ent_coef: float,
    weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The clipped PPO objective ``-L^CLIP + vf_coef·½(V - R)² - ent_coef·H`` as a loss.

    All tensors share one shape; ``weight`` (0/1) masks padding out of every mean.
    """
    w = torch.ones_like(adv) if weight is None else weight.float()
    denom = w.sum().clamp_min(1.0)
    ratio = (new_logp - old_logp).exp()
    surrogate = torch.min(ratio * adv, ratio.clamp(1 - clip_coef, 1 + clip_coef) * adv)
    pg = -(surrogate * w).sum() / denom
    vf = 0.5 * (((new_values - returns) ** 2) * w).sum() / denom
    ent = (entropy * w).sum() / denom
    loss = pg + vf_coef * vf - ent_coef * ent
    with torch.no_grad():
        log_ratio = new_logp - old_logp
        stats = {
            "policy_loss": float(pg),
            "value_loss": float(vf),
            "entropy": float(ent),
            "approx_kl": float((((ratio - 1) - log_ratio) * w).sum() / denom),
            "clip_frac": float((((ratio - 1).abs() > clip_coef).float() * w).sum() / denom),
        }
    return loss, stats


def _chunks(
    batch: _Batch,
    net: RL2Net,
    adv: torch.Tensor,
    ret: torch.Tensor,
    chunk: int,
    task: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Sequences for BPTT: whole trials, or ``chunk``-step pieces with their start hidden states.
    ``task`` (N, D), each trial's task-inference target, goes with every piece of its trial."""
    t, n = batch.valid.shape
    h0 = torch.zeros(n, net.state_size)
    seqs = {
        "x": batch.x, "a": batch.actions, "logp": batch.logp, "adv": adv, "ret": ret,
        "valid": batch.valid.float(), "time": batch.time, "h0": h0,
    }
    if task is not None:
        seqs["task"] = task
    if chunk <= 0 or chunk >= t:
        return seqs
    with torch.no_grad():  # hidden states at chunk starts, from the rollout's parameters
        hs, _, _ = net(batch.x, h0, batch.time)
    pad = (-t) % chunk
    n_chunks = (t + pad) // chunk
    starts = torch.cat([h0.unsqueeze(0), hs[chunk - 1 : t - 1 : chunk]])  # (n_chunks, N, H)
    out = {"h0": starts.reshape(n_chunks * n, -1)}
    if task is not None:
        out["task"] = task.repeat(n_chunks, 1)  # column c * N + i is a piece of trial i
    for key in ("x", "a", "logp", "adv", "ret", "valid", "time"):
        v = seqs[key]
        if pad:
            v = torch.cat([v, v.new_zeros((pad, *v.shape[1:]))])
        # (n_chunks * chunk, N, ...) -> (chunk, n_chunks * N, ...), chunk-major over trials
        v = v.reshape(n_chunks, chunk, n, *v.shape[2:]).transpose(0, 1)
        out[key] = v.reshape(chunk, n_chunks * n, *v.shape[3:])
    return out


class RL2Agent(Agent[MetaTrainContext, EvalContext, Adapter]):
    """RL²: a GRU policy trained with PPO across trials; the hidden state adapts at test time."""

    name = "rl2"
    config_cls = RL2Config
    learns = True
    description = "RL^2 (Duan et al. 2016): GRU policy across episodes of a trial, trained with PPO"

    def __init__(self, **overrides: Any) -> None:
        super().__init__(**overrides)
        self.net: RL2Net | None = None
        self._loaded: dict[str, Any] | None = None  # a saved state, until adapter() builds the network

    @property
    def cfg(self) -> RL2Config:
        assert isinstance(self.config, RL2Config)
        return self.config

    def supports(self, benchmark: Benchmark) -> str | None:
        if benchmark.family.kind != "rl":
            return "rl2 is an RL agent"
        if benchmark.family.horizon is None:
            return "rl2 needs a family with a fixed horizon"
        return None

    def trial_episodes(self, benchmark: Benchmark) -> int:
        """Episodes of one training trial (see ``RL2Config.trial_episodes``)."""
        if self.cfg.trial_episodes:
            return self.cfg.trial_episodes
        proto = benchmark.protocol
        return proto.budget_episodes + (proto.final_episodes if benchmark.headline == "final" else 0)

    def check_benchmark(self, benchmark: Benchmark) -> None:
        """Before any work: the trial fits whole-trial BPTT (or is chunked) and one PPO update
        fits the meta-training budget."""
        if benchmark.family.kind != "rl" or benchmark.family.horizon is None:
            return  # supports() says why rl2 does not run there
        self.check_bptt(benchmark)
        self.updates(benchmark, benchmark.meta_train_steps)

    def updates(self, benchmark: Benchmark, steps_left: int) -> int:
        """PPO updates that fit ``steps_left`` env steps (and ``train_env_steps``); at least 1, else ``ValueError``."""
        cfg = self.cfg
        episodes, horizon = self.trial_episodes(benchmark), fixed_horizon(benchmark, "rl2")
        steps_per_update = cfg.num_trials * episodes * horizon
        budget = min(cfg.train_env_steps, steps_left)
        if budget < steps_per_update:
            raise ValueError(
                f"rl2 on {benchmark.id}: one update takes {steps_per_update:,} env steps ({cfg.num_trials} trials x "
                f"{episodes} episodes x {horizon}) but only {budget:,} are allowed; lower num_trials or raise "
                "train_env_steps"
            )
        return budget // steps_per_update

    def check_bptt(self, benchmark: Benchmark) -> None:
        """Refuse a trial longer than ``max_bptt_steps`` unless BPTT is chunked."""
        cfg = self.cfg
        horizon = fixed_horizon(benchmark, "rl2")
        steps = self.trial_episodes(benchmark) * horizon
        if cfg.bptt_chunk == 0 and steps > cfg.max_bptt_steps:
            chunk = max(horizon, cfg.max_bptt_steps // horizon * horizon)  # whole episodes that fit
            raise ValueError(
                f"rl2 on {benchmark.id}: a trial is {steps} steps ({self.trial_episodes(benchmark)} episodes x "
                f"{horizon}), over max_bptt_steps={cfg.max_bptt_steps} for whole-trial BPTT; truncate it with "
                f"bptt_chunk={chunk} (or raise max_bptt_steps if memory allows, or shorten trial_episodes)"
            )

    def meta_train(self, ctx: MetaTrainContext) -> None:
        cfg = self.cfg
        bench = ctx.benchmark
        self.check_bptt(bench)
        episodes = self.trial_episodes(bench)
        horizon = fixed_horizon(bench, "rl2")
        n = cfg.num_trials
        num_updates = self.updates(bench, ctx.steps_left)
        seeds = np.random.SeedSequence(ctx.seed).generate_state(3)
        rng = np.random.default_rng(int(seeds[0]))
        gen = torch.Generator().manual_seed(int(seeds[1]))
        train_tasks = list(ctx.train_tasks)
        venv = ctx.make_vector_env(train_tasks[:1] * n)
        spec = _Spec(venv.single_observation_space, venv.single_action_space)
        targets = task_targets(train_tasks) if cfg.task_aux_coef > 0 else None
        with torch_threads(cfg.num_threads), ctx.progress_bar(num_updates, "update", "rl2: meta-training") as bar:
            net = _build_net(spec, cfg, int(seeds[2]), 0 if targets is None else targets.shape[1])
            opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate, eps=1e-5)
            self.net = net
            self._train(ctx, net, opt, venv, train_tasks, targets, rng, gen, episodes, horizon, num_updates, bar)
        venv.close()

    def _train(
        self,
        ctx: Any,
        net: RL2Net,
        opt: torch.optim.Optimizer,
        venv: Any,
        train_tasks: list[Any],
        targets: torch.Tensor | None,
        rng: np.random.Generator,
        gen: torch.Generator,
        episodes: int,
        horizon: int,
        num_updates: int,
        bar: ProgressBar | None = None,
    ) -> None:
        cfg = self.cfg
        n = cfg.num_trials
        good = copy.deepcopy(net.state_dict())
        t0 = time.perf_counter()
        steps0 = ctx.steps
        for update in range(num_updates):
            frac = update / num_updates
            if cfg.anneal_lr:
                for group in opt.param_groups:
                    group["lr"] = cfg.learning_rate * (1.0 - frac)
            ent_coef = cfg.ent_coef + (cfg.ent_coef_final - cfg.ent_coef) * frac
            picks = rng.integers(len(train_tasks), size=n)
            tasks = [train_tasks[i] for i in picks]
            seed = int(rng.integers(2**31)) if update == 0 else None
            batch = _collect(net, venv, tasks, episodes, horizon, gen, seed)
            with torch.no_grad():
                ends = _trial_ends(batch.valid)
                adv, ret = gae(
                    batch.rewards * cfg.reward_scale, batch.values, torch.zeros(n), ends, cfg.gamma, cfg.gae_lambda
                )
            seqs = _chunks(batch, net, adv, ret, cfg.bptt_chunk, None if targets is None else targets[picks])
            stats = self._ppo_epochs(net, opt, seqs, ent_coef, gen)
            finite = all(math.isfinite(v) for v in stats.values()) and all(
                bool(torch.isfinite(p).all()) for p in net.parameters()
            )
            if not finite:
                raise DivergenceError(
                    self.name, ctx.benchmark.id, "loss or parameters", update + 1, num_updates, good,
                    "Lower learning_rate or reward_scale, or clip gradients harder (a lower max_grad_norm).",
                    config=self.resolved_config(), unit="PPO update", folder=cfg.checkpoint_dir or None,
                )
            good = copy.deepcopy(net.state_dict())
            if update % cfg.log_every == 0 or update == num_updates - 1:
                wall = time.perf_counter() - t0
                sps = (ctx.steps - steps0) / max(wall, 1e-9)
                ctx.record(update=update, trial_return=batch.trial_return, ent_coef=ent_coef, env_steps_per_s=sps, **stats)
                if bar is not None:
                    bar.set_postfix(trial_return=f"{batch.trial_return:.3f}", entropy=f"{stats.get('entropy', float('nan')):.3f}",
                                    steps_per_s=f"{sps:,.0f}", refresh=False)
            if bar is not None:
                bar.update(1)

    def _ppo_epochs(
        self,
        net: RL2Net,
        opt: torch.optim.Optimizer,
        seqs: dict[str, torch.Tensor],
        ent_coef: float,
        gen: torch.Generator,
    ) -> dict[str, float]:
        cfg = self.cfg
        m = seqs["h0"].shape[0]
        per = math.ceil(m / cfg.num_minibatches)
        sums: dict[str, float] = {}
        count = 0
        for _ in range(cfg.update_epochs):
            order = torch.randperm(m, generator=gen)
            for start in range(0, m, per):
                idx = order[start : start + per]
                w = seqs["valid"][:, idx]
                if w.sum() == 0:
                    continue
                hs, out, values = net(seqs["x"][:, idx], seqs["h0"][idx], seqs["time"][:, idx])
                logp, ent = net.log_prob_entropy(out, seqs["a"][:, idx])
                adv = seqs["adv"][:, idx]
                if cfg.norm_adv:
                    mean = (adv * w).sum() / w.sum()
                    std = (((adv - mean) ** 2 * w).sum() / w.sum()).sqrt()
                    adv = (adv - mean) / (std + 1e-8)
                loss, stats = ppo_loss(
                    logp, seqs["logp"][:, idx], adv, values, seqs["ret"][:, idx], ent,
                    cfg.clip_coef, cfg.vf_coef, ent_coef, w,
                )
                if "task" in seqs:
                    err = ((net.task_prediction(hs) - seqs["task"][idx].unsqueeze(0)) ** 2).mean(-1)
                    task_loss = (err * w).sum() / w.sum()
                    stats["task_loss"] = float(task_loss.detach())
                    loss = loss + cfg.task_aux_coef * task_loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                stats["grad_norm"] = float(nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm))
                opt.step()
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
        return {k: v / max(count, 1) for k, v in sums.items()}

    def adapter(self, ctx: EvalContext) -> Adapter:
        spec = _Spec(ctx.observation_space, ctx.action_space)
        if self.net is None:  # adapting without meta-training: an untrained policy
            loaded = self._loaded
            task_dim = int(loaded["task_dim"]) if loaded is not None else 0
            self.net = _build_net(spec, self.cfg, int(np.random.SeedSequence(ctx.seed).generate_state(1)[0]), task_dim)
            if loaded is not None:  # a saved agent: the network built for these spaces, then its weights
                self.net.load_state_dict(loaded["net"])
                self._loaded = None
        return RL2Adapter(self.net, ctx.seed, self.cfg.deterministic_eval, self.cfg.num_threads)

    # -- saving (see Agent) ---------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{"net": the GRU network's state dict, "task_dim": its task head's width (0: none)}``,
        or ``{}`` before meta-training."""
        if self.net is None:
            return {} if self._loaded is None else dict(self._loaded)
        task_dim = 0 if self.net.task_head is None else int(self.net.task_head.out_features)
        return {"net": self.net.state_dict(), "task_dim": task_dim}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Keep the saved network; ``adapter(ctx)`` builds it for its spaces and loads the weights."""
        if not state:
            self._loaded = None
            return
        if set(state) != {"net", "task_dim"}:
            raise ValueError(f"agent 'rl2': the saved state must hold 'net' and 'task_dim', got {sorted(state)}")
        if self.net is not None:  # already built: load in place (shapes must match)
            self.net.load_state_dict(state["net"])
            return
        self._loaded = dict(state)


class RL2Adapter(Adapter):
    """Test-time RL²: the hidden state carries a trial's experience; ``adapt()`` is a no-op.

    The hidden state is reset only by :meth:`reset` (a new trial); episode boundaries
    inside a trial reach the network only through the done flag of its input.
    """

    episodes_per_stage = 1

    def __init__(self, net: RL2Net, seed: int, greedy: bool = False, num_threads: int = 1) -> None:
        self.net = net
        self.greedy = greedy
        self.num_threads = num_threads
        self.gen = torch.Generator().manual_seed(int(seed) % 2**63)
        self.h = torch.zeros(0, net.gru.hidden_size)
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None

    def reset(self, groups: np.ndarray) -> None:
        super().reset(groups)
        n = len(self.groups)
        self.h = torch.zeros(n, self.net.gru.hidden_size)
        self.inputs = _Inputs(self.net.spec, n)
        self._pending = None

    def act(self, obs: np.ndarray) -> np.ndarray:
        with torch.no_grad(), torch_threads(self.num_threads):
            hs, out = self.net.policy(self.inputs.build(obs).unsqueeze(0), self.h)
            a = self.net.sample(out[0], self.gen, self.greedy)
        self._pending = (hs[0], a)
        return self.net.spec.to_env(a)

    def observe(self, transition: Transition) -> None:
        assert self._pending is not None, "observe() follows act()"
        h_new, _ = self._pending
        m = torch.as_tensor(np.asarray(transition.active, dtype=bool))
        self.h = torch.where(m.unsqueeze(1), h_new, self.h)
        a = self.net.spec.from_env(transition.action)
        self.inputs.update(a, transition.reward, transition.done, m)
        self._pending = None

    def adapt(self) -> None:
        """No-op: RL² adapts through its hidden state."""
