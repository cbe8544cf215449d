"""The harness's protocol wiring, checked with spy adapters and hand-worked records: when
adapt() is called, how stages and final episodes are laid out, what the evaluation step count
counts, that chunks of test tasks get their own seeds, and the record's curve and standard errors."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import metarl_bench
from metarl_bench.agents import Adapter, Agent
from metarl_bench.benchmarks import Benchmark
from metarl_bench.harness import MetaTrainBudgetExceeded, MetaTrainContext, check_seed
from metarl_bench.recording import build_record

BANDIT = "MetaRL/Bandit-k5-n10-smoke-v0"


class _SpyAdapter(Adapter):
    """Pulls arm 0; logs each stage's transitions (final flag) and each adapt() call."""

    def __init__(self, stage: int) -> None:
        self.episodes_per_stage = stage
        self.events: list[str] = []
        self.active_steps = 0

    def act(self, obs):
        return np.zeros(len(obs), dtype=np.int64)

    def observe(self, tr) -> None:
        self.events.append("final" if tr.final else "budget")
        self.active_steps += int(np.asarray(tr.active).sum())

    def adapt(self) -> None:
        self.events.append("adapt")


class _SpyAgent(Agent):
    name = "spy"

    def __init__(self, stage: int = 2) -> None:
        super().__init__()
        self.stage = stage
        self.adapters: list[_SpyAdapter] = []

    def adapter(self, ctx):
        a = _SpyAdapter(self.stage)
        self.adapters.append(a)
        return a


def _bandit(budget: int, final: int, **kw) -> Benchmark:
    base = metarl_bench.benchmark(BANDIT)
    proto = dataclasses.replace(base.protocol, budget_episodes=budget, final_episodes=final, **kw)
    return dataclasses.replace(base, protocol=proto)


def _collapse(events: list[str]) -> list[str]:
    """Consecutive equal events as one (a stage's one-step episodes are one 'budget' run)."""
    out: list[str] = []
    for e in events:
        if not out or out[-1] != e:
            out.append(e)
    return out


def test_adapt_follows_every_budget_stage_and_never_the_final_episodes():
    agent = _SpyAgent(stage=2)
    rec = metarl_bench.evaluate(agent, _bandit(budget=4, final=2), seed=0)
    (adapter,) = agent.adapters
    # two budget stages of 2 episodes, each followed by adapt(); then one final stage, no adapt()
    assert _collapse(adapter.events) == ["budget", "adapt", "budget", "adapt", "final"]
    assert rec.curve["x"] == [0.0, 2.0, 4.0]


def test_final_episodes_are_rounded_up_to_whole_stages():
    agent = _SpyAgent(stage=2)
    bench = _bandit(budget=4, final=3)  # 3 final episodes need 2 stages of 2
    rec = metarl_bench.evaluate(agent, bench, seed=0)
    assert rec.returns.shape[2] == 4 + 4
    assert rec.phase == ["budget"] * 4 + ["final"] * 4
    np.testing.assert_array_equal(rec.x, [0, 0, 2, 2, 4, 4, 4, 4])


def test_a_stage_larger_than_the_budget_is_capped_at_the_budget():
    agent = _SpyAgent(stage=8)  # e.g. MAML's fast batch of 8 on a budget of 4
    rec = metarl_bench.evaluate(agent, _bandit(budget=4, final=2), seed=0)
    assert rec.evaluation["episodes_per_stage"] == 4
    np.testing.assert_array_equal(rec.x, [0, 0, 0, 0, 4, 4, 4, 4])
    assert _collapse(agent.adapters[0].events) == ["budget", "adapt", "final"]


def test_evaluation_counts_only_the_steps_of_running_episodes():
    """CartPole pays 1 per step, so the steps of all episodes are their returns' sum; episodes of
    a random policy end at different times, and finished sub-envs' steps are not counted."""
    bench = metarl_bench.benchmark("MetaRL/CartPoleDynamics-smoke-v0")
    rec = metarl_bench.evaluate(metarl_bench.agent("random"), bench, seed=0)
    lengths = rec.returns
    assert lengths.min() < lengths.max()  # the episodes do end at different times
    assert rec.evaluation["env_steps"] == int(lengths.sum())


def test_each_chunk_of_test_tasks_gets_its_own_seed():
    """Test tasks that do not fit one batched env are run in chunks; every chunk must draw its
    own random numbers: four copies of one bandit task, one per chunk, pulled the same way,
    must not all see the same rewards."""
    base = _bandit(budget=10, final=0)
    proto = dataclasses.replace(base.protocol, runs_per_task=1, max_envs=1)  # one task per chunk
    bench = dataclasses.replace(base, protocol=proto, n_test=4)
    train, test, ood = bench.train_tasks, bench.test_tasks, bench.ood_tasks
    # no public way to set the test tasks: override the cached_property's value with the same task 4 times
    bench.__dict__["_tasks"] = (train, [test[0]] * 4, ood)
    rec = metarl_bench.evaluate(_SpyAgent(stage=1), bench, seed=0)
    rewards = rec.returns[:, 0, :]  # (tasks, episodes): arm 0 pulled 10 times per chunk
    assert 0 < rewards.mean() < 1  # a Bernoulli arm that pays sometimes
    assert len({tuple(r) for r in rewards}) > 1


# --- the record's numbers, from hand-made returns -------------------------------------------------


def _record(returns: np.ndarray, budget: int):
    n_ep = returns.shape[2]
    bench: Any = SimpleNamespace(
        id="MetaRL/Fake-v0", version=0, task_hash="h", tier="smoke", headline="final", lower_is_better=False,
        test_tasks=list(range(returns.shape[0])), task_references=None,
        references={"random": {"online": None, "final": None}, "oracle": {"online": None, "final": None}},
        protocol=SimpleNamespace(budget_episodes=budget), summary=lambda: {"protocol": {"budget_episodes": budget}},
    )
    ag: Any = SimpleNamespace(name="a", resolved_config=lambda: {})
    x = np.concatenate([np.arange(budget), np.full(n_ep - budget, budget)]).astype(float)
    phase = ["budget"] * budget + ["final"] * (n_ep - budget)
    return build_record(ag, bench, 0, returns, x, phase, {}, {})


def test_record_curve_and_standard_errors_by_hand():
    # 3 tasks x 2 runs x (2 budget + 2 final) episodes
    returns = np.array([
        [[0.0, 1.0, 2.0, 4.0], [2.0, 3.0, 6.0, 8.0]],
        [[1.0, 1.0, 1.0, 1.0], [3.0, 5.0, 3.0, 3.0]],
        [[4.0, 0.0, 0.0, 2.0], [0.0, 2.0, 4.0, 6.0]],
    ])
    rec = _record(returns, budget=2)
    # curve at x = 0: per-task means of episode 0 over runs: 1, 2, 2 -> mean 5/3
    # x = 1: 2, 3, 1 -> 2; x = 2 (the final episodes pooled): (2+4+6+8)/4 = 5, (1+1+3+3)/4 = 2, 3 -> 10/3
    assert rec.curve["x"] == [0.0, 1.0, 2.0]
    np.testing.assert_allclose(rec.curve["mean"], [5 / 3, 2.0, 10 / 3])
    # standard error over tasks with ddof = 1: tasks 1, 2, 2 -> sd sqrt(1/3), se sqrt(1/3)/sqrt(3) = 1/3
    assert rec.curve["se"][0] == pytest.approx(1 / 3)
    # online: per-task mean over runs of the budget sum: (1 + 5)/2 = 3, (2 + 8)/2 = 5, (4 + 2)/2 = 3
    assert rec.scores["online"]["value"] == pytest.approx(11 / 3)
    assert rec.scores["online"]["se"] == pytest.approx(np.std([3.0, 5.0, 3.0], ddof=1) / np.sqrt(3))
    assert rec.scores["final"]["value"] == pytest.approx(10 / 3)


# --- budget and seed checks -----------------------------------------------------------------------


def test_meta_training_may_spend_exactly_its_budget():
    bench = dataclasses.replace(metarl_bench.benchmark(BANDIT), meta_train_steps=10)
    ctx = MetaTrainContext(bench, seed=0)
    ctx.count(6)
    ctx.count(4)  # exactly the budget: allowed
    assert ctx.steps_left == 0
    with pytest.raises(MetaTrainBudgetExceeded, match="10"):
        ctx.count(1)


@pytest.mark.parametrize("seed", [-1, -5, 1.0, True, "0"])
def test_bad_seeds_are_refused(seed):
    with pytest.raises(ValueError, match="seed"):
        check_seed(seed)
