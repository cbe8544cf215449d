"""Scores and training throughput of ``rl2`` with its tuned defaults (``metarl-bench perf rl2``).

Trains RL² on each benchmark and seed through the harness and reports the online and
final scores with their standard errors and the env steps per second of meta-training;
the figures in ``baselines/configs/rl2.yaml`` come from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import metarl_bench

DEFAULT_BENCH = ("MetaRL/Bandit-k5-n10-v0", "MetaRL/Bandit-k10-n10-v0")


def rl2_bench(
    benchmarks: Sequence[str] = DEFAULT_BENCH,
    seeds: Sequence[int] = (0,),
    results: str | Path | None = None,
    verbose: bool = True,
    progress: bool = False,
    **overrides: Any,
) -> list[dict[str, Any]]:
    """Train RL² with its tuned defaults on each benchmark and seed; report scores and throughput.

    Returns one row per run: benchmark, seed, online and final scores (mean and standard
    error over test tasks), meta-training wall time, env steps and env steps per second.
    With ``results`` set, each record is written there too; ``progress`` shows training
    progress bars. Training throughput counts every env step of meta-training (sub-envs that
    idle after an early termination included), over its wall time.

    Example (the figures of ``baselines/configs/rl2.yaml``)::

        python -c "from metarl_bench.perf.rl2 import rl2_bench; rl2_bench(seeds=(0, 1, 2))"
    """
    rows = []
    for bid in benchmarks:
        for seed in seeds:
            agent = metarl_bench.agent("rl2", **overrides)
            rec = metarl_bench.evaluate(agent, bid, seed=seed, results=results, progress=progress)
            steps, wall = rec.meta_train["env_steps"], rec.meta_train["wall_seconds"]
            row = {
                "benchmark": bid,
                "seed": seed,
                "online": rec.scores["online"]["value"],
                "online_se": rec.scores["online"]["se"],
                "final": rec.scores["final"]["value"],
                "final_se": rec.scores["final"]["se"],
                "train_wall_s": wall,
                "train_env_steps": steps,
                "env_steps_per_s": steps / wall if wall else float("nan"),
                "threads": agent.config.num_threads,  # type: ignore[attr-defined]
            }
            rows.append(row)
            if verbose:
                print(
                    f"{bid:32s} seed {seed}: online {row['online']:.3f} ± {row['online_se']:.3f}  "
                    f"final {row['final']:.3f} ± {row['final_se']:.3f}  train {wall:.0f} s, "
                    f"{steps:,} env steps, {row['env_steps_per_s']:,.0f} steps/s",
                    flush=True,
                )
    return rows
