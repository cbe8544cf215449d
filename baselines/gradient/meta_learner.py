"""The base of the gradient-based meta-RL learners (``maml-trpo``, ``maml-ppo``, ``reptile``).

:class:`GradientMetaLearner` holds what they share: the policy and its seeding, batched
sampling of a meta-batch (``num_steps`` inner batches, each with the policy adapted so
far, then the post-adaptation batch), the inner update

    theta'_i = theta - fast_lr * grad_theta L_i(theta),
    L_i(theta) = - mean_episodes mean_t [ log pi_theta(a_t | s_t) * A_t ]

for all tasks of a meta-batch at once (:func:`inner_step`), the meta-training loop with
its step budget and checkpoints, and the test-time :class:`PolicyGradientAdapter`. A
subclass supplies the outer update, :meth:`GradientMetaLearner.step` (TRPO or PPO on the
meta-gradient for MAML, interpolation towards the adapted parameters for Reptile).
:class:`MAMLConfig` is the settings they share (pytorch-maml-rl's names).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from metarl_bench.agents import Adapter, Agent, AgentConfig, DivergenceError, Transition, positive
from metarl_bench.baselines.gradient.common import (
    Episodes,
    GroupBatch,
    MLPPolicy,
    Params,
    any_nonfinite,
    collect_episodes,
    group_batch,
    group_runs,
    make_policy,
    stack_params,
    torch_generator,
)
from metarl_bench.baselines.shared import fixed_horizon, torch_threads
from metarl_bench.benchmarks import Benchmark
from metarl_bench.harness import EvalContext, MetaTrainContext


class TrainingDiverged(DivergenceError):
    """A non-finite loss, gradient or parameter stopped meta-training; the policy keeps its
    last good parameters, which the error carries (and the harness saves)."""


# --- configs -------------------------------------------------------------------------------


@dataclass
class MAMLConfig(AgentConfig):
    """Sampling, policy and inner-loop settings shared by the gradient-based meta-learners
    (pytorch-maml-rl's names; defaults are its ``2d-navigation.yaml``)."""

    meta_batch_size: int = 20
    """Tasks per meta-batch (outer update)."""
    fast_batch_size: int = 20
    """Episodes per task for each inner step; also the adaptation stage size at test time."""
    num_steps: int = 1
    """Inner policy-gradient steps per task during meta-training."""
    fast_lr: float = 0.1
    """Inner-loop step size."""
    first_order: bool = False
    """Drop the second-order terms of the meta-gradient (first-order MAML)."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 1.0
    """GAE lambda."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden layer widths of the policy MLP."""
    nonlinearity: str = "tanh"
    """Hidden activation: 'tanh' or 'relu'."""
    init_std: float = 1.0
    """Initial standard deviation of Gaussian policies."""
    iterations: int = 500
    """Meta-batches (outer updates); training also stops when the step budget runs out."""
    torch_threads: int = 1
    """torch CPU threads while training and adapting (1 is fastest for these small networks)."""

    agent_name: ClassVar[str] = "maml"

    def validate(self) -> None:
        agent = self.agent_name
        for name in ("meta_batch_size", "fast_batch_size", "num_steps", "iterations", "torch_threads"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"agent {agent!r}: config field {name!r} must be an integer >= 1, got {value!r}")
        positive(agent, fast_lr=self.fast_lr, init_std=self.init_std)
        for name in ("gamma", "gae_lambda"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"agent {agent!r}: config field {name!r} must be in [0, 1], got {value!r}")
        if not self.hidden_sizes or any(int(h) < 1 for h in self.hidden_sizes):
            raise ValueError(
                f"agent {agent!r}: config field 'hidden_sizes' must list positive widths, got {self.hidden_sizes!r}"
            )
        if self.nonlinearity not in ("tanh", "relu"):
            raise ValueError(
                f"agent {agent!r}: config field 'nonlinearity' must be 'tanh' or 'relu', got {self.nonlinearity!r}"
            )


# --- the shared machinery -----------------------------------------------------------------


def reinforce_loss(policy: MLPPolicy, params: Params, batch: GroupBatch) -> Tensor:
    """Per-group REINFORCE loss ``(G,)``: ``- sum_k w_k * A_k * log pi(a_k | s_k)``."""
    dist = policy.call(params, batch.obs)
    logp = policy.log_prob(dist, batch.actions)
    return -(logp * batch.advantages * batch.weights).sum(-1)


def inner_step(policy: MLPPolicy, params: Params, batch: GroupBatch, lr: float, create_graph: bool) -> Params:
    """One policy-gradient step per group: ``params`` carry a leading group axis.

    The groups' losses are summed; since group g's loss depends only on slice g of the
    parameters, the gradient with respect to the stacked tensors is the per-group
    gradient. With ``create_graph`` the result stays differentiable (second-order MAML).
    """
    names = list(params)
    loss = reinforce_loss(policy, params, batch).sum()
    grads = torch.autograd.grad(loss, [params[k] for k in names], create_graph=create_graph)
    return {k: params[k] - lr * g for k, g in zip(names, grads)}


class GradientMetaLearner(Agent[MetaTrainContext, EvalContext, Adapter]):
    """Common meta-training plumbing: policy, batched sampling, adaptation, checkpoints."""

    config_cls = MAMLConfig
    learns = True
    config: MAMLConfig
    divergence_fix: ClassVar[str] = "Lower fast_lr, or check the environment's rewards for NaN or huge values."
    _loaded_policy: Mapping[str, Any] | None = None  # a saved policy's weights, until adapter() builds it

    def supports(self, benchmark: Benchmark) -> str | None:
        if benchmark.family.kind != "rl":
            return "an RL meta-learner"
        return None

    def check_benchmark(self, benchmark: Benchmark) -> None:
        """The test-time stage (``fast_batch_size`` episodes) must divide the benchmark's
        budget of episodes, and one meta-iteration must fit its meta-training budget."""
        if benchmark.family.kind != "rl":
            return
        cfg, budget = self.config, benchmark.protocol.budget_episodes
        if cfg.fast_batch_size < budget and budget % cfg.fast_batch_size:
            divisors = [d for d in range(1, budget + 1) if budget % d == 0]
            raise ValueError(
                f"agent {self.name!r} on {benchmark.id}: fast_batch_size={cfg.fast_batch_size} (the episodes of one "
                f"adaptation stage) does not divide the budget of {budget} episodes; choose one of {divisors}"
            )
        steps = self.steps_per_iteration(benchmark)
        if 0 < benchmark.meta_train_steps < steps:
            raise ValueError(
                f"agent {self.name!r} on {benchmark.id}: one meta-iteration takes {steps:,} env steps but the "
                f"meta-training budget is {benchmark.meta_train_steps:,}; lower meta_batch_size, fast_batch_size "
                "or num_steps"
            )

    def steps_per_iteration(self, benchmark: Benchmark) -> int:
        """The env steps one meta-iteration may take (whole-horizon episodes)."""
        cfg = self.config
        return (cfg.num_steps + 1) * cfg.meta_batch_size * cfg.fast_batch_size * (benchmark.family.horizon or 1)

    # -- construction --------------------------------------------------------------------
    def _build(self, ctx: MetaTrainContext | EvalContext, observation_space: Any, action_space: Any) -> None:
        seeds = np.random.SeedSequence(ctx.seed).generate_state(2)
        self.policy = make_policy(
            observation_space,
            action_space,
            self.config.hidden_sizes,
            self.config.nonlinearity,
            torch_generator(int(seeds[0])),
            init_std=self.config.init_std,
        )
        self.generator = torch_generator(int(seeds[1]))
        self.benchmark_id = ctx.benchmark.id
        self.checkpoint: dict[str, Any] = {"iteration": 0, "state_dict": copy.deepcopy(self.policy.state_dict())}

    def _save_checkpoint(self, iteration: int) -> None:
        self.checkpoint = {"iteration": iteration, "state_dict": copy.deepcopy(self.policy.state_dict())}

    def _diverged(self, iteration: int, what: str) -> TrainingDiverged:
        """Restore the last good parameters (those after ``iteration - 1``) and return the error to raise."""
        assert self.checkpoint["iteration"] == iteration - 1, "a checkpoint is taken after every meta-iteration"
        self.policy.load_state_dict(self.checkpoint["state_dict"])
        return TrainingDiverged(
            self.name, self.benchmark_id, what, iteration, self.config.iterations, self.checkpoint["state_dict"],
            self.divergence_fix, config=self.resolved_config(), unit="meta-iteration",
        )

    # -- sampling ------------------------------------------------------------------------
    def _act_fn(self, params: Params | None, groups: int) -> Any:
        policy, gen = self.policy, self.generator

        def act(obs: Tensor) -> Tensor:
            if params is None:
                return policy.sample(policy(obs), gen)
            o = obs.reshape(groups, obs.shape[0] // groups, *obs.shape[1:])
            a = policy.sample(policy.call(params, o), gen)
            return a.reshape(obs.shape[0], *a.shape[2:])

        return act

    def _collect(self, ctx: MetaTrainContext, venv: Any, params: Params | None, groups: int) -> Episodes:
        seed = int(ctx.rng.integers(0, 2**31 - 1))
        horizon = fixed_horizon(ctx.benchmark, self.name)
        return collect_episodes(venv, self._act_fn(params, groups), horizon, seed=seed)

    def _batch(self, episodes: Episodes, groups: int) -> GroupBatch:
        return group_batch(episodes, groups, self.config.gamma, self.config.gae_lambda)

    def sample_meta_batch(
        self, ctx: MetaTrainContext, venv: Any, timing: dict[str, float], iteration: int = 0
    ) -> tuple[list[GroupBatch], GroupBatch, list[Episodes], Episodes]:
        """Tasks of this meta-batch are set on ``venv``; sample ``num_steps`` train batches
        (each with the policy adapted so far, first-order for sampling only, as
        pytorch-maml-rl's sampler) and one batch of post-adaptation (valid) episodes.
        """
        cfg = self.config
        m = cfg.meta_batch_size
        params: Params | None = None
        train_batches, train_eps = [], []
        for _ in range(cfg.num_steps):
            t0 = time.perf_counter()
            eps = self._collect(ctx, venv, params, m)
            t1 = time.perf_counter()
            batch = self._batch(eps, m)
            params = self.sampling_step(params, batch)
            if any_nonfinite(*params.values()):
                raise self._diverged(iteration, "inner-loop policy loss")
            timing["sampling"] += t1 - t0
            timing["inner"] += time.perf_counter() - t1
            train_batches.append(batch)
            train_eps.append(eps)
        t0 = time.perf_counter()
        valid_eps = self._collect(ctx, venv, params, m)
        t1 = time.perf_counter()
        valid = self._batch(valid_eps, m)
        timing["sampling"] += t1 - t0
        timing["inner"] += time.perf_counter() - t1
        return train_batches, valid, train_eps, valid_eps

    def sampling_step(self, params: Params | None, batch: GroupBatch) -> Params:
        """The next per-group parameters to sample with: one first-order inner step from
        ``params`` (the meta-parameters when None), detached."""
        base = stack_params(self.policy.params(), batch.groups) if params is None else params
        base = {k: v.detach().requires_grad_(True) for k, v in base.items()}
        return {k: v.detach() for k, v in inner_step(self.policy, base, batch, self.config.fast_lr, False).items()}

    # -- the MAML decomposition ----------------------------------------------------------
    def adapt(self, train_batches: list[GroupBatch], first_order: bool | None = None) -> Params:
        """Per-task adapted parameters ``(G, ...)`` from the meta-parameters, differentiable
        with respect to them (second order unless ``first_order``)."""
        if first_order is None:
            first_order = self.config.first_order
        params = stack_params(self.policy.params(), train_batches[0].groups)
        for batch in train_batches:
            params = inner_step(self.policy, params, batch, self.config.fast_lr, create_graph=not first_order)
        return params

    # -- meta-training loop --------------------------------------------------------------
    def meta_train(self, ctx: MetaTrainContext) -> None:
        with torch_threads(self.config.torch_threads):
            self._meta_train(ctx)

    def _start_training(self, ctx: MetaTrainContext) -> Any:
        """Build the policy (and optimiser) and return the vector env of one meta-batch:
        ``meta_batch_size`` tasks x ``fast_batch_size`` episodes."""
        cfg = self.config
        venv = ctx.make_vector_env([ctx.train_tasks[0]] * (cfg.meta_batch_size * cfg.fast_batch_size))
        self._build(ctx, venv.single_observation_space, venv.single_action_space)
        self._setup_optimiser()
        return venv

    def _next_meta_batch(self, ctx: MetaTrainContext, venv: Any) -> None:
        """Draw ``meta_batch_size`` training tasks and give each ``fast_batch_size`` sub-envs."""
        m, e = self.config.meta_batch_size, self.config.fast_batch_size
        idx = ctx.rng.choice(len(ctx.train_tasks), size=m, replace=len(ctx.train_tasks) < m)
        venv.set_tasks([ctx.train_tasks[int(i)] for i in idx for _ in range(e)])

    def progress_total(self, ctx: MetaTrainContext, per_iteration: int) -> int:
        """The meta-iterations the progress bar counts to: ``iterations``, or fewer when the
        step budget ends training first."""
        return max(0, min(self.config.iterations, ctx.steps_left // max(1, per_iteration)))

    def _meta_train(self, ctx: MetaTrainContext) -> None:
        cfg = self.config
        venv = self._start_training(ctx)
        per_iteration = (cfg.num_steps + 1) * venv.num_envs * (ctx.family.horizon or 1)
        total = self.progress_total(ctx, per_iteration)
        with ctx.progress_bar(total, "it", f"{self.name}: meta-training") as bar:
            for it in range(1, cfg.iterations + 1):
                if ctx.steps_left < per_iteration:
                    ctx.record(iteration=it, stopped="meta-training step budget exhausted")
                    break
                self._next_meta_batch(ctx, venv)
                timing = {"sampling": 0.0, "inner": 0.0, "cg": 0.0, "line_search": 0.0, "outer": 0.0}
                t0, c0 = time.perf_counter(), time.process_time()
                train, valid, train_eps, valid_eps = self.sample_meta_batch(ctx, venv, timing, it)
                stats = self.step(train, valid, it, timing)
                self._save_checkpoint(it)
                valid_return = float(valid_eps.returns.mean())
                ctx.record(
                    iteration=it,
                    train_return=float(train_eps[0].returns.mean()),
                    valid_return=valid_return,
                    seconds=round(time.perf_counter() - t0, 4),
                    cpu_seconds=round(time.process_time() - c0, 4),
                    **{f"t_{k}": round(v, 4) for k, v in timing.items()},
                    **stats,
                )
                bar.set_postfix(valid_return=f"{valid_return:.3g}", refresh=False)
                bar.update(1)
        venv.close()

    def _setup_optimiser(self) -> None:
        pass

    def step(self, train: list[GroupBatch], valid: GroupBatch, iteration: int, timing: dict[str, float]) -> dict:
        raise NotImplementedError

    def adapter(self, ctx: EvalContext) -> Adapter:
        if getattr(self, "policy", None) is None:
            self._build_untrained(ctx)
            loaded = self._loaded_policy
            if loaded is not None:  # a saved agent: the policy built for these spaces, then its weights
                self.policy.load_state_dict(loaded)
                self._loaded_policy = None
        return PolicyGradientAdapter(self.policy, self.config, ctx)

    # -- saving (see Agent) ---------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{"policy": the meta-trained policy's state dict}``, or ``{}`` before meta-training."""
        policy = getattr(self, "policy", None)
        if policy is None:
            loaded = self._loaded_policy
            return {} if loaded is None else {"policy": loaded}
        return {"policy": policy.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Keep the saved policy's weights; ``adapter(ctx)`` builds the policy for its spaces and loads them."""
        extra = set(state) - {"policy"}
        if extra:
            raise ValueError(f"agent {self.name!r}: unexpected keys {sorted(extra)} in the saved state")
        policy = getattr(self, "policy", None)
        if policy is not None and "policy" in state:  # already built: load in place (shapes must match)
            policy.load_state_dict(state["policy"])
            return
        self._loaded_policy = state.get("policy")

    def _build_untrained(self, ctx: EvalContext) -> None:
        """Adapter without meta-training (a benchmark with no budget): the initial policy."""
        self._build(ctx, ctx.observation_space, ctx.action_space)


# --- test-time adaptation --------------------------------------------------------------------


class PolicyGradientAdapter(Adapter):
    """Per-run inner policy-gradient steps at test time (MAML, Reptile).

    Each run starts from the meta-parameters; after every stage of ``fast_batch_size``
    episodes, ``adapt()`` takes one vanilla policy-gradient step per run on that stage's
    episodes (linear baseline, GAE, per-run normalisation), all runs in one batched pass.
    """

    max_samples_per_chunk = 400_000  # bounds the memory of one batched backward pass

    def __init__(self, policy: MLPPolicy, config: MAMLConfig, ctx: EvalContext) -> None:
        self.policy = policy
        self.config = config
        self.episodes_per_stage = int(config.fast_batch_size)
        self.generator = torch_generator(int(ctx.rng.integers(0, 2**63 - 1)))
        self.discrete = isinstance(ctx.action_space, spaces.Discrete)

    def reset(self, groups: np.ndarray) -> None:
        super().reset(groups)
        layout = group_runs(self.groups)
        if layout is None:
            raise ValueError("PolicyGradientAdapter needs the same number of sub-envs in every run")
        self.order, self.runs, self.per_run = layout
        self.inverse = np.argsort(self.order)
        self.params = {k: v.detach().clone() for k, v in stack_params(self.policy.params(), self.runs).items()}
        self._clear()

    def _clear(self) -> None:
        self.buf: dict[str, list[Any]] = {"obs": [], "actions": [], "rewards": [], "mask": [], "dones": []}

    def act(self, obs: np.ndarray) -> np.ndarray:
        with torch_threads(self.config.torch_threads):
            return self._act(obs)

    def _act(self, obs: np.ndarray) -> np.ndarray:
        o = torch.as_tensor(np.asarray(obs, dtype=np.float32).reshape(len(obs), -1))[self.order]
        o = o.reshape(self.runs, self.per_run, -1)
        with torch.no_grad():
            a = self.policy.sample(self.policy.call(self.params, o), self.generator)
        a = a.reshape(self.runs * self.per_run, *a.shape[2:])[self.inverse]
        return a.numpy()

    def observe(self, tr: Transition) -> None:
        if tr.final:
            return
        o = torch.as_tensor(np.asarray(tr.obs, dtype=np.float32).reshape(len(tr.obs), -1))
        self.buf["obs"].append(o[self.order])
        self.buf["actions"].append(torch.as_tensor(np.asarray(tr.action))[self.order])
        active = np.asarray(tr.active)[self.order]
        self.buf["rewards"].append(np.where(active, np.asarray(tr.reward, dtype=np.float32)[self.order], 0.0))
        self.buf["mask"].append(active)
        self.buf["dones"].append(active & np.asarray(tr.done)[self.order])

    def adapt(self) -> None:
        with torch_threads(self.config.torch_threads):
            self._adapt()

    def _adapt(self) -> None:
        if not self.buf["obs"]:
            return
        f32 = torch.float32
        actions = torch.stack(self.buf["actions"])
        if self.discrete:
            actions = actions.long()
        else:
            actions = actions.to(f32)
        episodes = Episodes(
            obs=torch.stack(self.buf["obs"]),
            actions=actions,
            rewards=torch.as_tensor(np.stack(self.buf["rewards"]), dtype=f32),
            mask=torch.as_tensor(np.stack(self.buf["mask"]), dtype=f32),
            dones=torch.as_tensor(np.stack(self.buf["dones"]), dtype=f32),
        )
        self._clear()
        batch = group_batch(episodes, self.runs, self.config.gamma, self.config.gae_lambda)
        chunk = max(1, self.max_samples_per_chunk // max(1, batch.obs.shape[1]))
        new: dict[str, list[Tensor]] = {k: [] for k in self.params}
        for s in range(0, self.runs, chunk):
            sl = slice(s, s + chunk)
            part = GroupBatch(batch.obs[sl], batch.actions[sl], batch.advantages[sl], batch.weights[sl], batch.episodes)
            p = {k: v[sl].detach().requires_grad_(True) for k, v in self.params.items()}
            with torch.enable_grad():
                updated = inner_step(self.policy, p, part, self.config.fast_lr, create_graph=False)
            for k, v in updated.items():
                new[k].append(v.detach())
        self.params = {k: torch.cat(v) for k, v in new.items()}
