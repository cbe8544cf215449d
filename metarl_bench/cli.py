"""The ``metarl-bench`` command line.

    metarl-bench list [families|benchmarks|agents]
    metarl-bench agents list | show NAME
    metarl-bench check-env ID [ID ...] | --all
    metarl-bench run --benchmark B [B ...] --agent A [A ...] --seeds 0 1 2 [--workers N] [--set key=value] [--name N]
    metarl-bench evaluate --benchmark B --agent A [--seed S] [--set key=value] [--name N]
    metarl-bench train --benchmark B --agent A [--seed S] [--set key=value] --save DIR
    metarl-bench evaluate --agent-dir DIR [--benchmark B] [--seed S]
    metarl-bench leaderboard | plot [--results DIR]
    metarl-bench compare A B --benchmark B [--results DIR]
    metarl-bench perf [envs|harness|maml|fewshot|rl2]
    metarl-bench bench [--tier quick|smoke]

A config other than the agent's default for the benchmark is stored beside the default,
under ``<agent>@<changed settings>`` or the ``--name`` given. Agents and benchmarks of
installed plugin packages (entry-point groups ``metarl_bench.agents`` and
``metarl_bench.benchmarks``) are used and listed as the suite's own. Errors a user can cause
(bad input, unusable results folders, bad records) print one line naming the problem and
the fix and exit non-zero; SIGINT and SIGTERM stop a sweep at once, keeping finished records.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

DEFAULT_RESULTS = "results"


def _parse_set(items: list[str] | None) -> dict[str, Any]:
    """``--set key=value`` pairs; values are read as a user writes them (``1e-3`` is a float,
    ``[64, 64]`` a list; see :func:`metarl_bench.agents.parse_value`)."""
    from metarl_bench.agents import parse_value

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SystemExit(f"--set expects key=value (e.g. --set iterations=100), got {item!r}")
        if key in out:
            raise ValueError(f"--set {key} is given twice ({out[key]!r} and {value!r}); give each key once")
        try:
            out[key] = parse_value(value)
        except ValueError as exc:
            raise ValueError(f"--set {key}={value}: {exc}") from None
    return out


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def _results_folder(path: str, must_exist: bool) -> Path:
    """``--results`` as a folder, or ``ValueError`` naming the problem (it is never created here)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"--results {path}: is a file, not a folder; pass the results folder")
    if must_exist and not p.exists():
        raise ValueError(f"--results {path}: no such folder; run `metarl-bench run ...` first, or pass the results folder")
    return p


def _table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --- list / check-env ------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    import metarl_bench
    from metarl_bench.agents import agent_names, agent_source
    from metarl_bench.benchmarks import benchmark, benchmark_ids, benchmark_source
    from metarl_bench.family import family_spec, plugin_errors

    what = args.what
    if what in (None, "families"):
        rows = []
        for fid in metarl_bench.family_ids():
            spec = family_spec(fid)
            d = spec.make().describe()
            rows.append([fid, d["kind"], ", ".join(d["task_parameters"]), d["distribution"], d["horizon"] or "-",
                         "yes" if d["batched"] else "no", spec.provider])
        print("Families\n" + _table(rows, ["id", "kind", "task parameters", "distribution", "horizon", "batched", "source"]))
    if what in (None, "benchmarks"):
        rows = []
        for bid in benchmark_ids(args.tier):
            b = benchmark(bid)
            p = b.protocol
            budget = f"{p.budget_episodes} ep x {p.runs_per_task} runs" if p.shots is None else f"K={p.shots}"
            rows.append([bid, b.tier, b.family_id, b.n_test, budget,
                         b.headline + (" (lower better)" if b.lower_is_better else ""), benchmark_source(bid)])
        print("\nBenchmarks\n" + _table(rows, ["id", "tier", "family", "test tasks", "protocol", "headline", "source"]))
    if what in (None, "agents"):
        rows = [[name, ", ".join(sorted(kinds)), "; ".join(descs), agent_source(name)]
                for name, kinds, descs in (_agent_summary(n) for n in agent_names())]
        print("\nAgents\n" + _table(rows, ["name", "kinds", "description", "source"]))
    broken = [[e.what, e.name, e.provider, e.error] for e in plugin_errors(group=None)]
    if broken:
        print("\nBroken plugins (skipped; fix or uninstall them)\n"
              + _table(broken, ["registers", "entry point", "provider", "error"]))
    return 0


def _agent_summary(name: str) -> tuple[str, dict[str, Any], list[str]]:
    """An agent's name, its implementations by kind and a description of each."""
    from metarl_bench.agents import agent_class, agent_kinds

    kinds = agent_kinds(name)
    descs = []
    for k in sorted(kinds):
        try:
            cls = agent_class(name, k)
            descs.append(cls.description or ((cls.__doc__ or "").strip().splitlines() or [""])[0])
        except Exception as exc:  # noqa: BLE001 - a broken plugin or module: show it, list the rest
            descs.append(f"(cannot load: {type(exc).__name__}: {exc})")
    return name, kinds, descs


# --- agents list / show ----------------------------------------------------------------------


def cmd_agents(args: argparse.Namespace) -> int:
    if args.action == "list":
        args.what, args.tier = "agents", None
        return cmd_list(args)
    if not args.name:
        raise ValueError("agents show needs an agent name (see `metarl-bench agents list`)")
    print(describe_agent(args.name))
    return 0


def describe_agent(name: str) -> str:
    """What ``metarl-bench agents show NAME`` prints: the agent's description, kinds and source,
    every config field with its type, default and documentation, and its tuned entries per
    benchmark (``baselines/configs/NAME.yaml``, or the file the class names as ``tuned_configs``)."""
    import inspect

    from metarl_bench.agents import agent_class, agent_kinds, agent_source, config_entries, tuned_config_file

    kinds = agent_kinds(name)
    lines = [f"{name}  (source: {agent_source(name)})"]
    for kind in sorted(kinds):
        cls = agent_class(name, kind)
        target = kinds[kind] if isinstance(kinds[kind], str) else f"{cls.__module__}:{cls.__qualname__}"
        lines += ["", f"[{kind}] {target}"]
        if cls.description:
            lines.append(f"  {cls.description}")
        doc = inspect.getdoc(cls)
        if doc and doc != inspect.getdoc(cls.__mro__[1]):
            lines += ["  " + line if line else "" for line in doc.split("\n\n")[0].splitlines()]
        lines.append(f"  learns: {'yes' if cls.learns else 'no'}; sees the task: {'yes' if cls.sees_task else 'no'}")
        fields = config_fields(cls.config_cls)
        if not fields:
            lines.append(f"  config ({cls.config_cls.__name__}): no settings")
            continue
        lines.append(f"  config ({cls.config_cls.__name__}; change with --set FIELD=VALUE):")
        for fname, tname, default, fdoc in fields:
            lines.append(f"    {fname}: {tname} = {default}")
            for text in (fdoc or "(undocumented)").splitlines():
                lines.append(f"        {text.strip()}")
    # the tuned configs of each implementation (one file for all of them unless a class names its own)
    paths = list(dict.fromkeys(tuned_config_file(agent_class(name, kind)) for kind in sorted(kinds)))
    shown = False
    for path in paths:
        if not path.exists():
            continue
        shown = True
        entries = config_entries(path)
        lines += ["", f"tuned configs ({_display_path(path)}; a -smoke- benchmark uses its quick-tier entry):"]
        if not entries:
            lines.append("  (none)")
        for key, (_where, entry) in entries.items():
            lines.append(f"  {key}:" + ("" if entry else " (the defaults)"))
            lines += [f"    {k} = {v!r}" for k, v in entry.items()]
    if not shown:
        lines += ["", "tuned configs: none (the defaults above on every benchmark)"]
    return "\n".join(lines)


def _display_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def config_fields(config_cls: type) -> list[tuple[str, str, str, str]]:
    """``(name, type, default, documentation)`` of every field of a config dataclass. The
    documentation is the string literal under the field (the convention of the suite's
    configs), else the comment at the end of its line, else empty."""
    import dataclasses
    import typing

    if not dataclasses.is_dataclass(config_cls):
        return []
    hints = typing.get_type_hints(config_cls)
    docs: dict[str, str] = {}
    for klass in reversed(config_cls.__mro__):  # a subclass's documentation wins
        docs.update(_field_docs(klass))
    out = []
    for f in dataclasses.fields(config_cls):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        out.append((f.name, _type_text(hints.get(f.name, f.type)), default, docs.get(f.name, "")))
    return out


def _type_text(tp: Any) -> str:
    import typing

    if isinstance(tp, str):
        return tp
    if isinstance(tp, type) and typing.get_origin(tp) is None:
        return tp.__name__
    return str(tp).replace("typing.", "").replace("NoneType", "None")


def _field_docs(klass: type) -> dict[str, str]:
    """The documentation of the fields a class body declares (see :func:`config_fields`)."""
    import ast
    import inspect
    import io
    import textwrap
    import tokenize

    try:
        source = textwrap.dedent(inspect.getsource(klass))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):  # defined interactively, or a built-in
        return {}
    comments: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("#").strip()
    except (tokenize.TokenError, IndentationError):
        pass
    body = next((n.body for n in tree.body if isinstance(n, ast.ClassDef)), [])
    out: dict[str, str] = {}
    for node, after in zip(body, body[1:] + [None]):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        if (isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            out[node.target.id] = inspect.cleandoc(after.value.value)
        elif node.lineno in comments:
            out[node.target.id] = comments[node.lineno]
    return out


def cmd_check_env(args: argparse.Namespace) -> int:
    import metarl_bench
    from metarl_bench.checks import check_family, format_report

    ids = metarl_bench.family_ids() if args.all else args.ids
    if not ids:
        raise SystemExit("check-env needs a family id (see `metarl-bench list families`) or --all")
    failed = 0
    for fid in ids:
        results = check_family(fid)
        print(format_report(results, title=fid))
        failed += sum(not r.passed for r in results)
    return 1 if failed else 0


# --- run / evaluate --------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from metarl_bench.harness import check_writable
    from metarl_bench.sweep import check_seeds, cpu_count, job_status, plan, run_sweep

    check_writable(_results_folder(args.results, must_exist=False))
    config = _parse_set(args.set)
    _, repeated = check_seeds(args.seeds)
    if repeated:
        print(f"note: --seeds repeats {', '.join(map(str, repeated))}; each seed runs once", file=sys.stderr)
    jobs, skipped = plan(args.benchmark, args.agent, args.seeds, config, name=args.name, replace=args.force)
    for s in skipped:
        print(f"skip: {s}", file=sys.stderr)
    todo = []
    for job in jobs:
        done, why = (False, None) if args.force else job_status(job, args.results)
        if not done:
            todo.append(job)
            if why is not None:
                print(f"redo: {job}: {why}", file=sys.stderr)
    print(f"{len(jobs)} jobs, {len(jobs) - len(todo)} already done in {args.results}/, {len(todo)} to run")
    if args.backend == "ray":
        if args.workers is not None:
            print("note: --workers is ignored with --backend ray: Ray runs one job per CPU of the cluster",
                  file=sys.stderr)
        workers = 1
    else:
        workers = args.workers if args.workers is not None else cpu_count()
        if todo and workers > min(len(todo), cpu_count()):
            print(f"note: using {min(workers, len(todo), cpu_count())} workers ({len(todo)} jobs, "
                  f"{cpu_count()} CPUs)", file=sys.stderr)
    bar = tqdm(total=len(todo), unit="job", disable=not todo)
    failures = []

    def on_done(job: Any, path: str | None, err: BaseException | None) -> None:
        bar.update(1)
        if err is None:
            bar.write(f"done: {job} -> {path}")
        else:
            failures.append((job, err))
            why = _os_error_line(err) if isinstance(err, OSError) else f"{type(err).__name__}: {err}"
            bar.write(f"FAILED: {job}: {why}")

    run_sweep(todo, args.results, workers=workers, force=args.force, backend=args.backend, on_done=on_done,
              checkpoints=args.checkpoints, tensorboard=args.tensorboard)
    bar.close()
    return 1 if failures else 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import metarl_bench

    if args.agent_dir is not None:
        if args.set:
            raise ValueError(
                "--set changes an agent's config before meta-training, but --agent-dir loads an agent trained "
                "already; train one with the settings instead (metarl-bench train ... --set KEY=VALUE --save DIR)"
            )
        agent = metarl_bench.load_agent(args.agent_dir)
        saved = agent.loaded_from
        bench_id = args.benchmark or saved.benchmark_id
        seed = saved.seed if args.seed is None else args.seed
    else:
        if args.benchmark is None:
            raise ValueError("evaluate --agent needs --benchmark ID (see `metarl-bench list benchmarks`)")
        agent = metarl_bench.agent(args.agent, **_parse_set(args.set))
        bench_id, seed = args.benchmark, 0 if args.seed is None else args.seed
    return _evaluate_and_report(args, agent, bench_id, seed, {})


def cmd_train(args: argparse.Namespace) -> int:
    import metarl_bench

    save = Path(args.save)
    if save.exists() and not save.is_dir():
        raise ValueError(f"--save {args.save}: is a file, not a folder; pass a folder for the saved agent")
    agent = metarl_bench.agent(args.agent, **_parse_set(args.set))
    _evaluate_and_report(args, agent, args.benchmark, args.seed, {"save_agent": args.save})
    print(f"  saved agent: {args.save} (evaluate it again: metarl-bench evaluate --agent-dir {args.save})")
    return 0


def _evaluate_and_report(
    args: argparse.Namespace, agent: Any, bench_id: str, seed: int, extra: dict[str, Any]
) -> int:
    """Evaluate ``agent`` on ``bench_id`` with ``seed`` as ``args`` say (record, name,
    checkpoints, TensorBoard), then print its summary (the scores, headline marked; see
    :func:`metarl_bench.results.format_record_summary`); ``extra``: further keyword arguments of
    :func:`metarl_bench.evaluate`."""
    import metarl_bench
    from metarl_bench.harness import check_seed, check_slot, resolve_identity
    from metarl_bench.results import format_record_summary, record_path

    check_seed(seed)
    if not args.no_save:
        _results_folder(args.results, must_exist=False)
        bench = metarl_bench.benchmark(bench_id)
        loaded = getattr(agent, "loaded_from", None)
        name = loaded.variant if args.name is None and loaded is not None and loaded.named else args.name
        if agent.supports(bench) is None:  # say before the work when a stale record of this config will be replaced
            ident = resolve_identity(agent, bench, name)
            note = check_slot(record_path(args.results, bench.id, ident.variant, seed), ident, args.force)
            if note is not None:
                print(f"note: {note}", file=sys.stderr)
    if args.tensorboard is not None:
        extra = {**extra, "tensorboard": args.tensorboard}
    rec = metarl_bench.evaluate(agent, bench_id, seed=seed, progress=True,
                                results=None if args.no_save else args.results, name=args.name,
                                replace=args.force, checkpoints=args.checkpoints, **extra)
    print(format_record_summary(rec))
    if not args.no_save:
        print(f"  record: {rec.path(args.results)}")
    if args.json:
        print(json.dumps(rec.scores, indent=1))
    return 0


# --- leaderboard / compare / plot ------------------------------------------------------------


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from metarl_bench.leaderboard import write_leaderboard

    _results_folder(args.results, must_exist=True)
    paths = write_leaderboard(args.results, allow_errors=args.allow_errors)
    for p in paths:
        print(f"wrote {p}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from metarl_bench.leaderboard import compare

    _results_folder(args.results, must_exist=True)
    _, text = compare(args.results, args.agent_a, args.agent_b, args.benchmark)
    print(text)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from metarl_bench.leaderboard import write_plots

    _results_folder(args.results, must_exist=True)
    paths = write_plots(args.results, benchmark_id=args.benchmark)
    if not paths:
        raise ValueError(f"--results {args.results}: no records to plot; run `metarl-bench run ...` first")
    for p in paths:
        print(f"wrote {p}")
    return 0


# --- perf / bench ----------------------------------------------------------------------------


def cmd_perf(args: argparse.Namespace) -> int:
    suites = args.suites or ["envs"]
    for suite in suites:
        if suite == "envs":
            from metarl_bench.perf import main_perf

            print(main_perf(args.families or None))
        elif suite == "harness":
            from metarl_bench.perf import harness_throughput

            h = harness_throughput()
            print(f"harness on {h['family']}: {h['harness_steps_per_s']:,.0f} steps/s = "
                  f"{100 * h['fraction']:.0f}% of the raw batched env ({h['raw_steps_per_s']:,.0f} steps/s)")
        elif suite == "maml":
            from metarl_bench.perf.maml import maml_bench

            maml_bench(verbose=True, **({"torch_threads": args.threads} if args.threads else {}))
        elif suite == "fewshot":
            from metarl_bench.perf.fewshot import supervised_perf

            supervised_perf()
        elif suite == "rl2":
            from metarl_bench.perf.rl2 import rl2_bench

            rl2_bench()
        else:
            raise SystemExit(f"unknown perf suite {suite!r}; choose from envs, harness, maml, fewshot, rl2")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from metarl_bench.bench import run_bench

    return run_bench(tier=args.tier, results=args.results, workers=args.workers)


# --- parser ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="metarl-bench", description="Meta-RL benchmark suite")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("list", help="families, benchmarks and agents (with where each comes from)")
    s.add_argument("what", nargs="?", choices=["families", "benchmarks", "agents"],
                   help="list only these (default: all three)")
    s.add_argument("--tier", choices=["smoke", "quick", "full"], help="only benchmarks of this tier")
    s.set_defaults(fn=cmd_list)

    s = sub.add_parser("agents", help="the agents: list them, or show one's config fields and tuned configs")
    s.add_argument("action", choices=["list", "show"],
                   help="list: every agent (as `list agents`); show NAME: its description, kinds, every config "
                        "field with type, default and documentation, and its tuned configs per benchmark")
    s.add_argument("name", nargs="?", help="the agent to show (see `metarl-bench agents list`)")
    s.set_defaults(fn=cmd_agents)

    s = sub.add_parser("check-env", help="validate families (Gymnasium checker, seeding, tasks, batching)")
    s.add_argument("ids", nargs="*", metavar="ID", help="family ids to check (see `metarl-bench list families`)")
    s.add_argument("--all", action="store_true", help="check every registered family")
    s.set_defaults(fn=cmd_check_env)

    def results_arg(q: argparse.ArgumentParser) -> None:
        q.add_argument("--results", default=DEFAULT_RESULTS, metavar="DIR", help="results folder (default: results/)")

    def checkpoints_arg(q: argparse.ArgumentParser) -> None:
        q.add_argument("--checkpoints", default=None, metavar="DIR",
                       help="where a diverging learner leaves its last good parameters "
                            "(default: <results>/.checkpoints)")

    def set_arg(q: argparse.ArgumentParser) -> None:
        q.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="agent config override, e.g. --set c=0.5 (repeatable; fields: "
                            "`metarl-bench agents show NAME`)")

    def name_arg(q: argparse.ArgumentParser) -> None:
        q.add_argument("--name", default=None,
                       help="store a non-default config under this name (default: <agent>@<changed settings>)")

    def tensorboard_arg(q: argparse.ArgumentParser) -> None:
        q.add_argument("--tensorboard", default=None, metavar="DIR",
                       help="also write training metrics to TensorBoard event files under DIR "
                            "(needs the tensorboard package)")

    s = sub.add_parser("run", help="a resumable sweep of benchmarks x agents x seeds")
    s.add_argument("--benchmark", nargs="+", required=True, metavar="ID",
                   help="benchmark ids (see `metarl-bench list benchmarks`)")
    s.add_argument("--agent", nargs="+", required=True, metavar="NAME",
                   help="agent names, the suite's or installed plugins' (see `metarl-bench list agents`)")
    s.add_argument("--seeds", nargs="+", type=int, default=[0], metavar="S",
                   help="meta-training seeds, one record each (default: 0)")
    s.add_argument("--workers", type=_positive_int, default=None,
                   help="processes (default: all cores; at most one per job and per core)")
    s.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="local: a process pool on this machine (default); ray: a Ray cluster (RAY_ADDRESS)")
    s.add_argument("--force", action="store_true",
                   help="rerun jobs whose record exists (and replace another config stored under --name)")
    set_arg(s)
    name_arg(s)
    results_arg(s)
    checkpoints_arg(s)
    tensorboard_arg(s)
    s.set_defaults(fn=cmd_run)

    s = sub.add_parser("evaluate", help="one agent (by name or saved by `train`) on one benchmark, scores printed")
    who = s.add_mutually_exclusive_group(required=True)
    who.add_argument("--agent", metavar="NAME", help="the agent to meta-train and evaluate (see `metarl-bench list agents`)")
    who.add_argument("--agent-dir", metavar="DIR",
                     help="a meta-trained agent saved by `metarl-bench train --save DIR`: evaluated without "
                          "meta-training again")
    s.add_argument("--benchmark", metavar="ID",
                   help="benchmark id (see `metarl-bench list benchmarks`); with --agent-dir, default: the "
                        "benchmark it was trained on")
    s.add_argument("--seed", type=int, default=None,
                   help="the run's seed (default: 0; with --agent-dir, the seed the agent was trained with)")
    set_arg(s)
    name_arg(s)
    s.add_argument("--force", action="store_true", help="replace a record of another config stored under --name")
    s.add_argument("--no-save", action="store_true", help="do not write the record")
    s.add_argument("--json", action="store_true", help="also print the scores as JSON")
    results_arg(s)
    checkpoints_arg(s)
    tensorboard_arg(s)
    s.set_defaults(fn=cmd_evaluate)

    s = sub.add_parser("train", help="meta-train an agent, evaluate it, and save it for `evaluate --agent-dir`")
    s.add_argument("--benchmark", required=True, metavar="ID", help="benchmark id (see `metarl-bench list benchmarks`)")
    s.add_argument("--agent", required=True, metavar="NAME", help="agent name (see `metarl-bench list agents`)")
    s.add_argument("--save", required=True, metavar="DIR",
                   help="folder to save the meta-trained agent in (weights, resolved config, benchmark id "
                        "and task hash, package versions)")
    s.add_argument("--seed", type=int, default=0, help="the run's seed (default: 0)")
    set_arg(s)
    name_arg(s)
    s.add_argument("--force", action="store_true", help="replace a record of another config stored under --name")
    s.add_argument("--no-save", action="store_true", help="do not write the record (the agent is still saved)")
    s.add_argument("--json", action="store_true", help="also print the scores as JSON")
    results_arg(s)
    checkpoints_arg(s)
    tensorboard_arg(s)
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("leaderboard", help="LEADERBOARD.md, index.html and plots from the records")
    s.add_argument("--allow-errors", action="store_true", help="publish despite invalid records (with a warning)")
    results_arg(s)
    s.set_defaults(fn=cmd_leaderboard)

    s = sub.add_parser("compare", help="IQM difference and probability of improvement of A over B")
    s.add_argument("agent_a", metavar="A", help="agent (or variant, e.g. ucb1@c=0.5) whose improvement is measured")
    s.add_argument("agent_b", metavar="B", help="agent (or variant) compared against")
    s.add_argument("--benchmark", required=True, metavar="ID", help="benchmark id whose records are compared")
    results_arg(s)
    s.set_defaults(fn=cmd_compare)

    s = sub.add_parser("plot", help="adaptation curves and performance profiles")
    s.add_argument("--benchmark", default=None, metavar="ID", help="only this benchmark (default: every one with records)")
    results_arg(s)
    s.set_defaults(fn=cmd_plot)

    s = sub.add_parser("perf", help="throughput benchmarks (ratios measured in the same run)")
    s.add_argument("suites", nargs="*", metavar="SUITE",
                   help="envs (default; includes the harness fraction), harness, maml, fewshot, rl2")
    s.add_argument("--families", nargs="*", metavar="ID", help="family ids for the envs suite (default: every family)")
    s.add_argument("--threads", type=int, default=None,
                   help="torch threads for the maml suite (default: the config's, 1)")
    s.set_defaults(fn=cmd_perf)

    s = sub.add_parser("bench", help="the main job: the quick benchmark, records, leaderboard and plots")
    s.add_argument("--tier", choices=["smoke", "quick"], default="quick", help="benchmark tier to run (default: quick)")
    s.add_argument("--workers", type=_positive_int, default=max(1, (os.cpu_count() or 1)),
                   help="processes (default: all cores)")
    results_arg(s)
    s.set_defaults(fn=cmd_bench)
    return p


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: stop now, keep finished records."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated


_OS_FIXES = {
    errno.EACCES: "make it writable or pass another folder with --results",
    errno.EPERM: "make it writable or pass another folder with --results",
    errno.EROFS: "the file system is read-only; pass another folder with --results",
    errno.ENOSPC: "the disk is full; free space or pass a folder on another disk with --results",
    errno.EDQUOT: "the disk quota is spent; free space or pass another folder with --results",
    errno.ENOTDIR: "a file stands where a folder is needed; move it or pass another folder with --results",
    errno.EEXIST: "a file stands where a folder is needed; move it or pass another folder with --results",
    errno.EISDIR: "a folder stands where a file is needed; move it or pass another folder with --results",
    errno.ENOENT: "check the path",
}


def _os_error_line(exc: OSError) -> str:
    where = exc.filename if exc.filename is not None else "results"
    reason = exc.strerror or str(exc)
    fix = _OS_FIXES.get(exc.errno or 0, "check the path and its permissions")
    return f"{where}: {reason}; {fix}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from metarl_bench.agents import DivergenceError
    from metarl_bench.family import UnknownIdError
    from metarl_bench.sweep import BackendError

    previous = None
    if threading_main():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(args.fn(args) or 0)
    except (UnknownIdError, ValueError, TypeError) as exc:
        print(f"metarl-bench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"metarl-bench {args.command}: error: {_os_error_line(exc)}", file=sys.stderr)
        return 1
    except (BackendError, DivergenceError) as exc:
        print(f"metarl-bench {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        print("interrupted: finished records are kept; rerun the same command to continue", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def threading_main() -> bool:
    """True in the main thread, the only one that may set signal handlers."""
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
