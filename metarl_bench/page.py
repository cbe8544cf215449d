"""``results/index.html``: the leaderboard as one page researchers browse, offline.

The page is a single HTML file: its style sheet and script (``page_assets/``) and its data
(JSON in a ``<script type="application/json">`` element) are written into it, so it opens
from ``file://`` with no network, no library and no build step. Beside it lie the plots
(``plots/*.png``) and the records it links to (``<benchmark>/<variant>/seed-<n>.json``).

What it shows, all of it computed when the leaderboard is built (:mod:`metarl_bench.leaderboard`):

- a summary table per kind of benchmark (reinforcement learning, supervised few-shot): each
  agent's IQM per benchmark, normalised where the benchmark's table is, with its 95% CI and
  number of seeds;
- per benchmark, the leaderboard table (every column sorts on a click; rows filter by
  paradigm and name), each row's records one click away (the seeds link to the record
  files, and a provenance table lists each record's commit, time, packages, machine and
  config), the adaptation curves drawn from the records (agents toggle on and off; 95% CI
  bands, the reference lines), the performance profiles (the PNG plot), and a "compare A
  with B" view: IQM difference and probability of improvement with their CIs, for every
  pair, as ``metarl-bench compare`` computes them (:mod:`metarl_bench.page_pairs`).

Every agent keeps one colour and marker throughout (:mod:`metarl_bench.page_style`). The
text is a pure function of the tables, so the same records give the same bytes.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from metarl_bench import page_pairs, page_style, plots, stats
from metarl_bench.page_format import fmt_ci
from metarl_bench.results import Record, record_path

PLOTS_DIR = "plots"
KIND_TITLES = {"rl": "Reinforcement-learning benchmarks", "supervised": "Supervised few-shot benchmarks"}


def _num(v: Any, digits: int = 6) -> float | None:
    """``v`` rounded to ``digits`` significant digits for the page's data (``None`` if not finite)."""
    if v is None:
        return None
    f = float(v)
    if not math.isfinite(f):
        return None
    return float(f"{f:.{digits}g}")


def _nums(values: Any, digits: int = 6) -> list[float | None]:
    return [_num(v, digits) for v in values]


def _iv(iv: stats.Interval | None) -> list[float | None] | None:
    return None if iv is None else [_num(iv.point), _num(iv.low), _num(iv.high)]


def anchor(title: str) -> str:
    """The HTML id of a benchmark's section."""
    return "".join(c if c.isalnum() or c == "-" else "-" for c in title).strip("-").lower()


def short_name(benchmark_id: str) -> str:
    """``MetaRL/Bandit-k5-n10-v0`` -> ``Bandit-k5-n10`` (the summary's column heads)."""
    return re.sub(r"-v\d+$", "", benchmark_id.split("/")[-1])


def record_link(benchmark_id: str, variant: str, seed: int) -> str:
    """The record file's path relative to the page, as a URL path."""
    return quote(record_path(Path("."), benchmark_id, variant, seed).as_posix(), safe="/")


def _provenance(rec: Record) -> dict[str, Any]:
    prov = rec.provenance or {}
    machine = prov.get("machine") or {}
    packages = ", ".join(f"{k} {v}" for k, v in sorted((prov.get("packages") or {}).items()))
    where = ", ".join(str(x) for x in (machine.get("processor"), f"{machine.get('cpus')} CPUs"
                                       if machine.get("cpus") else None, machine.get("platform")) if x)
    return {
        "seed": rec.seed,
        "file": record_link(rec.benchmark_id, rec.variant, rec.seed),
        "commit": str(prov.get("git_commit") or ""),
        "time": str(prov.get("time") or ""),
        "environment": f"Python {prov.get('python') or '?'}; {packages or 'no packages recorded'}; {where or 'no machine recorded'}",
        "env_steps": float(rec.meta_train.get("env_steps", 0) or 0),
        "seconds": float(rec.meta_train.get("wall_seconds", 0) or 0),
    }


def benchmark_data(
    bench: Any,
    by_variant: Mapping[str, Sequence[Record]],
    rows: Sequence[Any],
    body: Sequence[Sequence[str]],
    header: Sequence[str],
    info: Sequence[str],
    notes: Sequence[str],
    reps: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """The page's data of one benchmark (JSON-ready): its table (``rows``, the leaderboard's
    :class:`~metarl_bench.leaderboard.Row` objects in rank order, ``body`` their cells as
    the markdown shows them), styles, curves, references, every pairwise comparison and
    the records' provenance."""
    bid = str(bench.id)
    recs = {v: sorted(rs, key=lambda r: r.seed) for v, rs in by_variant.items()}
    style = plots.styles(recs, bench)
    curves = {v: plots.curve(rs) for v, rs in recs.items()}
    groups, _, _ = plots.curve_overlaps(curves, plots.reference_lines(bench))
    slots = plots.overlap_slots(groups)
    first = next(iter(recs.values()))[0]
    lower = bool(bench.lower_is_better)
    xlabel, ylabel = plots.axis_labels(first, lower)
    rand, orac = plots.curve_references(bench)
    scores = [r.scores for r in rows]
    pairs = page_pairs.pairwise(scores, rows[0].lower_is_better, reps=reps, seed=seed)
    agg_lower = bool(rows[0].lower_is_better)
    score = f"{'normalised ' if rows[0].normalization else ''}{bench.headline} score"
    out_rows = []
    for r, cells in zip(rows, body):
        rs = recs[r.agent]
        out_rows.append({
            "variant": r.agent,
            "agent": rs[0].agent_name,
            "paradigm": style[r.agent].paradigm,
            "cells": list(cells),
            "online": _iv(r.online),
            "final": _iv(r.final),
            "iqm": _iv(r.iqm),
            "steps": r.meta_train_steps,
            "seconds": _num(r.meta_train_seconds),
            "seeds": len(r.seeds),
            "config": json.dumps(rs[0].agent.get("config", {}), sort_keys=True, default=str),
            "records": [_provenance(x) for x in rs],
        })
    return {
        "id": bid,
        "anchor": anchor(bid),
        "kind": plots.bench_kind(bench),
        "tier": str(bench.tier),
        "headline": str(bench.headline),
        "lower": agg_lower,
        "raw_lower": lower,
        "normalization": rows[0].normalization,
        "score": score,
        "header": list(header),
        "info": list(info),
        "notes": list(notes),
        "xlabel": xlabel,
        "ylabel": f"{ylabel} (lower is better)" if lower else ylabel,
        "budget": int(bench.protocol.budget_episodes),
        "refs": {"random": _num(rand), "oracle": _num(orac)},
        "rows": out_rows,
        "styles": {v: st.as_json() for v, st in sorted(style.items())},
        "curves": {
            v: {"x": _nums(c.x), "m": _nums(c.mean, 5), "h": _nums(c.half, 3), "fx": _nums(c.final_x),
                "fm": _nums(c.final_mean, 5), "fh": _nums(c.final_half, 3), "slot": list(slots.get(v, (0, 1)))}
            for v, c in sorted(curves.items())
        },
        "caption": plots.curves_caption(bench, curves, xlabel, ylabel),
        "pairs": [[i, j] + _iv(d) + _iv(p) for (i, j), (d, p) in sorted(pairs.items())],  # type: ignore[operator]
        "bootstrap": {"reps": reps, "seed": seed},
        "plots": {k: (Path(PLOTS_DIR) / f"{plots.safe_name(bid)}.{k}.png").as_posix() for k in ("curves", "profiles")},
    }


# -- rendering -----------------------------------------------------------------------------------


def _asset(name: str) -> str:
    return (resources.files("metarl_bench") / "page_assets" / name).read_text(encoding="utf-8")


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _inline(text: str) -> str:
    """HTML-escape ``text`` and render its markdown `code` spans as <code>."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def _breakable(name: str) -> str:
    """``name`` escaped, with line-break opportunities after hyphens and between words of CamelCase."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=-)", "<wbr>", _e(name))


def _style_key(bench_index: int, variant: str) -> str:
    return f"{bench_index}:{variant}"


def _key(style_key: str, label: str, cls: str = "name") -> str:
    return f'<span class="key" data-style="{_e(style_key)}"><span class="{cls}">{_e(label)}</span></span>'


def _split_ci(text: str) -> tuple[str, str]:
    point, _, rest = text.partition(" [")
    return point, (f"[{rest}" if rest else "")


def _ci_cell(text: str, iv: Sequence[float | None] | None, cls: str = "") -> str:
    point, ci = _split_ci(text)
    v = "" if iv is None or iv[0] is None else repr(iv[0])
    inner = _e(point) + (f"<small>{_e(ci)}</small>" if ci else "")
    return f'<td class="{cls}" data-v="{v}">{inner}</td>' if cls else f'<td data-v="{v}">{inner}</td>'


def _filters(table_id: str, paradigms: Sequence[str]) -> str:
    opts = "".join(f'<option value="{_e(p)}">{_e(page_style.PARADIGM_LABELS.get(p, p))}</option>' for p in paradigms)
    return (
        f'<div class="filters" data-for="{_e(table_id)}">'
        f'<label>Paradigm <select aria-label="Show the rows of one paradigm"><option value="">all</option>{opts}</select></label>'
        f'<label>Name <input type="search" placeholder="filter by name" aria-label="Show the rows whose name contains"></label>'
        f'<span class="count"></span></div>'
    )


def _paradigms(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return sorted({r["paradigm"] for r in rows}, key=page_style.paradigm_order)


def _agent_cell(style_key: str, row: Mapping[str, Any]) -> str:
    label = page_style.PARADIGM_LABELS.get(row["paradigm"], row["paradigm"])
    variant = row["variant"]
    sub = f" (a variant of {row['agent']})" if row["agent"] != variant else ""
    return (f'<td class="agent" data-v="{_e(variant)}">{_key(style_key, variant)}'
            f'<span class="par">{_e(label + sub)}</span></td>')


def _benchmark_table(i: int, b: Mapping[str, Any]) -> str:
    tid = f"t-{b['anchor']}"
    h = b["header"]
    # The markdown's column heads, the long qualifiers set apart on a second line.
    heads = [
        ('<th data-sort="num" data-first="ascending">#</th>'),
        f'<th class="agent" data-sort="text">{_e(h[1])}</th>',
    ]
    for k in (2, 3, 4):
        main, _, sub = h[k].partition(" [")
        sub_html = f'<span class="sub">[{_e(sub)}</span>' if sub else ""
        heads.append(f'<th data-sort="num">{_e(main)}{sub_html}</th>')
    heads += [f'<th data-sort="num">{_e(h[5])}</th>', f'<th data-sort="num">{_e(h[6])}</th>',
              f'<th data-sort="num">{_e(h[7])}</th>']
    out = [_filters(tid, _paradigms(b["rows"])),
           f'<div class="scroll"><table class="sortable lb" id="{_e(tid)}"><thead><tr>{"".join(heads)}</tr></thead><tbody>']
    for rank, row in enumerate(b["rows"]):
        c = row["cells"]
        seeds = " ".join(f'<a href="{_e(x["file"])}" title="record of seed {x["seed"]} (JSON)">{x["seed"]}</a>'
                         for x in row["records"])
        out.append(
            f'<tr data-paradigm="{_e(row["paradigm"])}" data-name="{_e(row["variant"])}">'
            f'<td data-v="{rank + 1}">{_e(c[0])}</td>'
            + _agent_cell(_style_key(i, row["variant"]), row)
            + _ci_cell(c[2], row["online"]) + _ci_cell(c[3], row["final"]) + _ci_cell(c[4], row["iqm"])
            + f'<td data-v="{row["steps"]!r}">{_e(c[5])}</td>'
            + f'<td data-v="{row["seconds"]!r}">{_e(c[6])}</td>'
            + f'<td class="seeds" data-v="{row["seeds"]}">{_e(c[7])}<small>records:{seeds}</small></td></tr>'
        )
    out.append("</tbody></table></div>")
    return "\n".join(out)


def _provenance_table(i: int, b: Mapping[str, Any]) -> str:
    """The records' provenance, a row per table row: its record files, the commits and times
    they were recorded at, each seed's meta-training cost, and their environments (Python,
    packages, machine; listed once each below) and configuration."""
    n = sum(len(r["records"]) for r in b["rows"])
    envs: dict[str, str] = {}
    for row in b["rows"]:
        for x in row["records"]:
            envs.setdefault(x["environment"], f"E{len(envs) + 1}")
    out = [f'<details class="prov"><summary>Provenance of the {n} records: files, code versions, times, '
           f'environments, configurations</summary>',
           f'<div class="scroll"><table class="sortable prov" id="p-{_e(b["anchor"])}"><thead><tr>'
           '<th class="agent" data-sort="text">Agent</th><th class="left">Records</th>'
           '<th class="left" data-sort="text">Git commit</th><th class="left" data-sort="text">Recorded (UTC)</th>'
           '<th data-sort="num">Meta-train env steps per seed</th><th data-sort="num">Meta-train seconds per seed</th>'
           '<th class="left" data-sort="text">Environment</th><th class="left">Configuration</th></tr></thead><tbody>']
    for row in b["rows"]:
        xs = row["records"]
        files = " ".join(f'<a href="{_e(x["file"])}">seed-{x["seed"]}</a>' for x in xs)
        commits = " ".join(f"<code>{_e(c[:10])}</code>" for c in dict.fromkeys(x["commit"] for x in xs))
        times = sorted(x["time"].replace("+00:00", "").replace("T", " ") for x in xs)
        when = times[0] if times[0] == times[-1] else f"{times[0]} to {times[-1]}"
        steps = ", ".join(f"{x['env_steps']:,.0f}" for x in xs)
        seconds = ", ".join(f"{x['seconds']:.1f}" for x in xs)
        out.append(
            f'<tr><td class="agent" data-v="{_e(row["variant"])}">{_key(_style_key(i, row["variant"]), row["variant"])}</td>'
            f'<td class="left">{files}</td><td class="left">{commits}</td><td class="left">{_e(when)}</td>'
            f'<td data-v="{row["steps"]!r}">{_e(steps)}</td><td data-v="{row["seconds"]!r}">{_e(seconds)}</td>'
            f'<td class="left">{" ".join(dict.fromkeys(envs[x["environment"]] for x in xs))}</td>'
            f'<td class="wrap"><code>{_e(row["config"])}</code></td></tr>'
        )
    out.append("</tbody></table></div>")
    out.append('<p class="note">Environments: ' + "; ".join(f"<strong>{k}</strong>: {_e(env)}" for env, k in envs.items())
               + ".</p></details>")
    return "\n".join(out)


def _compare_text(b: Mapping[str, Any], a: int, c: int) -> list[tuple[str, str]]:
    """The compare view's lines for rows ``a`` and ``c`` (as the page's script writes them)."""
    rows = b["rows"]
    A, B = rows[a], rows[c]

    def ci(v: Sequence[float]) -> str:
        return fmt_ci(stats.Interval(*v))

    i, j = min(a, c), max(a, c)
    row = next(p for p in b["pairs"] if p[0] == i and p[1] == j)
    if a == i:
        diff, poi, mirrored = row[2:5], row[5:8], False
    else:
        diff, poi, mirrored = [-row[2], -row[4], -row[3]], [1 - row[5], 1 - row[7], 1 - row[6]], True
    better = "lower" if b["lower"] else "higher"
    lines = [
        (f"IQM {A['variant']}: {ci(A['iqm'])} ({A['seeds']} seeds); IQM {B['variant']}: {ci(B['iqm'])} ({B['seeds']} seeds)", ""),
        (f"IQM difference ({A['variant']} \u2212 {B['variant']}): {ci(diff)}", ""),
        (f"P({A['variant']} beats {B['variant']} on a task): {ci(poi)}", ""),
    ]
    if diff[1] <= 0 <= diff[2]:
        verdict = "No clear difference: the CI of the IQM difference contains 0."
    else:
        verdict = f"{A['variant'] if (diff[0] > 0) != b['lower'] else B['variant']} is better ({better} {b['score']})."
    lines.append((verdict, "verdict"))
    lines.append((
        f"Mirrored from `metarl-bench compare {B['variant']} {A['variant']} --benchmark {b['id']}` (the difference "
        f"negated, the probability one minus it)." if mirrored else
        f"As `metarl-bench compare {A['variant']} {B['variant']} --benchmark {b['id']}` reports them.", "note"))
    return lines


def _compare(i: int, b: Mapping[str, Any]) -> str:
    rows = b["rows"]
    if len(rows) < 2:
        return '<p class="note">One agent only: nothing to compare.</p>'

    def select(label: str, chosen: int) -> str:
        opts = "".join(f'<option value="{k}"{" selected" if k == chosen else ""}>{k + 1}. {_e(r["variant"])}</option>'
                       for k, r in enumerate(rows))
        return f"<label>{label} <select>{opts}</select></label>"

    out = "".join(f'<p class="{cls}">{_e(t)}</p>' if cls else f"<p>{_e(t)}</p>" for t, cls in _compare_text(b, 0, 1))
    boot = b["bootstrap"]
    return (
        f'<div class="compare" data-bench="{i}"><div class="pick">{select("A", 0)}{select("B", 1)}</div>'
        f'<div class="out" aria-live="polite">{out}</div>'
        f'<p class="note">IQM of the {_e(b["score"])}s over seeds × tasks; P(A beats B) is the probability that a seed '
        f'of A scores {"lower" if b["lower"] else "higher"} than a seed of B on the same task (ties count half), averaged '
        f"over tasks. 95% stratified bootstrap CIs ({boot['reps']} resamples of the seeds within each task, seed "
        f"{boot['seed']}).</p></div>"
    )


def _suite(benchmark_id: str) -> str:
    """The family module a benchmark draws its tasks from (``"locomotion"``, ``"bandit"``...),
    or ``""`` where it cannot be looked up."""
    try:
        from metarl_bench.benchmarks import benchmark
        from metarl_bench.family import family_spec

        module = family_spec(benchmark(benchmark_id).family_id).family_cls.__module__
    except Exception:  # noqa: BLE001 - an unregistered benchmark joins the first group
        return ""
    return module.rsplit(".", 1)[-1]


def _summary(tables: Sequence[Mapping[str, Any]], kind: str) -> str:
    """One summary table per suite of benchmarks (the family module they come from), so that
    no table grows a column per benchmark of the whole suite."""
    mine = [(i, b) for i, b in enumerate(tables) if b["kind"] == kind]
    groups: dict[str, list[tuple[int, Mapping[str, Any]]]] = {}
    for i, b in mine:
        groups.setdefault(_suite(b["id"]), []).append((i, b))
    parts = []
    for n, (suite, members) in enumerate(groups.items()):
        tid = f"summary-{kind}" if n == 0 else f"summary-{kind}-{n + 1}"
        title = KIND_TITLES.get(kind, kind) + (f": {suite.replace('_', ' ')}" if len(groups) > 1 and suite else "")
        parts.append(_summary_table(tables, members, tid, title))
    return "\n".join(parts)


def _summary_table(
    tables: Sequence[Mapping[str, Any]], mine: Sequence[tuple[int, Mapping[str, Any]]], tid: str, title: str
) -> str:
    if not mine:
        return ""
    variants: dict[str, dict[str, Any]] = {}
    for i, b in mine:
        for row in b["rows"]:
            v = variants.setdefault(row["variant"], {"row": row, "bench": i, "cells": {}})
            v["cells"][i] = row
    order = sorted(variants, key=lambda v: (page_style.paradigm_order(variants[v]["row"]["paradigm"]), v))
    heads = ['<th class="agent" data-sort="text">Agent</th>']
    for _, b in mine:
        norm = "normalised IQM" if b["normalization"] else f"raw IQM, {'lower' if b['raw_lower'] else 'higher'} is better"
        heads.append(f'<th data-sort="num" title="{_e(b["id"])}"><a href="#{_e(b["anchor"])}">{_breakable(short_name(b["id"]))}</a>'
                     f'<span class="sub">{_e(b["headline"])}, {_e(norm)}</span></th>')
    body = []
    for name in order:
        info = variants[name]
        row = info["row"]
        cells = [_agent_cell(_style_key(info["bench"], name), row)]
        for i, _ in mine:
            r = info["cells"].get(i)
            if r is None:
                cells.append('<td class="empty" data-v="">—</td>')
                continue
            text = fmt_ci(stats.Interval(*r["iqm"])) if r["iqm"] and r["iqm"][0] is not None else "—"
            point, ci = _split_ci(text)
            seeds = f'{r["seeds"]} seed{"s" if r["seeds"] != 1 else ""}'
            cells.append(f'<td data-v="{r["iqm"][0]!r}" title="{_e(name)} on {_e(tables[i]["id"])}: {_e(text)}, {seeds}">'
                         f'{_e(point)}<small>{_e(ci)}</small><small>{seeds}</small></td>')
        body.append(f'<tr data-paradigm="{_e(row["paradigm"])}" data-name="{_e(name)}">{"".join(cells)}</tr>')
    rows = [info["row"] for info in variants.values()]
    return "\n".join([
        f"<h3>{_e(title)}</h3>",
        _filters(tid, _paradigms(rows)),
        f'<div class="scroll"><table class="sortable summary" id="{tid}"><thead><tr>{"".join(heads)}</tr></thead>'
        f'<tbody>{"".join(body)}</tbody></table></div>',
    ])


def _agents_key(tables: Sequence[Mapping[str, Any]]) -> str:
    seen: dict[str, dict[str, str]] = {}
    for i, b in enumerate(tables):
        for row in b["rows"]:
            seen.setdefault(row["paradigm"], {}).setdefault(row["variant"], _style_key(i, row["variant"]))
    groups = []
    for p in sorted(seen, key=page_style.paradigm_order):
        items = "".join(f"<li>{_key(k, v)}</li>" for v, k in sorted(seen[p].items()))
        groups.append(f"<div><h4>{_e(page_style.PARADIGM_LABELS.get(p, p))}</h4><ul>{items}</ul></div>")
    return f'<div class="agents-key">{"".join(groups)}</div>'


def _section(i: int, b: Mapping[str, Any]) -> str:
    cap = "".join(f"<p>{_e(p)}</p>" for p in b["caption"])
    curves_png, profiles_png = b["plots"]["curves"], b["plots"]["profiles"]
    return "\n".join([
        f'<section class="bench" id="{_e(b["anchor"])}">',
        f'<h2>{_e(b["id"])}</h2>',
        "".join(f'<p class="info">{_inline(line)}</p>' for line in b["info"]),
        _benchmark_table(i, b),
        "".join(f'<p class="note">{_inline(n)}</p>' for n in b["notes"]),
        _provenance_table(i, b),
        "<h3>Adaptation curves</h3>",
        f'<p class="note">Click an agent to hide or show its curve. The same figure as an image: '
        f'<a href="{_e(curves_png)}">{_e(Path(curves_png).name)}</a>.</p>',
        f'<div class="toggles" id="tg-{_e(b["anchor"])}" aria-label="agents shown in the chart"></div>',
        f'<figure><div class="chart" data-bench="{i}" data-toggles="tg-{_e(b["anchor"])}">'
        f'<noscript><img class="plot" src="{_e(curves_png)}" alt="Adaptation curves on {_e(b["id"])}"></noscript></div>'
        f"<figcaption>{cap}</figcaption></figure>",
        "<h3>Performance profiles</h3>",
        f'<a href="{_e(profiles_png)}" title="the plot at full size"><img class="plot" src="{_e(profiles_png)}" '
        f'alt="Performance profiles on {_e(b["id"])}"></a>',
        "<h3>Compare two agents</h3>",
        _compare(i, b),
        "</section>",
    ])


def _json_script(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.replace("</", "<\\/")


def render(tables: Sequence[Mapping[str, Any]], intro: str, errors: Sequence[str], root: str) -> str:
    """The page's HTML from the benchmarks' data (:func:`benchmark_data`, in page order),
    the leaderboard's introduction, the problems found in the results (a warning banner
    lists them) and the results folder's name (shown when there is nothing to publish)."""
    e = _e
    styles = {_style_key(i, v): st for i, b in enumerate(tables) for v, st in b["styles"].items()}
    data: dict[str, Any] = {
        "benchmarks": [{k: b[k] for k in ("id", "rows", "curves", "refs", "styles", "pairs", "lower", "score",
                                          "xlabel", "ylabel", "budget")} for b in tables],
        "styles": styles,
        "references": {k: {"color": v["color"], "width": v["linewidth"], "dashes": list(v["linestyle"][1])}
                       for k, v in page_style.REFERENCE_STYLES.items()},
    }
    # The script keys a row's style by "<benchmark index>:<variant>"; only the rows it needs travel.
    for i, b in enumerate(data["benchmarks"]):
        b["styles"] = {v: _style_key(i, v) for v in b["styles"]}
        b["rows"] = [{"variant": r["variant"], "iqm": r["iqm"], "seeds": r["seeds"]} for r in b["rows"]]
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>metarl-bench leaderboard</title>",
        f"<style>{_asset('page.css')}</style></head><body>",
        "<header><h1>metarl-bench leaderboard</h1>",
        '<p class="lead">Every table sorts when you click a column head and filters by paradigm or name; the '
        "curves toggle agent by agent; each row links to its records. Generated by <code>metarl-bench leaderboard</code>"
        " from the records beside this page; it needs no network.</p>",
    ]
    if tables:
        links = ['<a href="#summary">Summary</a>', '<a href="#agents">Agents</a>']
        links += [f'<a href="#{e(b["anchor"])}">{e(short_name(b["id"]))}</a>' for b in tables]
        out.append(f'<nav class="toc" aria-label="sections">{"".join(links)}</nav>')
    out.append("</header><main>")
    if errors:
        out.append(
            f'<div class="warning"><strong>Warning: incomplete.</strong> {len(errors)} problem(s) in the '
            f"results; the tables leave out the records concerned:<ul>"
        )
        out += [f"<li>{e(m)}</li>" for m in errors]
        out.append("</ul></div>")
    out.append(f'<details class="about"><summary>How these numbers are computed</summary><div><p>{_inline(intro)}</p>'
               "</div></details>")
    if not tables:
        out.append(f"<p>No valid records under <code>{e(root)}</code>.</p>")
    else:
        out.append('<section id="agents"><h2>Agents</h2><p class="note">One colour and marker per agent on every '
                   "plot and table; a variant (another configuration) keeps its agent's colour, dashed, with hollow "
                   "markers. Reference lines are thin, dashed and unmarked.</p>" + _agents_key(tables) + "</section>")
        out.append('<section id="summary"><h2>Summary</h2><p class="note">Each cell: the IQM over seeds × tasks of the '
                   "benchmark's headline score (normalised where its table says so: random 0, oracle or task-ppo 1), its "
                   "95% stratified bootstrap CI and the number of seeds. Click a benchmark for its table.</p>")
        out += [_summary(tables, kind) for kind in KIND_TITLES]
        out.append("</section>")
        out += [_section(i, b) for i, b in enumerate(tables)]
    out.append("</main>")
    out.append(f'<script type="application/json" id="lb-data">{_json_script(data)}</script>')
    out.append(f"<script>{_asset('page.js')}</script>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
