"""What the RL and supervised harnesses share: progress bars, training logs, provenance and
the record built from per-episode returns.

:mod:`metarl_bench.harness` (the RL track, and ``evaluate`` for both tracks) and
:mod:`metarl_bench.supervised` (the few-shot track) both import from here, so neither
imports the other to build a record.
"""

from __future__ import annotations

import math
import platform
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

import numpy as np

from metarl_bench.agents import Agent, ProgressBar
from metarl_bench.benchmarks import Benchmark
from metarl_bench.results import Record

# --- progress and training logs -------------------------------------------------------------


class _NoBar:
    """A progress bar that shows nothing (progress not asked for)."""

    total: float | None = None

    def update(self, n: float | None = 1) -> bool | None:
        return None

    def set_postfix(self, ordered_dict: Any = None, refresh: bool | None = True, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def progress_bar(enabled: bool | None, total: float | None, desc: str, unit: str = "it", leave: bool = False) -> ProgressBar:
    """A ``tqdm`` bar on stderr when ``enabled`` (``None``: when stderr is a terminal), else one
    that shows nothing; both have ``update``, ``set_postfix``, ``close`` and are context managers."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return cast(ProgressBar, tqdm(total=total, desc=desc, unit=unit, leave=leave, mininterval=0.5))


class TensorBoardLog:
    """Training metrics as TensorBoard scalars, written by Stable-Baselines3's logger.

    Each ``ctx.record(...)`` row becomes one ``dump`` at x = the row's experience so far
    (``x_key``: env steps, or labelled examples on the supervised track); numbers go under
    ``train/<metric>``, the wall time under ``time/wall_seconds``, text is left out. The
    run folder follows SB3's ``<tb_log_name>_<n>`` layout (:func:`tensorboard_run_dir`).
    """

    def __init__(self, folder: str | Path, x_key: str = "env_steps") -> None:
        from stable_baselines3.common.logger import configure

        self.folder = Path(folder)
        self.x_key = x_key
        self.logger = configure(str(self.folder), ["tensorboard"])

    def write(self, row: Mapping[str, Any]) -> None:
        step = int(row.get(self.x_key, 0))
        for key, value in row.items():
            if key == self.x_key or isinstance(value, str) or value is None:
                continue
            if not isinstance(value, (int, float, np.integer, np.floating, np.bool_)):
                continue
            tag = "time/wall_seconds" if key == "wall_seconds" else f"train/{key}"
            self.logger.record(tag, float(value))
        self.logger.dump(step=step)

    def close(self) -> None:
        self.logger.close()


def check_tensorboard() -> None:
    """Raise ``ValueError`` saying how to install TensorBoard when it is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise ValueError(
            "tensorboard=DIR needs the tensorboard package; install it (pip install tensorboard, "
            "or the package's dev extra) or leave tensorboard unset"
        ) from None


def tensorboard_run_dir(root: str | Path, benchmark_id: str, variant: str, seed: int) -> Path:
    """``<root>/<benchmark id>/<variant>_seed<seed>_<n>``: Stable-Baselines3's
    ``<tb_log_name>_<n>`` layout under one folder per benchmark, ``n`` one more than the
    highest run of that name already there (1 for the first)."""
    from stable_baselines3.common.utils import get_latest_run_id

    base = Path(root) / benchmark_id
    name = f"{variant}_seed{seed}"
    return base / f"{name}_{get_latest_run_id(str(base), name) + 1}"


# --- records ---------------------------------------------------------------------------------


def provenance() -> dict[str, Any]:
    import importlib.metadata as md

    versions: dict[str, str | None] = {}
    for pkg in ("metarl-bench", "gymnasium", "numpy", "torch", "scipy", "stable-baselines3", "sb3-contrib"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    import os

    return {
        "packages": versions,
        "git_commit": commit,
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count()},
        "python": platform.python_version(),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def thin_rows(rows: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    if len(rows) <= limit:
        return rows
    idx = np.unique(np.linspace(0, len(rows) - 1, limit).round().astype(int))
    return [rows[i] for i in idx]


def _score(per_task_run: np.ndarray) -> dict[str, float]:
    """Mean and standard error over tasks of a ``(tasks, runs)`` matrix."""
    per_task = per_task_run.mean(axis=1)
    se = float(per_task.std(ddof=1) / math.sqrt(len(per_task))) if len(per_task) > 1 else float("nan")
    return {"value": float(per_task.mean()), "se": se}


def _normalise(bench: Benchmark, which: str, per_task_run: np.ndarray) -> dict[str, Any] | None:
    """The normalised ``which`` score of a ``(tasks, runs)`` matrix: each task's runs
    averaged, normalised by the benchmark's references (per task where it has them, see
    :func:`metarl_bench.stats.normalizer`), then the mean and standard error over tasks."""
    from metarl_bench.stats import normalize, normalizer

    ref = normalizer(bench, which)
    if ref is None or not np.all(np.isfinite(per_task_run)):
        return None
    if ref.kind == "per-task" and np.shape(ref.random) != (per_task_run.shape[0],):
        return None
    per_task = normalize(per_task_run.mean(axis=1), ref.random, ref.oracle)
    return {**_score(per_task[:, None]), "normalization": ref.kind}


def build_record(
    agent: Agent,
    bench: Benchmark,
    seed: int,
    returns: np.ndarray,
    x: np.ndarray,
    phase: list[str],
    meta_train: dict[str, Any],
    evaluation: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Record:
    """Derive the curve and scores from per-episode returns ``(tasks, runs, episodes)``."""
    if not np.all(np.isfinite(returns)):
        raise FloatingPointError(f"{agent.name} on {bench.id}: non-finite episode returns; the agent diverged")
    budget = np.array([p == "budget" for p in phase])
    xs = sorted(set(x.tolist()))
    curve: dict[str, list[float]] = {"x": [], "mean": [], "se": []}
    for xv in xs:
        cols = x == xv
        sc = _score(returns[:, :, cols].mean(axis=2))
        curve["x"].append(float(xv))
        curve["mean"].append(sc["value"])
        curve["se"].append(sc["se"])
    online = _score(returns[:, :, budget].sum(axis=2))
    final = _score(returns[:, :, ~budget].mean(axis=2)) if (~budget).any() else {"value": float("nan"), "se": float("nan")}
    refs = bench.references
    scores: dict[str, Any] = {
        "online": online,
        "final": final,
        "normalized_online": _normalise(bench, "online", returns[:, :, budget].sum(axis=2)),
        "normalized_final": _normalise(bench, "final", returns[:, :, ~budget].mean(axis=2)) if (~budget).any() else None,
        "references": refs,
    }
    return Record(
        benchmark={
            "id": bench.id,
            "version": bench.version,
            "task_hash": bench.task_hash,
            "tier": bench.tier,
            "headline": bench.headline,
            "lower_is_better": bench.lower_is_better,
            "n_test": len(bench.test_tasks),
            "protocol": bench.summary()["protocol"],
        },
        agent={"name": agent.name, "config": agent.resolved_config()},
        seed=int(seed),
        meta_train=meta_train,
        returns=returns,
        x=np.asarray(x, dtype=np.float64),
        phase=list(phase),
        curve=curve,
        scores=scores,
        provenance=provenance(),
        evaluation=evaluation,
        extra=extra or {},
    )
