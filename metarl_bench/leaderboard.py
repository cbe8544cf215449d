"""The leaderboard: ``results/LEADERBOARD.md`` and a static ``results/index.html``, a pure
function of the records under ``results/`` (DESIGN section 6).

Entry points (the CLI's ``leaderboard``, ``plot`` and ``compare`` commands):

- :func:`build_leaderboard` -> ``(markdown, html, errors)``, writes nothing;
- :func:`write_leaderboard` regenerates ``results/plots/`` and writes both pages
  atomically; it raises :class:`LeaderboardError` naming every bad results file unless
  ``allow_errors=True``, which publishes with a warning banner listing them;
- :func:`write_plots` regenerates only the plots;
- :func:`compare` -> ``(dict, text)``: difference in IQM and probability of improvement
  between two agents on one benchmark, with stratified bootstrap CIs.

A results file is bad when it does not load or validate, sits at a path that does not
match its benchmark/agent/seed, or states scores that its own episode returns do not give
(hand-edited). Records of one (benchmark, agent) are pooled over seeds only if they share
the task list (task hash) and the agent configuration. Nothing in the pages depends on
the time or the machine that builds them, so the same records give the same bytes.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metarl_bench import stats
from metarl_bench.results import (
    DEFAULT_RESULTS,
    Record,
    RecordError,
    atomic_write_text,
    iter_record_paths,
    load_record,
    record_path,
)

Z95 = 1.959963984540054
PLOTS_DIR = "plots"
_PLOT_KINDS = ("curves", "profiles")


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


# -- collecting and validating records ---------------------------------------------------------


@dataclass
class Problem:
    """One validation problem: a message naming the file (where there is one)."""

    message: str
    benchmark_id: str | None = None
    agent: str | None = None


@dataclass
class Results:
    """The valid records under a results folder, grouped, and every problem found."""

    root: Path
    # (benchmark id, task hash) -> agent -> records sorted by seed
    groups: dict[tuple[str, str], dict[str, list[Record]]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return [p.message for p in self.problems]

    def hashes(self, benchmark_id: str) -> list[str]:
        return sorted(h for b, h in self.groups if b == benchmark_id)

    def n_records(self) -> int:
        return sum(len(rs) for by in self.groups.values() for rs in by.values())


def collect(results_dir: str | Path = DEFAULT_RESULTS) -> Results:
    """Load and validate every record under ``results_dir``; group the valid ones.

    A group of one (benchmark, agent) whose seeds disagree on the task list or the agent
    configuration is reported and left out whole, since no part of it can be pooled.
    """
    root = Path(results_dir)
    out = Results(root=root)
    by_key: dict[tuple[str, str], list[tuple[Path, Record]]] = defaultdict(list)
    for path in iter_record_paths(root):
        bid, agent = _ids_from_path(root, path)
        try:
            rec = load_record(path)
        except RecordError as exc:
            out.problems.append(Problem(str(exc), bid, agent))
            continue
        msg = _check_record(root, path, rec)
        if msg is not None:
            out.problems.append(Problem(msg, bid, agent))
            continue
        by_key[(rec.benchmark_id, rec.agent_name)].append((path, rec))
    for (bid, agent), items in sorted(by_key.items()):
        msg = _check_group(bid, agent, items)
        if msg is not None:
            out.problems.append(Problem(msg, bid, agent))
            continue
        recs = sorted((r for _, r in items), key=lambda r: r.seed)
        task_hash = str(recs[0].benchmark["task_hash"])
        out.groups.setdefault((bid, task_hash), {})[agent] = recs
    for bid in sorted({b for b, _ in out.groups}):
        hashes = out.hashes(bid)
        if len(hashes) > 1:
            who = "; ".join(f"{h}: {', '.join(sorted(out.groups[(bid, h)]))}" for h in hashes)
            out.problems.append(Problem(
                f"{bid}: agents were evaluated on different task lists (task hash {who}); the benchmark "
                f"changed without a version bump or records are stale. Re-run the stale agents; until then "
                f"each task list gets its own table.",
                bid,
            ))
    return out


def _ids_from_path(root: Path, path: Path) -> tuple[str | None, str | None]:
    parts = path.relative_to(root).parts
    if len(parts) < 3:
        return None, None
    return "/".join(parts[:-2]), parts[-2]


def _check_record(root: Path, path: Path, rec: Record) -> str | None:
    """A problem with a record that loaded, or None."""
    expected = record_path(root, rec.benchmark_id, rec.agent_name, rec.seed)
    if expected != path:
        return (
            f"{path}: holds benchmark {rec.benchmark_id!r}, agent {rec.agent_name!r}, seed {rec.seed}, which "
            f"belongs at {expected}; the file was moved or edited. Move it back or re-run that seed."
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


def _check_group(bid: str, agent: str, items: list[tuple[Path, Record]]) -> str | None:
    hashes: dict[str, list[str]] = defaultdict(list)
    configs: dict[str, list[str]] = defaultdict(list)
    for path, r in items:
        hashes[str(r.benchmark["task_hash"])].append(str(path))
        configs[json.dumps(r.agent["config"], sort_keys=True, default=str)].append(str(path))
    if len(hashes) > 1:
        detail = "; ".join(f"{h}: {', '.join(ps)}" for h, ps in sorted(hashes.items()))
        return (
            f"{bid}/{agent}: seeds were evaluated on different task lists and cannot be pooled (task hash "
            f"{detail}). Delete the stale records and re-run those seeds."
        )
    if len(configs) > 1:
        detail = "; ".join(f"{c}: {', '.join(ps)}" for c, ps in sorted(configs.items()))
        return (
            f"{bid}/{agent}: seeds ran with different agent configurations and cannot be pooled ({detail}). "
            f"Re-run them with one configuration or register the variant under its own agent name."
        )
    return None


# -- table rows --------------------------------------------------------------------------------


@dataclass
class Row:
    """One agent's line in a benchmark table (all numbers pooled over its seeds)."""

    agent: str
    seeds: tuple[int, ...]
    online: tuple[float, float]  # mean, se
    final: tuple[float, float]
    iqm: stats.Interval
    iqm_normalized: bool
    meta_train_steps: float
    meta_train_seconds: float
    headline_value: float


def _row(agent: str, recs: list[Record], reps: int, seed: int) -> Row:
    headline = str(recs[0].benchmark["headline"])
    online = _pooled_mean_se(recs, "online")
    final = _pooled_mean_se(recs, "final")
    agg = stats.aggregate(recs, which="headline", normalized=True)
    return Row(
        agent=agent,
        seeds=agg.seeds,
        online=online,
        final=final,
        iqm=stats.iqm_ci(agg.scores, reps=reps, seed=seed),
        iqm_normalized=agg.normalized,
        meta_train_steps=float(np.mean([float(r.meta_train.get("env_steps", 0) or 0) for r in recs])),
        meta_train_seconds=float(np.mean([float(r.meta_train.get("wall_seconds", 0) or 0) for r in recs])),
        headline_value=(online if headline == "online" else final)[0],
    )


def _pooled_mean_se(recs: list[Record], which: str) -> tuple[float, float]:
    if not _has_phase(recs[0], which):
        return float("nan"), float("nan")
    return stats.mean_and_se(np.concatenate([r.score_matrix(which) for r in recs], axis=0))


# -- formatting --------------------------------------------------------------------------------


def _decimals(half: float, value: float) -> int:
    """Decimals that show two significant digits of the CI half-width (4 of the value without one)."""
    if math.isfinite(half) and half > 0:
        return int(min(6, max(0, 1 - math.floor(math.log10(half)))))
    if math.isfinite(value) and value != 0:
        return int(min(6, max(0, 3 - math.floor(math.log10(abs(value))))))
    return 2


def fmt_pm(mean: float, se: float) -> str:
    """``mean ± 1.96 se``, rounded to the CI's precision; ``—`` when undefined."""
    if not math.isfinite(mean):
        return "—"
    half = Z95 * se if math.isfinite(se) else float("nan")
    d = _decimals(half, mean)
    return f"{mean:.{d}f} ± {half:.{d}f}" if math.isfinite(half) else f"{mean:.{d}f}"


def fmt_ci(iv: stats.Interval) -> str:
    """``point [low, high]``, rounded to the interval's precision."""
    d = _decimals((iv.high - iv.low) / 2, iv.point)
    return f"{iv.point:.{d}f} [{iv.low:.{d}f}, {iv.high:.{d}f}]"


def fmt_steps(n: float) -> str:
    return f"{n:,.0f}"


def fmt_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


# -- building ----------------------------------------------------------------------------------


@dataclass
class _Table:
    title: str
    plot_stem: str  # the benchmark label handed to the plot functions
    info: list[str]
    header: list[str]
    rows: list[list[str]]


def _tables(res: Results, reps: int, seed: int) -> list[_Table]:
    tables = []
    keys = sorted(res.groups, key=lambda k: (_tier(res.groups[k]) == "smoke", k))
    for bid, task_hash in keys:
        by_agent = res.groups[(bid, task_hash)]
        label = bid if len(res.hashes(bid)) == 1 else f"{bid} @ tasks {task_hash}"
        first = next(iter(by_agent.values()))[0]
        b = first.benchmark
        headline = str(b["headline"])
        lower = bool(b.get("lower_is_better", False))
        rows = [_row(a, recs, reps, seed) for a, recs in sorted(by_agent.items())]
        rows.sort(key=lambda r: ((r.headline_value if lower else -r.headline_value), r.agent))
        norm = rows[0].iqm_normalized
        iqm_head = f"IQM of {'normalised ' if norm else ''}{headline} score [95% CI]"
        if not norm:
            iqm_head += " (no references: raw" + (", lower is better)" if lower else ")")
        star = " (headline)"
        header = [
            "#", "Agent", "Online score ± 95% CI" + (star if headline == "online" else ""),
            "Final score ± 95% CI" + (star if headline == "final" else ""), iqm_head,
            "Meta-train env steps", "Meta-train time", "Seeds",
        ]
        body = [
            [
                str(i + 1), r.agent, fmt_pm(*r.online), fmt_pm(*r.final), fmt_ci(r.iqm),
                fmt_steps(r.meta_train_steps), fmt_seconds(r.meta_train_seconds), str(len(r.seeds)),
            ]
            for i, r in enumerate(rows)
        ]
        tables.append(_Table(label, label, _info(first, lower), header, body))
    return tables


def _tier(by_agent: dict[str, list[Record]]) -> str:
    return str(next(iter(by_agent.values()))[0].benchmark.get("tier", ""))


def _info(rec: Record, lower: bool) -> list[str]:
    b = rec.benchmark
    proto = b.get("protocol") or {}
    headline = str(b["headline"])
    budget = proto.get("budget_episodes")
    what = {
        "online": f"online score = total return over the {budget}-episode budget",
        "final": "final score = mean return of the final evaluation episodes after adaptation",
    }[headline]
    if lower:
        what = f"{headline} score = query MSE ({'summed over the budget' if headline == 'online' else 'after adaptation'})"
    lines = [
        f"Headline: {what}; {'lower' if lower else 'higher'} is better.",
        f"Version {b.get('version')}, tier {b.get('tier')}, task hash `{b.get('task_hash')}`; "
        f"{b.get('n_test', '?')} test tasks × {proto.get('runs_per_task', '?')} runs per seed.",
    ]
    rand, orac = stats.reference(rec, headline)
    if rand is not None and orac is not None:
        lines.append(f"References ({headline}): random {rand:.4g}, oracle {orac:.4g}.")
    else:
        lines.append(f"No random/oracle references for the {headline} score: IQM is of raw scores.")
    return lines


_INTRO = (
    "Generated by `metarl-bench leaderboard` from the records under this folder; do not edit by hand. "
    "Scores pool all seeds of an agent. ± is a 95% confidence interval, 1.96 standard errors over test "
    "tasks (each task's runs averaged first). The IQM (interquartile mean over runs × tasks, "
    "Agarwal et al. 2021) is of scores normalised so that the random reference is 0 and the oracle 1, "
    "with a 95% stratified bootstrap CI ({reps} resamples of runs within tasks, seed {seed}). "
    "Rows are sorted by the headline score."
)


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
    intro = _INTRO.format(reps=reps, seed=seed)
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
        out += [
            "",
            f"![Adaptation curves on {t.title}]({_plot_rel(t.plot_stem, 'curves')})",
            f"![Performance profiles on {t.title}]({_plot_rel(t.plot_stem, 'profiles')})",
            "",
        ]
    return "\n".join(out)


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.92em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.7em; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; } td.agent, th.agent { text-align: left; font-weight: 600; }
.warning { background: #fff3cd; border: 2px solid #d39e00; padding: 0.6em 1em; margin: 1em 0; }
.info { color: #555; font-size: 0.9em; margin: 0.2em 0; }
img { max-width: 100%; height: auto; display: block; margin: 0.5em 0; }
"""


def _html(res: Results, tables: list[_Table], intro: str) -> str:
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>metarl-bench leaderboard</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>metarl-bench leaderboard</h1>",
    ]
    if res.errors:
        out.append(
            f'<div class="warning"><strong>Warning: incomplete.</strong> {len(res.errors)} problem(s) in the '
            f"results; the tables leave out the records concerned:<ul>"
        )
        out += [f"<li>{e(m)}</li>" for m in res.errors]
        out.append("</ul></div>")
    out.append(f"<p>{_inline(intro)}</p>")
    if not tables:
        out.append(f"<p>No valid records under <code>{e(str(res.root))}</code>.</p>")
    if len(tables) > 1:
        out.append("<ul>" + "".join(f'<li><a href="#{_anchor(t.title)}">{e(t.title)}</a></li>' for t in tables) + "</ul>")
    for t in tables:
        out.append(f'<h2 id="{_anchor(t.title)}">{e(t.title)}</h2>')
        out += [f'<p class="info">{_inline(line)}</p>' for line in t.info]
        out.append("<table><thead><tr>")
        out += [f'<th{" class=agent" if i == 1 else ""}>{e(h)}</th>' for i, h in enumerate(t.header)]
        out.append("</tr></thead><tbody>")
        for row in t.rows:
            cells = "".join(f'<td{" class=agent" if i == 1 else ""}>{e(c)}</td>' for i, c in enumerate(row))
            out.append(f"<tr>{cells}</tr>")
        out.append("</tbody></table>")
        for kind, what in (("curves", "Adaptation curves"), ("profiles", "Performance profiles")):
            out.append(f'<img src="{e(_plot_rel(t.plot_stem, kind))}" alt="{e(what)} on {e(t.title)}">')
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _inline(text: str) -> str:
    """HTML-escape ``text`` and render its markdown `code` spans as <code>."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def _anchor(title: str) -> str:
    return "".join(c if c.isalnum() or c == "-" else "-" for c in title).strip("-").lower()


# -- writing -----------------------------------------------------------------------------------


def write_plots(
    results_dir: str | Path = DEFAULT_RESULTS,
    allow_errors: bool = False,
    out_dir: str | Path | None = None,
    benchmark_id: str | None = None,
) -> list[Path]:
    """(Re)generate the plots of the records under ``results_dir`` in ``out_dir`` (default
    ``results_dir/plots``); returns the paths written.

    With ``benchmark_id`` only that benchmark's plots; without, every benchmark's, and
    plots of benchmarks that no longer have records are removed. Raises
    :class:`LeaderboardError` on bad records (of that benchmark, if given) unless
    ``allow_errors``, and ``ValueError`` if ``benchmark_id`` has no records.
    """
    res = collect(results_dir)
    problems = [p.message for p in res.problems if benchmark_id is None or p.benchmark_id in (None, benchmark_id)]
    if problems and not allow_errors:
        raise LeaderboardError(problems)
    out = Path(out_dir) if out_dir is not None else Path(results_dir) / PLOTS_DIR
    if benchmark_id is None:
        return _write_plots(res, out)
    if not res.hashes(benchmark_id):
        have = sorted({b for b, _ in res.groups})
        raise ValueError(f"no records of benchmark {benchmark_id!r} under {res.root}; benchmarks with records: {have}")
    return _write_plots(res, out, only=benchmark_id)


def _write_plots(res: Results, out_dir: Path, only: str | None = None) -> list[Path]:
    from metarl_bench.plots import plot_benchmark

    written: list[Path] = []
    for bid, task_hash in sorted(res.groups):
        if only is not None and bid != only:
            continue
        label = bid if len(res.hashes(bid)) == 1 else f"{bid} @ tasks {task_hash}"
        written += plot_benchmark(res.groups[(bid, task_hash)], label, out_dir)
    if only is None and out_dir.exists():
        keep = {p.resolve() for p in written}
        for p in sorted(out_dir.iterdir()):
            ours = any(p.name.endswith(f".{k}.{f}") for k in _PLOT_KINDS for f in ("png", "svg"))
            if ours and p.resolve() not in keep:
                p.unlink()
    return written


def write_leaderboard(
    results_dir: str | Path = DEFAULT_RESULTS, allow_errors: bool = False, reps: int = 2000, seed: int = 0
) -> list[Path]:
    """Regenerate ``results_dir/plots/`` and write ``LEADERBOARD.md`` and ``index.html``
    there (each atomically); returns the paths written.

    Raises :class:`LeaderboardError` listing every bad results file, before writing
    anything, unless ``allow_errors``: then the pages are published with a warning banner
    that lists them.
    """
    root = Path(results_dir)
    res = collect(root)
    if res.problems and not allow_errors:
        raise LeaderboardError(res.errors)
    tables = _tables(res, reps, seed)
    intro = _INTRO.format(reps=reps, seed=seed)
    written = _write_plots(res, root / PLOTS_DIR)
    md, page = _markdown(res, tables, intro), _html(res, tables, intro)
    atomic_write_text(root / "LEADERBOARD.md", md)
    atomic_write_text(root / "index.html", page)
    return [root / "LEADERBOARD.md", root / "index.html", *written]


# -- comparing two agents ----------------------------------------------------------------------


def compare(
    results_dir: str | Path,
    agent_a: str,
    agent_b: str,
    benchmark_id: str,
    which: str = "headline",
    reps: int = 2000,
    seed: int = 0,
) -> tuple[dict[str, Any], str]:
    """Compare ``agent_a`` with ``agent_b`` on ``benchmark_id``: ``(summary dict, text)``.

    Both agents' seeds are pooled (:func:`metarl_bench.stats.aggregate`) and their
    ``which`` scores normalised where the benchmark has references. Reports IQM(a) -
    IQM(b) and the probability that a run of ``a`` beats a run of ``b`` on the same task
    (P(a > b) + 0.5 P(a = b), averaged over tasks; "beats" is "lower" for raw
    lower-is-better scores), each with a stratified bootstrap 95% CI. Raises
    ``ValueError`` naming what exists when an agent or the benchmark has no records, and
    :class:`LeaderboardError` when records of either agent on it are bad.
    """
    res = collect(results_dir)
    bad = [p.message for p in res.problems
           if p.benchmark_id in (None, benchmark_id) and p.agent in (None, agent_a, agent_b)]
    if bad:
        raise LeaderboardError(bad)
    hashes = res.hashes(benchmark_id)
    if not hashes:
        have = sorted({b for b, _ in res.groups})
        raise ValueError(f"no records of benchmark {benchmark_id!r} under {res.root}; benchmarks with records: {have}")
    groups = {h: res.groups[(benchmark_id, h)] for h in hashes}
    recs: dict[str, list[Record]] = {}
    for name in (agent_a, agent_b):
        found = [h for h in hashes if name in groups[h]]
        if not found:
            have = sorted({a for g in groups.values() for a in g})
            raise ValueError(f"no records of agent {name!r} on {benchmark_id} under {res.root}; agents with records: {have}")
        recs[name] = groups[found[0]][name]
    ha, hb = (str(recs[n][0].benchmark["task_hash"]) for n in (agent_a, agent_b))
    if ha != hb:
        raise ValueError(
            f"{agent_a} and {agent_b} were evaluated on different task lists of {benchmark_id} (task hash {ha} vs "
            f"{hb}); re-run the stale agent so both share the benchmark's current tasks"
        )
    a = stats.aggregate(recs[agent_a], which=which)
    b = stats.aggregate(recs[agent_b], which=which)
    lower = a.lower_is_better
    iqm_a = stats.iqm_ci(a.scores, reps=reps, seed=seed)
    iqm_b = stats.iqm_ci(b.scores, reps=reps, seed=seed)
    diff = stats.iqm_difference_ci(a.scores, b.scores, reps=reps, seed=seed)
    poi = stats.probability_of_improvement_ci(a.scores, b.scores, lower, reps=reps, seed=seed)

    def iv(x: stats.Interval) -> dict[str, float]:
        return {"point": float(x.point), "low": float(x.low), "high": float(x.high)}

    summary: dict[str, Any] = {
        "benchmark": benchmark_id,
        "task_hash": a.task_hash,
        "score": a.which,
        "normalized": a.normalized,
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
        f"  95% stratified bootstrap CIs, {reps} resamples, seed {seed}. Verdict: {verdict}.",
    ])
    return summary, text
