"""The Stable-Baselines3 baselines through the harness: records, counted meta-training,
reproducibility, what each agent sees, and the errors a user can cause."""

from __future__ import annotations

import numpy as np
import pytest

import metarl_bench
from metarl_bench.trial import TrialInputs, TrialWrapper

TINY = {"total_timesteps": 2048, "n_envs": 4, "n_steps": 128, "n_epochs": 2}


@pytest.mark.parametrize(
    "name, overrides, steps",
    [
        ("ppo", {"episodes_per_stage": 5}, 0),
        ("multitask-ppo", TINY, 2048),
        ("task-ppo", TINY, 2048),
        ("multitask-ppo-finetune", {**TINY, "episodes_per_stage": 5}, 2048),
        ("recurrent-ppo", {**TINY, "trial_episodes": 2}, 2048),
    ],
)
def test_agent_runs_through_the_harness(name: str, overrides: dict, steps: int) -> None:
    rec = metarl_bench.evaluate(metarl_bench.agent(name, **overrides), "MetaRL/Bandit-k5-n10-smoke-v0", seed=3)
    assert rec.agent["name"] == name
    assert rec.meta_train["env_steps"] == steps  # SB3 learned through the harness's counting envs
    returns = np.asarray(rec.returns)
    assert returns.shape == (8, 2, 20) and np.isfinite(returns).all()  # 10 budget + 10 final episodes
    if steps:
        log = rec.extra["train_log"]
        assert log[-1]["env_steps"] == steps and "train_return" in log[-1]


def test_same_seed_same_scores() -> None:
    bench = "MetaRL/CartPoleDynamics-smoke-v0"
    cfg = {**TINY, "episodes_per_stage": 1}
    a = metarl_bench.evaluate(metarl_bench.agent("multitask-ppo-finetune", **cfg), bench, seed=1)
    b = metarl_bench.evaluate(metarl_bench.agent("multitask-ppo-finetune", **cfg), bench, seed=1)
    c = metarl_bench.evaluate(metarl_bench.agent("multitask-ppo-finetune", **cfg), bench, seed=2)
    assert np.array_equal(np.asarray(a.returns), np.asarray(b.returns))
    assert not np.array_equal(np.asarray(a.returns), np.asarray(c.returns))


def test_task_ppo_sees_the_task_and_multitask_ppo_does_not() -> None:
    bench = metarl_bench.benchmark("MetaRL/Bandit-k5-n10-smoke-v0")
    shapes = {}
    for name in ("task-ppo", "multitask-ppo"):
        agent = metarl_bench.agent(name, **TINY)
        metarl_bench.evaluate(agent, bench, seed=0)
        shapes[name] = agent.model.observation_space.shape  # type: ignore[attr-defined]
    assert shapes == {"task-ppo": (6,), "multitask-ppo": (1,)}  # the arms' means follow the dummy observation


def test_ppo_learns_on_each_test_task() -> None:
    """From scratch, 10 PPO updates of 10 pulls: clearly above uniformly random arms."""
    bench = "MetaRL/Bandit-k5-n100-smoke-v0"
    ppo = metarl_bench.evaluate(metarl_bench.agent("ppo"), bench, seed=0).scores["online"]
    rnd = metarl_bench.evaluate(metarl_bench.agent("random"), bench, seed=0).scores["online"]
    # measured: ppo 65.3 against random's ~50 (100 pulls of arms with means ~ U[0, 1])
    assert ppo["value"] > rnd["value"] + 3 * np.hypot(ppo["se"], rnd["se"]), (ppo, rnd)


def test_trial_inputs_equal_the_trial_wrappers_observations() -> None:
    """The recurrent adapter's inputs are built as TrialWrapper builds them in training."""
    fam = metarl_bench.family("MetaRL/Navigation2D-v0")
    task = fam.sample_tasks(1, np.random.default_rng(0))[0]
    env = TrialWrapper(fam.make_env(task), episodes=3)
    inner = fam.make_env(task)  # the same env, stepped and reset by hand as the harness does
    obs, _ = env.reset(seed=5)
    vobs, _ = inner.reset(seed=5)
    inputs = TrialInputs(inner.action_space, 1)
    rng = np.random.default_rng(1)
    boundaries = 0
    trial_over = False
    while not trial_over:  # three episodes: two boundaries inside the trial
        np.testing.assert_allclose(inputs.build(vobs[None])[0], obs, rtol=0, atol=1e-6)
        action = rng.uniform(-0.2, 0.2, size=2).astype(np.float32)  # some beyond the bounds: clipped
        obs, _, trial_over, _, _ = env.step(action)
        vobs, reward, term, trunc, _ = inner.step(action)
        inputs.update(action[None], np.array([reward]), np.array([term or trunc]), np.array([True]))
        if term or trunc:
            boundaries += 1
            vobs, _ = inner.reset()
    assert boundaries == 3


@pytest.mark.parametrize(
    "name, overrides, match",
    [
        ("ppo", {"episodes_per_stage": 3}, "episodes_per_stage=3 does not divide the budget of 10 episodes"),
        ("multitask-ppo", {"total_timesteps": 100, "n_envs": 4, "n_steps": 128}, "less than one rollout"),
        ("recurrent-ppo", {"total_timesteps": 100}, "less than one rollout"),
    ],
)
def test_settings_that_cannot_run_are_refused_before_training(name: str, overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        metarl_bench.evaluate(metarl_bench.agent(name, **overrides), "MetaRL/Bandit-k5-n10-smoke-v0", seed=0)


def test_bad_values_name_the_field() -> None:
    with pytest.raises(ValueError, match="'learning_rate' must be > 0"):
        metarl_bench.agent("ppo", learning_rate=0.0)
    with pytest.raises(ValueError, match="gamma and gae_lambda must be <= 1"):
        metarl_bench.agent("task-ppo", gamma=1.5)
    with pytest.raises(TypeError, match="no config field 'lr'"):
        metarl_bench.agent("recurrent-ppo", lr=1e-3)


def test_sb3_agents_refuse_supervised_benchmarks() -> None:
    with pytest.raises(ValueError, match="SB3 baselines are RL agents"):
        metarl_bench.evaluate(metarl_bench.agent("multitask-ppo"), "MetaRL/Sinusoid-K5-smoke-v0", seed=0)



@pytest.mark.parametrize(
    "name, overrides",
    [("multitask-ppo", TINY), ("task-ppo", TINY), ("multitask-ppo-finetune", {**TINY, "episodes_per_stage": 5}),
     ("recurrent-ppo", {**TINY, "trial_episodes": 2})],
)
def test_saved_agent_gives_the_same_scores_without_training(tmp_path, name: str, overrides: dict) -> None:
    from metarl_bench.saving import load_agent

    bench = "MetaRL/Bandit-k5-n10-smoke-v0"
    first = metarl_bench.evaluate(metarl_bench.agent(name, **overrides), bench, seed=4, save_agent=tmp_path / "a")
    loaded = load_agent(tmp_path / "a")
    again = metarl_bench.evaluate(loaded, bench, seed=4)
    assert again.meta_train["env_steps"] == 0
    assert np.array_equal(np.asarray(first.returns), np.asarray(again.returns))


@pytest.mark.parametrize("name, overrides", [("multitask-ppo", TINY), ("recurrent-ppo", {**TINY, "trial_episodes": 2})])
def test_meta_training_shows_progress_in_env_steps(monkeypatch, name: str, overrides: dict) -> None:
    from metarl_bench import harness

    bars: list[dict] = []

    class Bar:
        def __init__(self, enabled, total, desc, unit="it", leave=False):  # type: ignore[no-untyped-def]
            self.state = {"enabled": enabled, "total": total, "desc": desc, "unit": unit, "n": 0}
            bars.append(self.state)

        def update(self, n=1):  # type: ignore[no-untyped-def]
            self.state["n"] += n

        def __enter__(self):  # type: ignore[no-untyped-def]
            return self

        def __exit__(self, *exc):  # type: ignore[no-untyped-def]
            pass

        def close(self) -> None:
            pass

    monkeypatch.setattr(harness, "progress_bar", Bar)
    metarl_bench.evaluate(metarl_bench.agent(name, **overrides), "MetaRL/Bandit-k5-n10-smoke-v0", seed=0, progress=True)
    (bar,) = [b for b in bars if b["desc"] == f"{name}: meta-training"]
    assert bar == {"enabled": True, "total": 2048, "desc": f"{name}: meta-training", "unit": "step", "n": 2048}
