"""``make bench``: the quick benchmark, its records, the leaderboard and plots.

1. Every reference agent on every RL benchmark that it supports, 3 seeds,
   into ``results/`` (resumable: records already there for the current task lists are kept).
2. Short versions of the learners (a few minutes in all) into ``results-short/``, a
   check that each still learns, printed beside the committed full-run records.
3. ``results/LEADERBOARD.md``, ``results/index.html`` and the plots, regenerated from
   the records.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

REFERENCE_AGENTS = ["random", "oracle", "bayes-optimal", "gittins", "ucb1", "thompson", "greedy", "epsilon-greedy", "psrl"]
RL_BENCHMARKS = [
    "MetaRL/Bandit-k5-n10-v0",
    "MetaRL/Bandit-k10-n10-v0",
    "MetaRL/Bandit-k5-n100-v0",
    "MetaRL/Bandit-k10-n100-v0",
    "MetaRL/TabularMDP-n10-v0",
    "MetaRL/TabularMDP-n25-v0",
    "MetaRL/Navigation2D-v0",
    "MetaRL/CartPoleDynamics-v0",
    "MetaRL/PendulumDynamics-v0",
]
SEEDS = [0, 1, 2]


@dataclass
class ShortRun:
    """A learner run cut short for ``make bench`` (overrides shrink its training)."""

    benchmark: str
    agent: str
    overrides: dict[str, Any] = field(default_factory=dict)


# Short learner runs (about a minute each on 2 cores): each checks that the learner still
# learns; the committed full runs in results/ are the numbers to quote.
SHORT_LEARNERS: list[ShortRun] = [
    ShortRun("MetaRL/Sinusoid-K10-v0", "maml", {"iterations": 2000}),
    ShortRun("MetaRL/Bandit-k5-n10-v0", "rl2", {"train_env_steps": 1_000_000}),
    # maml-trpo costs ~5 CPU-s per 20-task meta-batch: the short run uses the smoke benchmark
    ShortRun("MetaRL/Navigation2D-smoke-v0", "maml-trpo", {"iterations": 10, "meta_batch_size": 10}),
    # the SB3 baselines: PPO with the task in view balances every pole within 30k steps
    ShortRun("MetaRL/CartPoleDynamics-v0", "task-ppo", {"total_timesteps": 30_000}),
]


def _smoke(bid: str) -> str:
    if "-smoke-v" in bid:
        return bid
    return bid[: bid.rindex("-v")] + "-smoke" + bid[bid.rindex("-v") :]


def run_bench(tier: str = "quick", results: str = "results", workers: int = 2, short_results: str | None = None) -> int:
    from metarl_bench.leaderboard import write_leaderboard
    from metarl_bench.sweep import plan, run_sweep

    t0 = time.perf_counter()
    benchmarks = RL_BENCHMARKS if tier == "quick" else [_smoke(b) for b in RL_BENCHMARKS]
    jobs, _ = plan(benchmarks, REFERENCE_AGENTS, SEEDS)
    print(f"[bench] {len(jobs)} reference jobs ({len(REFERENCE_AGENTS)} agents x {len(benchmarks)} benchmarks x {len(SEEDS)} seeds)")

    def report(job: Any, path: str | None, err: BaseException | None) -> None:
        print(f"  {'done' if err is None else 'FAILED'}: {job}" + (f": {err}" if err else ""), flush=True)

    _, failed = run_sweep(jobs, results, workers=workers, on_done=report)
    short_root = short_results or (results.rstrip("/") + "-short")
    for run in SHORT_LEARNERS:
        bid = run.benchmark if tier == "quick" else _smoke(run.benchmark)
        import metarl_bench

        t = time.perf_counter()
        overrides = run.overrides if tier == "quick" else {}  # smoke ids have tiny tuned configs
        try:
            rec = metarl_bench.evaluate(metarl_bench.agent(run.agent, **overrides), bid, seed=0, results=short_root)
        except Exception as exc:  # noqa: BLE001 - reported, and the bench fails at the end
            print(f"  FAILED short run {run.agent} on {bid}: {type(exc).__name__}: {exc}")
            failed.append((run, exc))  # type: ignore[arg-type]
            continue
        head = rec.benchmark["headline"]
        print(f"  short run {run.agent} on {bid}: {head} {rec.scores[head]['value']:.3f} "
              f"+- {rec.scores[head]['se']:.3f} ({time.perf_counter() - t:.0f} s)")
    if SHORT_LEARNERS:
        write_leaderboard(short_root, allow_errors=True)
        print(f"[bench] short learner runs: {short_root}/LEADERBOARD.md")
    for p in write_leaderboard(results):
        print(f"[bench] wrote {p}")
    print(f"[bench] finished in {time.perf_counter() - t0:.0f} s, {len(failed)} failures")
    return 1 if failed else 0
