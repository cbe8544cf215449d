"""``recurrent-ppo``: RL² built from Stable-Baselines3 parts.

sb3-contrib's ``RecurrentPPO`` (an LSTM policy trained with PPO) learns on the suite's
:class:`~metarl_bench.trial.TrialWrapper`: trials of several episodes on one train task,
the previous action, reward and done flag appended to each observation (Duan et al. 2016).
At test time the LSTM state carries a run's whole experience, across its budget and final
episodes; nothing is updated by gradient. Beside the suite's own ``rl2`` (a GRU trained
with whole-trial backpropagation through time), this is the version a user of SB3 would
write; its sequences are cut at SB3's rollout length (``n_steps``).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy

from metarl_bench.agents import Adapter, Agent, AgentConfig, Transition, positive
from metarl_bench.baselines.sb3.common import RecordRollouts, SavedPolicy, learn_steps, train_vec_env
from metarl_bench.baselines.sb3.ppo import MultitaskPPOConfig, policy_kwargs
from metarl_bench.baselines.shared import torch_threads
from metarl_bench.benchmarks import Benchmark
from metarl_bench.harness import EvalContext, MetaTrainContext
from metarl_bench.trial import TrialInputs, TrialWrapper


@dataclass
class RecurrentPPOConfig(MultitaskPPOConfig):
    """sb3-contrib ``RecurrentPPO`` on trials (tuned values in ``baselines/configs/recurrent-ppo.yaml``)."""

    agent_name: ClassVar[str] = "recurrent-ppo"

    lstm_hidden_size: int = 64
    """LSTM units (policy and value each have their own LSTM, sb3-contrib's default)."""
    trial_episodes: int = 0
    """Episodes per training trial; 0 = the benchmark's budget (+ its final episodes when the headline is final)."""
    deterministic_eval: bool = False
    """Act with the most likely action in the final episodes (the budget episodes always sample: they explore)."""

    def validate(self) -> None:
        super().validate()
        positive(self.agent_name, lstm_hidden_size=self.lstm_hidden_size)
        if self.trial_episodes < 0:
            raise ValueError(f"agent {self.agent_name!r}: trial_episodes must be >= 0 (0: the benchmark's), got {self.trial_episodes}")


class RecurrentPPOAgent(SavedPolicy, Agent[MetaTrainContext, EvalContext, Adapter]):
    """sb3-contrib's ``RecurrentPPO`` trained on trials of train tasks; adapts through its LSTM state."""

    name = "recurrent-ppo"
    config_cls: ClassVar[type[AgentConfig]] = RecurrentPPOConfig
    description = "sb3-contrib RecurrentPPO (LSTM) on the trial wrapper: RL^2 built from SB3 parts"
    learns = True
    config: RecurrentPPOConfig

    def supports(self, benchmark: Benchmark) -> str | None:
        return None if benchmark.family.kind == "rl" else "SB3 baselines are RL agents"

    def trial_episodes(self, benchmark: Benchmark) -> int:
        if self.config.trial_episodes:
            return self.config.trial_episodes
        proto = benchmark.protocol
        final = proto.final_episodes if benchmark.headline == "final" else 0
        return int(proto.budget_episodes + final)

    def check_benchmark(self, benchmark: Benchmark) -> None:
        self.check_rollout(self.config.total_timesteps, self.config.n_steps, self.config.n_envs, benchmark)

    def meta_train(self, ctx: MetaTrainContext) -> None:
        cfg = self.config
        episodes = self.trial_episodes(ctx.benchmark)
        venv = train_vec_env(ctx, cfg.n_envs, wrap=lambda env: TrialWrapper(env, episodes=episodes, tasks=ctx.train_tasks))
        steps = learn_steps(ctx, cfg.total_timesteps, cfg.n_steps, cfg.n_envs, self.name)
        with torch_threads(cfg.num_threads):
            self.model = RecurrentPPO(
                "MlpLstmPolicy", venv, learning_rate=cfg.learning_rate, n_steps=cfg.n_steps, batch_size=cfg.batch_size,
                n_epochs=cfg.n_epochs, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda, clip_range=cfg.clip_range,
                ent_coef=cfg.ent_coef, vf_coef=cfg.vf_coef, max_grad_norm=cfg.max_grad_norm,
                policy_kwargs={**policy_kwargs(cfg, venv.action_space), "lstm_hidden_size": cfg.lstm_hidden_size},
                seed=ctx.seed % 2**31, device="cpu",
            )
            every = max(steps // (cfg.n_steps * cfg.n_envs) // 200, 1)
            with ctx.progress_bar(steps, "step", f"{self.name}: meta-training") as bar:
                self.model.learn(total_timesteps=steps, callback=RecordRollouts(ctx, every=every, bar=bar))
        venv.close()

    def adapter(self, ctx: EvalContext) -> Adapter:
        if self.model is not None:
            return RecurrentAdapter(typing.cast(RecurrentActorCriticPolicy, self.model.policy), ctx, self.config)
        if self.saved_policy is None:
            raise RuntimeError(f"{self.name}: no trained policy; meta-train it first (metarl_bench.evaluate does)")
        cfg = self.config
        trial_space = TrialWrapper(ctx.family.make_env(), episodes=1).observation_space  # what it was trained on
        policy = RecurrentActorCriticPolicy(
            trial_space, ctx.action_space, lambda _: cfg.learning_rate,
            **policy_kwargs(cfg, ctx.action_space), lstm_hidden_size=cfg.lstm_hidden_size,
        )
        policy.load_state_dict(self.saved_policy)
        return RecurrentAdapter(policy.eval(), ctx, cfg)


class RecurrentAdapter(Adapter):
    """The trained LSTM policy on every sub-env; its state is reset only by :meth:`reset` (a
    new run), so it carries the run's experience across episodes, as in training trials."""

    episodes_per_stage = 1

    def __init__(self, policy: RecurrentActorCriticPolicy, ctx: EvalContext, cfg: RecurrentPPOConfig) -> None:
        self.policy = policy
        self.action_space = ctx.action_space
        self.seed = int(ctx.seed) % 2**31
        self.deterministic_eval = cfg.deterministic_eval
        self.num_threads = cfg.num_threads
        self.budget = ctx.benchmark.protocol.budget_episodes
        self.calls = 0

    def reset(self, groups: np.ndarray) -> None:
        super().reset(groups)
        n = len(self.groups)
        lstm = self.policy.lstm_actor
        assert isinstance(lstm, torch.nn.LSTM)
        layers, hidden = lstm.num_layers, lstm.hidden_size
        self.state = (np.zeros((layers, n, hidden), np.float32), np.zeros((layers, n, hidden), np.float32))
        self.inputs = TrialInputs(self.action_space, n)
        self.episodes_done = 0
        self._pending: tuple[np.ndarray, np.ndarray] | None = None

    def act(self, obs: np.ndarray) -> np.ndarray:
        self.calls += 1
        n = len(obs)
        deterministic = self.deterministic_eval and self.episodes_done >= self.budget
        with torch_threads(self.num_threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + self.calls)  # reproducible sampling, global RNG left as it was
            actions, state = self.policy.predict(
                self.inputs.build(obs), state=self.state, episode_start=np.zeros(n, dtype=bool), deterministic=deterministic
            )
        self._pending = state  # type: ignore[assignment]
        return actions

    def observe(self, tr: Transition) -> None:
        assert self._pending is not None, "observe() follows act()"
        keep = np.asarray(tr.active, dtype=bool)[None, :, None]
        self.state = tuple(np.where(keep, new, old) for new, old in zip(self._pending, self.state))  # type: ignore[assignment]
        self.inputs.update(tr.action, tr.reward, tr.done, tr.active)
        self._pending = None

    def adapt(self) -> None:
        """Nothing to update: the LSTM state carries the experience. Counts the episodes."""
        self.episodes_done += 1
