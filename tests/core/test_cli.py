"""The metarl-bench command line: listing, evaluating, resumable runs, readable errors."""

import importlib

import pytest

from metarl_bench.cli import main


def test_list_prints_families_benchmarks_and_agents(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for s in ("MetaRL/Bandit-v0", "MetaRL/Navigation2D-v0", "MetaRL/Bandit-k5-n10-v0", "bayes-optimal", "batched"):
        assert s in out


def test_evaluate_prints_scores_and_writes_the_record(tmp_path, capsys):
    args = ["evaluate", "--benchmark", "MetaRL/Bandit-k5-n10-smoke-v0", "--agent", "ucb1", "--set", "c=1.0"]
    assert main(args + ["--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    # the summary table: the headline (online, on bandits) marked, no raw lists of the curve
    assert out[0] == "ucb1@c=1.0 on MetaRL/Bandit-k5-n10-smoke-v0 (seed 0)"
    assert [line.split()[1] for line in out if line.startswith("*")] == ["online"]
    assert any(line.split()[0] == "final" for line in out) and not any("[" in line for line in out)
    assert out[-1] == f"  record: {tmp_path / 'MetaRL/Bandit-k5-n10-smoke-v0/ucb1@c=1.0/seed-0.json'}"
    # c=1.0 is not ucb1's default (sqrt 2): the record goes beside the default's place
    assert (tmp_path / "MetaRL/Bandit-k5-n10-smoke-v0/ucb1@c=1.0/seed-0.json").exists()
    assert not (tmp_path / "MetaRL/Bandit-k5-n10-smoke-v0/ucb1").exists()


def test_run_is_resumable(tmp_path, capsys):
    args = ["run", "--benchmark", "MetaRL/Bandit-k5-n10-smoke-v0", "--agent", "thompson", "random",
            "--seeds", "0", "1", "--workers", "1", "--results", str(tmp_path)]
    assert main(args) == 0
    assert "4 to run" in capsys.readouterr().out
    victim = tmp_path / "MetaRL/Bandit-k5-n10-smoke-v0/random/seed-1.json"
    victim.write_text(victim.read_text()[:100])  # a half-written file from an old crash
    assert main(args) == 0
    assert "3 already done" in capsys.readouterr().out
    from metarl_bench.results import load_record

    load_record(victim)  # rewritten and valid again


@pytest.mark.parametrize(
    "args, message",
    [
        (["evaluate", "--benchmark", "MetaRL/Bandit-k5-n10-v0", "--agent", "ucb"], "unknown agent"),
        (["evaluate", "--benchmark", "MetaRL/Bandit-k9-v0", "--agent", "ucb1"], "unknown benchmark"),
        (["evaluate", "--benchmark", "MetaRL/Bandit-k5-n10-v0", "--agent", "ucb1", "--set", "x=1"], "no config field"),
    ],
)
def test_bad_input_is_a_readable_error(args, message, capsys):
    assert main(args + ["--no-save"]) == 2
    assert message in capsys.readouterr().err


def test_perf_maml_passes_the_thread_count(monkeypatch):
    from metarl_bench.perf import maml as perf_maml

    calls = []
    monkeypatch.setattr(perf_maml, "maml_bench", lambda **kw: calls.append(kw))
    assert main(["perf", "maml", "--threads", "2"]) == 0
    assert main(["perf", "maml"]) == 0
    assert calls == [{"verbose": True, "torch_threads": 2}, {"verbose": True}]


@pytest.mark.parametrize(("suite", "module", "function"), [("fewshot", "fewshot", "supervised_perf"), ("rl2", "rl2", "rl2_bench")])
def test_perf_suites_run_their_speed_benchmark(monkeypatch, suite, module, function):
    perf_module = importlib.import_module(f"metarl_bench.perf.{module}")
    calls = []
    monkeypatch.setattr(perf_module, function, lambda **kw: calls.append(kw))
    assert main(["perf", suite]) == 0
    assert calls == [{}]


def _options(parser):
    """Every (subcommand, option) of the parser with its help text (argparse's private
    ``_actions`` and ``_SubParsersAction``: it has no public way to walk its options)."""
    import argparse

    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command, subparser in sub.choices.items():
        for action in subparser._actions:
            if not isinstance(action, argparse._HelpAction):
                yield command, "/".join(action.option_strings) or action.dest, action.help


def test_every_option_of_every_command_has_help_text():
    from metarl_bench.cli import build_parser

    options = list(_options(build_parser()))
    assert len(options) > 50  # the walk sees the subcommands' options
    missing = [f"{command} {name}" for command, name, text in options if not (text and text.strip())]
    assert missing == [], f"options without --help text: {missing}"


def test_help_prints_for_every_command(capsys):
    import argparse

    from metarl_bench.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # no public walk
    for command in sub.choices:
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert f"usage: metarl-bench {command}" in out
    assert {"agents", "train", "evaluate", "run"} <= set(sub.choices)
