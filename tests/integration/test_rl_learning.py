"""RL learners end to end: meta-training then evaluation through the harness, and the
learning checks (slow: run by ``make bench``) that they learn what their papers claim."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import metarl_bench
from metarl_bench.harness import MetaTrainContext
from metarl_bench.results import load_record, record_path
from metarl_bench.trial import TrialWrapper

BANDIT = "MetaRL/Bandit-k5-n10-smoke-v0"
REPO = Path(__file__).resolve().parents[2]


def _bench(k: int = 2, n: int = 10, n_test: int = 8, runs: int = 2, **kw):
    """A small bandit benchmark built from the k5-n10 smoke one (k arms, trials of n pulls)."""
    base = metarl_bench.benchmark(BANDIT)
    proto = dataclasses.replace(base.protocol, budget_episodes=n, runs_per_task=runs)
    return dataclasses.replace(
        base, id=f"Test/Bandit-k{k}-n{n}-v0", family_kwargs={"k": k}, protocol=proto, n_test=n_test, **kw
    )


# --- gradient meta-RL -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["maml-trpo", "reptile"])
def test_harness_runs_the_adaptation_stages(name):
    record = metarl_bench.evaluate(metarl_bench.agent(name, iterations=1), metarl_bench.benchmark(BANDIT), seed=0)
    assert record.curve["x"] == [0.0, 10.0]  # one stage of fast_batch_size=10 episodes, then the final episodes
    assert np.isfinite(record.returns).all()


@pytest.mark.slow
def test_maml_trpo_learns_navigation_in_a_few_meta_batches():
    bench = metarl_bench.benchmark("MetaRL/Navigation2D-v0")
    agent = metarl_bench.agent("maml-trpo", iterations=6, meta_batch_size=10)
    agent.configure(bench)
    ctx = MetaTrainContext(bench, seed=0)
    agent.meta_train(ctx)
    first, last = ctx.log[0]["valid_return"], ctx.log[-1]["valid_return"]
    # the initial policy (std 1 against actions clipped to 0.1) wanders: about -105
    assert last > first + 25, (first, last)
    assert all(r["ls_accepted"] for r in ctx.log)


@pytest.mark.slow
def test_maml_trpo_adapts_on_bandits():
    bench = metarl_bench.benchmark("MetaRL/Bandit-k5-n10-v0")
    agent = metarl_bench.agent("maml-trpo", iterations=60)
    agent.configure(bench)
    ctx = MetaTrainContext(bench, seed=0)
    agent.meta_train(ctx)
    late = np.mean([r["valid_return"] - r["train_return"] for r in ctx.log[-20:]])
    assert late > 0.0  # one inner step improves the pull's expected reward


# --- RL² and the trial wrapper --------------------------------------------------------------------

BAYES = {"MetaRL/Bandit-k5-n10-v0": 6.660, "MetaRL/Bandit-k10-n10-v0": 6.714}


@pytest.mark.slow
def test_sb3_ppo_trains_on_the_trial_wrapper():
    from stable_baselines3 import PPO

    fam = metarl_bench.family("MetaRL/Bandit-v0", k=2)
    tasks = fam.sample_tasks(50, np.random.default_rng(0))
    env = TrialWrapper(gym.make("MetaRL/Bandit-v0", k=2), episodes=10, tasks=tasks)
    model = PPO("MlpPolicy", env, n_steps=100, batch_size=50, n_epochs=2, seed=0, device="cpu")
    model.learn(300)
    assert model.num_timesteps >= 300
    obs, _ = env.reset(seed=1)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(int(action))


@pytest.mark.slow
def test_learns_a_two_armed_bandit():
    bench = _bench(k=2, n=10, n_test=500, runs=4, n_train=2000, meta_train_steps=2_000_000)
    # the k5-n10 recipe of baselines/configs/rl2.yaml, for 60 updates (1.2M env steps)
    agent = metarl_bench.agent(
        "rl2", num_trials=2048, train_env_steps=2048 * 10 * 60, learning_rate=3e-3, ent_coef=0.003
    )
    rec = metarl_bench.evaluate(agent, bench, seed=0)
    random_online = rec.scores["references"]["random"]["online"]
    online = rec.scores["online"]
    # random play earns ~5 and always pulling the better arm ~6.7 (E[max of 2 uniforms] = 2/3)
    assert online["value"] > random_online + 0.6, (online, random_online)
    log = rec.extra["train_log"]
    assert log[-1]["trial_return"] > log[0]["trial_return"] + 0.5


@pytest.mark.slow
def test_no_bandit_score_beats_bayes_optimal():
    """Nothing may beat the Bayes-optimal value beyond noise: if it does, the task leaks."""
    scored = []
    bench = metarl_bench.benchmark("MetaRL/Bandit-k5-n10-v0")
    rec = metarl_bench.evaluate(metarl_bench.agent("rl2", train_env_steps=1_000_000), bench, seed=0)
    scored.append((bench.id, rec.scores["online"]))
    root = REPO / "results"
    for bid in BAYES:  # the committed records too
        for path in sorted(record_path(root, bid, "rl2", 0).parent.glob("seed-*.json")):
            scored.append((bid, load_record(path).scores["online"]))
    for bid, score in scored:
        assert score["value"] <= BAYES[bid] + 3 * score["se"], (bid, score)
