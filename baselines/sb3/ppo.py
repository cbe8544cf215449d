"""Non-meta baselines built on Stable-Baselines3's PPO (Schulman et al. 2017).

The comparisons every meta-RL paper draws, each with SB3's PPO and its ``MlpPolicy``:

- ``ppo``: PPO from scratch on each test task, within the benchmark's budget of episodes
  (the "learning from scratch" line of MAML's and PEARL's figures). No meta-training.
- ``multitask-ppo``: ``PPO.learn()`` across the train tasks with the task hidden (a new
  train task each episode), then evaluated zero-shot: the best single non-adaptive policy.
- ``multitask-ppo-finetune``: the same pretraining, then PPO fine-tuning on each test task
  within the budget (MAML's "pretrained" comparison).
- ``task-ppo``: ``PPO.learn()`` across the train tasks with the task's features appended
  to the observation, evaluated with the task visible: the upper reference where no
  analytic oracle exists.

Meta-training goes through the harness's counting envs, so SB3's steps are charged to the
benchmark's budget. Per-run PPO at test time is :mod:`.batched_ppo` (SB3's update, batched
over runs). Tuned settings per benchmark: ``baselines/configs/<name>.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.policies import ActorCriticPolicy

from metarl_bench.agents import Adapter, Agent, AgentConfig, build_config, positive, tuned_config
from metarl_bench.baselines.sb3.batched_ppo import BatchedPPOAdapter, PPOUpdate, init_params, stack_state
from metarl_bench.baselines.sb3.common import RecordRollouts, SavedPolicy, learn_steps, train_vec_env
from metarl_bench.baselines.shared import torch_threads
from metarl_bench.benchmarks import Benchmark
from metarl_bench.harness import EvalContext, MetaTrainContext


@dataclass
class SB3PPOConfig(AgentConfig, PPOUpdate):
    """PPO hyperparameters, named and defaulted as in ``stable_baselines3.PPO``, and the policy's shape."""

    log_std_init: float = 0.0
    """Initial log standard deviation of a Gaussian policy (SB3's ``log_std_init``; rl-zoo sets it where actions span less than [-1, 1])."""
    hidden_size: int = 64
    """Units of each of the two tanh layers of the policy and of the value network (SB3's ``net_arch=[h, h]``)."""
    deterministic_eval: bool = True
    """Final evaluation episodes act with the mean (or most likely) action, as SB3's ``evaluate_policy``."""
    num_threads: int = 1
    """Torch threads (small networks run fastest on one)."""

    def validate(self) -> None:
        positive(
            self.agent_name, learning_rate=self.learning_rate, n_epochs=self.n_epochs, batch_size=self.batch_size,
            gamma=self.gamma, clip_range=self.clip_range, max_grad_norm=self.max_grad_norm,
            hidden_size=self.hidden_size, num_threads=self.num_threads,
        )
        for key in ("gae_lambda", "ent_coef", "vf_coef"):
            if getattr(self, key) < 0:
                raise ValueError(f"agent {self.agent_name!r}: config field {key!r} must be >= 0, got {getattr(self, key)!r}")
        if self.gamma > 1 or self.gae_lambda > 1:
            raise ValueError(f"agent {self.agent_name!r}: gamma and gae_lambda must be <= 1")

    agent_name: ClassVar[str] = "ppo"


@dataclass
class PPOConfig(SB3PPOConfig):
    """``ppo``: PPO from scratch on each test task (tuned values in ``baselines/configs/ppo.yaml``)."""

    episodes_per_stage: int = 10
    """Episodes collected in parallel per PPO update on a test task (must divide the benchmark's budget)."""

    def validate(self) -> None:
        super().validate()
        positive(self.agent_name, episodes_per_stage=self.episodes_per_stage)


@dataclass
class MultitaskPPOConfig(SB3PPOConfig):
    """Multi-task PPO trained across the train tasks (tuned values in ``baselines/configs/<agent>.yaml``)."""

    agent_name: ClassVar[str] = "multitask-ppo"

    total_timesteps: int = 1_000_000
    """Meta-training env steps (capped by the benchmark's budget; rounded down to whole rollouts)."""
    n_envs: int = 8
    """Training envs stepped together (SB3's ``DummyVecEnv``)."""
    n_steps: int = 256
    """Steps per env per rollout (SB3's ``n_steps``)."""

    def validate(self) -> None:
        super().validate()
        positive(self.agent_name, total_timesteps=self.total_timesteps, n_envs=self.n_envs, n_steps=self.n_steps)


@dataclass
class TaskPPOConfig(MultitaskPPOConfig):
    """``task-ppo``: multi-task PPO that sees the task (tuned values in ``baselines/configs/task-ppo.yaml``)."""

    agent_name: ClassVar[str] = "task-ppo"


@dataclass
class FinetunePPOConfig(MultitaskPPOConfig):
    """``multitask-ppo-finetune``: multi-task pretraining, then PPO on each test task."""

    agent_name: ClassVar[str] = "multitask-ppo-finetune"

    episodes_per_stage: int = 10
    """Episodes collected in parallel per fine-tuning update on a test task (must divide the budget)."""

    def validate(self) -> None:
        super().validate()
        positive(self.agent_name, episodes_per_stage=self.episodes_per_stage)


def policy_kwargs(cfg: SB3PPOConfig, action_space: spaces.Space) -> dict[str, Any]:
    """SB3 ``policy_kwargs`` of a config: two tanh layers of ``hidden_size`` units, and
    ``log_std_init`` for a Gaussian policy (SB3 refuses it for discrete actions)."""
    out: dict[str, Any] = {"net_arch": [cfg.hidden_size, cfg.hidden_size]}
    if isinstance(action_space, spaces.Box):
        out["log_std_init"] = cfg.log_std_init
    return out


def _unsupported(benchmark: Benchmark) -> str | None:
    if benchmark.family.kind != "rl":
        return "SB3 baselines are RL agents"
    return None


def _check_stage(agent: str, stage: int, benchmark: Benchmark) -> None:
    budget = benchmark.protocol.budget_episodes
    if stage > budget or budget % stage:
        raise ValueError(
            f"{agent} on {benchmark.id}: episodes_per_stage={stage} does not divide the budget of {budget} episodes; "
            f"choose a divisor of {budget}"
        )


class PPOAgent(Agent[MetaTrainContext, EvalContext, Adapter]):
    """SB3's PPO from scratch on each test task; every run starts from its own fresh policy."""

    name = "ppo"
    config_cls = PPOConfig
    description = "SB3 PPO from scratch on each test task within the budget (no meta-training)"
    config: PPOConfig

    def supports(self, benchmark: Benchmark) -> str | None:
        return _unsupported(benchmark)

    def check_benchmark(self, benchmark: Benchmark) -> None:
        _check_stage(self.name, self.config.episodes_per_stage, benchmark)

    def adapter(self, ctx: EvalContext) -> Adapter:
        cfg = self.config
        obs_dim = int(np.prod(ctx.observation_space.shape or ()))

        def fresh(n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
            return init_params(n, obs_dim, ctx.action_space, cfg.hidden_size, gen, cfg.log_std_init)

        return BatchedPPOAdapter(ctx.observation_space, ctx.action_space, cfg, cfg.episodes_per_stage,
                                 ctx.benchmark.protocol.budget_episodes, fresh, ctx.seed, cfg.deterministic_eval, cfg.num_threads)


class PolicyAdapter(Adapter):
    """A fixed SB3 policy acting on every sub-env (no adaptation)."""

    def __init__(self, policy: ActorCriticPolicy, seed: int, deterministic: bool, num_threads: int = 1) -> None:
        self.policy = policy
        self.seed = int(seed) % 2**31
        self.deterministic = deterministic
        self.num_threads = num_threads
        self.calls = 0

    def act(self, obs: np.ndarray) -> np.ndarray:
        self.calls += 1
        with torch_threads(self.num_threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + self.calls)  # reproducible sampling, global RNG left as it was
            actions, _ = self.policy.predict(np.asarray(obs, dtype=np.float32), deterministic=self.deterministic)
        return actions


class MultitaskPPO(SavedPolicy, Agent[MetaTrainContext, EvalContext, Adapter]):
    """SB3's ``PPO.learn()`` across the train tasks, the task hidden; evaluated zero-shot."""

    name = "multitask-ppo"
    config_cls: ClassVar[type[AgentConfig]] = MultitaskPPOConfig
    description = "SB3 PPO trained across the train tasks (task hidden), evaluated zero-shot"
    learns = True
    config: MultitaskPPOConfig

    def supports(self, benchmark: Benchmark) -> str | None:
        return _unsupported(benchmark)

    def configure(self, benchmark: Benchmark) -> AgentConfig:
        """Tuned settings from ``multitask-ppo.yaml`` (shared by ``task-ppo`` and the fine-tuned
        variant, so that the three are trained alike), then the agent's own file, then overrides."""
        shared = tuned_config("multitask-ppo", benchmark.id, MultitaskPPOConfig)
        own = tuned_config(self.name, benchmark.id, self.config_cls) if self.name != "multitask-ppo" else {}
        self.config = build_config(self.config_cls, {**shared, **own}, self.overrides, self.name)  # type: ignore[assignment]
        return self.config

    def check_benchmark(self, benchmark: Benchmark) -> None:
        self.check_rollout(self.config.total_timesteps, self.config.n_steps, self.config.n_envs, benchmark)

    def meta_train(self, ctx: MetaTrainContext) -> None:
        cfg = self.config
        venv = train_vec_env(ctx, cfg.n_envs, expose_task=self.sees_task)
        steps = learn_steps(ctx, cfg.total_timesteps, cfg.n_steps, cfg.n_envs, self.name)
        with torch_threads(cfg.num_threads):
            self.model = PPO(
                "MlpPolicy", venv, learning_rate=cfg.learning_rate, n_steps=cfg.n_steps, batch_size=cfg.batch_size,
                n_epochs=cfg.n_epochs, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda, clip_range=cfg.clip_range,
                ent_coef=cfg.ent_coef, vf_coef=cfg.vf_coef, max_grad_norm=cfg.max_grad_norm,
                policy_kwargs=policy_kwargs(cfg, venv.action_space), seed=ctx.seed % 2**31, device="cpu",
            )
            every = max(steps // (cfg.n_steps * cfg.n_envs) // 200, 1)
            with ctx.progress_bar(steps, "step", f"{self.name}: meta-training") as bar:
                self.model.learn(total_timesteps=steps, callback=RecordRollouts(ctx, every=every, bar=bar))
        venv.close()

    def policy(self, ctx: EvalContext) -> ActorCriticPolicy:
        """The trained SB3 policy (rebuilt for the evaluation's spaces when loaded from a save)."""
        if self.model is not None:
            space = self.model.observation_space
            if not isinstance(space, spaces.Box) or space.shape != ctx.observation_space.shape:
                raise ValueError(f"{self.name}: trained on observations {space}, evaluated on {ctx.observation_space}")
            return self.model.policy
        if self.saved_policy is None:
            raise RuntimeError(f"{self.name}: no trained policy; meta-train it first (metarl_bench.evaluate does)")
        cfg = self.config
        policy = ActorCriticPolicy(ctx.observation_space, ctx.action_space, lambda _: cfg.learning_rate,
                                   **policy_kwargs(cfg, ctx.action_space))
        policy.load_state_dict(self.saved_policy)
        return policy.eval()

    def adapter(self, ctx: EvalContext) -> Adapter:
        return PolicyAdapter(self.policy(ctx), ctx.seed, self.config.deterministic_eval, self.config.num_threads)


class TaskPPO(MultitaskPPO):
    """SB3's ``PPO.learn()`` across the train tasks with the task features in the observation."""

    name = "task-ppo"
    config_cls = TaskPPOConfig
    description = "SB3 PPO trained across the train tasks with the task in the observation (upper reference)"
    sees_task = True


class MultitaskPPOFinetune(MultitaskPPO):
    """Multi-task PPO pretraining, then SB3's PPO update on each test task from the pretrained policy."""

    name = "multitask-ppo-finetune"
    config_cls = FinetunePPOConfig
    description = "multitask-ppo, then fine-tuned with PPO on each test task within the budget"
    config: FinetunePPOConfig

    def check_benchmark(self, benchmark: Benchmark) -> None:
        super().check_benchmark(benchmark)
        _check_stage(self.name, self.config.episodes_per_stage, benchmark)

    def adapter(self, ctx: EvalContext) -> Adapter:
        cfg = self.config
        state = self.policy(ctx).state_dict()

        def pretrained(n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
            return stack_state(state, n)

        return BatchedPPOAdapter(ctx.observation_space, ctx.action_space, cfg, cfg.episodes_per_stage,
                                 ctx.benchmark.protocol.budget_episodes, pretrained, ctx.seed, cfg.deterministic_eval, cfg.num_threads)
