"""Config values typed by a user: ``--set`` reads numbers as they are written, refuses
unreadable and non-finite values with one line, and the Python API applies the same rules."""

import math

import pytest

import metarl_bench
from metarl_bench.agents import parse_value
from metarl_bench.cli import _parse_set, main  # --set's parser on its own (main would run a sweep)

SMOKE_BANDIT = "MetaRL/Bandit-k5-n10-smoke-v0"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1e-3", 0.001),  # YAML 1.1 reads these two as strings
        ("1e10", 10_000_000_000.0),
        ("-2.5E-2", -0.025),
        (".5", 0.5),
        ("20", 20),
        ("010", 10),  # decimal, not octal 8
        ("10_000", 10000),
        ("[64, 64]", [64, 64]),
        ("[1e-3, 2]", [0.001, 2]),
        ("true", True),
        ("relu", "relu"),
        ("1:30", "1:30"),  # not sexagesimal 90
    ],
)
def test_values_are_read_as_written(text, expected):
    value = parse_value(text)
    assert value == expected and type(value) is type(expected)


def test_inf_and_nan_are_numbers_so_that_validation_can_name_them():
    assert parse_value("inf") == math.inf and parse_value("-inf") == -math.inf
    assert math.isnan(parse_value("nan"))


def test_set_parses_scientific_notation_to_floats():
    assert _parse_set(["c=1e-3", "outer_lr=1e10"]) == {"c": 0.001, "outer_lr": 1e10}


def test_set_with_scientific_notation_runs_end_to_end(capsys):
    args = ["evaluate", "--benchmark", SMOKE_BANDIT, "--agent", "ucb1", "--set", "c=1e-3", "--no-save", "--json"]
    assert main(args) == 0, capsys.readouterr().err


def test_unreadable_value_is_one_line_naming_key_and_value(capsys):
    args = ["evaluate", "--benchmark", SMOKE_BANDIT, "--agent", "ucb1", "--set", "c=[1", "--no-save"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "--set c=[1" in err and "[64, 64]" in err  # names the key and value, shows how to write a list


def test_a_key_given_twice_is_refused(capsys):
    args = ["evaluate", "--benchmark", SMOKE_BANDIT, "--agent", "ucb1", "--set", "c=1", "--set", "c=2", "--no-save"]
    assert main(args) == 2
    assert "--set c is given twice" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name, field, value",
    [
        ("ucb1", "c", math.inf),
        ("ucb1", "c", math.nan),
        ("epsilon-greedy", "epsilon", math.nan),
        ("maml-trpo", "fast_lr", math.inf),
        ("maml-ppo", "outer_lr", math.inf),
        ("maml-trpo", "max_kl", math.inf),
        ("rl2", "learning_rate", math.inf),
        ("rl2", "ent_coef", math.inf),  # a coefficient: >= 0 passed inf before
        ("rl2", "gae_lambda", math.nan),
        ("reptile", "meta_lr", math.inf),
        ("maml", "inner_lr", math.inf),
        ("meta-sgd", "inner_lr", (0.01, math.inf)),  # inside a tuple
    ],
)
def test_non_finite_values_are_refused_naming_the_field(name, field, value):
    with pytest.raises(ValueError, match=f"'{field}' must be a finite number"):
        metarl_bench.agent(name, **{field: value})


def test_non_finite_value_from_the_command_line_is_one_line(capsys):
    args = ["evaluate", "--benchmark", SMOKE_BANDIT, "--agent", "ucb1", "--set", "c=inf", "--no-save"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'c' must be a finite number, got inf" in err


def test_whole_numbers_written_as_floats_fill_int_fields():
    agent = metarl_bench.agent("maml-trpo", iterations=1e3, hidden_sizes=[32.0, 32])
    assert agent.config.iterations == 1000 and type(agent.config.iterations) is int
    assert agent.config.hidden_sizes == (32, 32) and all(type(h) is int for h in agent.config.hidden_sizes)


def test_fractional_values_are_still_refused_for_int_fields():
    with pytest.raises(TypeError, match="'iterations' must be int"):
        metarl_bench.agent("maml-trpo", iterations=2.5)
