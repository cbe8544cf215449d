"""Agent configs: unknown and ill-typed fields refused, tuned YAML per benchmark, kinds."""

import pytest

import metarl_bench
from metarl_bench.agents import agent_names, tuned_config


def test_unknown_config_field_is_named_with_suggestion():
    with pytest.raises(TypeError, match="no config field 'epsilom'.*epsilon"):
        metarl_bench.agent("epsilon-greedy", epsilom=0.2)


def test_ill_typed_config_field_is_named():
    with pytest.raises(TypeError, match="'epsilon' must be float"):
        metarl_bench.agent("epsilon-greedy", epsilon="lots")


def test_out_of_range_config_value_is_named():
    with pytest.raises(ValueError, match="'epsilon' must be in"):
        metarl_bench.agent("epsilon-greedy", epsilon=1.5)
    with pytest.raises(ValueError, match="'c' must be > 0"):
        metarl_bench.agent("ucb1", c=-1.0)


def test_ints_are_accepted_for_floats_and_coerced():
    a = metarl_bench.agent("ucb1", c=2)
    assert a.config.c == 2.0 and isinstance(a.config.c, float)


def test_tuned_config_falls_back_from_smoke_to_quick_tier(tmp_path, monkeypatch):
    import metarl_bench.agents as agents

    # keys must be registered benchmark ids (or 'default')
    quick, smoke, other = "MetaRL/Bandit-k5-n10-v0", "MetaRL/Bandit-k5-n10-smoke-v0", "MetaRL/Bandit-k10-n10-v0"
    (tmp_path / "demo.yaml").write_text(f"default: {{a: 1}}\n{quick}: {{b: 2}}\n{smoke}: {{c: 3}}\n")
    monkeypatch.setattr(agents, "_config_dir", lambda: tmp_path)  # the folder is not a setting
    assert tuned_config("demo", quick) == {"a": 1, "b": 2}
    assert tuned_config("demo", smoke) == {"a": 1, "b": 2, "c": 3}
    assert tuned_config("demo", other) == {"a": 1}
    assert tuned_config("no-such-agent", quick) == {}


def test_reference_agents_are_registered():
    names = set(agent_names())
    assert {"random", "oracle", "bayes-optimal", "gittins", "ucb1", "thompson", "greedy", "epsilon-greedy", "psrl"} <= names


_OWN_AGENT = '''
import dataclasses
import metarl_bench

@dataclasses.dataclass
class OwnConfig(metarl_bench.AgentConfig):
    c: float = 1.0

class OwnAgent(metarl_bench.Agent):
    name = "own-agent"
    config_cls = OwnConfig
    tuned_configs = "own.yaml"
'''


def test_an_agent_class_names_its_own_tuned_configs_beside_its_module(tmp_path, monkeypatch):
    """Relative to the module that sets ``tuned_configs`` (a subclass elsewhere inherits the
    file), read by ``configure``; no file named: the suite's folder; a missing one: one line."""
    import importlib

    from metarl_bench.agents import tuned_config_file

    (tmp_path / "pkg_a").mkdir()
    (tmp_path / "pkg_a" / "own_agents.py").write_text(_OWN_AGENT)
    (tmp_path / "pkg_a" / "own.yaml").write_text("MetaRL/Bandit-k5-n10-v0: {c: 2.5}\n")
    (tmp_path / "sub_agents.py").write_text("from pkg_a.own_agents import OwnAgent\nclass SubAgent(OwnAgent):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    own = importlib.import_module("pkg_a.own_agents").OwnAgent
    sub = importlib.import_module("sub_agents").SubAgent
    assert tuned_config_file(own) == tuned_config_file(sub) == (tmp_path / "pkg_a" / "own.yaml").resolve()
    bench = metarl_bench.benchmark("MetaRL/Bandit-k5-n10-smoke-v0")
    assert sub().configure(bench).c == 2.5  # the smoke tier takes the quick tier's entry
    assert sub(c=3.0).configure(bench).c == 3.0
    assert own().configure(metarl_bench.benchmark("MetaRL/Bandit-k10-n10-v0")).c == 1.0  # no entry there

    assert tuned_config_file("ucb1").name == "ucb1.yaml"  # None: baselines/configs/<name>.yaml
    assert tuned_config_file(type("Abs", (own,), {"tuned_configs": tmp_path / "pkg_a" / "own.yaml"})).is_absolute()
    monkeypatch.setattr(own, "tuned_configs", "missing.yaml")
    with pytest.raises(ValueError, match=r"tuned_configs file .*missing\.yaml does not exist; ship it") as err:
        own().configure(bench)
    assert "\n" not in str(err.value)
