"""Every pairwise comparison of a leaderboard table at once, with the numbers
``metarl-bench compare`` gives.

:func:`metarl_bench.leaderboard.compare` of variants ``a`` and ``b`` reports
``IQM(a) - IQM(b)`` (:func:`metarl_bench.stats.iqm_difference_ci`) and the probability of
improvement (:func:`metarl_bench.stats.probability_of_improvement_ci`), each a stratified
bootstrap whose resamples depend only on the seed, the number of replicates and the two
matrices' shapes. So in a table whose rows share a shape, the first matrix of every pair is
resampled with the same counts, and so is the second: :func:`pairwise` draws those counts
once (through :func:`metarl_bench.stats.stratified_bootstrap_ci`, which hands them to its
``weighted_fn``), computes each row's bootstrap IQMs once per position, and takes each
pair's differences from them. The probability of improvement is counted per pair. For
``k`` rows that is ``2k`` IQM bootstraps instead of ``k (k - 1)``, and the same replicates,
so the same intervals, as ``compare`` computes one pair at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from metarl_bench import stats


def _counts(shape_a: tuple[int, int], shape_b: tuple[int, int], reps: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per chunk of replicates, the draw counts ``(n, runs, tasks)`` of the first and second
    matrix that :func:`metarl_bench.stats.stratified_bootstrap_ci` uses for two matrices of
    these shapes, in its chunks."""
    chunks: list[tuple[np.ndarray, np.ndarray]] = []

    def grab(ca: np.ndarray, cb: np.ndarray) -> np.ndarray:
        chunks.append((ca, cb))
        return np.zeros(ca.shape[0])

    stats.stratified_bootstrap_ci(lambda p, q: 0.0, [np.zeros(shape_a), np.zeros(shape_b)], reps=reps, seed=seed,
                                  weighted_fn=grab)
    return chunks


def _iqm_replicates(m: np.ndarray, counts: Sequence[np.ndarray]) -> np.ndarray:
    """The bootstrap IQMs of ``m`` under ``counts`` (one array per chunk): the interquartile
    mean of the multiset in which ``m[r, t]`` appears ``counts[:, r, t]`` times, computed as
    :func:`metarl_bench.stats.iqm_ci` computes it (sorted values, clipped integer cumulative
    counts), chunk by chunk, so the replicates are the same numbers."""
    n_total = m.size
    order = np.argsort(m, axis=None, kind="stable")
    vals = m.ravel()[order]
    lo = int(stats.IQM_CUT * n_total)
    hi = n_total - lo
    dtype = np.int16 if n_total < 2**15 else np.int32 if n_total < 2**31 else np.int64
    step = vals[:-1] - vals[1:]
    out = []
    for c in counts:
        cum = c.reshape(c.shape[0], -1)[:, order].astype(dtype)
        np.cumsum(cum, axis=1, out=cum)  # integers: the same sums in any order
        np.clip(cum, lo, hi, out=cum)
        out.append((hi * vals[-1] - lo * vals[0] + cum[:, :-1].astype(np.float64) @ step) / (hi - lo))
    return np.concatenate(out)


class _Counts:
    """The draw counts of one position of a pair (every chunk's together), in the two forms
    :func:`_poi_replicates` reads: ``runs x (n, tasks)`` float32 arrays, and, where few
    enough distinct count vectors exist (a handful of seeds), each ``(n, task)``'s vector as
    an index into ``patterns`` ``(P, runs)``."""

    MAX_TABLE = 2_000_000  # largest per-pair lookup table (tasks x P_x x P_y entries) worth building

    def __init__(self, chunks: Sequence[np.ndarray]) -> None:
        c = np.concatenate(list(chunks))  # (n, runs, tasks)
        self.runs, self.tasks = c.shape[1], c.shape[2]
        self._counts = c
        base = self.runs + 1
        code = np.zeros(c.shape[::2], dtype=np.int64)  # (n, tasks): the vector in base runs + 1
        for s in range(self.runs):
            code = code * base + c[:, s, :]
        if base**self.runs <= 1 << 22:  # few possible codes: number the ones present by counting
            present = np.bincount(code.ravel(), minlength=base**self.runs) > 0
            uniq = np.flatnonzero(present)
            inverse = (np.cumsum(present) - 1)[code]
        else:
            uniq, inverse = np.unique(code, return_inverse=True)
        self.patterns = np.zeros((uniq.size, self.runs), dtype=np.float32)
        rest = uniq.copy()
        for s in reversed(range(self.runs)):
            self.patterns[:, s] = rest % base
            rest //= base
        self.index = inverse.reshape(code.shape).astype(np.int32)
        self._offsets: dict[int, np.ndarray] = {}
        self._dense: np.ndarray | None = None

    @property
    def dense(self) -> np.ndarray:
        """``(runs, n, tasks)`` float32 counts (built when first needed)."""
        if self._dense is None:
            self._dense = np.ascontiguousarray(self._counts.transpose(1, 0, 2), dtype=np.float32)
        return self._dense

    def offsets(self, py: int) -> np.ndarray:
        """``(n, tasks)``: where each task's row for this count vector starts in a
        ``(tasks, P, py)`` table, flattened."""
        if py not in self._offsets:
            self._offsets[py] = (np.arange(self.tasks, dtype=np.int32) * len(self.patterns) + self.index) * py
        return self._offsets[py]


def _poi_replicates(x: np.ndarray, y: np.ndarray, cx: _Counts, cy: _Counts, lower_is_better: bool) -> np.ndarray:
    """The bootstrap probabilities of improvement of ``x`` over ``y`` under the draw counts
    ``cx`` and ``cy``: per task, the counts of ``x``'s runs times the win (1), tie (0.5) or
    loss (0) of each pair of runs times the counts of ``y``'s runs, over ``runs_x * runs_y``,
    averaged over tasks. Every per-task value is a sum of small multiples of 0.5, exact in
    float32, so these equal :func:`metarl_bench.stats.probability_of_improvement_ci`'s
    replicates. With few distinct count vectors, each task's value for every pair of them
    is tabulated first and looked up."""
    xe, ye = x[:, None, :], y[None, :, :]
    kern = (((xe < ye) if lower_is_better else (xe > ye)) + 0.5 * (xe == ye)).astype(np.float32)
    px, py = len(cx.patterns), len(cy.patterns)
    if cx.tasks * px * py <= _Counts.MAX_TABLE:
        table = np.einsum("ps,sut,qu->tpq", cx.patterns, kern, cy.patterns).astype(np.float64).ravel()
        idx = cx.offsets(py) + cy.index
        return np.take(table, idx).mean(axis=1) / (x.shape[0] * y.shape[0])
    else:
        per_task = np.zeros(cx.dense.shape[1:], dtype=np.float32)
        row, tmp = np.empty_like(per_task), np.empty_like(per_task)
        for u in range(y.shape[0]):
            # sum over x's runs s of counts_x[s, n, t] * kern[s, u, t], times counts_y[u, n, t]
            np.multiply(cx.dense[0], kern[0, u], out=row)
            for s in range(1, x.shape[0]):
                np.multiply(cx.dense[s], kern[s, u], out=tmp)
                row += tmp
            row *= cy.dense[u]
            per_task += row
    return per_task.astype(np.float64).mean(axis=1) / (x.shape[0] * y.shape[0])


def _interval(point: float, boot: np.ndarray, alpha: float = 0.05) -> stats.Interval:
    low, high = np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    return stats.Interval(float(point), float(low), float(high))


def pairwise(
    scores: Sequence[np.ndarray], lower_is_better: bool, reps: int = 2000, seed: int = 0
) -> dict[tuple[int, int], tuple[stats.Interval, stats.Interval]]:
    """For every pair ``i < j`` of the ``(seeds, tasks)`` matrices ``scores`` (one per row, in
    table order): ``(IQM(i) - IQM(j), P(i beats j))`` with their stratified bootstrap 95%
    CIs, as ``compare`` of rows ``i`` and ``j`` gives them (``reps`` resamples from ``seed``).
    ``lower_is_better`` says what "beats" means for raw scores."""
    mats = [np.asarray(s, dtype=np.float64) for s in scores]
    out: dict[tuple[int, int], tuple[stats.Interval, stats.Interval]] = {}
    draws: dict[tuple[Any, Any], list[tuple[np.ndarray, np.ndarray]]] = {}
    flat: dict[tuple[Any, Any], tuple[_Counts, _Counts]] = {}
    iqms: dict[tuple[int, int, Any], np.ndarray] = {}  # (row, position, shapes) -> bootstrap IQMs
    points = [float(stats.iqm(m)) for m in mats]
    for i in range(len(mats)):
        for j in range(i + 1, len(mats)):
            key = (mats[i].shape, mats[j].shape)
            if key not in draws:
                draws[key] = _counts(mats[i].shape, mats[j].shape, reps, seed)
                flat[key] = (_Counts([c[0] for c in draws[key]]), _Counts([c[1] for c in draws[key]]))
            chunks = draws[key]
            for row, pos in ((i, 0), (j, 1)):
                if (row, pos, key) not in iqms:
                    iqms[(row, pos, key)] = _iqm_replicates(mats[row], [c[pos] for c in chunks])
            diff = _interval(points[i] - points[j], iqms[(i, 0, key)] - iqms[(j, 1, key)])
            poi_point = stats.probability_of_improvement(mats[i], mats[j], lower_is_better)
            poi = _interval(poi_point, _poi_replicates(mats[i], mats[j], *flat[key], lower_is_better))
            out[(i, j)] = (diff, poi)
    return out
