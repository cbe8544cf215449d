"""RL² needs a family with a fixed horizon (its trials are whole episodes of it): called
directly on a benchmark without one, it says so instead of failing inside ``int(None)``."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

import metarl_bench
from metarl_bench.harness import MetaTrainContext


def _no_horizon_benchmark() -> SimpleNamespace:
    """The bandit smoke benchmark's settings, with a family whose horizon is unset."""
    base = metarl_bench.benchmark("MetaRL/Bandit-k5-n10-smoke-v0")
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    fields.update(id="Test/NoHorizon-v0", family=SimpleNamespace(kind="rl", horizon=None), train_tasks=base.train_tasks)
    return SimpleNamespace(**fields)


def test_supports_refuses_a_family_without_horizon():
    assert "fixed horizon" in metarl_bench.agent("rl2").supports(_no_horizon_benchmark())


@pytest.mark.parametrize("call", ["check_bptt", "updates", "meta_train"])
def test_a_family_without_horizon_is_a_clear_error(call):
    agent = metarl_bench.agent("rl2", trial_episodes=2)
    bench = _no_horizon_benchmark()
    run = {
        "check_bptt": lambda: agent.check_bptt(bench),
        "updates": lambda: agent.updates(bench, 10**6),
        "meta_train": lambda: agent.meta_train(MetaTrainContext(bench, seed=0)),
    }[call]
    with pytest.raises(ValueError, match=r"rl2 on Test/NoHorizon-v0: the family has no fixed horizon"):
        run()
