"""What a learner needs of a benchmark, said in one clear error when it is missing: a fixed
horizon (rl2, the gradient meta-learners, the oracle, PSRL), Discrete arms and a bandit
family (bandit algorithms), a Box observation space (the oracle), shots (few-shot learners).
Each is checked where the learner would otherwise fail inside ``int(None)`` or an
attribute lookup."""

from __future__ import annotations

import copy
import dataclasses

import pytest
from gymnasium import spaces

import metarl_bench
from metarl_bench.agents import agent_class
from metarl_bench.harness import EvalContext, MetaTrainContext

NO_HORIZON = r"on Test/NoHorizon-v0: the family has no fixed horizon"


def _no_horizon(benchmark_id: str):
    """``benchmark_id`` as ``Test/NoHorizon-v0``, its family's horizon unset (the envs keep theirs)."""
    base = metarl_bench.benchmark(benchmark_id)
    family = copy.copy(base.family)  # a copy: the registry hands out shared family instances
    family.horizon = None  # an instance attribute: hides the class's horizon from the learners
    bench = dataclasses.replace(base, id="Test/NoHorizon-v0", family_factory=lambda: family)
    assert metarl_bench.benchmark(benchmark_id).family.horizon is not None  # the registry's is untouched
    return bench


@pytest.mark.parametrize("call", ["check_bptt", "updates", "meta_train"])
def test_rl2_without_horizon(call):
    agent = metarl_bench.agent("rl2", trial_episodes=2)
    bench = _no_horizon("MetaRL/Bandit-k5-n10-smoke-v0")
    assert "fixed horizon" in agent.supports(bench)
    run = {
        "check_bptt": lambda: agent.check_bptt(bench),
        "updates": lambda: agent.updates(bench, 10**6),
        "meta_train": lambda: agent.meta_train(MetaTrainContext(bench, seed=0)),
    }[call]
    with pytest.raises(ValueError, match="rl2 " + NO_HORIZON):
        run()


@pytest.mark.parametrize("name", ["maml-trpo", "maml-ppo", "reptile"])
def test_gradient_meta_learners_without_horizon(name):
    agent = agent_class(name, "rl")(meta_batch_size=2, fast_batch_size=2, iterations=1)
    with pytest.raises(ValueError, match=name + " " + NO_HORIZON):
        agent.meta_train(MetaTrainContext(_no_horizon("MetaRL/Bandit-k5-n10-smoke-v0"), seed=0))


@pytest.mark.parametrize(
    "name, benchmark_id",
    [("oracle", "MetaRL/TabularMDP-n10-smoke-v0"), ("psrl", "MetaRL/TabularMDP-n10-smoke-v0"),
     ("epsilon-greedy", "MetaRL/TabularMDP-n10-smoke-v0")],
)
def test_planners_without_horizon(name, benchmark_id):
    agent = agent_class(name, "rl")()
    ctx = EvalContext(_no_horizon(benchmark_id), 0, spaces.Box(0.0, 1.0, (4,)), spaces.Discrete(2))
    with pytest.raises(ValueError, match=name + " " + NO_HORIZON):
        agent.adapter(ctx)


def test_oracle_needs_a_box_observation_space():
    bench = metarl_bench.benchmark("MetaRL/Bandit-k5-n10-smoke-v0")
    ctx = EvalContext(bench, 0, spaces.Discrete(3), spaces.Discrete(5))
    with pytest.raises(TypeError, match="oracle on MetaRL/Bandit-k5-n10-smoke-v0: needs a Box observation space"):
        agent_class("oracle", "rl")().adapter(ctx)


@pytest.mark.parametrize("name", ["ucb1", "thompson", "gittins", "epsilon-greedy", "bayes-optimal"])
def test_bandit_algorithms_need_discrete_arms(name):
    bench = metarl_bench.benchmark("MetaRL/Bandit-k5-n10-smoke-v0")
    agent = metarl_bench.agent(name)
    agent.configure(bench)
    ctx = EvalContext(bench, 0, spaces.Box(0.0, 1.0, (1,)), spaces.Box(-1.0, 1.0, (2,)))
    with pytest.raises(TypeError, match="need a Discrete action space"):
        agent.adapter(ctx)


def test_bayes_optimal_auto_needs_a_bandit_family():
    with pytest.raises(ValueError, match="bayes-optimal on MetaRL/Navigation2D-smoke-v0: .*MetaRL/Bandit family"):
        metarl_bench.agent("bayes-optimal").configure(metarl_bench.benchmark("MetaRL/Navigation2D-smoke-v0"))


@pytest.mark.parametrize("name", ["maml", "fomaml", "meta-sgd", "reptile", "pretrained"])
def test_few_shot_learners_need_shots(name):
    agent = agent_class(name, "supervised")()
    with pytest.raises(ValueError, match=f"agent '{name}' on MetaRL/Bandit-k5-n10-smoke-v0: the protocol sets no shots"):
        agent.check_benchmark(metarl_bench.benchmark("MetaRL/Bandit-k5-n10-smoke-v0"))
