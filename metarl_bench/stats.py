"""Aggregate statistics over score matrices (Agarwal et al. 2021, "Deep RL at the edge of
the statistical precipice"), as pure functions over fixed array shapes like rliable's
``metrics.py``.

The unit of a run. A score matrix has shape ``(runs, tasks)``, where a run is an
independent training run: for a meta-learner, one meta-training seed. The adaptation runs
of one trained agent on one task share that agent and are not independent, so
:func:`aggregate` averages them per task first and gives a ``(seeds, tasks)`` matrix.
Every metric also accepts leading batch axes, ``(..., runs, tasks)``, and returns one
value per batch entry.

The definitions are rliable's: the IQM is ``scipy.stats.trim_mean(·, 0.25)`` over all
runs x tasks; the stratified bootstrap resamples, independently within each task, that
task's runs with replacement (the task set stays fixed) and takes percentile intervals;
the probability of improvement is, per task, the Mann-Whitney U statistic over ``n m``,
averaged over tasks; a performance profile is the fraction of runs x tasks scoring above
a threshold.

The bootstrap of the IQM, its difference, the probability of improvement and the
profiles is computed from how often each run is drawn in each task (the replicate's
counts), which gives the same replicate values as evaluating the metric on the resampled
matrices (the tests check both ways agree draw for draw) with no sorting per replicate.

Orientation. Raw scores of a lower-is-better benchmark (supervised query MSE) are better
when smaller. :func:`normalize` maps any score so that the random reference is 0 and the
oracle 1, and because ``oracle < random`` there, ``(score - random) / (oracle - random)``
turns the axis round: **normalised scores are always higher-is-better**. On raw scores,
the functions that compare (:func:`probability_of_improvement`,
:func:`performance_profile`) take ``lower_is_better=True``, where "better" means
"lower". :func:`aggregate` records which orientation its matrix has.

Version history: v1, first version; v2, runs are meta-training seeds (adaptation runs
averaged per task), per-task normalisation where the benchmark has per-task references,
counts-based bootstrap, two-level (seeds, then tasks) bootstrap for mean scores.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from metarl_bench.results import Record

ScoreFn = Callable[..., Any]

_BOOT_CHUNK_ELEMS = 4_000_000  # resampled score entries per bootstrap batch (~32 MB float64)
_WEIGHTED_CHUNK_ELEMS = 400_000  # count entries per batch of the counts-based path (fits in cache)
IQM_CUT = 0.25  # rliable's aggregate_iqm: trim_mean(scores, proportiontocut=0.25, axis=None)


class Interval(NamedTuple):
    """A point estimate with its ``1 - alpha`` confidence interval (scalars or arrays)."""

    point: Any
    low: Any
    high: Any


# -- scores -----------------------------------------------------------------------------------


def normalize(scores: np.ndarray, random: Any, oracle: Any) -> np.ndarray:
    """Normalised scores ``(score - random) / (oracle - random)``.

    ``random`` and ``oracle`` are scalars (benchmark-level references) or arrays that
    broadcast against ``scores`` along its last axis (per-task references, ``(tasks,)``).
    0 is the random reference, 1 the oracle. For lower-is-better scores (``oracle <
    random``) the result is still higher-is-better.
    """
    if random is None or oracle is None:
        raise ValueError("normalize needs both a random and an oracle reference; this benchmark lacks one")
    r = np.asarray(random, dtype=np.float64)
    o = np.asarray(oracle, dtype=np.float64)
    if np.any(o == r):
        raise ValueError(f"cannot normalise: the random and oracle references are equal ({r[o == r].ravel()[0]})")
    return (np.asarray(scores, dtype=np.float64) - r) / (o - r)


def mean_and_se(scores: np.ndarray) -> tuple[float, float]:
    """Mean score and its standard error for a ``(runs, tasks)`` matrix of one seed.

    As the harness does for one seed: average the runs of each task, then the mean and
    standard error (``ddof=1``) over tasks. The standard error is NaN with one task. It
    says nothing about seed-to-seed spread; for several seeds use :func:`mean_ci`.
    """
    s = _matrix(scores)
    per_task = s.mean(axis=0)
    se = float(per_task.std(ddof=1) / np.sqrt(per_task.size)) if per_task.size > 1 else float("nan")
    return float(per_task.mean()), se


def iqm(scores: np.ndarray) -> Any:
    """Interquartile mean over all runs x tasks of ``(..., runs, tasks)``: the mean of the
    middle 50% of the flattened scores (``scipy.stats.trim_mean(·, 0.25)``, as rliable).

    Returns a float for a ``(runs, tasks)`` matrix, else an array of the leading shape.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim < 2:
        raise ValueError(f"iqm expects (..., runs, tasks), got shape {s.shape}")
    from scipy import stats as sps  # imported on use: it is most of this module's import time

    out = sps.trim_mean(s.reshape(*s.shape[:-2], -1), IQM_CUT, axis=-1)
    return float(out) if s.ndim == 2 else out


def probability_of_improvement(x: np.ndarray, y: np.ndarray, lower_is_better: bool = False) -> Any:
    """P(X > Y) + 0.5 P(X = Y), averaged over tasks; ``x`` is ``(..., runs_x, tasks)``,
    ``y`` is ``(..., runs_y, tasks)``.

    Per task this is the Mann-Whitney U statistic of ``x`` against ``y`` divided by
    ``runs_x * runs_y`` (``scipy.stats.mannwhitneyu(x, y).statistic / (n m)``, rliable's
    definition; the tests check the two agree), computed by counting all run pairs.
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
    flat = np.sort(s.reshape(*s.shape[:-2], -1), axis=-1)
    n = flat.shape[-1]
    lead = flat.shape[:-1]
    rows = flat.reshape(-1, n)
    pos = np.stack([np.searchsorted(r, t, side="left" if lower_is_better else "right") for r in rows])  # (#below or #at-most, per tau)
    frac = pos / n if lower_is_better else 1.0 - pos / n
    return frac.reshape(*lead, t.size)


# -- the same metrics weighted by bootstrap counts ---------------------------------------------
#
# ``counts`` has shape (n, runs, tasks): how many times each run of each task was drawn in
# each of n replicates (every task column sums to ``runs``). A metric of the resampled
# matrix depends only on the multiset of drawn values, which the counts give exactly.


def _weighted_iqm(m: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """IQM of each replicate: ``trim_mean`` of the multiset in which entry ``m[r, t]``
    appears ``counts[:, r, t]`` times. Returns ``(n,)``.

    With the values sorted, ``v_0 <= ... <= v_{N-1}``, and ``U_i`` the cumulative count up
    to ``v_i``, value ``v_i`` fills the sorted positions ``[U_{i-1}, U_i)``, of which
    ``clip(U_i) - clip(U_{i-1})`` lie in the kept range ``[lo, hi)`` (``clip`` to
    ``[lo, hi]``). Summing ``v_i`` times that by parts leaves one pass over ``clip(U)``.
    """
    n_total = m.size
    order = np.argsort(m, axis=None, kind="stable")
    vals = m.ravel()[order]
    lo = int(IQM_CUT * n_total)  # scipy.stats.trim_mean's lowercut
    hi = n_total - lo
    # Integer cumulative counts: exact, and the narrowest type that holds them (int16 up to
    # 32,767 entries), since this pass over (replicates x entries) is most of a table's time.
    dtype = np.int16 if n_total < 2**15 else np.int32 if n_total < 2**31 else np.int64
    cum = np.cumsum(counts.reshape(counts.shape[0], -1)[:, order], axis=1, dtype=dtype)
    np.clip(cum, lo, hi, out=cum)
    return (hi * vals[-1] - lo * vals[0] + cum[:, :-1].astype(np.float64) @ (vals[:-1] - vals[1:])) / (hi - lo)


def _weighted_poi(x: np.ndarray, y: np.ndarray, cx: np.ndarray, cy: np.ndarray, lower_is_better: bool) -> np.ndarray:
    """:func:`probability_of_improvement` of each pair of replicates. Returns ``(n,)``."""
    xe, ye = x[:, None, :], y[None, :, :]
    kern = ((xe < ye) if lower_is_better else (xe > ye)) + 0.5 * (xe == ye)  # (runs_x, runs_y, tasks)
    per_task = np.einsum("nst,sut,nut->nt", cx.astype(np.float64), kern, cy.astype(np.float64))
    return per_task.mean(axis=1) / (x.shape[0] * y.shape[0])


def _weighted_profile(m: np.ndarray, counts: np.ndarray, taus: np.ndarray, lower_is_better: bool) -> np.ndarray:
    """:func:`performance_profile` of each replicate. Returns ``(n, k)``.

    The profile is linear in the counts: the weight of the entries beyond each tau, one
    matrix product of the counts with the ``(entries, k)`` indicator of "beyond tau"
    (counts and indicators are small integers, so float32 sums them exactly below 2**24
    entries)."""
    flat = m.reshape(-1, 1)
    beyond = (flat < taus[None, :]) if lower_is_better else (flat > taus[None, :])
    w = counts.reshape(counts.shape[0], -1).astype(np.float32)
    return (w @ beyond.astype(np.float32)).astype(np.float64) / m.size


# -- bootstrap --------------------------------------------------------------------------------


def _percentile_interval(point: Any, boot: np.ndarray, alpha: float) -> Interval:
    low, high = np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    if np.ndim(point) == 0:
        return Interval(float(point), float(low), float(high))
    return Interval(np.asarray(point, dtype=np.float64), low, high)


def _check_boot(reps: int, alpha: float) -> None:
    if reps < 1 or not 0 < alpha < 1:
        raise ValueError(f"need reps >= 1 and 0 < alpha < 1, got reps={reps}, alpha={alpha}")


def _resample_idx(runs: int, tasks: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, runs, tasks)`` run indices: each task's runs drawn with replacement (as the
    smallest unsigned integers that hold them: a few seeds fit a byte, which numpy draws
    and compares several times faster than 64-bit integers)."""
    return rng.integers(0, runs, size=(n, runs, tasks), dtype=np.min_scalar_type(max(runs - 1, 0)))


# The draws depend only on (seed, reps, shapes), and every row of a leaderboard table
# resamples matrices of one shape with one seed: they are drawn once and reused (read-only),
# which leaves the numbers unchanged and halves the time of a table.


@functools.lru_cache(maxsize=4)
def _stratified_draws(
    seed: int, reps: int, chunk: int, shapes: tuple[tuple[int, int], ...]
) -> tuple[tuple[tuple[np.ndarray, np.ndarray], ...], ...]:
    """Per chunk of replicates, per matrix shape ``(runs, tasks)``: the run indices and
    their counts, ``(n, runs, tasks)`` each."""
    rng = np.random.default_rng(seed)
    out = []
    done = 0
    while done < reps:
        n = min(chunk, reps - done)
        part = []
        for runs, tasks in shapes:
            idx = _resample_idx(runs, tasks, n, rng)
            counts = _counts(idx, runs)
            idx.setflags(write=False)
            counts.setflags(write=False)
            part.append((idx, counts))
        out.append(tuple(part))
        done += n
    return tuple(out)


@functools.lru_cache(maxsize=4)
def _two_level_draws(seed: int, reps: int, seeds: int, tasks: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Per chunk of replicates: how often each seed ``(n, seeds)`` and each task
    ``(n, tasks)`` is drawn (float64, ready for a matrix product)."""
    rng = np.random.default_rng(seed)
    chunk = max(1, min(reps, _BOOT_CHUNK_ELEMS // (seeds * tasks)))
    out = []
    done = 0
    while done < reps:
        n = min(chunk, reps - done)
        s_idx = rng.integers(0, seeds, size=(n, seeds))
        t_idx = rng.integers(0, tasks, size=(n, tasks), dtype=np.int32 if tasks < 2**31 else np.int64)
        cs = np.bincount((np.arange(n)[:, None] * seeds + s_idx).ravel(), minlength=n * seeds).reshape(n, seeds)
        ct = np.bincount((np.arange(n)[:, None] * tasks + t_idx).ravel(), minlength=n * tasks).reshape(n, tasks)
        cs, ct = cs.astype(np.float64), ct.astype(np.float64)
        cs.setflags(write=False)
        ct.setflags(write=False)
        out.append((cs, ct))
        done += n
    return tuple(out)


def _counts(idx: np.ndarray, runs: int) -> np.ndarray:
    """How often each run is drawn per task and replicate: ``(n, runs, tasks)`` from indices."""
    n, _, tasks = idx.shape
    if runs <= 16:  # a few seeds: one comparison pass per run is ~3x faster than bincount
        out = np.empty((n, runs, tasks), dtype=np.uint8)  # a count is at most runs
        for r in range(runs):
            np.sum(idx == r, axis=1, out=out[:, r, :])
        return out
    slot = (np.arange(n)[:, None, None] * runs + idx) * tasks + np.arange(tasks)
    return np.bincount(slot.ravel(), minlength=n * runs * tasks).reshape(n, runs, tasks)


def stratified_bootstrap_ci(
    score_fn: ScoreFn,
    matrices: Sequence[np.ndarray],
    reps: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
    vectorized: bool = True,
    weighted_fn: ScoreFn | None = None,
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
    called once per replicate. With ``weighted_fn`` the replicates are evaluated from the
    draw counts instead, ``weighted_fn(*counts)`` with one ``(batch, runs_i, tasks)``
    count array per matrix, which must equal ``score_fn`` of the resampled matrices (the
    draws are the same either way). Returns ``Interval(point, low, high)``.
    """
    mats = [_matrix(m) for m in matrices]
    if not mats:
        raise ValueError("stratified_bootstrap_ci needs at least one (runs, tasks) matrix")
    _check_boot(reps, alpha)
    point = score_fn(*mats)
    per_rep = max(sum(m.size for m in mats), int(np.prod([m.shape[0] for m in mats])) * mats[0].shape[1])
    # One chunk size for every mode, so that the same seed draws the same replicates whichever
    # way they are evaluated (byte-sized draws are buffered, so the chunking shapes the stream).
    chunk = max(1, min(reps, _WEIGHTED_CHUNK_ELEMS // max(per_rep, 1)))
    values = []
    for part in _stratified_draws(seed, reps, chunk, tuple((m.shape[0], m.shape[1]) for m in mats)):
        idx = [i for i, _ in part]
        n = idx[0].shape[0]
        if weighted_fn is not None:
            out = weighted_fn(*(c for _, c in part))
            values.append(np.asarray(out, dtype=np.float64).reshape(n, *np.shape(point)))
        elif vectorized:
            batch = [np.take(m.ravel(), i.astype(np.intp) * m.shape[1] + np.arange(m.shape[1]))
                     for i, m in zip(idx, mats)]
            values.append(np.asarray(score_fn(*batch), dtype=np.float64).reshape(n, *np.shape(point)))
        else:
            for k in range(n):
                one = [np.take(m.ravel(), i[k].astype(np.intp) * m.shape[1] + np.arange(m.shape[1]))
                       for i, m in zip(idx, mats)]
                values.append(np.asarray(score_fn(*one), dtype=np.float64)[None])
    return _percentile_interval(point, np.concatenate(values, axis=0), alpha)


def iqm_ci(scores: np.ndarray, reps: int = 2000, alpha: float = 0.05, seed: int = 0) -> Interval:
    """IQM of a ``(runs, tasks)`` matrix with its stratified bootstrap CI."""
    m = _matrix(scores)
    return stratified_bootstrap_ci(iqm, [m], reps=reps, alpha=alpha, seed=seed,
                                   weighted_fn=lambda c: _weighted_iqm(m, c))


def iqm_difference_ci(
    x: np.ndarray, y: np.ndarray, reps: int = 2000, alpha: float = 0.05, seed: int = 0
) -> Interval:
    """``IQM(x) - IQM(y)`` for ``(runs_x, tasks)`` and ``(runs_y, tasks)`` with its bootstrap CI."""
    a, b = _matrix(x), _matrix(y)
    return stratified_bootstrap_ci(
        lambda p, q: iqm(p) - iqm(q), [a, b], reps=reps, alpha=alpha, seed=seed,
        weighted_fn=lambda ca, cb: _weighted_iqm(a, ca) - _weighted_iqm(b, cb),
    )


def probability_of_improvement_ci(
    x: np.ndarray,
    y: np.ndarray,
    lower_is_better: bool = False,
    reps: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> Interval:
    """:func:`probability_of_improvement` of ``(runs_x, tasks)`` over ``(runs_y, tasks)`` with its CI."""
    a, b = _matrix(x), _matrix(y)
    return stratified_bootstrap_ci(
        lambda p, q: probability_of_improvement(p, q, lower_is_better), [a, b], reps=reps, alpha=alpha, seed=seed,
        weighted_fn=lambda ca, cb: _weighted_poi(a, b, ca, cb, lower_is_better),
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
    m = _matrix(scores)
    t = np.asarray(taus, dtype=np.float64).reshape(-1)
    return stratified_bootstrap_ci(
        lambda s: performance_profile(s, t, lower_is_better), [m], reps=reps, alpha=alpha, seed=seed,
        weighted_fn=lambda c: _weighted_profile(m, c, t, lower_is_better),
    )


def mean_ci(scores: np.ndarray, reps: int = 2000, alpha: float = 0.05, seed: int = 0) -> Interval:
    """Mean of a ``(seeds, tasks)`` matrix with a two-level bootstrap percentile CI.

    Each replicate draws the seeds (whole rows) with replacement, then, independently,
    the tasks (whole columns) with replacement, and takes the mean of the resampled
    matrix; so the interval carries both the seed-to-seed spread and the spread over
    tasks. With one seed it reduces to a bootstrap over tasks.
    """
    m = _matrix(scores)
    _check_boot(reps, alpha)
    seeds, tasks = m.shape
    # The resampled matrix's mean is cs^T m ct / (seeds tasks) for the draw counts cs of the
    # seeds and ct of the tasks: one (seeds, tasks) x (tasks, n) product per chunk.
    values = [np.einsum("ns,sn->n", cs, m @ ct.T) / m.size for cs, ct in _two_level_draws(seed, reps, seeds, tasks)]
    return _percentile_interval(float(m.mean()), np.concatenate(values), alpha)


# -- records ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Aggregate:
    """The scores of every seed of one (benchmark, variant): a ``(seeds, tasks)`` matrix."""

    benchmark_id: str
    agent: str  # the variant: the agent's name for its default config, else the variant name
    task_hash: str
    which: str  # "online" or "final" (resolved from "headline")
    seeds: tuple[int, ...]
    scores: np.ndarray  # (seeds, tasks): each seed's adaptation runs averaged per task
    normalized: bool  # whether `scores` are normalised by random/oracle references
    lower_is_better: bool  # orientation of `scores`: always False once normalised
    normalization: str | None = None  # "per-task", "benchmark", "per-task-records", "benchmark-records" or None (raw)


class Normalizer(NamedTuple):
    """Random and oracle references of one score: floats, or ``(tasks,)`` arrays per task."""

    random: Any
    oracle: Any
    kind: str  # "per-task" or "benchmark"; "per-task-records" or "benchmark-records" from reference agents' records


def normalizer(bench: Any, which: str) -> Normalizer | None:
    """The references ``which`` (``"online"`` or ``"final"``) scores of ``bench`` are
    normalised by, or None when it has none.

    Per task where the benchmark gives each test task its own random and oracle return
    (``bench.task_references``, per episode; the online score's are ``budget`` times
    those), so that the oracle scores 1 on every task in expectation; else the
    benchmark-level ``bench.references``.
    """
    if which not in ("online", "final"):
        raise ValueError(f"unknown score {which!r}; use 'online' or 'final'")
    per_task = getattr(bench, "task_references", None)
    if per_task is not None:
        scale = float(bench.protocol.budget_episodes) if which == "online" else 1.0
        return Normalizer(scale * np.asarray(per_task["random"], dtype=np.float64),
                          scale * np.asarray(per_task["oracle"], dtype=np.float64), "per-task")
    refs = bench.references
    rand, orac = refs["random"][which], refs["oracle"][which]
    if rand is None or orac is None or rand == orac:
        return None
    return Normalizer(float(rand), float(orac), "benchmark")


# Where a benchmark has no random and oracle references (the dynamics families: no analytic
# optimum), the records of these two agents serve instead: uniform random actions, and PPO
# trained with the task in its observation (the best policy the suite can learn per task).
RECORD_REFERENCES = ("random", "task-ppo")


def record_normalizer(records_by_variant: Mapping[str, Sequence[Record]], bench: Any, which: str) -> Normalizer | None:
    """References taken from the records of :data:`RECORD_REFERENCES`, for a benchmark
    without its own: per test task, the mean over seeds and runs of ``random``'s and
    ``task-ppo``'s ``which`` scores (kind ``"per-task-records"``), when ``task-ppo`` beats
    ``random`` on every test task; else the means over tasks (``"benchmark-records"``) when
    it beats it on average; else None. Only records of ``bench``'s current task list count;
    lower-is-better benchmarks get none."""
    if getattr(bench, "lower_is_better", False):
        return None
    means = []
    for name in RECORD_REFERENCES:
        recs = [r for r in records_by_variant.get(name, ()) if str(r.benchmark.get("task_hash")) == str(bench.task_hash)]
        if not recs:
            return None
        means.append(seed_task_matrix(recs, which).mean(axis=0))
    rand, ref = means
    if rand.shape != ref.shape:
        return None
    if np.all(ref > rand):
        return Normalizer(rand, ref, "per-task-records")
    if float(ref.mean()) > float(rand.mean()):
        return Normalizer(float(rand.mean()), float(ref.mean()), "benchmark-records")
    return None


def seed_task_matrix(records: Sequence[Record], which: str) -> np.ndarray:
    """``(seeds, tasks)``: row i is record i's ``which`` scores with its adaptation runs
    averaged per task (its ``(runs, tasks)`` score matrix averaged over runs)."""
    rows = [r.score_matrix(which).mean(axis=0) for r in records]
    if len({row.shape for row in rows}) > 1:
        raise ValueError(f"{records[0].benchmark_id}/{records[0].variant}: seeds have different numbers of test tasks")
    return np.stack(rows)


def aggregate(
    records: Sequence[Record],
    bench: Any,
    which: str = "headline",
    normalized: bool = True,
    references: Mapping[str, Sequence[Record]] | None = None,
) -> Aggregate:
    """The ``(seeds, tasks)`` scores of the seeds of one (benchmark, variant), sorted by seed.

    ``bench`` is the registered benchmark (:func:`metarl_bench.benchmark`): the headline,
    orientation and references come from it, never from the records. ``which`` is
    ``"online"``, ``"final"`` or ``"headline"``. With ``normalized`` the scores are
    normalised (:func:`normalizer`) where references exist, else by the reference agents'
    records among ``references`` (the benchmark's records by variant; see
    :func:`record_normalizer`); check ``Aggregate.normalized``. Raises ``ValueError`` if the records are of another
    benchmark or task list than ``bench``, mix variants, or repeat a seed.
    """
    if not records:
        raise ValueError("aggregate needs at least one record")
    recs = sorted(records, key=lambda r: r.seed)
    first = recs[0]
    for key, get, want in (
        ("benchmark", lambda r: r.benchmark_id, str(bench.id)),
        ("task list (benchmark.task_hash)", lambda r: str(r.benchmark["task_hash"]), str(bench.task_hash)),
    ):
        seen = sorted({get(r) for r in recs})
        if seen != [want]:
            raise ValueError(
                f"cannot aggregate records of {key} {seen} as {bench.id} (its {key} is {want!r}); keep only "
                f"records of the registered benchmark's current task list (re-run the stale seeds)"
            )
    variants = sorted({r.variant for r in recs})
    if len(variants) > 1:
        raise ValueError(f"cannot pool records of different variants: {variants}")
    seeds = [r.seed for r in recs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{first.benchmark_id}/{first.variant}: seed repeated in {seeds}")
    if which == "headline":
        which = str(bench.headline)
    scores = seed_task_matrix(recs, which)
    lower = bool(getattr(bench, "lower_is_better", False))
    kind = None
    if normalized:
        ref = normalizer(bench, which)
        if ref is None and references is not None:
            ref = record_normalizer(references, bench, which)
        if ref is not None:
            if ref.kind.startswith("per-task") and np.shape(ref.random) != (scores.shape[1],):
                raise ValueError(
                    f"{first.benchmark_id}/{first.variant}: records have {scores.shape[1]} test tasks, the registered "
                    f"benchmark {np.shape(ref.random)[0]}; re-run these seeds"
                )
            scores = normalize(scores, ref.random, ref.oracle)
            kind, lower = ref.kind, False
    return Aggregate(
        benchmark_id=first.benchmark_id,
        agent=first.variant,
        task_hash=str(first.benchmark["task_hash"]),
        which=which,
        seeds=tuple(seeds),
        scores=scores,
        normalized=kind is not None,
        lower_is_better=lower,
        normalization=kind,
    )


# -- helpers ----------------------------------------------------------------------------------


def _matrix(m: np.ndarray) -> np.ndarray:
    a = np.asarray(m, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"expected a non-empty (runs, tasks) matrix, got shape {a.shape}")
    return a
