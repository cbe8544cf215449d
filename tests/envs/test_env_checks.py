"""``check_family`` catches broken families and reports them without a traceback; ``perf`` runs."""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import metarl_bench
from metarl_bench.checks import CheckResult, check_family, format_report
from metarl_bench.envs import (
    BanditEnv,
    BanditFamily,
    Navigation2DEnv,
    Navigation2DFamily,
    Navigation2DVectorEnv,
)
from metarl_bench.family import Family
from metarl_bench.perf import env_throughput, harness_throughput, main_perf


class _OffByEpsilonBatch(Navigation2DVectorEnv):
    def _step_envs(self, actions: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        reward, terminated = super()._step_envs(actions, mask)
        return reward + 1e-9, terminated


class _ResamplingEnv(Navigation2DEnv):
    """The classic bug: reset draws a new goal."""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = super().reset(seed=seed, options=options)
        self.set_task(Navigation2DFamily().distribution(self.np_random))
        self._task = self._pending_task
        return self._observe(np.zeros(2)), info


class _UnseededEnv(Navigation2DEnv):
    """Noise from a generator that reset(seed=...) never touches."""

    def __init__(self, expose_task: bool = False) -> None:
        super().__init__(expose_task)
        self._noise = np.random.default_rng()

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward + self._noise.normal(), terminated, truncated, info


class _CrashingEnv(Navigation2DEnv):
    def step(self, action: Any):
        raise RuntimeError("boom")


class _OutOfSpaceBandit(BanditEnv):
    """Observations outside the declared Box(0, 1): Gymnasium's checker warns, the check fails."""

    def _observe(self, raw: np.ndarray) -> np.ndarray:
        return super()._observe(raw + 2.0)


def _family(
    fid: str, env_cls: type[gym.Env], vector_env_cls: type[gym.vector.VectorEnv] | None
) -> type[Family]:
    base = BanditFamily if issubclass(env_cls, BanditEnv) else Navigation2DFamily
    attrs = {"id": fid, "env_cls": env_cls, "vector_env_cls": vector_env_cls}
    return type("BrokenFamily", (base,), attrs)


@pytest.fixture
def register_broken():
    added: list[str] = []

    def register(name: str, env_cls: type[gym.Env], vector_env_cls: type[gym.vector.VectorEnv] | None) -> str:
        fid = f"Test/{name}-v0"
        metarl_bench.register_family(_family(fid, env_cls, vector_env_cls))
        added.append(fid)
        return fid

    yield register
    for fid in added:
        importlib.import_module("metarl_bench.family")._REGISTRY.pop(fid, None)
        gym.registry.pop(fid, None)


def _failed(results: list[CheckResult]) -> dict[str, str]:
    return {r.name: r.message for r in results if not r.passed}


def test_batched_env_off_by_1e_9_fails_only_the_equivalence_checks(register_broken):
    fid = register_broken("OffByEpsilon", Navigation2DEnv, _OffByEpsilonBatch)
    failed = _failed(check_family(fid))
    assert set(failed) == {"batched vs single envs", "batched vs single envs (expose_task=True)"}
    assert "reward differs" in failed["batched vs single envs"]


def test_reset_that_resamples_the_task_is_caught(register_broken):
    fid = register_broken("Resampling", _ResamplingEnv, Navigation2DVectorEnv)
    failed = _failed(check_family(fid))
    assert "reset never resamples the task" in failed
    assert "set_task persists across resets" in failed
    assert "check_env" not in failed


def test_unseeded_noise_fails_seed_determinism(register_broken):
    fid = register_broken("Unseeded", _UnseededEnv, None)
    failed = _failed(check_family(fid))
    assert "seed determinism" in failed
    assert "batched vs single envs" in failed  # two unseeded copies disagree too


def test_crashing_env_is_reported_not_raised(register_broken):
    fid = register_broken("Crashing", _CrashingEnv, Navigation2DVectorEnv)
    results = check_family(fid)
    failed = _failed(results)
    assert "check_env" in failed and "seed determinism" in failed
    assert "RuntimeError: boom" in failed["seed determinism"]
    passed = {r.name for r in results if r.passed}
    assert {"task JSON round trip", "invalid task -> ValueError", "task of another family -> TypeError"} <= passed
    report = format_report(results, title=fid)
    assert report.splitlines()[0] == fid
    assert "FAIL  " in report and "Traceback" not in report


def test_gymnasium_checker_warnings_fail_check_env(register_broken):
    fid = register_broken("OutOfSpace", _OutOfSpaceBandit, None)
    failed = _failed(check_family(fid))
    assert "not within the observation space" in failed["check_env"]
    assert "\x1b[" not in failed["check_env"]  # colour codes stripped


def test_unknown_id_is_an_error_with_close_matches():
    with pytest.raises(metarl_bench.UnknownIdError, match="MetaRL/Navigation2D-v0"):
        check_family("MetaRL/Navigation2D-v9")


def test_format_report_layout():
    text = format_report([CheckResult("a", True, "ok"), CheckResult("bb", False, "bad")])
    assert text == "PASS  a   ok\nFAIL  bb  bad\n1/2 checks passed, 1 failed"


def test_perf_functions_run_and_report_consistent_ratios():
    r = env_throughput("MetaRL/Navigation2D-v0", num_envs=4, steps=20, seconds=0.5)
    assert r["batched_vector_steps"] == r["sync_vector_steps"] == 20
    assert r["ratio"] == pytest.approx(r["batched_steps_per_s"] / r["sync_steps_per_s"])
    h = harness_throughput("MetaRL/Navigation2D-v0", num_envs=4, seconds=0.05)
    assert h["fraction"] == pytest.approx(h["harness_steps_per_s"] / h["raw_steps_per_s"])
    text = main_perf(["MetaRL/Bandit-v0"], num_envs=4, seconds=0.02, harness=False)
    assert "| MetaRL/Bandit-v0 |" in text and ">= 50x" in text
