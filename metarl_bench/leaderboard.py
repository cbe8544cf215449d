"""The leaderboard: ``results/LEADERBOARD.md`` and a static ``results/index.html``, a pure
function of the records under ``results/`` and of the registered benchmarks.

Entry points (the CLI's ``leaderboard``, ``plot`` and ``compare`` commands):

- :func:`build_leaderboard` -> ``(markdown, html, errors)``, writes nothing;
- :func:`write_leaderboard` regenerates ``results/plots/`` and writes both pages, all or
  nothing: every output is written to a staging folder first and moved into place only
  once all were written. It raises :class:`LeaderboardError` naming every bad results
  file unless ``allow_errors=True``, which publishes with a warning banner listing them;
- :func:`write_plots` regenerates only the plots (also all or nothing);
- :func:`compare` -> ``(dict, text)``: difference in IQM and probability of improvement
  between two variants on one benchmark, with stratified bootstrap CIs.

Every published number comes from the registered benchmark (:func:`metarl_bench.benchmark`:
its references, headline and direction) and the episode returns in the records; the
records' own derived fields (stored references, normalised scores, curve) are never
read. A results file is bad when it does not load or validate; sits at a path that does
not match its benchmark/variant/seed; is of a benchmark that is not registered, of
another version, or of a task list that is not the registered benchmark's current one
(stale); states a headline or direction the registered benchmark does not have; has
returns whose shape does not fit the benchmark's protocol; or states scores that its
own episode returns do not give (hand-edited). Records of one (benchmark, variant) are
pooled over seeds only if they share the agent and its configuration. Nothing in the
pages depends on the time or the machine that builds them, so the same records give the
same bytes.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import re
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metarl_bench import stats
from metarl_bench.harness import progress_bar
from metarl_bench.page_format import fmt_ci
from metarl_bench.results import (
    DEFAULT_RESULTS,
    Record,
    RecordError,
    current_umask,
    iter_record_paths,
    load_record,
    record_path,
)

PLOTS_DIR = "plots"
_PLOT_KINDS = ("curves", "profiles")
MIN_SEEDS = 3  # rows with fewer seeds are flagged
FEW_SEEDS_MARK = "†"
_STAGING_PREFIX = ".leaderboard-staging-"

class LeaderboardError(ValueError):
    """Results files that failed validation; the leaderboard was not published."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        lines = "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(
            f"{len(self.errors)} problem(s) in the results; nothing was published:\n{lines}\n"
            f"Delete or re-run the named records (`metarl-bench run ...`), or pass allow_errors=True "
            f"(`--allow-errors`) to publish the rest with a warning banner listing them."
        )


class ResultsPathError(ValueError):
    """The results path does not exist or is not a folder (nothing is created or published)."""


def check_results_dir(results_dir: str | Path) -> Path:
    """``results_dir`` as a :class:`~pathlib.Path`, or :class:`ResultsPathError` naming the
    problem and the fix when it does not exist or is not a folder."""
    root = Path(results_dir)
    if not root.exists():
        raise ResultsPathError(
            f"results folder {root} does not exist; pass --results with the folder that holds the records "
            f"(`metarl-bench run` creates it)"
        )
    if not root.is_dir():
        raise ResultsPathError(f"results path {root} is a file, not a folder; pass --results with the results folder")
    return root


# -- collecting and validating records ---------------------------------------------------------


@dataclass
class Problem:
    """One validation problem: a message naming the file (where there is one)."""

    message: str
    benchmark_id: str | None = None
    agent: str | None = None  # the variant


@dataclass
class Results:
    """The valid records under a results folder, grouped, and every problem found."""

    root: Path
    # benchmark id -> variant -> records sorted by seed (all of the registered task list)
    groups: dict[str, dict[str, list[Record]]] = field(default_factory=dict)
    benchmarks: dict[str, Any] = field(default_factory=dict)  # benchmark id -> registered Benchmark
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return [p.message for p in self.problems]

    def n_records(self) -> int:
        return sum(len(rs) for by in self.groups.values() for rs in by.values())


def collect(
    results_dir: str | Path = DEFAULT_RESULTS, preload: Sequence[str] = (), progress: bool | None = False
) -> Results:
    """Load and validate every record under ``results_dir`` against its registered
    benchmark; group the valid ones by (benchmark, variant). With ``progress`` (``None``:
    when stderr is a terminal) a bar counts the records loaded.

    A group whose seeds disagree on the agent or its configuration is reported and left
    out whole, since no part of it can be pooled. Raises :class:`ResultsPathError` when
    ``results_dir`` does not exist or is not a folder. The modules named in ``preload``
    are imported while the task lists are drawn (the plots' matplotlib, scipy's
    statistics), so that the workers forked later inherit them instead of each importing
    them.
    """
    root = check_results_dir(results_dir)
    out = Results(root=root)
    paths = list(iter_record_paths(root))
    # The registered benchmarks' task lists are drawn (in worker processes) while the records load.
    prepared = _prepare(sorted({bid for bid, _ in (_ids_from_path(root, p) for p in paths) if bid}))
    for module in preload:
        importlib.import_module(module)
    loaded: list[tuple[Path, Record | RecordError]] = []
    with progress_bar(progress, len(paths), f"loading records under {root}", unit="record") as bar:
        for path in paths:
            try:
                loaded.append((path, load_record(path)))
            except RecordError as exc:
                loaded.append((path, exc))
            bar.update(1)
    registry = prepared()
    by_key: dict[tuple[str, str], list[tuple[Path, Record]]] = defaultdict(list)
    for path, rec in loaded:
        bid, variant = _ids_from_path(root, path)
        if isinstance(rec, RecordError):
            out.problems.append(Problem(str(rec), bid, variant))
            continue
        if rec.benchmark_id not in registry:  # a record filed under another benchmark's folder
            registry.update(_prepare([rec.benchmark_id])())
        bench = registry[rec.benchmark_id]
        msg = _check_record(root, path, rec, bench)
        if msg is not None:
            out.problems.append(Problem(msg, bid, variant))
            continue
        by_key[(rec.benchmark_id, rec.variant)].append((path, rec))
    for (bid, variant), items in sorted(by_key.items()):
        msg = _check_group(bid, variant, items)
        if msg is not None:
            out.problems.append(Problem(msg, bid, variant))
            continue
        out.groups.setdefault(bid, {})[variant] = sorted((r for _, r in items), key=lambda r: r.seed)
        out.benchmarks[bid] = registry[bid]
    return out


def _prepare(benchmark_ids: Sequence[str]) -> Callable[[], dict[str, Any]]:
    """Start preparing the registered benchmark of each id (or what :func:`_registered`
    says instead); returns a function that waits and gives them, with the task hash and
    references each record is checked against computed.

    Computing them means drawing every task list (a second or more for the large ones),
    so several benchmarks' are computed in parallel (:func:`_start_jobs`) and stored in
    this process's benchmark objects, as their own cached properties would.
    """
    out = {bid: _registered(bid) for bid in benchmark_ids}
    todo = [b for b in out.values() if not isinstance(b, str) and "task_hash" not in b.__dict__]
    if len(todo) < 2:
        return lambda: out
    todo.sort(key=lambda b: (-_hash_cost(b), b.id))  # the longest first, so the workers finish together
    wait = _start_jobs([(f"task lists of {b.id}", functools.partial(_derived, b)) for b in todo], None)

    def done() -> dict[str, Any]:
        for b, (task_hash, refs) in zip(todo, wait()):
            b.__dict__["task_hash"], b.__dict__["_family_references"] = task_hash, refs
        return out
    return done


def _hash_cost(bench: Any) -> float:
    """Roughly the seconds drawing and hashing ``bench``'s task lists take: a fixed cost a
    task plus one per character of its JSON (measured: ~12 us and ~25 ns on a 2-core CPU)."""
    one = bench.family.sample_tasks(1, np.random.default_rng(0))[0]
    tasks = bench.n_train + bench.n_test + bench.n_ood
    return tasks * (12e-6 + 25e-9 * len(json.dumps(one.to_dict())))


def _derived(bench: Any) -> tuple[str, dict[str, np.ndarray | None]]:
    return bench.task_hash, bench._family_references


def _registered(benchmark_id: str) -> Any:
    """The registered benchmark of that id, or a string saying what is registered instead."""
    from metarl_bench.benchmarks import benchmark, benchmark_ids
    from metarl_bench.family import UnknownIdError

    try:
        return benchmark(benchmark_id)
    except (UnknownIdError, KeyError, ValueError):
        stem = re.sub(r"-v\d+$", "", benchmark_id)
        same = [b for b in benchmark_ids() if re.sub(r"-v\d+$", "", b) == stem]
        return (
            f"registered versions of it: {', '.join(same)}" if same
            else "no benchmark of that name is registered (`metarl-bench list` shows those that are)"
        )


def _ids_from_path(root: Path, path: Path) -> tuple[str | None, str | None]:
    parts = path.relative_to(root).parts
    if len(parts) < 3:
        return None, None
    return "/".join(parts[:-2]), parts[-2]


def _rerun(rec: Record, bid: str | None = None) -> str:
    cmd = f"metarl-bench run --benchmark {bid or rec.benchmark_id} --agent {rec.agent_name} --seeds {rec.seed}"
    if rec.variant != rec.agent_name:
        cmd += f" --name {rec.variant} --set ... (the settings in its agent.config)"
    return f"`{cmd}`"


def _check_record(root: Path, path: Path, rec: Record, bench: Any) -> str | None:
    """A problem with a record that loaded, or None."""
    expected = record_path(root, rec.benchmark_id, rec.variant, rec.seed)
    if expected != path:
        return (
            f"{path}: holds benchmark {rec.benchmark_id!r}, variant {rec.variant!r}, seed {rec.seed}, which "
            f"belongs at {expected}; the file was moved or edited. Move it back or re-run that seed."
        )
    if isinstance(bench, str):
        return (
            f"{path}: benchmark {rec.benchmark_id!r} is not registered in this installation ({bench}), so its "
            f"scores cannot be checked against a definition and are not published. Install the package that "
            f"registers it, or delete the file and run the agent on a registered benchmark."
        )
    b = rec.benchmark
    stored_version = b.get("version")
    if stored_version != bench.version:
        return (
            f"{path}: says benchmark version {stored_version!r} but the registered {bench.id} is version "
            f"{bench.version}; the file was edited. Re-run it: {_rerun(rec)}."
        )
    if str(b["task_hash"]) != bench.task_hash:
        return (
            f"{path}: evaluated on task list {b['task_hash']} of {bench.id}, but the registered {bench.id} "
            f"(version {bench.version}) has task hash {bench.task_hash}: the record is stale. Re-run it: "
            f"{_rerun(rec)}."
        )
    for key, want in (("headline", bench.headline), ("lower_is_better", bool(bench.lower_is_better))):
        got = b.get(key, False) if key == "lower_is_better" else b.get(key)
        if got != want:
            return (
                f"{path}: benchmark.{key} is {got!r} but the registered {bench.id} has {want!r}; the file was "
                f"edited. Restore it or re-run it: {_rerun(rec)}."
            )
    proto = bench.protocol
    n_budget = sum(p == "budget" for p in rec.phase)
    n_final = sum(p == "final" for p in rec.phase)
    shape = (bench.n_test, proto.runs_per_task)
    if rec.returns.shape[:2] != shape or n_budget != proto.budget_episodes or (proto.final_episodes > 0) != (n_final > 0):
        return (
            f"{path}: its episode returns (tasks x runs x episodes {tuple(rec.returns.shape)}, {n_budget} budget "
            f"episodes) do not fit {bench.id}'s protocol ({shape[0]} test tasks x {shape[1]} runs, budget "
            f"{proto.budget_episodes} episodes); the file was edited or comes from another definition. Re-run "
            f"it: {_rerun(rec)}."
        )
    for which in ("online", "final"):
        if not _has_phase(rec, which):
            continue
        stored = rec.scores[which]["value"]
        actual, _ = stats.mean_and_se(rec.score_matrix(which))
        # The returns are stored as float32, hence the tolerance.
        if not np.isclose(stored, actual, rtol=1e-4, atol=1e-6):
            return (
                f"{path}: scores.{which}.value is {stored!r} but the episode returns give {actual:.6g}; "
                f"the file was edited by hand. Re-run that seed to regenerate it."
            )
    return None


def _has_phase(rec: Record, which: str) -> bool:
    return any(p == ("budget" if which == "online" else "final") for p in rec.phase)


def _check_group(bid: str, variant: str, items: list[tuple[Path, Record]]) -> str | None:
    configs: dict[str, list[str]] = defaultdict(list)
    for path, r in items:
        key = json.dumps({"agent": r.agent_name, "config": r.agent["config"]}, sort_keys=True, default=str)
        configs[key].append(str(path))
    if len(configs) > 1:
        detail = "; ".join(f"{c}: {', '.join(ps)}" for c, ps in sorted(configs.items()))
        return (
            f"{bid}/{variant}: seeds ran with different agent configurations and cannot be pooled ({detail}). "
            f"Re-run them with one configuration or give the other configuration its own variant name (--name)."
        )
    return None


# -- table rows --------------------------------------------------------------------------------


@dataclass
class Row:
    """One variant's line in a benchmark table (all numbers over its (seeds, tasks) matrix)."""

    agent: str  # the variant
    seeds: tuple[int, ...]
    online: stats.Interval | None  # mean and two-level bootstrap CI; None without budget episodes
    final: stats.Interval | None
    iqm: stats.Interval
    normalization: str | None  # "per-task", "benchmark" or None (raw)
    meta_train_steps: float
    meta_train_seconds: float
    headline_value: float
    scores: np.ndarray | None = None  # the (seeds, tasks) matrix the IQM is of (normalised where it can be)
    lower_is_better: bool = False  # orientation of `scores`


def _row(variant: str, recs: list[Record], bench: Any, reps: int, seed: int,
         group: Mapping[str, Sequence[Record]] | None = None) -> Row:
    headline = str(bench.headline)
    means = {
        which: stats.mean_ci(stats.seed_task_matrix(recs, which), reps=reps, seed=seed)
        if _has_phase(recs[0], which) else None
        for which in ("online", "final")
    }
    agg = stats.aggregate(recs, bench, which="headline", normalized=True, references=group)
    head = means[headline]
    return Row(
        agent=variant,
        seeds=agg.seeds,
        online=means["online"],
        final=means["final"],
        iqm=stats.iqm_ci(agg.scores, reps=reps, seed=seed),
        normalization=agg.normalization,
        meta_train_steps=float(np.mean([float(r.meta_train.get("env_steps", 0) or 0) for r in recs])),
        meta_train_seconds=float(np.mean([float(r.meta_train.get("wall_seconds", 0) or 0) for r in recs])),
        headline_value=float("nan") if head is None else float(head.point),
        scores=agg.scores,
        lower_is_better=agg.lower_is_better,
    )


# -- formatting --------------------------------------------------------------------------------


def fmt_steps(n: float) -> str:
    return f"{n:,.0f}"


def fmt_seconds(s: float, unit: str | None = None) -> str:
    """``s`` seconds in ``unit`` (``"s"``, ``"min"`` or ``"h"``; by default the one :func:`time_unit` picks for it)."""
    unit = unit or time_unit([s])
    if unit == "s":
        return f"{s:.1f} s"
    if unit == "min":
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def time_unit(seconds: Sequence[float]) -> str:
    """The one unit a column of durations is shown in: seconds below 2 minutes at most,
    minutes below 2 hours, else hours."""
    top = max(seconds, default=0.0)
    return "s" if top < 120 else "min" if top < 7200 else "h"


# -- building ----------------------------------------------------------------------------------


@dataclass
class _Table:
    title: str
    plot_stem: str  # the benchmark label handed to the plot functions
    info: list[str]
    header: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    page: dict[str, Any] = field(default_factory=dict)  # the page's data of this benchmark (metarl_bench.page)


def _label(bid: str) -> str:
    return bid


def _bench_order(res: Results) -> list[str]:
    """Benchmarks in page order: quick tier first, then by id."""
    return sorted(res.groups, key=lambda b: (str(res.benchmarks[b].tier) == "smoke", b))


def _tables(res: Results, reps: int, seed: int, progress: Callable[[str], None] | None = None) -> list[_Table]:
    keys = _bench_order(res)
    tables = []
    for i, bid in enumerate(keys):
        if progress is not None:
            progress(f"table {i + 1}/{len(keys)}: {bid} ({len(res.groups[bid])} rows)")
        tables.append(_table(res, bid, reps, seed))
    return tables


def _table(res: Results, bid: str, reps: int, seed: int) -> _Table:
    """The table of one benchmark: a row per variant, sorted by the headline score."""
    by_variant = res.groups[bid]
    bench = res.benchmarks[bid]
    headline = str(bench.headline)
    lower = bool(bench.lower_is_better)
    rows = [_row(v, recs, bench, reps, seed, by_variant) for v, recs in sorted(by_variant.items())]
    rows.sort(key=lambda r: ((r.headline_value if lower else -r.headline_value), r.agent))
    kind = rows[0].normalization
    iqm_head = f"IQM of {'normalised ' if kind else ''}{headline} score [95% CI]"
    if kind == "per-task":
        iqm_head += " (per-task references)"
    elif kind == "benchmark":
        iqm_head += " (benchmark references)"
    elif kind in ("per-task-records", "benchmark-records"):
        iqm_head += f" ({'per-task ' if kind == 'per-task-records' else ''}references: {' and '.join(stats.RECORD_REFERENCES)} records)"
    else:
        iqm_head += " (no references: raw" + (", lower is better)" if lower else ")")
    star = " (headline)"
    header = [
        "#", "Agent", "Online score [95% CI]" + (star if headline == "online" else ""),
        "Final score [95% CI]" + (star if headline == "final" else ""), iqm_head,
        "Meta-train env steps", "Meta-train time", "Seeds",
    ]
    unit = time_unit([r.meta_train_seconds for r in rows])
    body = [
        [
            str(i + 1), r.agent, fmt_ci(r.online), fmt_ci(r.final), fmt_ci(r.iqm),
            fmt_steps(r.meta_train_steps), fmt_seconds(r.meta_train_seconds, unit),
            str(len(r.seeds)) + (f" {FEW_SEEDS_MARK}" if len(r.seeds) < MIN_SEEDS else ""),
        ]
        for i, r in enumerate(rows)
    ]
    notes = []
    if any(len(r.seeds) < MIN_SEEDS for r in rows):
        notes.append(
            f"{FEW_SEEDS_MARK} fewer than {MIN_SEEDS} seeds: too few independent training runs for the "
            f"intervals to say much; run more seeds (`metarl-bench run ... --seeds 0 1 2`)."
        )
    info = _info(bench, kind, by_variant)
    from metarl_bench.page import benchmark_data

    data = benchmark_data(bench, by_variant, rows, body, header, info, notes, reps=reps, seed=seed)
    return _Table(_label(bid), _label(bid), info, header, body, notes, data)


def _info(bench: Any, kind: str | None, group: Mapping[str, Sequence[Record]] | None = None) -> list[str]:
    proto = bench.protocol
    headline = str(bench.headline)
    lower = bool(bench.lower_is_better)
    what = {
        "online": f"online score = total return over the {proto.budget_episodes}-episode budget",
        "final": "final score = mean return of the final evaluation episodes after adaptation",
    }[headline]
    if lower:
        what = f"{headline} score = query MSE ({'summed over the budget' if headline == 'online' else 'after adaptation'})"
    if getattr(bench, "episode_score", "return") == "success":  # an episode scores 1 if it succeeded at any step
        what = {
            "online": f"online score = successful episodes in the {proto.budget_episodes}-episode budget",
            "final": "final score = success rate of the final evaluation episodes after adaptation",
        }[headline]
    lines = [
        f"Headline: {what}; {'lower' if lower else 'higher'} is better.",
        f"Version {bench.version}, tier {bench.tier}, task hash `{bench.task_hash}`; "
        f"{bench.n_test} test tasks × {proto.runs_per_task} adaptation runs per seed.",
    ]
    refs = bench.references
    rand, orac = refs["random"][headline], refs["oracle"][headline]
    if kind == "per-task":
        lines.append(
            f"Normalisation: per test task, by that task's own random and oracle {headline} references, so the "
            f"oracle scores 1 on every task in expectation (means over tasks: random {rand:.4g}, oracle {orac:.4g})."
        )
    elif kind == "benchmark":
        lines.append(
            f"Normalisation: benchmark-level references ({headline}): random {rand:.4g}, oracle {orac:.4g}; "
            f"this benchmark has no per-task references."
        )
    elif kind in ("per-task-records", "benchmark-records") and group is not None:
        ref = stats.record_normalizer(group, bench, headline)
        assert ref is not None
        low, high = (float(np.mean(x)) for x in (ref.random, ref.oracle))
        rand_name, ref_name = stats.RECORD_REFERENCES
        where = "per test task, by the mean scores on that task" if kind == "per-task-records" else "by the mean scores"
        lines.append(
            f"Normalisation: this benchmark has no analytic references, so {rand_name} (0) and {ref_name} (1, PPO "
            f"that sees the task) serve, {where} of their records here (means over tasks: {rand_name} {low:.4g}, "
            f"{ref_name} {high:.4g}); an agent above 1 beats {ref_name}."
        )
    else:
        lines.append(f"No random/oracle references for the {headline} score: IQM is of raw scores.")
    return lines


_INTRO = (
    "Generated by `metarl-bench leaderboard` from the records under this folder and the registered benchmark "
    "definitions (references, headline and direction come from the definitions, scores from the episode "
    "returns); do not edit by hand. A run is an independent meta-training seed: each seed's adaptation runs "
    "are averaged per test task first, giving a seeds × tasks matrix per row. Online and final scores: the mean "
    "over seeds × tasks with a 95% two-level bootstrap CI (seeds resampled with replacement, then test tasks; "
    "{reps} resamples, seed {seed}), so the interval carries the seed-to-seed spread as well as the spread over "
    "tasks. The IQM (interquartile mean over seeds × tasks, Agarwal et al. 2021) is of scores normalised so that "
    "the random reference is 0 and the oracle 1 (per test task where the benchmark has per-task references; "
    "each table says which), with a 95% stratified bootstrap CI ({reps} resamples of the seeds within each "
    "task, seed {seed}). Rows are sorted by the headline score; the Seeds column gives each row's number of "
    "seeds, marked {mark} below {min_seeds}."
)


def _intro(reps: int, seed: int) -> str:
    return _INTRO.format(reps=reps, seed=seed, mark=FEW_SEEDS_MARK, min_seeds=MIN_SEEDS)


def build_leaderboard(
    results_dir: str | Path = DEFAULT_RESULTS, reps: int = 2000, seed: int = 0
) -> tuple[str, str, list[str]]:
    """The leaderboard of the records under ``results_dir``: ``(markdown, html, errors)``.

    Writes nothing. ``errors`` lists every problem (each naming its file); when there
    are any, both pages open with a warning banner listing them. Plots are referenced as
    ``plots/<benchmark>.curves.png`` and ``.profiles.png`` relative to ``results_dir``
    (:func:`write_leaderboard` generates them).
    """
    res = collect(results_dir)
    tables = _tables(res, reps, seed)
    intro = _intro(reps, seed)
    return _markdown(res, tables, intro), _html(res, tables, intro), res.errors


def _plot_rel(label: str, kind: str) -> str:
    from metarl_bench.plots import plot_path

    return plot_path(PLOTS_DIR, label, kind).as_posix()


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|")


def _markdown(res: Results, tables: list[_Table], intro: str) -> str:
    out = ["# metarl-bench leaderboard", ""]
    if res.errors:
        out += [
            f"> **Warning: incomplete.** {len(res.errors)} problem(s) in the results; the tables below leave "
            f"out the records concerned:", ">",
        ]
        out += [f"> - {_md_cell(e)}" for e in res.errors]
        out.append("")
    out += [intro, ""]
    if not tables:
        out += [f"No valid records under `{res.root}`. Run `metarl-bench run --benchmark B --agent A`.", ""]
    for t in tables:
        out += [f"## {t.title}", ""] + [f"{line}  " for line in t.info] + [""]
        out.append("| " + " | ".join(_md_cell(h) for h in t.header) + " |")
        out.append("|" + "|".join("---:" if i not in (1,) else ":---" for i in range(len(t.header))) + "|")
        out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows]
        if t.notes:
            out += [""] + [f"{n}  " for n in t.notes]
        out += [
            "",
            f"![Adaptation curves on {t.title}]({_plot_rel(t.plot_stem, 'curves')})",
            f"![Performance profiles on {t.title}]({_plot_rel(t.plot_stem, 'profiles')})",
            "",
        ]
    return "\n".join(out)


def _html(res: Results, tables: list[_Table], intro: str) -> str:
    from metarl_bench.page import render

    return render([t.page for t in tables], intro, res.errors, str(res.root))


# -- writing -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _jobs_bar(enabled: bool | None, desc: str) -> Iterator[tuple[Callable[[str], None], Callable[[int], None]]]:
    """A progress bar of the table and plot jobs: ``(done(label), set_total(n))``; shown when
    ``enabled`` (``None``: when stderr is a terminal)."""
    with progress_bar(enabled, None, desc, unit="job", leave=True) as bar:
        def done(label: str) -> None:
            bar.set_postfix(last=label, refresh=False)
            bar.update(1)

        def set_total(n: int) -> None:
            bar.total = n  # tqdm's total may be set once known

        yield done, set_total


def write_plots(
    results_dir: str | Path = DEFAULT_RESULTS,
    allow_errors: bool = False,
    out_dir: str | Path | None = None,
    benchmark_id: str | None = None,
    progress: bool | None = None,
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """(Re)generate the plots of the records under ``results_dir`` in ``out_dir`` (default
    ``results_dir/plots``), in each of ``formats`` (PNG for pages, SVG for papers);
    returns the paths written.

    With ``benchmark_id`` only that benchmark's plots; without, every benchmark's, and
    plots of benchmarks that no longer have records are removed. All or nothing: the
    plots are drawn into a staging folder and moved into place only when all were
    written. Raises :class:`LeaderboardError` on bad records (of that benchmark, if
    given) unless ``allow_errors``, ``ValueError`` if ``benchmark_id`` has no records, and
    :class:`ResultsPathError` if ``results_dir`` is not a folder. With ``progress`` (``None``:
    when stderr is a terminal), progress bars on stderr.
    """
    res = collect(results_dir, preload=["metarl_bench.plots", "scipy.stats"], progress=progress)
    problems = [p.message for p in res.problems if benchmark_id is None or p.benchmark_id in (None, benchmark_id)]
    if problems and not allow_errors:
        raise LeaderboardError(problems)
    out = Path(out_dir) if out_dir is not None else Path(results_dir) / PLOTS_DIR
    if benchmark_id is not None and benchmark_id not in res.groups:
        raise ValueError(
            f"no records of benchmark {benchmark_id!r} under {res.root}; benchmarks with records: {sorted(res.groups)}"
        )
    with _jobs_bar(progress, "plots") as (done, set_total):
        return _publish(out.parent, None, res, out, only=benchmark_id, progress=done, formats=formats,
                        set_total=set_total)


def _draw_one(res: Results, bid: str, out_dir: Path, formats: Sequence[str]) -> list[Path]:
    from metarl_bench.plots import plot_benchmark

    return plot_benchmark(res.groups[bid], _label(bid), out_dir, bench=res.benchmarks[bid], formats=formats)


_FORKED: list[Callable[[], Any]] | None = None  # the jobs forked workers run (inherited, never pickled)


def _run_forked(i: int) -> Any:
    from threadpoolctl import threadpool_limits

    assert _FORKED is not None
    # The workers already use every CPU: BLAS threads inside them would only compete
    # (measured: twice the CPU time for the same wall time on 2 cores).
    with threadpool_limits(limits=1):
        return _FORKED[i]()


def _run_jobs(jobs: Sequence[tuple[str, Callable[[], Any]]], progress: Callable[[str], None] | None) -> list[Any]:
    """Run ``jobs`` (label, function) and return their results in order (see :func:`_start_jobs`);
    ``progress(label)`` is called as each job finishes."""
    return _start_jobs(jobs, progress)()


def _start_jobs(
    jobs: Sequence[tuple[str, Callable[[], Any]]], progress: Callable[[str], None] | None
) -> Callable[[], list[Any]]:
    """Start ``jobs`` (label, function); returns a function that waits for them and gives
    their results in order.

    With several jobs and CPUs they run in a pool of forked worker processes, in the
    order given (put the heaviest first), while the caller goes on: the functions and the
    records they read are inherited at the fork, never pickled; only the results (table
    text, plot paths, hashes) come back. A failing job stops the rest and its error is
    raised by the wait. Otherwise they run one by one in this process at the wait.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    global _FORKED
    workers = min(len(jobs), os.cpu_count() or 1)
    if workers < 2 or _FORKED is not None or "fork" not in multiprocessing.get_all_start_methods():
        def run_here() -> list[Any]:
            results = []
            for label, fn in jobs:
                results.append(fn())
                if progress is not None:
                    progress(label)
            return results
        return run_here
    _FORKED = [fn for _, fn in jobs]
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"))
    futures = {pool.submit(_run_forked, i): i for i in range(len(jobs))}

    def wait() -> list[Any]:
        global _FORKED
        try:
            out: dict[int, Any] = {}
            for fut in as_completed(futures):
                i = futures[fut]
                out[i] = fut.result()
                if progress is not None:
                    progress(jobs[i][0])
            return [out[i] for i in range(len(jobs))]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            _FORKED = None
    return wait


def _cost(res: Results, bid: str) -> int:
    """A benchmark's share of the work (bootstrap entries), to start the heaviest first."""
    return sum(len(recs) for recs in res.groups[bid].values()) * int(res.benchmarks[bid].n_test)


def _publish(
    root: Path,
    pages: Callable[[list[_Table]], dict[str, str]] | None,
    res: Results,
    plots_dir: Path,
    only: str | None,
    progress: Callable[[str], None] | None,
    reps: int = 2000,
    seed: int = 0,
    formats: Sequence[str] = ("png",),
    set_total: Callable[[int], None] | None = None,
) -> list[Path]:
    """Draw the plots (in ``formats``) and, with ``pages``, build the tables (``reps`` bootstrap resamples
    from ``seed``) and write the pages ``pages(tables)`` gives (file name under ``root`` ->
    text), all or nothing. Tables and plots are built in parallel (:func:`_run_jobs`).

    Everything is written into a staging folder beside the outputs first; only when every
    file was written are they renamed into place (a rename needs no space), so a failure
    while writing (a full disk) leaves the previous outputs as they were. Without
    ``only``, plots of benchmarks that no longer have records are then removed.
    """
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=root))
    try:
        os.chmod(staging, 0o777 & ~current_umask())
        keys = sorted((b for b in res.groups if only is None or b == only), key=lambda b: (-_cost(res, b), b))
        from metarl_bench.page_style import load_registry

        load_registry()  # the agents' paradigms, read by the plots and the page, before the workers fork
        jobs: list[tuple[str, Callable[[], Any]]] = []
        for bid in keys:
            if pages is not None:
                jobs.append((f"table of {bid}", functools.partial(_table, res, bid, reps, seed)))
            jobs.append((f"plots of {bid}", functools.partial(_draw_one, res, bid, staging / PLOTS_DIR, formats)))
        if set_total is not None:
            set_total(len(jobs))
        done = dict(zip((label for label, _ in jobs), _run_jobs(jobs, progress)))
        texts = {} if pages is None else pages([done[f"table of {bid}"] for bid in _bench_order(res)])
        staged_plots = [p for bid in keys for p in done[f"plots of {bid}"]]
        moves = [(p, plots_dir / p.name) for p in staged_plots]
        for name, text in texts.items():
            tmp = staging / name
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            moves.append((tmp, root / name))
        for src, _ in moves:  # written by matplotlib without a sync
            with open(src, "rb") as fb:
                os.fsync(fb.fileno())
        if moves:
            plots_dir.mkdir(parents=True, exist_ok=True)
        for src, dst in moves:
            os.replace(src, dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    written = [dst for _, dst in moves]
    if only is None and plots_dir.exists():
        keep = {p.resolve() for p in written}
        for p in sorted(plots_dir.iterdir()):
            ours = any(p.name.endswith(f".{k}.{f}") for k in _PLOT_KINDS for f in ("png", "svg"))
            if ours and p.resolve() not in keep:
                p.unlink()
    return written


def write_leaderboard(
    results_dir: str | Path = DEFAULT_RESULTS,
    allow_errors: bool = False,
    reps: int = 2000,
    seed: int = 0,
    progress: bool | None = None,
) -> list[Path]:
    """Regenerate ``results_dir/plots/`` (the PNGs the pages show; ``metarl-bench plot``
    adds SVGs) and write ``LEADERBOARD.md`` and ``index.html`` there, all or nothing (see
    :func:`_publish`); returns the paths written.

    Raises :class:`LeaderboardError` listing every bad results file, before writing
    anything, unless ``allow_errors``: then the pages are published with a warning banner
    that lists them. Raises :class:`ResultsPathError` (creating nothing) when
    ``results_dir`` does not exist or is not a folder. With ``progress`` (``None``: when
    stderr is a terminal), progress bars on stderr: the records loaded, then the tables and
    plots built.
    """
    root = Path(results_dir)
    res = collect(root, preload=["metarl_bench.plots", "scipy.stats"], progress=progress)
    if res.problems and not allow_errors:
        raise LeaderboardError(res.errors)

    def pages(tables: list[_Table]) -> dict[str, str]:
        intro = _intro(reps, seed)
        return {"LEADERBOARD.md": _markdown(res, tables, intro), "index.html": _html(res, tables, intro)}

    with _jobs_bar(progress, f"tables and plots of {len(res.groups)} benchmarks") as (done, set_total):
        written = _publish(root, pages, res, root / PLOTS_DIR, only=None, progress=done, reps=reps, seed=seed,
                           set_total=set_total)
    return [root / "LEADERBOARD.md", root / "index.html"] + [p for p in written if p.parent == root / PLOTS_DIR]


# -- comparing two agents ----------------------------------------------------------------------


def compare(
    results_dir: str | Path,
    agent_a: str,
    agent_b: str,
    benchmark_id: str,
    which: str = "headline",
    reps: int = 2000,
    seed: int = 0,
    progress: bool | None = None,
) -> tuple[dict[str, Any], str]:
    """Compare variant ``agent_a`` with ``agent_b`` on ``benchmark_id``: ``(summary dict, text)``.

    ``agent_a`` and ``agent_b`` are row names (:attr:`Record.variant`: the agent's name
    for its default configuration, else the variant name). Each one's seeds give a
    ``(seeds, tasks)`` matrix (:func:`metarl_bench.stats.aggregate`) of ``which``
    scores, normalised by the registered benchmark's references where it has them.
    Reports IQM(a) - IQM(b) and the probability that a seed of ``a`` beats a seed of
    ``b`` on the same task (P(a > b) + 0.5 P(a = b), averaged over tasks; "beats" is
    "lower" for raw lower-is-better scores), each with a stratified bootstrap 95% CI.
    Raises ``ValueError`` naming what exists when a variant or the benchmark has no
    records, and :class:`LeaderboardError` when records of either on it are bad. With
    ``progress`` (``None``: when stderr is a terminal), progress bars on stderr.
    """
    res = collect(results_dir, progress=progress)
    bad = [p.message for p in res.problems
           if p.benchmark_id in (None, benchmark_id) and p.agent in (None, agent_a, agent_b)]
    if bad:
        raise LeaderboardError(bad)
    if benchmark_id not in res.groups:
        raise ValueError(
            f"no records of benchmark {benchmark_id!r} under {res.root}; benchmarks with records: {sorted(res.groups)}"
        )
    group = res.groups[benchmark_id]
    for name in (agent_a, agent_b):
        if name not in group:
            raise ValueError(
                f"no records of agent {name!r} on {benchmark_id} under {res.root}; agents with records: {sorted(group)}"
            )
    bench = res.benchmarks[benchmark_id]
    a = stats.aggregate(group[agent_a], bench, which=which, references=group)
    b = stats.aggregate(group[agent_b], bench, which=which, references=group)
    lower = a.lower_is_better
    with progress_bar(progress, 4, "bootstrap confidence intervals", unit="CI") as bar:
        iqm_a = stats.iqm_ci(a.scores, reps=reps, seed=seed)
        bar.update(1)
        iqm_b = stats.iqm_ci(b.scores, reps=reps, seed=seed)
        bar.update(1)
        diff = stats.iqm_difference_ci(a.scores, b.scores, reps=reps, seed=seed)
        bar.update(1)
        poi = stats.probability_of_improvement_ci(a.scores, b.scores, lower, reps=reps, seed=seed)
        bar.update(1)

    def iv(x: stats.Interval) -> dict[str, float]:
        return {"point": float(x.point), "low": float(x.low), "high": float(x.high)}

    summary: dict[str, Any] = {
        "benchmark": benchmark_id,
        "task_hash": a.task_hash,
        "score": a.which,
        "normalized": a.normalized,
        "normalization": a.normalization,
        "lower_is_better": lower,
        "agents": {
            agent_a: {"seeds": list(a.seeds), "runs": int(a.scores.shape[0]), "iqm": iv(iqm_a)},
            agent_b: {"seeds": list(b.seeds), "runs": int(b.scores.shape[0]), "iqm": iv(iqm_b)},
        },
        "tasks": int(a.scores.shape[1]),
        "iqm_difference": iv(diff),
        "probability_of_improvement": iv(poi),
        "bootstrap": {"reps": reps, "seed": seed, "confidence": 0.95},
    }
    score = f"{'normalised ' if a.normalized else ''}{a.which} score"
    norm_note = {
        "per-task": " normalised per test task",
        "benchmark": " normalised by benchmark-level references",
        "per-task-records": f" normalised per test task by the {' and '.join(stats.RECORD_REFERENCES)} records",
        "benchmark-records": f" normalised by the {' and '.join(stats.RECORD_REFERENCES)} records' means",
    }
    better = "lower" if lower else "higher"
    verdict = (
        "no clear difference (the IQM difference CI contains 0)" if diff.low <= 0 <= diff.high
        else f"{agent_a if (diff.point > 0) != lower else agent_b} is better ({better} {score})"
    )
    text = "\n".join([
        f"{agent_a} vs {agent_b} on {benchmark_id} ({score}, {better} is better; "
        f"{a.scores.shape[1]} tasks; seeds {list(a.seeds)} vs {list(b.seeds)})",
        f"  IQM {agent_a}: {fmt_ci(iqm_a)}",
        f"  IQM {agent_b}: {fmt_ci(iqm_b)}",
        f"  IQM difference ({agent_a} - {agent_b}): {fmt_ci(diff)}",
        f"  P({agent_a} beats {agent_b}) on a task: {fmt_ci(poi)}",
        f"  95% stratified bootstrap CIs (seeds resampled within each task; scores{norm_note.get(a.normalization or '', ' raw')}), "
        f"{reps} resamples, seed {seed}. Verdict: {verdict}.",
    ] + [
        f"  Note: {n} has fewer than {MIN_SEEDS} seeds; the intervals rest on too few independent training runs."
        for n, agg in ((agent_a, a), (agent_b, b)) if len(agg.seeds) < MIN_SEEDS
    ])
    return summary, text
