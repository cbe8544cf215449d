"""The evaluation harness (docs/design.md: "The harness") through reference agents with exact answers."""

import dataclasses
import json

import numpy as np
import pytest

import metarl_bench
from metarl_bench.agents import Adapter, Agent, AgentConfig
from metarl_bench.harness import MetaTrainBudgetExceeded
from metarl_bench.results import load_record


def _se_ok(score, expected, k=3.0):
    return abs(score["value"] - expected) <= k * score["se"]


def test_bayes_optimal_and_random_match_exact_values_on_k5_n10():
    bench = metarl_bench.benchmark("MetaRL/Bandit-k5-n10-v0")
    bo = metarl_bench.evaluate(metarl_bench.agent("bayes-optimal"), bench, seed=0)
    assert bo.agent["config"]["method"] == "exact-dp"
    assert _se_ok(bo.scores["online"], 6.6600), bo.scores["online"]
    rnd = metarl_bench.evaluate(metarl_bench.agent("random"), bench, seed=0)
    assert _se_ok(rnd.scores["online"], 5.0), rnd.scores["online"]
    # Bayes-optimal beats random by far more than the noise
    assert bo.scores["online"]["value"] - rnd.scores["online"]["value"] > 1.0


def test_protocol_layout_curve_and_step_counts():
    bench = metarl_bench.benchmark("MetaRL/Bandit-k5-n10-smoke-v0")
    rec = metarl_bench.evaluate(metarl_bench.agent("thompson"), bench, seed=1)
    p = bench.protocol
    assert rec.returns.shape == (bench.n_test, p.runs_per_task, p.budget_episodes + p.final_episodes)
    assert list(rec.x[: p.budget_episodes]) == list(range(p.budget_episodes))
    assert set(rec.x[p.budget_episodes :]) == {p.budget_episodes}
    assert rec.curve["x"] == [float(v) for v in range(p.budget_episodes + 1)]
    # the harness counts every test step itself: bandit episodes are one pull
    assert rec.evaluation["env_steps"] == rec.returns.size
    online = rec.returns[:, :, : p.budget_episodes].sum(axis=2).mean()
    assert rec.scores["online"]["value"] == pytest.approx(online)
    assert np.isin(rec.returns, [0.0, 1.0]).all()


def test_oracle_normalises_to_one_and_random_to_zero_on_navigation():
    bench = metarl_bench.benchmark("MetaRL/Navigation2D-smoke-v0")
    orc = metarl_bench.evaluate(metarl_bench.agent("oracle"), bench, seed=0)
    assert orc.scores["normalized_final"]["value"] == pytest.approx(1.0, abs=1e-5)
    rnd = metarl_bench.evaluate(metarl_bench.agent("random"), bench, seed=0)
    assert abs(rnd.scores["normalized_final"]["value"]) < 4 * rnd.scores["normalized_final"]["se"] + 0.05


def test_evaluation_is_deterministic_per_seed():
    bench = metarl_bench.benchmark("MetaRL/Bandit-k5-n10-smoke-v0")
    a = metarl_bench.evaluate(metarl_bench.agent("thompson"), bench, seed=3)
    b = metarl_bench.evaluate(metarl_bench.agent("thompson"), bench, seed=3)
    c = metarl_bench.evaluate(metarl_bench.agent("thompson"), bench, seed=4)
    np.testing.assert_array_equal(a.returns, b.returns)
    assert not np.array_equal(a.returns, c.returns)


class _Greedy(Adapter):
    episodes_per_stage = 3

    def act(self, obs):
        return np.zeros(len(obs), dtype=np.int64)


class _StageAgent(Agent):
    name = "stage-test"

    def adapter(self, ctx):
        return _Greedy()


def test_stage_size_must_divide_budget():
    bench = metarl_bench.benchmark("MetaRL/Bandit-k5-n10-smoke-v0")
    with pytest.raises(ValueError, match="does not divide"):
        metarl_bench.evaluate(_StageAgent(), bench, seed=0)


class _Hungry(Agent):
    name = "hungry"

    def meta_train(self, ctx):
        venv = ctx.make_vector_env(ctx.train_tasks[:64])
        venv.reset(seed=0)
        while True:
            venv.step(np.zeros(64, dtype=np.int64))

    def adapter(self, ctx):
        return _Greedy()


def test_meta_training_budget_is_enforced_by_the_harness():
    bench = dataclasses.replace(metarl_bench.benchmark("MetaRL/Bandit-k5-n10-smoke-v0"), meta_train_steps=1000)
    with pytest.raises(MetaTrainBudgetExceeded, match="1,000"):
        metarl_bench.evaluate(_Hungry(), bench, seed=0)


def test_agent_that_does_not_support_a_benchmark_is_refused():
    with pytest.raises(ValueError, match="bandit"):
        metarl_bench.evaluate(metarl_bench.agent("ucb1"), "MetaRL/Navigation2D-smoke-v0", seed=0)


def test_record_json_is_exactly_what_is_written(tmp_path):
    rec = metarl_bench.evaluate(
        metarl_bench.agent("greedy"), "MetaRL/Bandit-k5-n10-smoke-v0", seed=0, results=tmp_path
    )
    path = tmp_path / "MetaRL/Bandit-k5-n10-smoke-v0/greedy/seed-0.json"
    assert path.exists()
    assert json.loads(path.read_text()) == json.loads(json.dumps(rec.to_dict()))
    back = load_record(path)
    np.testing.assert_array_equal(back.returns, rec.returns)
    assert back.scores == json.loads(json.dumps(rec.scores))
    d = rec.to_dict()
    for key in ("benchmark", "agent", "seed", "meta_train", "episodes", "curve", "scores", "provenance"):
        assert key in d
    assert {"id", "version", "task_hash"} <= set(d["benchmark"])
    assert d["agent"] == {"name": "greedy", "config": {"epsilon": 0.0}}


@dataclasses.dataclass
class _WrappedConfig(AgentConfig):
    lr: float = 0.1
    mode: str = "auto"  # resolved by configure, as bayes-optimal resolves its method


class _Wrapped(Agent):
    """An unregistered agent whose constructor needs an argument (a model it wraps)."""

    name = "wrapped"
    config_cls = _WrappedConfig

    def __init__(self, policy, **overrides):
        super().__init__(**overrides)
        self.policy = policy

    def configure(self, benchmark):
        cfg = super().configure(benchmark)
        if cfg.mode == "auto":
            cfg.mode = "fixed"
        return cfg

    def adapter(self, ctx):
        return self.policy


class _OneStage(_Greedy):
    episodes_per_stage = 1


def test_an_unregistered_agent_whose_constructor_needs_arguments_gets_its_identity(tmp_path):
    bench = "MetaRL/Bandit-k5-n10-smoke-v0"
    policy = _OneStage()
    rec = metarl_bench.evaluate(_Wrapped(policy), bench, seed=0, results=tmp_path)
    assert rec.variant == "wrapped" and "changed" not in rec.agent  # the derived mode is the default's
    assert rec.agent["config"] == {"lr": 0.1, "mode": "fixed"}
    assert (tmp_path / bench / "wrapped" / "seed-0.json").exists()
    agent = _Wrapped(policy, lr=0.5)
    rec = metarl_bench.evaluate(agent, bench, seed=0, results=tmp_path)
    assert rec.variant == "wrapped@lr=0.5" and rec.agent["changed"] == {"lr": 0.5}
    assert agent.overrides == {"lr": 0.5} and agent.config.lr == 0.5 and agent.policy is policy  # left as it was
    assert (tmp_path / bench / "wrapped@lr=0.5" / "seed-0.json").exists()
