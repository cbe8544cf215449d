"""Learners' tuned YAML configs (``baselines/configs/<agent>.yaml``): every mistake names
the file, the line and the key, and a key that is no registered benchmark is an error."""

import pytest

import metarl_bench
import metarl_bench.agents as agents
from metarl_bench.agents import ConfigFileError, agent_names
from metarl_bench.benchmarks import benchmark, benchmark_ids
from metarl_bench.cli import main

BANDIT = "MetaRL/Bandit-k5-n10-v0"
SMOKE_BANDIT = "MetaRL/Bandit-k5-n10-smoke-v0"


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    # the tuned-config folder is not a setting: the tests point the private lookup elsewhere
    monkeypatch.setattr(agents, "_config_dir", lambda: tmp_path)
    return tmp_path


def _configure(name, bench=SMOKE_BANDIT):
    return metarl_bench.agent(name).configure(benchmark(bench))


def test_yaml_syntax_error_names_the_file_and_line(config_dir):
    path = config_dir / "ucb1.yaml"
    path.write_text(f"default:\n  c: 1.0\n{BANDIT}: {{c: [1}}\n")  # the flow list on line 3 never closes
    with pytest.raises(ConfigFileError) as err:
        _configure("ucb1")
    assert str(err.value).startswith(f"{path}, line 3")


def test_non_mapping_entry_names_the_file_line_and_key(config_dir):
    path = config_dir / "ucb1.yaml"
    path.write_text(f"default:\n  c: 1.0\n{BANDIT}: 5\n")
    with pytest.raises(ConfigFileError) as err:
        _configure("ucb1")
    message = str(err.value)
    assert message.startswith(f"{path}, line 3") and repr(BANDIT) in message and "mapping" in message


def test_a_key_matching_no_benchmark_is_an_error_with_close_matches(config_dir):
    path = config_dir / "ucb1.yaml"
    path.write_text("MetaRL/Bandit-k5-n10-v1:\n  c: 0.5\n")  # misspelt version
    with pytest.raises(ConfigFileError) as err:
        _configure("ucb1")
    message = str(err.value)
    assert message.startswith(f"{path}, line 1")
    assert "'MetaRL/Bandit-k5-n10-v1' matches no registered benchmark" in message
    assert repr(BANDIT) in message  # the close match


def test_a_bad_field_in_an_entry_names_the_file_and_key(config_dir):
    path = config_dir / "ucb1.yaml"
    path.write_text(f"default: {{}}\n{BANDIT}:\n  cc: 0.5\n")
    with pytest.raises(TypeError) as err:
        _configure("ucb1")
    message = str(err.value)
    assert message.startswith(f"{path}, line 2, entry {BANDIT!r}") and "no config field 'cc'" in message


def test_scientific_notation_in_a_config_file_is_a_float(config_dir):
    (config_dir / "ucb1.yaml").write_text(f"{BANDIT}:\n  c: 1e-3\n")
    assert _configure("ucb1").c == 0.001


def test_a_broken_config_file_is_one_line_on_the_command_line(config_dir, capsys):
    path = config_dir / "ucb1.yaml"
    path.write_text(f"{BANDIT}: {{c: [1}}\n")
    args = ["evaluate", "--benchmark", SMOKE_BANDIT, "--agent", "ucb1", "--no-save"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and "line 1" in err


def _supported_pairs():
    for name in agent_names():
        for bid in benchmark_ids():
            bench = benchmark(bid)
            if metarl_bench.agent(name).supports(bench) is None:
                yield name, bench


def test_every_shipped_config_file_resolves_for_every_benchmark_its_agent_runs_on():
    checked = 0
    for name, bench in _supported_pairs():
        metarl_bench.agent(name).configure(bench)  # reads and checks the agent's YAML file and field types
        checked += 1
    assert checked > 100


def test_every_tuned_entry_can_run_on_its_benchmark():
    """A benchmark with an entry in an agent's YAML file (its own or its quick-tier id's) gets a
    config that passes check_benchmark: shipped tuned configs are runnable."""
    checked = 0
    for name, bench in _supported_pairs():
        path = agents._config_dir() / f"{name}.yaml"  # the shipped folder (no public name for it)
        entries = agents.config_entries(path) if path.exists() else {}
        if bench.id in entries or bench.id.replace("-smoke-v", "-v") in entries:
            agent = metarl_bench.agent(name)
            agent.configure(bench)
            agent.check_benchmark(bench)
            checked += 1
    assert checked > 50
