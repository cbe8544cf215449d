"""Plots of results records (matplotlib, Agg backend; every figure saved as PNG and SVG).

- :func:`plot_curves`: adaptation curves, mean return per episode against the experience
  the run had in the test task, with 95% confidence bands and dashed random / oracle
  reference lines.
- :func:`plot_profiles`: performance profiles (Agarwal et al. 2021), the fraction of
  runs x tasks scoring above each threshold, with pointwise bootstrap 95% bands.

Both take ``records_by_agent``: variant name -> the records (one per seed) of that variant
on one benchmark, and write ``<out_dir>/<benchmark id with "/" as "__">.<kind>.{png,svg}``.
References, headline and direction come from the registered benchmark (``bench``, by
default :func:`metarl_bench.benchmark` of the records' id), never from the records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from metarl_bench import stats  # noqa: E402
from metarl_bench.results import Record  # noqa: E402

Z95 = 1.959963984540054
FORMATS = ("png", "svg")
_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">", "*")
_RANDOM_STYLE: dict[str, Any] = {"color": "0.45", "linestyle": "--", "linewidth": 1.3}
_ORACLE_STYLE: dict[str, Any] = {"color": "black", "linestyle": "--", "linewidth": 1.3}


def safe_name(benchmark_id: str) -> str:
    """A file-name stem for ``benchmark_id``: ``MetaRL/Bandit-k5-n10-v0`` -> ``MetaRL__Bandit-k5-n10-v0``."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in benchmark_id.replace("/", "__"))


def plot_path(out_dir: str | Path, benchmark_id: str, kind: str, fmt: str = "png") -> Path:
    """Where :func:`plot_curves` (``kind="curves"``) or :func:`plot_profiles` (``"profiles"``) writes."""
    return Path(out_dir) / f"{safe_name(benchmark_id)}.{kind}.{fmt}"


def pooled_curve(records: Sequence[Record]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Adaptation curve of the seeds of one agent: ``(x, mean, se)``, each ``(points,)``.

    Pools the seeds' returns ``(tasks, runs, episodes)`` along runs, then as the harness
    does for one seed (it reproduces ``record.curve`` exactly for a single record): for
    each experience value x, average each task's episodes at x over its runs, then take
    the mean and standard error over tasks.
    """
    if not records:
        raise ValueError("pooled_curve needs at least one record")
    x = records[0].x
    for r in records[1:]:
        if r.x.shape != x.shape or not np.array_equal(r.x, x) or r.returns.shape[0] != records[0].returns.shape[0]:
            raise ValueError(
                f"{r.benchmark_id}/{r.agent_name}: seeds {records[0].seed} and {r.seed} have different "
                f"experience axes or task counts; re-run them with the same agent configuration"
            )
    returns = np.concatenate([r.returns for r in records], axis=1)
    xs = np.unique(x)
    mean, se = np.empty(xs.size), np.empty(xs.size)
    for i, xv in enumerate(xs):
        mean[i], se[i] = stats.mean_and_se(returns[:, :, x == xv].mean(axis=2).T)
    return xs, mean, se


def _final_mask(record: Record, x: np.ndarray) -> np.ndarray:
    """Which curve points (of ``x``, as from :func:`pooled_curve`) are final-evaluation points."""
    final_x = {float(v) for v, p in zip(record.x, record.phase) if p == "final"}
    budget_x = {float(v) for v, p in zip(record.x, record.phase) if p == "budget"}
    return np.array([float(v) in final_x and float(v) not in budget_x for v in x], dtype=bool)


def axis_labels(record: Record, lower_is_better: bool | None = None) -> tuple[str, str]:
    """``(x label, y label)`` for a benchmark's curves: ``record.extra["x_label"]`` /
    ``["y_label"]`` where the harness stored them, else by kind (lower-is-better means
    supervised: inner gradient steps and query MSE)."""
    extra = record.extra or {}
    lower = record.benchmark.get("lower_is_better") if lower_is_better is None else lower_is_better
    if lower:
        default = ("inner gradient steps", "query MSE")
    else:
        default = ("episodes of experience in the test task", "return per episode")
    return str(extra.get("x_label") or default[0]), str(extra.get("y_label") or default[1])


def _bench_of(records_by_agent: Mapping[str, Sequence[Record]], bench: Any) -> Any:
    if bench is not None:
        return bench
    from metarl_bench.benchmarks import benchmark

    first = next(r for recs in records_by_agent.values() for r in recs)
    return benchmark(first.benchmark_id)


def _references(bench: Any) -> tuple[float | None, float | None]:
    # The curve is per episode, so the per-episode ("final") benchmark-level references apply
    # (the mean over test tasks where the benchmark has per-task ones).
    refs = bench.references
    rand, orac = refs["random"]["final"], refs["oracle"]["final"]
    return (None if rand is None else float(rand)), (None if orac is None else float(orac))


def _legend(ax: plt.Axes, n_entries: int) -> None:
    # Outside the axes on the right so it never hides a curve; bbox_inches="tight" keeps it.
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize=9,
              ncol=1 if n_entries <= 16 else 2)


def _save(
    fig: plt.Figure, out_dir: str | Path, benchmark_id: str, kind: str, formats: Sequence[str] = FORMATS
) -> list[Path]:
    paths = []
    for fmt in formats:
        path = plot_path(out_dir, benchmark_id, kind, fmt)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Fixed metadata so the same records give byte-identical files.
        meta = {"Software": None} if fmt == "png" else {"Date": None, "Creator": None}
        # Fixed SVG ids and text kept as text (searchable, smaller) rather than glyph paths.
        with plt.rc_context({"svg.hashsalt": "metarl-bench", "svg.fonttype": "none"}):
            fig.savefig(path, bbox_inches="tight", dpi=130, metadata=meta)
        paths.append(path)
    plt.close(fig)
    return paths


def _ordered(records_by_agent: Mapping[str, Sequence[Record]]) -> list[tuple[str, list[Record]]]:
    items = [(a, sorted(recs, key=lambda r: r.seed)) for a, recs in records_by_agent.items() if recs]
    if not items:
        raise ValueError("nothing to plot: no records given")
    return sorted(items)


def _styles(agents: Sequence[str]) -> dict[str, tuple[tuple[float, ...], str]]:
    """Colour and marker per agent, by alphabetical order, so both plots of a benchmark agree."""
    names = sorted(agents)
    cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {a: (tuple(cmap(i % cmap.N)), _MARKERS[i % len(_MARKERS)]) for i, a in enumerate(names)}


def _label(agent: str, seeds: int) -> str:
    return f"{agent} ({seeds} seed{'s' if seeds != 1 else ''})"


def _title(benchmark_id: str, records: Sequence[Record]) -> str:
    b = records[0].benchmark
    proto = b.get("protocol") or {}
    parts = [benchmark_id]
    if b.get("n_test"):
        parts.append(f"{b['n_test']} test tasks")
    if proto.get("runs_per_task"):
        parts.append(f"{proto['runs_per_task']} runs/task/seed")
    return " · ".join(parts)


def plot_curves(
    records_by_agent: Mapping[str, Sequence[Record]],
    benchmark_id: str,
    out_dir: str | Path,
    bench: Any = None,
    formats: Sequence[str] = FORMATS,
) -> list[Path]:
    """Adaptation curves of every agent on ``benchmark_id``; returns the paths written,
    one per format in ``formats`` (PNG and SVG by default).

    Each agent's line is the mean return per episode against x (episodes of experience
    before it; the point at the budget is the final evaluation), pooling its seeds and
    the benchmark's test tasks (:func:`pooled_curve`); the band is mean ± 1.96 standard
    errors over tasks. Dashed lines mark the benchmark's random and oracle per-episode
    references where they exist.
    """
    items = _ordered(records_by_agent)
    bench = _bench_of(records_by_agent, bench)
    first = items[0][1][0]
    lower = bool(bench.lower_is_better)
    curves = {agent: pooled_curve(recs) for agent, recs in items}
    # Legend order = ranking by the final point, so it reads top to bottom like the plot.
    items.sort(key=lambda it: (curves[it[0]][1][-1] if lower else -curves[it[0]][1][-1], it[0]))
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    style = _styles([a for a, _ in items])
    span = max(float(np.ptp(c[0])) for c in curves.values()) or 1.0
    dodge = 0.006 * span if len(items) > 1 else 0.0
    for i, (agent, recs) in enumerate(items):
        x, mean, se = curves[agent]
        color, marker = style[agent]
        half = np.nan_to_num(Z95 * se)
        final = _final_mask(recs[0], x)
        b = ~final
        # Solid over the budget, a dotted step to the final evaluation: a straight segment
        # across one long stage (MAML's 20 episodes) would suggest gradual improvement.
        ax.plot(x[b], mean[b], color=color, linewidth=1.8, marker=marker if b.sum() <= 25 else None,
                markersize=4, label=_label(agent, len(recs)))
        if b.sum() > 1:
            ax.fill_between(x[b], (mean - half)[b], (mean + half)[b], color=color, alpha=0.2, linewidth=0)
        else:  # one adaptation stage spans the whole budget: no band to draw, so a bar
            ax.errorbar(x[b], mean[b], yerr=half[b], color=color, capsize=3, linewidth=1.2, linestyle="none")
        if final.any():
            # Final points of several agents share one x: spread them a little so bars stay legible.
            xf = x[final] + dodge * (i - (len(items) - 1) / 2)
            j = np.flatnonzero(b)[-1:].tolist()
            ax.plot(np.concatenate([x[j], xf]), np.concatenate([mean[j], mean[final]]), color=color,
                    linewidth=1.2, linestyle=":")
            ax.errorbar(xf, mean[final], yerr=half[final], color=color, marker=marker, markersize=6,
                        capsize=3, linewidth=1.2, linestyle="none")
    rand, orac = _references(bench)
    if rand is not None:
        ax.axhline(rand, label="random (reference)", **_RANDOM_STYLE)
    if orac is not None:
        ax.axhline(orac, label="oracle (reference)", **_ORACLE_STYLE)
    xlabel, ylabel = axis_labels(first, lower)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{ylabel} (lower is better)" if lower else ylabel)
    ax.set_title(_title(benchmark_id, items[0][1]), fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.02)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    ax.text(0.0, -0.16, "bands and bars: 95% CI over test tasks (seeds and runs pooled); "
            "point after the dotted step: final evaluation, no further adaptation",
            transform=ax.transAxes, fontsize=7.5, color="0.35", va="top")
    _legend(ax, len(items) + 2)
    return _save(fig, out_dir, benchmark_id, "curves", formats)


def profile_taus(matrices: Sequence[np.ndarray], points: int = 101) -> np.ndarray:
    """``(points,)`` thresholds spanning every score in ``matrices`` (each ``(runs, tasks)``)."""
    lo = min(float(np.min(m)) for m in matrices)
    hi = max(float(np.max(m)) for m in matrices)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.02 * (hi - lo)
    return np.linspace(lo - pad, hi + pad, points)


def plot_profiles(
    records_by_agent: Mapping[str, Sequence[Record]],
    benchmark_id: str,
    out_dir: str | Path,
    which: str = "headline",
    reps: int = 1000,
    seed: int = 0,
    bench: Any = None,
    formats: Sequence[str] = FORMATS,
) -> list[Path]:
    """Performance profiles of every agent on ``benchmark_id``; returns the paths written,
    one per format in ``formats`` (PNG and SVG by default).

    Scores are each variant's ``(seeds, tasks)`` matrix of ``which`` (``"headline"``,
    ``"online"`` or ``"final"``; :func:`metarl_bench.stats.aggregate`), normalised where
    the benchmark has random and oracle references. The curve is the fraction of seeds x
    tasks scoring above tau (below, for raw lower-is-better scores); bands are pointwise
    stratified bootstrap 95% CIs (seeds resampled within tasks) with ``reps`` replicates
    from ``seed``.
    """
    items = _ordered(records_by_agent)
    bench = _bench_of(records_by_agent, bench)
    aggs = [stats.aggregate(recs, bench, which=which, references=records_by_agent) for _, recs in items]
    taus = profile_taus([a.scores for a in aggs])
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    style = _styles([a for a, _ in items])
    # Legend in rank order (mean score), as in the curves plot.
    means = [float(a.scores.mean()) * (1 if a.lower_is_better else -1) for a in aggs]
    order = sorted(range(len(items)), key=lambda k: (means[k], items[k][0]))
    items, aggs = [items[k] for k in order], [aggs[k] for k in order]
    for (agent, recs), agg in zip(items, aggs):
        ci = stats.performance_profile_ci(agg.scores, taus, agg.lower_is_better, reps=reps, seed=seed)
        color = style[agent][0]
        ax.plot(taus, ci.point, color=color, linewidth=1.8, label=_label(agent, len(recs)))
        ax.fill_between(taus, ci.low, ci.high, color=color, alpha=0.2, linewidth=0)
    agg = aggs[0]
    name = f"{'normalised ' if agg.normalized else ''}{agg.which} score"
    if agg.normalized:
        for v, line in ((0.0, _RANDOM_STYLE), (1.0, _ORACLE_STYLE)):
            if taus[0] <= v <= taus[-1]:
                top = stats.RECORD_REFERENCES[1] if (agg.normalization or "").endswith("records") else "oracle"
                ax.axvline(v, label=f"{'random' if v == 0 else top} (reference)", **line)
    ax.set_xlabel(f"{name} threshold τ" + ("" if agg.normalized else " (raw)"))
    rel = "<" if agg.lower_is_better else ">"
    ax.set_ylabel(f"fraction of seeds × tasks with score {rel} τ")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(_title(benchmark_id, items[0][1]), fontsize=10)
    ax.grid(True, alpha=0.3)
    per_task = {
        "per-task": " (normalised per test task)",
        "per-task-records": f" (normalised per test task by the {' and '.join(stats.RECORD_REFERENCES)} records)",
        "benchmark-records": f" (normalised by the {' and '.join(stats.RECORD_REFERENCES)} records' means)",
    }.get(agg.normalization or "", "")
    ax.text(0.0, -0.16, f"bands: pointwise 95% stratified bootstrap CI ({reps} resamples of seeds within tasks)"
            f"{per_task}; each seed's adaptation runs averaged per task",
            transform=ax.transAxes, fontsize=7.5, color="0.35", va="top")
    _legend(ax, len(items) + 2)
    return _save(fig, out_dir, benchmark_id, "profiles", formats)


def plot_benchmark(
    records_by_agent: Mapping[str, Sequence[Record]],
    benchmark_id: str,
    out_dir: str | Path,
    bench: Any = None,
    formats: Sequence[str] = FORMATS,
) -> list[Path]:
    """Both plots of one benchmark: curves then profiles, each in every format of ``formats``."""
    bench = _bench_of(records_by_agent, bench)
    return (plot_curves(records_by_agent, benchmark_id, out_dir, bench=bench, formats=formats)
            + plot_profiles(records_by_agent, benchmark_id, out_dir, bench=bench, formats=formats))
