"""metarl-bench plugin: an agent and a benchmark, registered through entry points (see pyproject.toml).
The agent's tuned settings per benchmark are in ``tuned_configs.yaml`` beside this file.

``explore-commit`` plays one action for a whole episode, tries every action ``rounds`` times,
then commits to the one with the highest total return: on the corridor it finds the paying end
in two episodes, on a bandit it is explore-then-commit. It runs on any benchmark with discrete
actions, the suite's own included.
"""
from dataclasses import dataclass

import metarl_bench
import numpy as np
from gymnasium import spaces


@dataclass
class ExploreCommitConfig(metarl_bench.AgentConfig):
    rounds: int = 1
    """Episodes each action is tried before committing to the best one."""

    def validate(self) -> None:
        if self.rounds < 1:
            raise ValueError(f"agent 'explore-commit': config field 'rounds' must be >= 1, got {self.rounds!r}")


class ExploreCommitAdapter(metarl_bench.Adapter):
    def __init__(self, n_actions: int, rounds: int) -> None:
        self.n, self.rounds = n_actions, rounds

    def reset(self, groups):
        super().reset(groups)
        self.episode, self.total = 0, np.zeros((self.num_runs, self.n))
        self.ret = np.zeros(len(self.groups))

    def act(self, obs):
        exploring = self.episode < self.n * self.rounds
        per_run = np.full(self.num_runs, self.episode % self.n) if exploring else self.total.argmax(1)
        return per_run[self.groups]

    def observe(self, tr):
        self.ret += np.where(tr.active, tr.reward, 0.0)

    def adapt(self):
        if self.episode < self.n * self.rounds:
            np.add.at(self.total[:, self.episode % self.n], self.groups, self.ret)
        self.episode += 1
        self.ret[:] = 0.0


class ExploreCommitAgent(metarl_bench.Agent):
    """Explore-then-commit over whole-episode actions (no meta-training)."""

    name = "explore-commit"  # the entry point's name in pyproject.toml
    config_cls = ExploreCommitConfig
    description = "tries each discrete action for a whole episode, then commits to the best"
    tuned_configs = "tuned_configs.yaml"  # beside this file, shipped as package data (pyproject.toml)

    def supports(self, benchmark):
        if not isinstance(benchmark.family.make_env().action_space, spaces.Discrete):
            return "needs discrete actions"
        return None

    def adapter(self, ctx):
        return ExploreCommitAdapter(int(ctx.action_space.n), self.config.rounds)


def register_benchmarks() -> None:  # the metarl_bench.benchmarks entry point
    metarl_bench.register_benchmark(
        metarl_bench.Benchmark(
            id="MyLab/Corridor-n4-v0",
            family_id="MyLab/Corridor-v0",
            protocol=metarl_bench.Protocol(budget_episodes=4, runs_per_task=2, final_episodes=2),
            n_train=0,  # the corridor has two tasks only, so none is left for meta-training
            n_test=8,
            task_seed=7,
            meta_train_steps=10_000,
            headline="online",
            description="corridor: 4 episodes to find and use the paying end",
        )
    )
