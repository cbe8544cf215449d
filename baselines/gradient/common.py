"""RL plumbing shared by the gradient-based meta-learners (MAML-TRPO, MAML-PPO, Reptile).

What lives here is plumbing, not an algorithm's objective:

- policies whose parameters may carry a leading *group* dimension (one parameter set per
  task or adaptation run), called with a dict of parameters as ``torch.func.functional_call``
  would: the forward pass broadcasts ``x @ W^T + b`` over that dimension, which is what
  ``torch.func.vmap`` would generate, without vmap's per-call overhead on small CPU networks;
- batched episode collection from a vector env into time-major tensors with masks;
- the linear feature baseline of Duan et al. 2016 as used by pytorch-maml-rl, fitted per
  group in one batched solve;
- per-group advantage estimation (GAE from :func:`metarl_bench.baselines.shared.gae`,
  then pytorch-maml-rl's per-group normalisation);
- conjugate gradient, flat parameter vectors, and the Hessian-vector product of a KL.

Shapes: ``T`` time steps, ``N`` sub-envs, ``G`` groups (tasks or runs), ``E = N // G``
episodes per group; group ``g`` owns the contiguous sub-envs ``g*E .. (g+1)*E - 1``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn

from metarl_bench.baselines.shared import gae

Params = dict[str, Tensor]
Dist = tuple[Tensor, ...]

# --- policies ------------------------------------------------------------------------------


class _Tanh(torch.autograd.Function):
    """``tanh`` as ``2 sigmoid(2x) - 1``, with a backward written in differentiable ops.

    Why: on the CPUs this suite targets, ``torch.tanh`` and its backward run about 4x
    slower than ``sigmoid`` and plain multiplies, and the MAML learners differentiate the
    network to second order (pytorch-maml-rl's Hessian-vector product, in the same-run
    reference of ``metarl-bench perf maml``, to third). The backward ``g * (1 - y^2)`` uses
    the saved output, so higher derivatives flow through this same function.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        y = tanh_value(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return grad * (1.0 - y * y)


def tanh_value(x: Tensor) -> Tensor:
    """``2 sigmoid(2x) - 1``, the value of :func:`fast_tanh` (no autograd)."""
    return torch.sigmoid(2.0 * x).mul_(2.0).sub_(1.0)


def fast_tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent (see :class:`_Tanh`); equal to ``torch.tanh`` up to float rounding.
    Without autograd (sampling) the value is computed directly: the same operations,
    without the ``autograd.Function``'s own cost of about 40 us a call."""
    if not torch.is_grad_enabled():
        return tanh_value(x)
    return _Tanh.apply(x)


def _activation(name: str) -> Callable[[Tensor], Tensor]:
    acts: dict[str, Callable[[Tensor], Tensor]] = {"tanh": fast_tanh, "relu": torch.relu}
    if name not in acts:
        raise ValueError(f"nonlinearity must be one of {sorted(acts)}, got {name!r}")
    return acts[name]


class MLPPolicy(nn.Module):
    """An MLP trunk ``obs -> hidden -> ... -> head`` whose parameters may be group-stacked.

    Parameters are named ``w0, b0, w1, b1, ...`` (the last pair is the output head). Each
    weight has shape ``(out, in)``, or ``(G, out, in)`` when passed group-stacked through
    :meth:`call`; observations are then ``(G, K, obs_dim)``. Weights are initialised
    Xavier-uniform with zero biases (pytorch-maml-rl's ``weight_init``) from an explicit
    ``torch.Generator``.
    """

    def __init__(
        self,
        obs_dim: int,
        out_dim: int,
        hidden_sizes: Sequence[int],
        nonlinearity: str,
        generator: torch.Generator,
    ) -> None:
        super().__init__()
        self.act = _activation(nonlinearity)
        self.nonlinearity = nonlinearity
        sizes = [obs_dim, *hidden_sizes, out_dim]
        self.num_layers = len(sizes) - 1
        for i in range(self.num_layers):
            w = torch.empty(sizes[i + 1], sizes[i])
            bound = math.sqrt(6.0 / (sizes[i] + sizes[i + 1]))
            w.uniform_(-bound, bound, generator=generator)
            self.register_parameter(f"w{i}", nn.Parameter(w))
            self.register_parameter(f"b{i}", nn.Parameter(torch.zeros(sizes[i + 1])))

    def trunk(self, obs: Tensor, params: Params | None = None) -> Tensor:
        """The trunk's output at ``obs`` under ``params`` (see :meth:`call`)."""
        h = obs
        for i in range(self.num_layers):
            w, b = self._param(params, f"w{i}"), self._param(params, f"b{i}")
            if w.dim() == 3 and h.dim() == 3:
                # group-stacked: baddbmm runs ~1.7x faster than ``@`` on these shapes (CPU, measured)
                h = torch.baddbmm(b.unsqueeze(-2), h, w.transpose(-1, -2))
            else:
                h = h @ w.transpose(-1, -2) + b.unsqueeze(-2)
            if i < self.num_layers - 1:
                h = self.act(h)
        return h

    def params(self) -> Params:
        """The module's own parameters as a name -> tensor dict (the meta-parameters)."""
        return dict(self.named_parameters())

    def _param(self, params: Params | None, name: str) -> Tensor:
        return getattr(self, name) if params is None or name not in params else params[name]

    def call(self, params: Params | None, obs: Tensor) -> Dist:
        """The action distribution at ``obs`` under ``params`` (the module's own if None, and
        for any name ``params`` lacks), differentiable with respect to ``params``: what
        ``torch.func.functional_call(self, params, (obs,))`` computes, operation for
        operation, without its cost of swapping the module's parameters (about 0.25 ms a
        call, felt when sampling 100 steps at a time)."""
        if params is None:
            return self(obs)
        return self.head(self.trunk(obs, params), {k: self._param(params, k) for k in self.head_names})

    @property
    def trunk_names(self) -> list[str]:
        """Names of the trunk's parameters, ``w0, b0, w1, b1, ...``."""
        return [f"{p}{i}" for i in range(self.num_layers) for p in ("w", "b")]

    @property
    def head_names(self) -> list[str]:
        """Names of the other parameters, those the distribution head uses (``log_std``)."""
        trunk = set(self.trunk_names)
        return [k for k, _ in self.named_parameters() if k not in trunk]

    def forward(self, obs: Tensor) -> Dist:
        return self.head(self.trunk(obs), {k: getattr(self, k) for k in self.head_names})

    def head(self, out: Tensor, extra: Params) -> Dist:
        """The action distribution from the trunk's output ``out`` and the parameters named
        in :attr:`head_names` (``extra``); MAML-TRPO's hand-written products differentiate
        the trunk themselves and only this part through autograd."""
        raise NotImplementedError

    # The distribution's operations, defined by each subclass (static: they need only the
    # distribution tuple the head returns).

    @staticmethod
    def log_prob(dist: Dist, actions: Tensor) -> Tensor:
        """Log-probability (density) of ``actions`` under ``dist``, one number per sample."""
        raise NotImplementedError

    @staticmethod
    def kl(p: Dist, q: Dist) -> Tensor:
        """KL(p || q), one number per sample."""
        raise NotImplementedError

    @staticmethod
    def fisher_cotangent(dist: Dist, tangent: Dist) -> Dist:
        """The Hessian of ``KL(dist || q)`` with respect to ``q`` at ``q = dist``, applied to
        ``tangent`` (in distribution coordinates)."""
        raise NotImplementedError

    @staticmethod
    def sample(dist: Dist, generator: torch.Generator) -> Tensor:
        """Actions drawn from ``dist`` with ``generator``."""
        raise NotImplementedError

    @staticmethod
    def detach(dist: Dist) -> Dist:
        """``dist`` cut from the autograd graph."""
        raise NotImplementedError


class GaussianMLPPolicy(MLPPolicy):
    """Diagonal Gaussian with an MLP mean and a state-independent log-std (pytorch-maml-rl's
    ``NormalMLPPolicy``): ``log_std`` starts at ``log(init_std)`` and is clamped below at
    ``log(min_std)``. Distribution tuple: ``(mean, log_std)``.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: Sequence[int],
        nonlinearity: str,
        generator: torch.Generator,
        init_std: float = 1.0,
        min_std: float = 1e-6,
    ) -> None:
        super().__init__(obs_dim, act_dim, hidden_sizes, nonlinearity, generator)
        self.log_std = nn.Parameter(torch.full((act_dim,), math.log(init_std)))
        self.min_log_std = math.log(min_std)

    def head(self, mean: Tensor, extra: Params) -> Dist:
        log_std = torch.clamp(extra["log_std"], min=self.min_log_std).unsqueeze(-2)
        return mean, log_std.expand_as(mean)

    @staticmethod
    def log_prob(dist: Dist, actions: Tensor) -> Tensor:
        """Log-density summed over action dimensions, shape of ``actions`` without its last axis."""
        mean, log_std = dist
        z = (actions - mean) * torch.exp(-log_std)
        return (-0.5 * z * z - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    @staticmethod
    def kl(p: Dist, q: Dist) -> Tensor:
        """KL(p || q) summed over action dimensions."""
        mp, lp = p
        mq, lq = q
        var_ratio = torch.exp(2 * (lp - lq))
        return (lq - lp + 0.5 * (var_ratio + (mp - mq) ** 2 * torch.exp(-2 * lq)) - 0.5).sum(-1)

    @staticmethod
    def fisher_cotangent(dist: Dist, tangent: Dist) -> Dist:
        """``F t`` in distribution coordinates: the Hessian of ``KL(dist || q)`` with respect
        to ``q = (mean, log_std)`` at ``q = dist`` is ``diag(1 / std^2, 2)``."""
        _, log_std = dist
        d_mean, d_log_std = tangent
        return d_mean * torch.exp(-2.0 * log_std), 2.0 * d_log_std

    @staticmethod
    def sample(dist: Dist, generator: torch.Generator) -> Tensor:
        mean, log_std = dist
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        return mean + torch.exp(log_std) * noise

    @staticmethod
    def detach(dist: Dist) -> Dist:
        return tuple(d.detach() for d in dist)


class CategoricalMLPPolicy(MLPPolicy):
    """Categorical distribution over ``n`` actions from MLP logits (pytorch-maml-rl's
    ``CategoricalMLPPolicy``). Distribution tuple: ``(log_probs,)``, normalised.
    """

    def head(self, logits: Tensor, extra: Params) -> Dist:
        return (torch.log_softmax(logits, dim=-1),)

    @staticmethod
    def log_prob(dist: Dist, actions: Tensor) -> Tensor:
        return torch.gather(dist[0], -1, actions.long().unsqueeze(-1)).squeeze(-1)

    @staticmethod
    def kl(p: Dist, q: Dist) -> Tensor:
        """KL(p || q)."""
        return (torch.exp(p[0]) * (p[0] - q[0])).sum(-1)

    @staticmethod
    def fisher_cotangent(dist: Dist, tangent: Dist) -> Dist:
        """``F t`` in distribution coordinates: for a tangent ``t`` of the normalised log
        probabilities, the Hessian of ``KL(dist || q)`` at ``q = dist`` acts as ``p * t``."""
        return (torch.exp(dist[0]) * tangent[0],)

    @staticmethod
    def sample(dist: Dist, generator: torch.Generator) -> Tensor:
        logp = dist[0]
        flat = torch.exp(logp.reshape(-1, logp.shape[-1]))
        return torch.multinomial(flat, 1, generator=generator).reshape(logp.shape[:-1])

    @staticmethod
    def detach(dist: Dist) -> Dist:
        return (dist[0].detach(),)


def make_policy(
    observation_space: gym.Space,
    action_space: gym.Space,
    hidden_sizes: Sequence[int],
    nonlinearity: str,
    generator: torch.Generator,
    init_std: float = 1.0,
) -> MLPPolicy:
    """Gaussian policy for ``Box`` actions, categorical for ``Discrete`` ones."""
    if not isinstance(observation_space, spaces.Box):
        raise TypeError(f"policies need a Box observation space, got {observation_space}")
    obs_dim = int(np.prod(observation_space.shape))
    if isinstance(action_space, spaces.Discrete):
        return CategoricalMLPPolicy(obs_dim, int(action_space.n), hidden_sizes, nonlinearity, generator)
    if isinstance(action_space, spaces.Box):
        act_dim = int(np.prod(action_space.shape))
        return GaussianMLPPolicy(obs_dim, act_dim, hidden_sizes, nonlinearity, generator, init_std=init_std)
    raise TypeError(f"unsupported action space {action_space}: use Box or Discrete")


def stack_params(params: Params, groups: int) -> Params:
    """``params`` repeated along a new leading group axis (broadcast views, differentiable)."""
    return {k: v.unsqueeze(0).expand(groups, *v.shape) for k, v in params.items()}


# --- episodes ------------------------------------------------------------------------------


@dataclass
class Episodes:
    """A batch of episodes, time-major: ``obs (T, N, obs_dim)``, ``actions (T, N, ...)``,
    ``rewards``, ``mask`` and ``dones`` ``(T, N)`` float32. ``mask[t, i]`` is 1 while step
    ``t`` belongs to sub-env ``i``'s episode; ``dones[t, i]`` is 1 on its last step.
    """

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    mask: Tensor
    dones: Tensor

    @property
    def lengths(self) -> Tensor:
        """Steps per episode, ``(N,)``."""
        return self.mask.sum(0)

    @property
    def returns(self) -> Tensor:
        """Undiscounted return per episode, ``(N,)``."""
        return (self.rewards * self.mask).sum(0)

    def discounted_returns(self, gamma: float) -> Tensor:
        """Discounted return-to-go per step, ``(T, N)``, zero outside episodes."""
        out = torch.zeros_like(self.rewards)
        running = torch.zeros_like(self.rewards[0])
        r = self.rewards * self.mask
        for t in range(r.shape[0] - 1, -1, -1):
            running = r[t] + gamma * running * (1 - self.dones[t])
            out[t] = running
        return out


def collect_episodes(
    venv: gym.vector.VectorEnv,
    act: Callable[[Tensor], Tensor],
    horizon: int,
    seed: int | None = None,
) -> Episodes:
    """Run one episode in every sub-env of ``venv`` (reset explicitly) with ``act``.

    ``act`` maps observations ``(N, obs_dim)`` to actions ``(N, ...)`` (torch, no grad).
    Sub-envs whose episode ended are masked until every sub-env is done; steps stop then.
    """
    obs_np, _ = venv.reset(seed=seed)
    n = venv.num_envs
    active = np.ones(n, dtype=bool)
    obs_l, act_l, rew_l, mask_l, done_l = [], [], [], [], []
    with torch.no_grad():
        for _ in range(horizon):
            obs = torch.as_tensor(np.asarray(obs_np, dtype=np.float32).reshape(n, -1))
            action = act(obs)
            obs_np, reward, terminated, truncated, _ = venv.step(action.numpy())
            done = np.asarray(terminated) | np.asarray(truncated)
            obs_l.append(obs)
            act_l.append(action)
            rew_l.append(np.asarray(reward, dtype=np.float32))
            mask_l.append(active.copy())
            done_l.append(active & done)
            active = active & ~done
            if not active.any():
                break
    if active.any():
        raise RuntimeError(f"episodes ran past the horizon {horizon}; the env never ended them")
    f32 = torch.float32
    return Episodes(
        obs=torch.stack(obs_l),
        actions=torch.stack(act_l),
        rewards=torch.as_tensor(np.stack(rew_l)) * torch.as_tensor(np.stack(mask_l), dtype=f32),
        mask=torch.as_tensor(np.stack(mask_l), dtype=f32),
        dones=torch.as_tensor(np.stack(done_l), dtype=f32),
    )


def to_groups(x: Tensor, groups: int) -> Tensor:
    """Time-major ``(T, N, ...)`` -> group-major ``(G, T * E, ...)`` (step-major within a group)."""
    T, N = x.shape[:2]
    e = N // groups
    return x.reshape(T, groups, e, *x.shape[2:]).transpose(0, 1).reshape(groups, T * e, *x.shape[2:])


def from_groups(x: Tensor, T: int) -> Tensor:
    """Inverse of :func:`to_groups`: ``(G, T * E, ...)`` -> ``(T, G * E, ...)``."""
    G = x.shape[0]
    e = x.shape[1] // T
    return x.reshape(G, T, e, *x.shape[2:]).transpose(0, 1).reshape(T, G * e, *x.shape[2:])


# --- linear feature baseline --------------------------------------------------------------


def baseline_features(obs: Tensor, mask: Tensor) -> Tensor:
    """Features ``[o, o^2, t, t^2, t^3, 1]`` with ``t = step / 100`` (Duan et al. 2016,
    as pytorch-maml-rl), shape ``(T, N, 2 * obs_dim + 4)``; ``t`` and ``1`` are masked.
    """
    T = obs.shape[0]
    ones = mask.unsqueeze(-1)
    t = torch.arange(T, dtype=obs.dtype).view(T, 1, 1) * ones / 100.0
    return torch.cat([obs, obs**2, t, t**2, t**3, ones], dim=-1)


def fit_linear_baseline(
    features: Tensor, targets: Tensor, weights: Tensor, reg_coeff: float = 1e-5, tries: int = 5
) -> Tensor:
    """Ridge least squares per group: ``features (G, K, F)``, ``targets``/``weights (G, K)``.

    Solves ``(X^T W X + reg I) c = X^T W y`` in float64, multiplying ``reg`` by 10 when the
    system is singular (pytorch-maml-rl's retry rule). Returns coefficients ``(G, F)``.
    """
    x = features.double()
    w = weights.double().unsqueeze(-1)
    xtx = (x * w).transpose(-1, -2) @ x
    xty = ((x * w).transpose(-1, -2) @ targets.double().unsqueeze(-1)).squeeze(-1)
    eye = torch.eye(x.shape[-1], dtype=torch.float64)
    if not (bool(torch.isfinite(xtx).all()) and bool(torch.isfinite(xty).all())):
        # Non-finite returns or observations: propagate NaN so that the learner's own
        # divergence check names the iteration (regularisation cannot fix this).
        return torch.full(xty.shape, float("nan"), dtype=features.dtype)
    reg = reg_coeff
    for _ in range(tries):
        coef, info = torch.linalg.solve_ex(xtx + reg * eye, xty)
        if int(info.abs().max()) == 0 and bool(torch.isfinite(coef).all()):
            return coef.to(features.dtype)
        reg *= 10
    raise RuntimeError(
        f"linear baseline: the normal equations stay singular up to regularisation {reg / 10:g}; "
        "check the observations for NaN or constant huge values"
    )


def linear_baseline_values(episodes: Episodes, groups: int, gamma: float, reg_coeff: float = 1e-5) -> Tensor:
    """Fit the linear baseline per group on discounted returns-to-go; values ``(T, N)``."""
    T = episodes.mask.shape[0]
    feats = baseline_features(episodes.obs.reshape(*episodes.mask.shape, -1), episodes.mask)
    fg = to_groups(feats, groups)
    coef = fit_linear_baseline(
        fg, to_groups(episodes.discounted_returns(gamma), groups), to_groups(episodes.mask, groups), reg_coeff
    )
    values = (fg @ coef.unsqueeze(-1)).squeeze(-1)
    return from_groups(values, T) * episodes.mask


def episode_weights(mask: Tensor, groups: int) -> Tensor:
    """Per-step weights ``(T, N)`` such that ``sum(w * x)`` over a group equals
    pytorch-maml-rl's ``weighted_mean``: the mean over the group's episodes of each
    episode's mean over its own steps.
    """
    e = mask.shape[1] // groups
    return mask / mask.sum(0).clamp(min=1.0) / e


def group_sum(x: Tensor, groups: int) -> Tensor:
    """Sum of a ``(T, N)`` tensor within each group: ``(G,)``."""
    T, N = x.shape
    return x.reshape(T, groups, N // groups).sum(dim=(0, 2))


def compute_advantages(
    episodes: Episodes, groups: int, gamma: float, gae_lambda: float, normalize: bool = True
) -> Tensor:
    """GAE advantages ``(T, N)`` against a per-group linear baseline, normalised per group.

    Normalisation is pytorch-maml-rl's ``weighted_normalize``: subtract the group's
    episode-weighted mean, divide by the episode-weighted standard deviation (+1e-8).
    """
    values = linear_baseline_values(episodes, groups, gamma)
    adv, _ = gae(episodes.rewards, values, torch.zeros_like(values[0]), episodes.dones, gamma, gae_lambda)
    adv = adv * episodes.mask
    if not normalize:
        return adv
    w = episode_weights(episodes.mask, groups)
    T, N = adv.shape
    e = N // groups
    mean = group_sum(w * adv, groups).repeat_interleave(e)
    centred = (adv - mean) * episodes.mask
    std = torch.sqrt(group_sum(w * centred**2, groups)).repeat_interleave(e)
    return centred / (std + 1e-8)


# --- second-order optimisation helpers -----------------------------------------------------


def flat(tensors: Sequence[Tensor]) -> Tensor:
    """Concatenate tensors into one flat vector."""
    return torch.cat([t.reshape(-1) for t in tensors])


def set_flat_params(module: nn.Module, vector: Tensor) -> None:
    """Copy a flat vector into ``module``'s parameters (in ``parameters()`` order)."""
    i = 0
    with torch.no_grad():
        for p in module.parameters():
            n = p.numel()
            p.copy_(vector[i : i + n].view_as(p))
            i += n


def conjugate_gradient(
    f_ax: Callable[[Tensor], Tensor], b: Tensor, cg_iters: int = 10, residual_tol: float = 1e-10
) -> tuple[Tensor, Tensor]:
    """Approximately solve ``A x = b`` for symmetric positive-definite ``A`` given ``f_ax(v) = A v``.

    Returns ``(x, A x)``. ``A x = sum_k alpha_k A p_k`` is accumulated from the products
    the iterations compute anyway, which saves TRPO the extra product ``s^T A s`` that
    pytorch-maml-rl spends on the step size (equal up to rounding).
    """
    x = torch.zeros_like(b)
    ax = torch.zeros_like(b)
    r = b.detach().clone()
    p = r.clone()
    rdotr = torch.dot(r, r)
    for _ in range(cg_iters):
        z = f_ax(p).detach()
        alpha = rdotr / torch.dot(p, z)
        x = x + alpha * p
        ax = ax + alpha * z
        r = r - alpha * z
        new_rdotr = torch.dot(r, r)
        if new_rdotr.item() < residual_tol:
            break
        p = r + (new_rdotr / rdotr) * p
        rdotr = new_rdotr
    return x.detach(), ax.detach()


def kl_hessian_vector_product(
    kl: Tensor, params: Sequence[Tensor], damping: float
) -> Callable[[Tensor], Tensor]:
    """``v -> (H + damping I) v`` with ``H`` the Hessian of ``kl`` w.r.t. ``params``
    (Pearlmutter's trick: differentiate ``grad(kl) . v``).
    """
    grads = torch.autograd.grad(kl, params, create_graph=True)
    flat_grad = flat(grads)

    def product(vector: Tensor, retain_graph: bool = True) -> Tensor:
        hv = torch.autograd.grad(torch.dot(flat_grad, vector), params, retain_graph=retain_graph)
        return flat(hv) + damping * vector

    return product


def torch_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed`` (never torch's global generator)."""
    g = torch.Generator()
    g.manual_seed(int(seed) % (2**63 - 1))
    return g


def group_runs(groups: np.ndarray) -> tuple[np.ndarray, int, int] | None:
    """For harness ``groups`` (sub-env -> run): ``(order, runs, per_run)`` such that
    ``x[order].reshape(runs, per_run, ...)`` groups sub-envs by run, or ``None`` when runs
    have unequal sizes.
    """
    groups = np.asarray(groups)
    if groups.size == 0:
        return None
    runs = int(groups.max()) + 1
    counts = np.bincount(groups, minlength=runs)
    if (counts != counts[0]).any():
        return None
    return np.argsort(groups, kind="stable"), runs, int(counts[0])


def any_nonfinite(*tensors: Any) -> bool:
    """True when any tensor holds NaN or inf."""
    return any(not bool(torch.isfinite(t).all()) for t in tensors)


# --- group-major batches for policy-gradient losses -----------------------------------------


@dataclass
class GroupBatch:
    """Episodes of ``G`` groups in group-major layout for batched losses.

    ``obs (G, K, obs_dim)``, ``actions (G, K, ...)``, ``advantages (G, K)`` and
    ``weights (G, K)`` (see :func:`episode_weights`; zero on padded steps), ``K = T * E``;
    ``episodes`` is ``E`` (0 when unknown).
    """

    obs: Tensor
    actions: Tensor
    advantages: Tensor
    weights: Tensor
    episodes: int = 0

    @property
    def groups(self) -> int:
        return self.obs.shape[0]


def subsample_steps(batch: GroupBatch, fraction: float) -> GroupBatch:
    """``ceil(fraction * T * E)`` evenly spaced samples of every group, counted along its
    episodes laid end to end (episode 0's ``T`` steps, then episode 1's, ...), as OpenAI
    Baselines' TRPO takes its Fisher-vector products on every 5th sample. With ``fraction``
    0.2 and ``T`` 100 these are steps 0, 5, ..., 95 of every episode; with one-step episodes
    (bandits), every 5th episode. Spreading the subsample over the episodes, rather than
    keeping whole episodes, keeps the variety of states: the steps of one episode are
    strongly correlated.

    Weights: each episode keeps its total weight, shared among its kept steps in proportion
    to their weights (with :func:`episode_weights`, each episode's mean over its kept
    steps); if some episodes keep no step, the kept ones are scaled up to the group's total.
    Kept samples stay in the batch's step-major order.
    """
    e = batch.episodes
    if e < 1:
        raise ValueError("subsample_steps needs a GroupBatch built with its episode count (group_batch)")
    g, n = batch.advantages.shape
    t = n // e
    keep = max(1, math.ceil(round(fraction * n, 9)))  # round: 0.3 * 10 is 3.0000000000000004
    if keep >= n:
        return batch
    along = torch.div(torch.arange(keep) * n, keep, rounding_mode="floor")  # positions along the episodes
    idx = torch.sort((along % t) * e + torch.div(along, t, rounding_mode="floor")).values  # step-major
    episode = idx % e
    kept = batch.weights[:, idx]
    total = batch.weights.reshape(g, t, e).sum(1)  # each episode's weight, (G, E)
    share = torch.zeros_like(total).index_add_(1, episode, kept)  # its kept steps' weight
    scale = torch.where(share > 0, total / share.clamp(min=1e-30), torch.zeros_like(share))
    weights = kept * scale[:, episode]
    if bool((share[total > 0] == 0).any()):  # whole episodes dropped: their weight to the rest
        weights = weights * (total.sum(1, keepdim=True) / weights.sum(1, keepdim=True).clamp(min=1e-30))
    return GroupBatch(
        obs=batch.obs[:, idx],
        actions=batch.actions[:, idx],
        advantages=batch.advantages[:, idx],
        weights=weights,
        episodes=e,
    )


def group_batch(episodes: Episodes, groups: int, gamma: float, gae_lambda: float) -> GroupBatch:
    """Advantages (per-group linear baseline, GAE, normalisation) and the group-major batch."""
    adv = compute_advantages(episodes, groups, gamma, gae_lambda, normalize=True)
    w = episode_weights(episodes.mask, groups)
    return GroupBatch(
        obs=to_groups(episodes.obs, groups),
        actions=to_groups(episodes.actions, groups),
        advantages=to_groups(adv, groups),
        weights=to_groups(w, groups),
        episodes=episodes.mask.shape[1] // groups,
    )
