"""``metarl-bench perf``: throughput of the native batched envs and of the harness.

Two measurements, each time-boxed to a few seconds and taken in one process run, so the
numbers they are divided by come from the same machine state:

- :func:`env_throughput`: environment steps per second of a family's native batched env
  against Gymnasium's ``SyncVectorEnv`` over the same single envs (same tasks, the same
  pre-generated random actions), and their ratio.
- :func:`harness_throughput`: steps per second of a uniformly random agent driven by the
  evaluation harness (``metarl_bench.harness.run_chunk``) as a fraction of the raw
  batched env stepped with the same kind of random actions.

Targets: a ratio of at least 50x for the bandit, tabular MDP and navigation; at least 2x for
the MuJoCo locomotion families, whose batched env runs 64 sub-envs (a family sets
``perf_num_envs`` and ``perf_target_ratio``), with the harness keeping at least 90% of the
batched env's rate on each of them.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from metarl_bench.agents import Adapter
from metarl_bench.baselines.shared import sample_actions
from metarl_bench.family import family, family_ids, family_spec

TARGET_RATIO = 50.0
TARGET_FAMILIES = ("MetaRL/Bandit-v0", "MetaRL/TabularMDP-v0", "MetaRL/Navigation2D-v0")
TARGET_HARNESS_FRACTION = 0.9  # for families with their own perf target (the MuJoCo ones)


def _family_target(fid: str) -> float | None:
    """The ratio a family's batched env must reach over SyncVectorEnv, or None."""
    if fid in TARGET_FAMILIES:
        return TARGET_RATIO
    target = family_spec(fid).family_cls.perf_target_ratio
    return None if target is None else float(target)


def _family_num_envs(fid: str, default: int) -> int:
    """Sub-envs to time for ``fid``: its ``perf_num_envs`` (costly physics: a few) or ``default``."""
    return int(family_spec(fid).family_cls.perf_num_envs or default)


def _time_steps(venv: gym.vector.VectorEnv, actions: Sequence[np.ndarray], seconds: float, max_steps: int) -> dict[str, float]:
    """Step ``venv`` cycling through ``actions`` for about ``seconds`` (or ``max_steps`` vector steps).

    Counts sub-env steps that advance an episode: the autoreset step after an episode ends
    (Gymnasium's NEXT_STEP mode) ignores its action, so it is not counted.
    """
    venv.reset(seed=0)
    for a in actions[:3]:  # warm-up: first-call allocations are not throughput
        venv.step(a)
    venv.reset(seed=0)
    k = len(actions)
    steps = live = 0
    resetting = np.zeros(venv.num_envs, dtype=bool)
    start = time.perf_counter()
    elapsed = 0.0
    while steps < max_steps and elapsed < seconds:
        _, _, terminated, truncated, _ = venv.step(actions[steps % k])
        live += venv.num_envs - int(np.count_nonzero(resetting))
        resetting = np.logical_or(terminated, truncated)
        steps += 1
        elapsed = time.perf_counter() - start
    return {"steps_per_s": live / elapsed, "vector_steps": steps, "seconds": elapsed}


def env_throughput(
    family_id: str,
    num_envs: int = 1024,
    steps: int = 100_000,
    seed: int = 0,
    seconds: float = 2.0,
    rounds: int = 3,
) -> dict[str, Any]:
    """Steps per second of ``family_id``'s batched env vs ``SyncVectorEnv`` over the same single envs.

    Both run ``num_envs`` sub-envs on the same tasks (sampled with ``seed``) and the same
    64 pre-generated random action batches. The two are timed in ``rounds`` alternating
    rounds of about ``seconds / rounds`` each (at most ``steps`` vector steps) and the best
    round of each is kept, so a burst of load on a shared machine does not decide the
    ratio. Returns ``batched_steps_per_s``, ``sync_steps_per_s`` (sub-env steps per
    second) and ``ratio`` (batched / sync).
    """
    fam = family(family_id)
    if fam.kind != "rl":
        raise ValueError(f"{family_id} is a {fam.kind} family; perf measures RL environment families only")
    rng = np.random.default_rng(seed)
    tasks = fam.sample_tasks(num_envs, rng)
    batched = fam.make_vector_env(tasks)
    sync = gym.vector.SyncVectorEnv([lambda t=t: fam.make_env(t) for t in tasks])  # type: ignore[misc]
    actions = [sample_actions(batched.single_action_space, num_envs, rng) for _ in range(64)]
    fast: list[dict[str, float]] = []
    slow: list[dict[str, float]] = []
    for _ in range(rounds):
        fast.append(_time_steps(batched, actions, seconds / rounds, steps))
        slow.append(_time_steps(sync, actions, seconds / rounds, steps))
    batched.close()
    sync.close()
    best_fast = max(fast, key=lambda r: r["steps_per_s"])
    best_slow = max(slow, key=lambda r: r["steps_per_s"])
    return {
        "family": family_id,
        "num_envs": num_envs,
        "native": fam.batched,
        "batched_steps_per_s": best_fast["steps_per_s"],
        "sync_steps_per_s": best_slow["steps_per_s"],
        "ratio": best_fast["steps_per_s"] / best_slow["steps_per_s"],
        "batched_vector_steps": best_fast["vector_steps"],
        "sync_vector_steps": best_slow["vector_steps"],
    }


class _UniformAdapter(Adapter):
    """Uniformly random actions (the harness's cheapest possible agent)."""

    def __init__(self, space: gym.Space, seed: int) -> None:
        self.space = space
        self.rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return sample_actions(self.space, len(obs), self.rng)


def harness_throughput(
    family_id: str = "MetaRL/Navigation2D-v0",
    num_envs: int = 1024,
    seed: int = 0,
    seconds: float = 3.0,
    rounds: int = 3,
) -> dict[str, Any]:
    """Steps per second of a random agent through the harness, as a fraction of the raw batched env.

    The raw loop steps the same batched env with random actions drawn per step, so the
    fraction isolates the harness's own work: building the chunk's batched env, a reset
    per stage, transitions, masks and returns. Both count only steps that advance an
    episode. Raw and harness runs alternate for ``rounds`` rounds; the best of each is kept.
    """
    from metarl_bench.harness import run_chunk

    fam = family(family_id)
    tasks = fam.sample_tasks(num_envs, np.random.default_rng(seed))
    venv = fam.make_vector_env(tasks)
    space = venv.single_action_space
    budget = seconds / (2 * rounds)
    horizon = fam.horizon or 100
    raw_rates, harness_rates = [], []
    for r in range(rounds):
        agent = _UniformAdapter(space, seed + r)
        obs, _ = venv.reset(seed=seed)
        live = 0
        resetting = np.zeros(num_envs, dtype=bool)
        start = time.perf_counter()
        while time.perf_counter() - start < budget:
            obs, _, terminated, truncated, _ = venv.step(agent.act(obs))
            live += num_envs - int(np.count_nonzero(resetting))  # autoreset steps advance no episode
            resetting = np.logical_or(terminated, truncated)
        raw_rates.append(live / (time.perf_counter() - start))

        stages = max(1, int(raw_rates[-1] * budget / (num_envs * horizon)))
        start = time.perf_counter()
        _, env_steps = run_chunk(_UniformAdapter(space, seed + r), fam, tasks, 1, 1, stages, 0, seed, False, None)
        harness_rates.append(env_steps / (time.perf_counter() - start))
    venv.close()
    raw, harness = max(raw_rates), max(harness_rates)
    return {
        "family": family_id,
        "num_envs": num_envs,
        "raw_steps_per_s": raw,
        "harness_steps_per_s": harness,
        "fraction": harness / raw,
    }


def _default_families() -> list[str]:
    """Every RL family with a native batched env, registered without fixed kwargs (aliases such
    as Bandit-k10 are skipped; so are the families batched by SyncVectorEnv itself, such as
    Meta-World's, whose ratio would be 1: name them with ``--families`` to time them anyway)."""
    out = []
    for fid in family_ids():
        spec = family_spec(fid)
        if spec.family_cls.kind == "rl" and not spec.kwargs and spec.family_cls.vector_env_cls is not None:
            out.append(fid)
    return out


def _fmt(rate: float) -> str:
    if rate >= 1e6:
        return f"{rate / 1e6:.2f}M"
    if rate >= 1e3:
        return f"{rate / 1e3:.1f}k"
    return f"{rate:.0f}"


def main_perf(
    families: Sequence[str] | None = None,
    num_envs: int = 1024,
    seconds: float = 2.0,
    harness: bool = True,
    progress: bool | None = None,
) -> str:
    """Measure every family in ``families`` (default: every RL family) and return the table as
    text. With ``progress`` (``None``: when stderr is a terminal), a progress bar on stderr."""
    from metarl_bench.harness import progress_bar

    ids = list(families) if families else _default_families()
    bar = progress_bar(progress, len(ids) + int(harness), "perf", unit="measurement")
    lines = [
        f"metarl-bench perf: {num_envs} sub-envs, random actions, ~{seconds:g} s per measurement; "
        f"python {platform.python_version()}, numpy {np.__version__}, gymnasium {gym.__version__}, "
        f"{os.cpu_count()} CPUs",
        "",
        "| family | batched steps/s | SyncVectorEnv steps/s | ratio | target |",
        "|---|---:|---:|---:|---|",
    ]
    for fid in ids:
        bar.set_postfix(family=fid)
        n = _family_num_envs(fid, num_envs)
        r = env_throughput(fid, num_envs=n, seconds=seconds)
        bar.update(1)
        goal = _family_target(fid)
        target = "-" if goal is None else f">= {goal:g}x: {'met' if r['ratio'] >= goal else 'MISSED'}"
        kind = "" if r["native"] else " (no native batch)"
        size = "" if n == num_envs else f" ({n} sub-envs)"
        lines.append(
            f"| {fid}{kind}{size} | {_fmt(r['batched_steps_per_s'])} | {_fmt(r['sync_steps_per_s'])} | "
            f"{r['ratio']:.1f}x | {target} |"
        )
    if harness:
        nav = "MetaRL/Navigation2D-v0"
        # the navigation family, and every family with its own target (the MuJoCo ones)
        harness_ids = [nav] if nav in family_ids() else ids[:1]
        harness_ids += [f for f in ids if f not in TARGET_FAMILIES and _family_target(f) is not None]
        lines.append("")
        for fid in harness_ids:
            bar.set_postfix(family=f"harness on {fid}")
            n = _family_num_envs(fid, num_envs)
            h = harness_throughput(fid, num_envs=n, seconds=1.5 * seconds)
            verdict = ""
            if fid not in TARGET_FAMILIES:
                ok = h["fraction"] >= TARGET_HARNESS_FRACTION
                verdict = f"; target >= {100 * TARGET_HARNESS_FRACTION:.0f}%: {'met' if ok else 'MISSED'}"
            lines.append(
                f"harness: a random agent through the evaluation harness on {fid} runs "
                f"{_fmt(h['harness_steps_per_s'])} steps/s = {100 * h['fraction']:.0f}% of the raw batched env "
                f"({_fmt(h['raw_steps_per_s'])} steps/s, {n} sub-envs){verdict}"
            )
        bar.update(1)
    bar.close()
    return "\n".join(lines)

