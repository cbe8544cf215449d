"""Plots of results records (matplotlib, Agg backend; every figure saved as PNG and SVG).

- :func:`plot_curves`: adaptation curves, mean return per episode against the experience
  the run had in the test task, with 95% confidence bands and the random / oracle
  reference lines.
- :func:`plot_profiles`: performance profiles (Agarwal et al. 2021), the fraction of
  seeds x tasks scoring above each threshold, with pointwise bootstrap 95% bands.

Both take ``records_by_agent``: variant name -> the records (one per seed) of that variant
on one benchmark, and write ``<out_dir>/<benchmark id with "/" as "__">.<kind>.{png,svg}``.
References, headline and direction come from the registered benchmark (``bench``, by
default :func:`metarl_bench.benchmark` of the records' id), never from the records.

Every agent is drawn in its own colour and marker (:mod:`metarl_bench.page_style`, shared
with the leaderboard page), variants dashed with hollow markers, the reference lines thin
and dashed beneath them. Each figure's caption says what its lines, bands and markers are,
and names the lines that run on top of one another (within 1% of the y range at every
point), whose markers then alternate along them, and the bands too narrow to see.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from metarl_bench import page_style, stats  # noqa: E402
from metarl_bench.results import Record  # noqa: E402

Z95 = 1.959963984540054
FORMATS = ("png", "svg")
OVERLAP = 0.01  # two lines "coincide" when within this fraction of the y range at every shared point
THIN_BAND = 0.015  # profile bands narrower than this (fraction of runs) everywhere are noted as hidden
PROFILE_QUANTILE = 0.01  # the profiles' x range spans every agent's [1%, 99%] quantiles (and the references)
_MARKS_PER_LINE = 12  # markers along a long line (a marker on every point up to 25 points)


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


def final_mask(record: Record, x: np.ndarray) -> np.ndarray:
    """Which curve points (of ``x``, as from :func:`pooled_curve`) are final-evaluation points."""
    final_x = {float(v) for v, p in zip(record.x, record.phase) if p == "final"}
    budget_x = {float(v) for v, p in zip(record.x, record.phase) if p == "budget"}
    return np.array([float(v) in final_x and float(v) not in budget_x for v in x], dtype=bool)


@dataclass(frozen=True)
class Curve:
    """One variant's adaptation curve: the budget's points and the final evaluation's, each
    ``x``, ``mean`` and the 95% half-width ``half`` (1.96 standard errors over tasks)."""

    x: np.ndarray
    mean: np.ndarray
    half: np.ndarray
    final_x: np.ndarray
    final_mean: np.ndarray
    final_half: np.ndarray
    stage: int  # episodes per adaptation stage (points of one stage share an x)
    tasks: int  # test tasks averaged over
    final_episodes: int = 0  # episodes per run in the final evaluation


def curve(records: Sequence[Record]) -> Curve:
    """The :class:`Curve` of the seeds of one variant (:func:`pooled_curve`, split at the budget)."""
    recs = sorted(records, key=lambda r: r.seed)
    x, mean, se = pooled_curve(recs)
    half = np.nan_to_num(Z95 * se)
    fin = final_mask(recs[0], x)
    budget_x = recs[0].x[[p == "budget" for p in recs[0].phase]]
    stage = int(np.sum(budget_x == budget_x[0])) if budget_x.size else 1
    return Curve(x[~fin], mean[~fin], half[~fin], x[fin], mean[fin], half[fin], stage, int(recs[0].returns.shape[0]),
                 sum(p == "final" for p in recs[0].phase))


def axis_labels(record: Record, lower_is_better: bool | None = None) -> tuple[str, str]:
    """``(x label, y label)`` for a benchmark's curves: ``record.extra["x_label"]`` /
    ``["y_label"]`` where the harness stored them, else by kind (lower-is-better means
    supervised: inner gradient steps and query MSE)."""
    extra = record.extra or {}
    lower = record.benchmark.get("lower_is_better") if lower_is_better is None else lower_is_better
    if lower:
        default = ("inner gradient steps", "query MSE")
    elif record.benchmark.get("episode_score") == "success":  # episodes scored 1 if they succeeded (Meta-World)
        default = ("episodes of experience in the test task", "success rate")
    else:
        default = ("episodes of experience in the test task", "return per episode")
    return str(extra.get("x_label") or default[0]), str(extra.get("y_label") or default[1])


def _bench_of(records_by_agent: Mapping[str, Sequence[Record]], bench: Any) -> Any:
    if bench is not None:
        return bench
    from metarl_bench.benchmarks import benchmark

    first = next(r for recs in records_by_agent.values() for r in recs)
    return benchmark(first.benchmark_id)


def bench_kind(bench: Any) -> str:
    """``"rl"`` or ``"supervised"``: the kind of ``bench``'s family (``"rl"`` when it does not say)."""
    kind = getattr(getattr(bench, "family", None), "kind", None)
    return str(kind) if kind in ("rl", "supervised") else "rl"


def curve_references(bench: Any) -> tuple[float | None, float | None]:
    """The per-episode random and oracle references the curves draw (``None`` where absent):
    the benchmark's ``final`` references, the means over test tasks where it has per-task ones."""
    refs = bench.references
    rand, orac = refs["random"]["final"], refs["oracle"]["final"]
    return (None if rand is None else float(rand)), (None if orac is None else float(orac))


def styles(records_by_agent: Mapping[str, Sequence[Record]], bench: Any) -> dict[str, page_style.AgentStyle]:
    """Each variant's :class:`~metarl_bench.page_style.AgentStyle` (its records name its agent)."""
    kind = bench_kind(bench)
    return {v: page_style.style(v, recs[0].agent_name if recs else v, kind)
            for v, recs in records_by_agent.items()}


def _legend(ax: plt.Axes, n_entries: int) -> None:
    # Outside the axes on the right so it never hides a curve; bbox_inches="tight" keeps it.
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize=9,
              ncol=1 if n_entries <= 16 else 2)


def _caption(ax: plt.Axes, parts: Sequence[str], width: int = 150) -> None:
    lines = [ln for p in parts if p for ln in textwrap.wrap(p, width)]
    ax.text(0.0, -0.15, "\n".join(lines), transform=ax.transAxes, fontsize=7.5, color="0.3", va="top",
            linespacing=1.35)


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


def overlapping(lines: Mapping[str, tuple[np.ndarray, np.ndarray]], tol: float) -> list[list[str]]:
    """Groups of names whose lines ``(x, y)`` lie within ``tol`` of one another at every x
    they share (at least two shared points, or their one point where both have one); each
    group sorted, groups in order of their first name. Groups are the connected components
    of the "within tol" relation."""
    names = sorted(lines)
    parent = {n: n for n in names}

    def find(n: str) -> str:
        while parent[n] != n:
            n = parent[n]
        return n

    for i, a in enumerate(names):
        xa, ya = lines[a]
        for b in names[i + 1:]:
            xb, yb = lines[b]
            shared, ia, ib = np.intersect1d(xa, xb, return_indices=True)
            if shared.size < min(2, xa.size, xb.size) or shared.size == 0:
                continue
            if np.all(np.abs(ya[ia] - yb[ib]) <= tol):
                parent[find(b)] = find(a)
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(find(n), []).append(n)
    return [g for g in groups.values() if len(g) > 1]


def _and(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _markevery(n_points: int, slot: int, slots: int, line: int, lines: int) -> Any:
    """Which points carry markers: every point of a short line, else about 12 evenly spaced,
    staggered by the line's index ``line`` of ``lines`` so markers do not pile up where lines
    meet; lines that overlap take turns (``slot`` of ``slots``) so each one's markers show."""
    step = 1 if n_points <= 25 else int(np.ceil(n_points / _MARKS_PER_LINE))
    if slots > 1:
        step *= slots
        return (slot * max(1, step // slots), step)
    return ((line * step) // max(lines, 1), step) if step > 1 else None


def overlap_slots(groups: Sequence[Sequence[str]]) -> dict[str, tuple[int, int]]:
    """name -> (its turn, the group's size) for the names of overlapping ``groups``: lines
    that coincide put their markers on alternate points."""
    return {n: (i, len(g)) for g in groups for i, n in enumerate(g)}


def reference_lines(bench: Any) -> dict[str, float]:
    """The curves' reference lines: label (``"random (reference)"``, ``"oracle (reference)"``) -> value."""
    rand, orac = curve_references(bench)
    return {name: v for name, v in (("random (reference)", rand), ("oracle (reference)", orac)) if v is not None}


def _lines(curves: Mapping[str, Curve]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {a: (np.concatenate([c.x, c.final_x]), np.concatenate([c.mean, c.final_mean])) for a, c in curves.items()}


def curve_overlaps(
    curves: Mapping[str, Curve], refs: Mapping[str, float]
) -> tuple[list[list[str]], dict[str, list[str]], float]:
    """``(groups, on_reference, tol)``: the groups of curves within ``tol`` (1% of the y range
    the plot spans) of one another at every x, and per reference line the curves within
    ``tol`` of it at every x."""
    lo = min([float(np.min(c.mean - c.half)) for c in curves.values() if c.x.size]
             + [float(np.min(c.final_mean - c.final_half)) for c in curves.values() if c.final_mean.size]
             + list(refs.values()))
    hi = max([float(np.max(c.mean + c.half)) for c in curves.values() if c.x.size]
             + [float(np.max(c.final_mean + c.final_half)) for c in curves.values() if c.final_mean.size]
             + list(refs.values()))
    tol = OVERLAP * max(hi - lo, 1e-12)
    lines = _lines(curves)
    on = {name: [a for a, (_, y) in sorted(lines.items()) if np.all(np.abs(y - v) <= tol)] for name, v in refs.items()}
    return overlapping(lines, tol), {k: v for k, v in on.items() if v}, tol


def _marker_kw(st: page_style.AgentStyle, size: float) -> dict[str, Any]:
    kw: dict[str, Any] = {"marker": st.marker, "markersize": size, "markeredgecolor": st.color}
    kw["markerfacecolor"] = "white" if st.hollow else st.color
    if st.hollow:
        kw["markeredgewidth"] = 1.3
    return kw


def plot_curves(
    records_by_agent: Mapping[str, Sequence[Record]],
    benchmark_id: str,
    out_dir: str | Path,
    bench: Any = None,
    formats: Sequence[str] = FORMATS,
) -> list[Path]:
    """Adaptation curves of every agent on ``benchmark_id``; returns the paths written,
    one per format in ``formats`` (PNG and SVG by default).

    Each agent's line is the mean return per episode against x, the episodes of
    experience its run had before that episode, over the budget; then a dotted step (the
    last ``adapt()``, after the budget's last stage) to the final evaluation, drawn at
    x = budget with its CI bar. Seeds and the benchmark's test tasks are pooled
    (:func:`pooled_curve`); the band is mean ± 1.96 standard errors over tasks. Dashed
    lines mark the benchmark's random and oracle per-episode references where they exist.
    """
    items = _ordered(records_by_agent)
    bench = _bench_of(records_by_agent, bench)
    first = items[0][1][0]
    lower = bool(bench.lower_is_better)
    curves = {agent: curve(recs) for agent, recs in items}

    def last(c: Curve) -> float:
        return float(c.final_mean[-1] if c.final_mean.size else c.mean[-1])

    # Legend order = ranking by the last point, so it reads top to bottom like the plot.
    items.sort(key=lambda it: (last(curves[it[0]]) if lower else -last(curves[it[0]]), it[0]))
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    style = styles(dict(items), bench)
    refs = reference_lines(bench)
    groups, _, _ = curve_overlaps(curves, refs)
    slots = overlap_slots(groups)
    lines = _lines(curves)
    span = max(float(np.ptp(lines[a][0])) for a in curves) or 1.0
    dodge = 0.006 * span if len(items) > 1 else 0.0
    n = len(items)
    for i, (agent, recs) in enumerate(items):
        c, st = curves[agent], style[agent]
        z = 3 + (n - i) / n  # the better-ranked on top; markers alternate where lines coincide
        slot, nslots = slots.get(agent, (0, 1))
        # Solid (dashed for a variant) over the budget, a dotted step to the final evaluation: a
        # straight segment across one long stage (MAML's 20 episodes) would suggest gradual improvement.
        ax.plot(c.x, c.mean, color=st.color, linestyle=st.linestyle, linewidth=1.8, zorder=z,
                markevery=_markevery(c.x.size, slot, nslots, i, n), label=_label(agent, len(recs)), **_marker_kw(st, 4.5))
        if c.x.size > 1:
            ax.fill_between(c.x, c.mean - c.half, c.mean + c.half, color=st.color, alpha=0.18, linewidth=0, zorder=2)
        else:  # one adaptation stage spans the whole budget: no band to draw, so a bar
            ax.errorbar(c.x, c.mean, yerr=c.half, color=st.color, capsize=3, linewidth=1.2, linestyle="none", zorder=z)
        if c.final_x.size:
            # Final points of several agents share one x: spread them a little so bars stay legible.
            xf = c.final_x + dodge * (i - (n - 1) / 2)
            ax.plot(np.concatenate([c.x[-1:], xf]), np.concatenate([c.mean[-1:], c.final_mean]), color=st.color,
                    linewidth=1.2, linestyle=":", zorder=z)
            ax.errorbar(xf, c.final_mean, yerr=c.final_half, color=st.color, capsize=3, linewidth=1.2,
                        linestyle="none", zorder=z, **_marker_kw(st, 6))
    for name, v in refs.items():
        ax.axhline(v, label=name, zorder=1, **page_style.REFERENCE_STYLES["random" if name.startswith("random") else "top"])
    xlabel, ylabel = axis_labels(first, lower)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{ylabel} (lower is better)" if lower else ylabel)
    ax.set_title(_title(benchmark_id, items[0][1]), fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.02)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    _caption(ax, curves_caption(bench, curves, xlabel, ylabel))
    _legend(ax, len(items) + len(refs))
    return _save(fig, out_dir, benchmark_id, "curves", formats)


def curves_caption(bench: Any, curves: Mapping[str, Curve], xlabel: str, ylabel: str) -> list[str]:
    """The adaptation curves' caption, as sentences: what the lines, bands, the dotted step and
    the marker at the budget are, the reference lines, and which lines coincide."""
    budget = int(bench.protocol.budget_episodes)
    final_episodes = max(c.final_episodes for c in curves.values())
    refs = reference_lines(bench)
    groups, on_ref, _ = curve_overlaps(curves, refs)
    by_stage: dict[int, list[str]] = {}
    for a, c in sorted(curves.items()):
        if c.stage > 1:
            by_stage.setdefault(c.stage, []).append(a)
    stages = "; ".join(
        f"{_and(names)} {'adapts' if len(names) == 1 else 'adapt'} after stages of {k} parallel episodes, which share one x"
        for k, names in sorted(by_stage.items())
    )
    supervised = bench_kind(bench) == "supervised"
    what = (
        f"Lines: mean {ylabel} over the {next(iter(curves.values())).tasks} test tasks (each task's adaptation runs of "
        f"every seed averaged first) against {xlabel}"
        + ("" if supervised else " before the episode")
        + (f" ({stages})" if stages else "")
        + ". Bands (bars where one stage spans the budget): ±1.96 standard errors over test tasks (95% CI)."
    )
    step = (
        f"Dotted step: the last inner step; the marker at x = {budget} with its bar is the {ylabel} after it."
        if supervised else
        f"Dotted step: the last adapt() call, after the budget's last stage; the marker at x = {budget} with its bar is "
        f"the final evaluation ({final_episodes} episodes per run, no adaptation during them), spread apart "
        f"across agents so the bars stay legible."
    )
    parts = [what, step]
    if refs:
        one = len(refs) == 1
        parts.append(f"Dashed line{'' if one else 's'}: the benchmark's {_and([r.split(' ')[0] for r in refs])} "
                     f"reference{'' if one else 's'} per episode (mean{'' if one else 's'} over test tasks).")
    notes = [f"{_and(list(g))} coincide (within 1% of the y range at every x; their markers alternate)" for g in groups]
    notes += [f"{_and(on)} {'runs' if len(on) == 1 else 'run'} along the {name.split(' ')[0]} reference line"
              for name, on in on_ref.items()]
    if notes:
        parts.append("Overlaps: " + "; ".join(notes) + ".")
    return parts


def profile_taus(matrices: Sequence[np.ndarray], points: int = 101, normalized: bool = False) -> np.ndarray:
    """``(points,)`` thresholds over the range where ``matrices`` (each ``(runs, tasks)``)
    differ: from the lowest of their 1% quantiles to the highest of their 99% quantiles
    (taken as data points: ``method="lower"`` and ``"higher"``), widened to hold 0 and 1
    for ``normalized`` scores, plus 3% on each side. Below the range every profile
    (fraction above tau) is at least 0.99, above it at most 0.01."""
    lo = min(float(np.quantile(m, PROFILE_QUANTILE, method="lower")) for m in matrices)
    hi = max(float(np.quantile(m, 1 - PROFILE_QUANTILE, method="higher")) for m in matrices)
    if normalized:
        lo, hi = min(lo, 0.0), max(hi, 1.0)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.03 * (hi - lo)
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
    tasks scoring above tau (below, for raw lower-is-better scores) over the thresholds of
    :func:`profile_taus`; bands are pointwise stratified bootstrap 95% CIs (seeds resampled
    within tasks) with ``reps`` replicates from ``seed``.
    """
    items = _ordered(records_by_agent)
    bench = _bench_of(records_by_agent, bench)
    aggs = [stats.aggregate(recs, bench, which=which, references=records_by_agent) for _, recs in items]
    agg = aggs[0]
    taus = profile_taus([a.scores for a in aggs], normalized=agg.normalized)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    style = styles(dict(items), bench)
    # Legend in rank order (mean score), as in the curves plot.
    means = [float(a.scores.mean()) * (1 if a.lower_is_better else -1) for a in aggs]
    order = sorted(range(len(items)), key=lambda k: (means[k], items[k][0]))
    items, aggs = [items[k] for k in order], [aggs[k] for k in order]
    cis = {agent: stats.performance_profile_ci(a.scores, taus, a.lower_is_better, reps=reps, seed=seed)
           for (agent, _), a in zip(items, aggs)}
    groups = overlapping({a: (taus, np.asarray(ci.point)) for a, ci in cis.items()}, OVERLAP)
    slots = overlap_slots(groups)
    n = len(items)
    for i, (agent, recs) in enumerate(items):
        ci, st = cis[agent], style[agent]
        slot, nslots = slots.get(agent, (0, 1))
        z = 3 + (n - i) / n
        ax.plot(taus, ci.point, color=st.color, linestyle=st.linestyle, linewidth=1.8, zorder=z,
                markevery=_markevery(taus.size, slot, nslots, i, n), label=_label(agent, len(recs)), **_marker_kw(st, 4.5))
        ax.fill_between(taus, ci.low, ci.high, color=st.color, alpha=0.22, linewidth=0, zorder=2)
    name = f"{'normalised ' if agg.normalized else ''}{agg.which} score"
    top = stats.RECORD_REFERENCES[1] if (agg.normalization or "").endswith("records") else "oracle"
    if agg.normalized:
        for v, which_ref in ((0.0, "random"), (1.0, "top")):
            ax.axvline(v, label=f"{'random' if v == 0 else top} (reference)", zorder=1,
                       **page_style.REFERENCE_STYLES[which_ref])
    ax.set_xlabel(f"{name} threshold τ" + ("" if agg.normalized else " (raw)"))
    rel = "<" if agg.lower_is_better else ">"
    ax.set_ylabel(f"fraction of seeds × tasks with score {rel} τ")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(float(taus[0]), float(taus[-1]))
    ax.set_title(_title(benchmark_id, items[0][1]), fontsize=10)
    ax.grid(True, alpha=0.3)
    norm = {
        "per-task": "normalised per test task by its random (0) and oracle (1) references",
        "benchmark": "normalised by the benchmark's random (0) and oracle (1) references",
        "per-task-records": f"normalised per test task by the {' (0) and '.join(stats.RECORD_REFERENCES)} (1) records' means",
        "benchmark-records": f"normalised by the {' (0) and '.join(stats.RECORD_REFERENCES)} (1) records' means",
    }.get(agg.normalization or "", "raw")
    seeds = sorted({len(recs) for _, recs in items})
    parts = [
        f"Lines: the fraction of each agent's {'/'.join(map(str, seeds))} seeds × {agg.scores.shape[1]} test tasks "
        f"whose {name} ({norm}; each seed's adaptation runs averaged per task) is {'below' if agg.lower_is_better else 'above'} "
        f"τ. Bands: pointwise 95% stratified bootstrap CIs ({reps} resamples of the seeds within each task).",
        "x range: from the lowest 1% quantile to the highest 99% quantile of the agents' scores"
        + (" (with 0 and 1)" if agg.normalized else "")
        + (": left of it every profile is at most 0.01, right of it at least 0.99."
           if agg.lower_is_better else ": left of it every profile is at least 0.99, right of it at most 0.01."),
    ]
    if agg.normalized:
        parts.append(f"Dashed lines: the references, random at 0 and {top} at 1.")
    notes = [f"{_and(list(g))} coincide (within 0.01 at every τ; their markers alternate)" for g in groups]
    thin = [a for a, ci in cis.items() if float(np.max(np.asarray(ci.high) - np.asarray(ci.low))) < THIN_BAND]
    if thin:
        what = "every band is" if len(thin) == n else f"the bands of {_and(sorted(thin))} are"
        notes.append(f"{what} narrower than {THIN_BAND} everywhere, hidden under {'its' if len(thin) == 1 else 'the'} line")
    if notes:
        parts.append("Note: " + "; ".join(notes) + ".")
    _caption(ax, parts)
    _legend(ax, n + 2)
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
