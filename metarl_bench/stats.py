"""Aggregate statistics over score matrices (Agarwal et al. 2021, "Deep RL at the edge of
the statistical precipice"), as pure functions over fixed array shapes like rliable's
``metrics.py``.

A score matrix has shape ``(runs, tasks)``: one score per independent run (all seeds of an
agent stacked) and test task. Every metric also accepts leading batch axes,
``(..., runs, tasks)``, and returns one value per batch entry; the bootstrap relies on
this to evaluate thousands of resamples at once.

Orientation. Raw scores of a lower-is-better benchmark (supervised query MSE) are better
when smaller. :func:`normalize` maps any score so that the random reference is 0 and the
oracle 1, and because ``oracle < random`` there, ``(score - random) / (oracle - random)``
turns the axis round: **normalised scores are always higher-is-better**. On raw scores,
the functions that compare (:func:`probability_of_improvement`,
:func:`performance_profile`) take ``lower_is_better=True``, where "better" means
"lower". :func:`aggregate` records which orientation its matrix has.

Version history: v1, first version.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from scipy import stats as sps

if TYPE_CHECKING:
    from metarl_bench.results import Record

ScoreFn = Callable[..., Any]

_BOOT_CHUNK_ELEMS = 4_000_000  # resampled score entries per bootstrap batch (~32 MB float64)


class Interval(NamedTuple):
    """A point estimate with its ``1 - alpha`` confidence interval (scalars or arrays)."""

    point: Any
    low: Any
    high: Any


# -- scores -----------------------------------------------------------------------------------


def normalize(scores: np.ndarray, random: float, oracle: float) -> np.ndarray:
    """Normalised scores ``(score - random) / (oracle - random)``, any shape (e.g. ``(runs, tasks)``).

    0 is the random reference, 1 the oracle. For lower-is-better scores (``oracle <
    random``) the result is still higher-is-better.
    """
    if random is None or oracle is None:
        raise ValueError("normalize needs both a random and an oracle reference; this benchmark lacks one")
    if oracle == random:
        raise ValueError(f"cannot normalise: the random and oracle references are equal ({random})")
    return (np.asarray(scores, dtype=np.float64) - random) / (oracle - random)


def mean_and_se(scores: np.ndarray) -> tuple[float, float]:
    """Mean score and its standard error for a ``(runs, tasks)`` matrix.

    As the harness does for one seed: average the runs of each task, then the mean and
    standard error (``ddof=1``) over tasks. The standard error is NaN with one task.
    """
    s = _matrix(scores)
    per_task = s.mean(axis=0)
    se = float(per_task.std(ddof=1) / np.sqrt(per_task.size)) if per_task.size > 1 else float("nan")
    return float(per_task.mean()), se


def iqm(scores: np.ndarray) -> Any:
    """Interquartile mean over all runs x tasks of ``(..., runs, tasks)``: the mean of the
    middle 50% of the flattened scores (``scipy.stats.trim_mean(·, 0.25)``).

    Returns a float for a ``(runs, tasks)`` matrix, else an array of the leading shape.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim < 2:
        raise ValueError(f"iqm expects (..., runs, tasks), got shape {s.shape}")
    out = sps.trim_mean(s.reshape(*s.shape[:-2], -1), 0.25, axis=-1)
    return float(out) if s.ndim == 2 else out


def probability_of_improvement(x: np.ndarray, y: np.ndarray, lower_is_better: bool = False) -> Any:
    """P(X > Y) + 0.5 P(X = Y), averaged over tasks; ``x`` is ``(..., runs_x, tasks)``,
    ``y`` is ``(..., runs_y, tasks)``.

    Per task this is the Mann-Whitney U statistic of ``x`` against ``y`` divided by
    ``runs_x * runs_y`` (``scipy.stats.mannwhitneyu(x, y).statistic / (n m)``; the tests
    check the two agree). It is computed here by counting all run pairs because that
    vectorises over bootstrap batches, which scipy's rank-based version does ~10x slower.
    With ``lower_is_better`` a lower score counts as better: P(X < Y) + 0.5 P(X = Y).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim < 2 or y.ndim < 2 or x.shape[-1] != y.shape[-1]:
        raise ValueError(f"expected (..., runs, tasks) with the same tasks, got {x.shape} and {y.shape}")
    xe = x[..., :, None, :]
    ye = y[..., None, :, :]
    better = (xe < ye) if lower_is_better else (xe > ye)
    per_task = better.mean(axis=(-3, -2)) + 0.5 * (xe == ye).mean(axis=(-3, -2))
    out = per_task.mean(axis=-1)
    return float(out) if out.ndim == 0 else out


def performance_profile(scores: np.ndarray, taus: Sequence[float] | np.ndarray, lower_is_better: bool = False) -> np.ndarray:
    """Fraction of all runs x tasks scoring above each threshold tau.

    ``scores`` is ``(..., runs, tasks)``, ``taus`` is ``(k,)``; returns ``(..., k)``.
    With ``lower_is_better`` it is the fraction scoring below tau.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim < 2:
        raise ValueError(f"performance_profile expects (..., runs, tasks), got shape {s.shape}")
    t = np.asarray(taus, dtype=np.float64).reshape(-1)
    order = np.argsort(t, kind="stable")
    return _profile_of_buckets(_buckets(s, t[order], lower_is_better), order, lower_is_better)


def _buckets(scores: np.ndarray, sorted_taus: np.ndarray, lower_is_better: bool) -> np.ndarray:
    """Per score, the count of thresholds it is compared against, so that (j = sorted index)
    above: score > tau_j <=> j < bucket (#taus < score); below: score < tau_j <=> j >= bucket
    (#taus <= score). Counting buckets is O(n log k) instead of O(n k) comparisons."""
    return np.searchsorted(sorted_taus, scores, side="right" if lower_is_better else "left")


def _profile_of_buckets(b: np.ndarray, order: np.ndarray, lower_is_better: bool) -> np.ndarray:
    """Profile ``(..., k)`` from bucket indices ``(..., runs, tasks)`` (see :func:`_buckets`)."""
    lead, n, k = b.shape[:-2], b.shape[-2] * b.shape[-1], order.size
    flat = np.asarray(b, dtype=np.int64).reshape(-1, n)
    rows = flat.shape[0]
    counts = np.bincount((np.arange(rows)[:, None] * (k + 1) + flat).ravel(), minlength=rows * (k + 1))
    at_most = np.cumsum(counts.reshape(rows, k + 1), axis=1)[:, :k] / n  # fraction with bucket <= j
    frac = at_most if lower_is_better else 1.0 - at_most
    out = np.empty_like(frac)
    out[:, order] = frac
    return out.reshape(*lead, k)


# -- bootstrap --------------------------------------------------------------------------------


def stratified_bootstrap_ci(
    score_fn: ScoreFn,
    matrices: Sequence[np.ndarray],
    reps: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
    vectorized: bool = True,
) -> Interval:
    """Percentile ``1 - alpha`` confidence interval of ``score_fn(*matrices)``.

    ``matrices`` is a sequence of ``(runs_i, tasks)`` arrays, one per agent. Each
    bootstrap replicate resamples, independently for every matrix and within every task
    (stratified), that task's runs with replacement; so the task set stays fixed and the
    uncertainty comes from the runs. Reproducible: all draws come from
    ``np.random.default_rng(seed)``.

    ``score_fn`` maps the matrices to a scalar or a ``(k,)`` array. With ``vectorized``
    (the default) it must accept leading batch axes, ``(batch, runs_i, tasks)`` ->
    ``(batch,)`` or ``(batch, k)``, as every metric in this module does; otherwise it is
    called once per replicate. Returns ``Interval(point, low, high)``.
    """
    mats = [_matrix(m) for m in matrices]
    if not mats:
        raise ValueError("stratified_bootstrap_ci needs at least one (runs, tasks) matrix")
    if reps < 1 or not 0 < alpha < 1:
        raise ValueError(f"need reps >= 1 and 0 < alpha < 1, got reps={reps}, alpha={alpha}")
    point = score_fn(*mats)
    rng = np.random.default_rng(seed)
    per_rep = max(sum(m.size for m in mats), int(np.prod([m.shape[0] for m in mats])) * mats[0].shape[1])
    chunk = max(1, min(reps, _BOOT_CHUNK_ELEMS // max(per_rep, 1))) if vectorized else 1
    values = []
    done = 0
    while done < reps:
        n = min(chunk, reps - done)
        batch = [_resample(m, n, rng) for m in mats]
        if vectorized:
            values.append(np.asarray(score_fn(*batch), dtype=np.float64).reshape(n, *np.shape(point)))
        else:
            values.append(np.asarray(score_fn(*(b[0] for b in batch)), dtype=np.float64)[None])
        done += n
    boot = np.concatenate(values, axis=0)
    low, high = np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    if np.ndim(point) == 0:
        return Interval(float(point), float(low), float(high))
    return Interval(np.asarray(point, dtype=np.float64), low, high)


def iqm_ci(scores: np.ndarray, reps: int = 2000, alpha: float = 0.05, seed: int = 0) -> Interval:
    """IQM of a ``(runs, tasks)`` matrix with its stratified bootstrap CI."""
    return stratified_bootstrap_ci(iqm, [scores], reps=reps, alpha=alpha, seed=seed)


def iqm_difference_ci(
    x: np.ndarray, y: np.ndarray, reps: int = 2000, alpha: float = 0.05, seed: int = 0
) -> Interval:
    """``IQM(x) - IQM(y)`` for ``(runs_x, tasks)`` and ``(runs_y, tasks)`` with its bootstrap CI."""
    return stratified_bootstrap_ci(lambda a, b: iqm(a) - iqm(b), [x, y], reps=reps, alpha=alpha, seed=seed)


def probability_of_improvement_ci(
    x: np.ndarray,
    y: np.ndarray,
    lower_is_better: bool = False,
    reps: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> Interval:
    """:func:`probability_of_improvement` of ``(runs_x, tasks)`` over ``(runs_y, tasks)`` with its CI."""
    return stratified_bootstrap_ci(
        lambda a, b: probability_of_improvement(a, b, lower_is_better), [x, y], reps=reps, alpha=alpha, seed=seed
    )


def performance_profile_ci(
    scores: np.ndarray,
    taus: Sequence[float] | np.ndarray,
    lower_is_better: bool = False,
    reps: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> Interval:
    """:func:`performance_profile` of a ``(runs, tasks)`` matrix with pointwise ``(k,)`` CIs."""
    t = np.asarray(taus, dtype=np.float64).reshape(-1)
    order = np.argsort(t, kind="stable")
    # Resampling each score's bucket is resampling the score, and buckets are found once.
    buckets = _buckets(_matrix(scores), t[order], lower_is_better)
    return stratified_bootstrap_ci(
        lambda b: _profile_of_buckets(b, order, lower_is_better), [buckets], reps=reps, alpha=alpha, seed=seed
    )


# -- records ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Aggregate:
    """The pooled scores of every seed of one (benchmark, agent)."""

    benchmark_id: str
    agent: str
    task_hash: str
    which: str  # "online" or "final" (resolved from "headline")
    seeds: tuple[int, ...]
    scores: np.ndarray  # (runs * seeds, tasks): per-seed score matrices stacked along runs
    normalized: bool  # whether `scores` are normalised by the random/oracle references
    lower_is_better: bool  # orientation of `scores`: always False once normalised


def aggregate(records: Sequence[Record], which: str = "headline", normalized: bool = True) -> Aggregate:
    """Pool the seeds of one (benchmark, agent): stack their ``(runs, tasks)`` score
    matrices along runs, sorted by seed.

    ``which`` is ``"online"``, ``"final"`` or ``"headline"`` (the benchmark's headline
    metric). With ``normalized`` the scores are normalised by the benchmark's random and
    oracle references for that metric *where both exist*; check ``Aggregate.normalized``.
    Raises ``ValueError`` if the records mix benchmarks, agents or task lists (task hash),
    or repeat a seed.
    """
    if not records:
        raise ValueError("aggregate needs at least one record")
    recs = sorted(records, key=lambda r: r.seed)
    first = recs[0]
    for key, get in (
        ("benchmark", lambda r: r.benchmark_id),
        ("agent", lambda r: r.agent_name),
        ("task list (benchmark.task_hash)", lambda r: str(r.benchmark["task_hash"])),
    ):
        seen = sorted({get(r) for r in recs})
        if len(seen) > 1:
            raise ValueError(
                f"cannot pool records of different {key}: {seen}; keep only records of one "
                f"benchmark version and agent (re-run the stale seeds)"
            )
    seeds = [r.seed for r in recs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{first.benchmark_id}/{first.agent_name}: seed repeated in {seeds}")
    if which == "headline":
        which = str(first.benchmark["headline"])
    mats = [r.score_matrix(which) for r in recs]
    if len({m.shape[1] for m in mats}) > 1:
        raise ValueError(f"{first.benchmark_id}/{first.agent_name}: seeds have different numbers of test tasks")
    scores = np.concatenate(mats, axis=0)
    lower = bool(first.benchmark.get("lower_is_better", False))
    is_norm = False
    if normalized:
        rand, orac = reference(first, which)
        if rand is not None and orac is not None and rand != orac:
            scores = normalize(scores, rand, orac)
            is_norm, lower = True, False
    return Aggregate(
        benchmark_id=first.benchmark_id,
        agent=first.agent_name,
        task_hash=str(first.benchmark["task_hash"]),
        which=which,
        seeds=tuple(seeds),
        scores=scores,
        normalized=is_norm,
        lower_is_better=lower,
    )


def reference(record: Record, which: str) -> tuple[float | None, float | None]:
    """The ``(random, oracle)`` references of ``record``'s benchmark for ``which`` score."""
    refs = record.scores.get("references") or {}
    if which == "headline":
        which = str(record.benchmark["headline"])

    def get(name: str) -> float | None:
        v = (refs.get(name) or {}).get(which)
        return None if v is None else float(v)

    return get("random"), get("oracle")


# -- helpers ----------------------------------------------------------------------------------


def _matrix(m: np.ndarray) -> np.ndarray:
    a = np.asarray(m, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"expected a non-empty (runs, tasks) matrix, got shape {a.shape}")
    return a


def _resample(m: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` stratified resamples of ``(runs, tasks)``: runs drawn with replacement per task."""
    runs, tasks = m.shape
    idx = rng.integers(0, runs, size=(n, runs, tasks))
    # Row-major flat index of (idx, task); np.take is ~3x faster than m[idx, arange(tasks)].
    return np.take(m.ravel(), idx * tasks + np.arange(tasks))
