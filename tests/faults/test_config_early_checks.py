"""Config/benchmark mismatches are refused before meta-training starts, naming the field and
the fix (they used to surface only after meta-training, or part-way through it)."""

import pytest

import metarl_bench
from metarl_bench.baselines.fewshot import maml as fewshot_maml
from metarl_bench.baselines.fewshot import reptile as fewshot_reptile
from metarl_bench.baselines.gradient import maml_rl, reptile_rl
from metarl_bench.baselines.incontext import rl2
from metarl_bench.cli import main

NAV = "MetaRL/Navigation2D-smoke-v0"  # budget 20 episodes, horizon 100, 200,000 meta-training steps
BANDIT = "MetaRL/Bandit-k5-n10-smoke-v0"  # budget 10 episodes, horizon 1
MDP25 = "MetaRL/TabularMDP-n25-smoke-v0"  # budget 25 episodes, horizon 10, 200,000 steps
SINE = "MetaRL/Sinusoid-K5-smoke-v0"  # K = 5 shots, 20,000,000 labelled examples


@pytest.fixture
def no_meta_training(monkeypatch):
    def refuse(self, ctx):
        raise AssertionError("meta-training started although the config cannot run")

    for cls in (maml_rl.MAMLTRPO, maml_rl.MAMLPPO, reptile_rl.ReptileRL, rl2.RL2Agent, fewshot_maml.MAMLAgent,
                fewshot_reptile.ReptileAgent):
        monkeypatch.setattr(cls, "meta_train", refuse)


def _evaluate(name, bench, **config):
    return metarl_bench.evaluate(metarl_bench.agent(name, **config), bench)


@pytest.mark.parametrize("name", ["maml-trpo", "maml-ppo"])
def test_stage_size_that_does_not_divide_the_budget_is_refused_before_training(name, no_meta_training):
    with pytest.raises(ValueError, match=r"fast_batch_size=7 .* does not divide the budget of 20 episodes; "
                                         r"choose one of \[1, 2, 4, 5, 10, 20\]"):
        _evaluate(name, NAV, fast_batch_size=7)


def test_reptile_stage_size_is_checked_too(no_meta_training):
    with pytest.raises(ValueError, match=r"fast_batch_size=3 .* budget of 10 episodes; choose one of \[1, 2, 5, 10\]"):
        _evaluate("reptile", BANDIT, fast_batch_size=3)


def test_a_stage_larger_than_the_budget_is_still_allowed():
    # the harness runs min(fast_batch_size, budget) episodes per stage: 40 > 20 is one stage of 20
    agent = metarl_bench.agent("maml-trpo", fast_batch_size=40)
    bench = metarl_bench.benchmark(NAV)
    agent.configure(bench)
    agent.check_benchmark(bench)


def test_a_meta_iteration_larger_than_the_budget_is_refused(no_meta_training):
    # (num_steps 1 + 1 valid batch) x 60 tasks x 20 episodes x 100 steps = 240,000 > 200,000
    with pytest.raises(ValueError, match="one meta-iteration takes 240,000 env steps but the meta-training budget "
                                         "is 200,000"):
        _evaluate("maml-ppo", NAV, meta_batch_size=60)


def test_rl2_trial_too_long_for_whole_trial_bptt_is_refused_before_training(no_meta_training):
    # 20 episodes x 100 steps = 2000 > max_bptt_steps 1000
    with pytest.raises(ValueError, match="a trial is 2000 steps .* bptt_chunk=1000"):
        _evaluate("rl2", NAV, trial_episodes=20)


def test_rl2_update_larger_than_the_budget_is_refused_before_training(no_meta_training):
    # 1024 trials x 25 episodes x 10 steps = 256,000 > 200,000
    with pytest.raises(ValueError, match="one update takes 256,000 env steps .* only 200,000 are allowed"):
        _evaluate("rl2", MDP25, num_trials=1024)


def test_supervised_maml_over_the_sample_budget_is_refused_before_training(no_meta_training):
    # 25 tasks x (5 support + 5 query) = 250 examples per iteration, x 1,000,000 = 250,000,000 > 20,000,000
    with pytest.raises(ValueError, match="1,000,000 iterations x 250 labelled examples = 250,000,000, over the "
                                         "meta-training budget of 20,000,000"):
        _evaluate("maml", SINE, iterations=1_000_000, meta_batch_size=25)


def test_supervised_reptile_counts_its_inner_support_sets(no_meta_training):
    # 5 tasks x 5 inner steps x 5 shots = 125 per iteration, x 1,000,000 = 125,000,000
    with pytest.raises(ValueError, match="1,000,000 iterations x 125 labelled examples = 125,000,000"):
        _evaluate("reptile", SINE, iterations=1_000_000, meta_batch_size=5, inner_steps=5)


def test_the_command_line_says_it_in_one_line(no_meta_training, capsys):
    args = ["evaluate", "--benchmark", NAV, "--agent", "maml-trpo", "--set", "fast_batch_size=7", "--no-save"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "fast_batch_size=7" in err
