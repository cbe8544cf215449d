"""Plots: files written under safe names, curves pooled correctly, labels and references drawn."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from metarl_bench import page_style, plots, stats
from metarl_bench.recording import build_record
from metarl_bench.results import Record

REFS = {"random": {"online": 1.0, "final": 0.5}, "oracle": {"online": 2.0, "final": 1.0}}
NO_REFS = {"random": {"online": None, "final": None}, "oracle": {"online": None, "final": None}}


def fake_bench(lower_is_better: bool = False, refs: dict | None = None, budget: int = 3, tasks: int = 4, runs: int = 3):
    """A stand-in for the registered benchmark the plots read references and direction from."""
    return SimpleNamespace(
        id="MetaRL/Fake-v0", version=0, task_hash="h0", tier="smoke", headline="online",
        lower_is_better=lower_is_better, test_tasks=list(range(tasks)),
        references=REFS if refs is None else refs, task_references=None,
        protocol=SimpleNamespace(budget_episodes=budget),
        summary=lambda: {"protocol": {"budget_episodes": budget, "runs_per_task": runs}},
    )


def fake_record(
    returns: np.ndarray,
    seed: int = 0,
    agent: str = "a",
    lower_is_better: bool = False,
    refs: dict | None = None,
    budget: int = 3,
    extra: dict | None = None,
) -> Record:
    """A record built by the harness's own ``build_record`` from ``(tasks, runs, episodes)`` returns."""
    bench = fake_bench(lower_is_better, refs, budget, returns.shape[0], returns.shape[1])
    ag = SimpleNamespace(name=agent, resolved_config=lambda: {})
    n_final = returns.shape[2] - budget
    x = np.concatenate([np.arange(budget), np.full(n_final, budget)]).astype(float)
    phase = ["budget"] * budget + ["final"] * n_final
    return build_record(ag, bench, seed, returns, x, phase, {"env_steps": 0, "wall_seconds": 0.0}, {}, extra)


def returns_(seed: int, shape: tuple[int, int, int] = (4, 3, 5)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2, size=shape).astype(float)


def test_pooled_curve_of_one_record_is_the_record_curve():
    r = fake_record(returns_(0))
    x, mean, se = plots.pooled_curve([r])
    np.testing.assert_allclose(x, r.curve["x"])
    np.testing.assert_allclose(mean, r.curve["mean"], rtol=1e-6)
    np.testing.assert_allclose(se, r.curve["se"], rtol=1e-6)


def test_pooled_curve_pools_seeds_as_more_runs():
    a, b = returns_(1), returns_(2)
    x, mean, se = plots.pooled_curve([fake_record(a, seed=0), fake_record(b, seed=1)])
    both = np.concatenate([a, b], axis=1)  # (tasks, 6 runs, episodes)
    per_task_final = both[:, :, 3:].mean(axis=(1, 2))
    assert x.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert mean[0] == pytest.approx(both[:, :, 0].mean())
    assert mean[-1] == pytest.approx(per_task_final.mean())
    assert se[-1] == pytest.approx(per_task_final.std(ddof=1) / 2.0)


def test_pooled_curve_refuses_different_axes():
    r0 = fake_record(returns_(0), seed=0)
    r1 = fake_record(returns_(1, (4, 3, 6)), seed=1, budget=4)
    with pytest.raises(ValueError, match="different experience axes"):
        plots.pooled_curve([r0, r1])


def test_plot_curves_writes_png_and_svg_with_labels_and_references(tmp_path):
    by_agent = {"a": [fake_record(returns_(0), agent="a")], "b": [fake_record(returns_(3), agent="b")]}
    paths = plots.plot_curves(by_agent, "MetaRL/Fake-v0", tmp_path, bench=fake_bench())
    assert [p.name for p in paths] == ["MetaRL__Fake-v0.curves.png", "MetaRL__Fake-v0.curves.svg"]
    assert all(p.parent == tmp_path for p in paths)
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = paths[1].read_text()
    for text in ("episodes of experience in the test task", "return per episode", "random (reference)",
                 "oracle (reference)", "a (1 seed)", "b (1 seed)"):
        assert text in svg


def test_plot_curves_supervised_labels_and_no_reference_lines(tmp_path):
    r = fake_record(returns_(0), lower_is_better=True, refs=NO_REFS)
    bench = fake_bench(lower_is_better=True, refs=NO_REFS)
    svg = plots.plot_curves({"maml": [r]}, "MetaRL/Fake-v0", tmp_path, bench=bench)[1].read_text()
    assert "inner gradient steps" in svg and "query MSE" in svg
    assert "(reference)" not in svg
    r2 = fake_record(returns_(0), extra={"x_label": "shots seen"})
    assert plots.axis_labels(r2) == ("shots seen", "return per episode")


def test_plot_profiles_and_determinism(tmp_path):
    by_agent = {"a": [fake_record(returns_(0), agent="a"), fake_record(returns_(5), seed=1, agent="a")]}
    b = fake_bench()
    first = [p.read_bytes() for p in plots.plot_benchmark(by_agent, "MetaRL/Fake-v0", tmp_path / "1", bench=b)]
    again = [p.read_bytes() for p in plots.plot_benchmark(by_agent, "MetaRL/Fake-v0", tmp_path / "2", bench=b)]
    assert len(first) == 4 and first == again
    svg = (tmp_path / "1" / "MetaRL__Fake-v0.profiles.svg").read_text()
    assert "normalised online score threshold" in svg and "a (2 seeds)" in svg


def test_agents_keep_their_colour_and_variants_are_dashed(tmp_path):
    by_agent = {"ucb1": [fake_record(returns_(0), agent="ucb1")], "rl2": [fake_record(returns_(3), agent="rl2")]}
    variant = fake_record(returns_(4), agent="ucb1")
    variant.agent["variant"] = "ucb1@c=0.5"
    by_agent["ucb1@c=0.5"] = [variant]
    svg = plots.plot_curves(by_agent, "MetaRL/Fake-v0", tmp_path, bench=fake_bench())[1].read_text()
    for name in ("ucb1", "rl2"):
        assert page_style.BUILTIN[name][0] in svg  # the same colour as on the page and every other plot
    st = plots.styles(by_agent, fake_bench())
    assert st["ucb1@c=0.5"].color == st["ucb1"].color and st["ucb1@c=0.5"].hollow


def test_lines_that_coincide_are_named_in_the_caption(tmp_path):
    same = returns_(7)
    by_agent = {"gittins": [fake_record(same, agent="gittins")], "bayes-optimal": [fake_record(same, agent="bayes-optimal")],
                "random": [fake_record(returns_(8) * 0.2, agent="random")]}
    svg = plots.plot_curves(by_agent, "MetaRL/Fake-v0", tmp_path, bench=fake_bench())[1].read_text()
    assert "bayes-optimal and gittins coincide" in svg
    svg = plots.plot_profiles(by_agent, "MetaRL/Fake-v0", tmp_path, bench=fake_bench())[1].read_text()
    assert "bayes-optimal and gittins coincide" in svg
    curves = {a: plots.curve(r) for a, r in by_agent.items()}
    caption = " ".join(plots.curves_caption(fake_bench(), curves, "x", "return per episode"))
    assert "the final evaluation (2 episodes per run, no adaptation during them)" in caption
    assert "Dotted step: the last adapt() call" in caption


def test_profile_range_spans_where_agents_differ():
    rng = np.random.default_rng(0)
    a = rng.normal(0.5, 0.1, (3, 400))
    a[0, 0] = -40.0  # one outlier task
    b = rng.normal(0.2, 0.1, (3, 400))
    taus = plots.profile_taus([a, b], normalized=True)
    assert taus[0] > -1.0 and taus[0] <= 0.0 and taus[-1] >= 1.0  # the outlier is left out, the references kept
    below, above = taus[0], taus[-1]
    for m in (a, b):
        assert stats.performance_profile(m, [below])[0] >= 0.99 and stats.performance_profile(m, [above])[0] <= 0.01
