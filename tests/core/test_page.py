"""The page's parts without a browser: one identity per agent, every pairwise comparison as
``compare`` computes it, and the page's data drawn from the records."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import numpy as np
import pytest

from metarl_bench import agents, page, page_pairs, page_style, plots, stats
from metarl_bench import benchmarks as bm
from metarl_bench import leaderboard as lb
from metarl_bench.benchmarks import Benchmark, Protocol
from metarl_bench.recording import build_record

BENCH = "MetaRL/PageUnit-v0"
REFS = {"random": {"online": 1.0, "final": 0.5}, "oracle": {"online": 2.0, "final": 1.0}}


@pytest.fixture
def registered():
    bm.benchmark_ids()  # loads the definitions: else the snapshot is empty and the restore would leave none
    # test-only: benchmarks.py has no public way to register a throwaway definition and remove it
    before = dict(bm._BENCHMARKS)
    bm._BENCHMARKS[BENCH] = Benchmark(
        id=BENCH, family_id="MetaRL/Bandit-v0", family_kwargs={"k": 2},
        protocol=Protocol(budget_episodes=2, runs_per_task=3, final_episodes=2), n_train=4, n_test=6,
        task_seed=9, meta_train_steps=10, headline="online", tier="smoke", reference_overrides=REFS,
    )
    yield bm._BENCHMARKS[BENCH]
    bm._BENCHMARKS.clear()
    bm._BENCHMARKS.update(before)


def record(agent: str, seed: int, p: float):
    returns = (np.random.default_rng(100 * seed + int(10 * p)).random((6, 3, 4)) < p).astype(float)
    ag = SimpleNamespace(name=agent, resolved_config=lambda: {})
    return build_record(ag, bm.benchmark(BENCH), seed, returns, np.array([0.0, 1.0, 2.0, 2.0]),
                        ["budget", "budget", "final", "final"], {"env_steps": 0, "wall_seconds": 0.0}, {})


SUITE = ("random", "oracle", "bayes-optimal", "gittins", "ucb1", "thompson", "greedy", "epsilon-greedy", "psrl",
         "maml-trpo", "maml-ppo", "reptile", "rl2", "ppo", "multitask-ppo", "multitask-ppo-finetune", "task-ppo",
         "recurrent-ppo", "maml", "fomaml", "meta-sgd", "pretrained", "scratch", "prior-mean")


def test_every_suite_agent_has_its_own_fixed_colour_and_marker():
    pairs = list(page_style.BUILTIN.values())
    assert len(set(pairs)) == len(pairs)  # no two agents drawn alike
    assert len({c for c, _ in pairs}) == len(pairs)  # not even in colour alone
    assert not {c for c, _ in pairs} & set(page_style.EXTRA_COLORS)  # other agents' colours are none of these
    assert set(SUITE) <= set(page_style.BUILTIN) and set(SUITE) <= set(agents.agent_names())
    # an agent added later gets an identity of its own name alone: nobody else's changes
    assert page_style.style("ucb1").color == page_style.BUILTIN["ucb1"][0]


@pytest.mark.parametrize(("name", "kind", "want"), [
    ("ucb1", "rl", "classical"), ("random", "rl", "classical"), ("psrl", "rl", "classical"),
    ("maml-trpo", "rl", "gradient"), ("reptile", "rl", "gradient"), ("rl2", "rl", "incontext"),
    ("task-ppo", "rl", "sb3"), ("recurrent-ppo", "rl", "sb3"),
    ("reptile", "supervised", "fewshot"), ("oracle", "supervised", "fewshot"), ("oracle", "rl", "classical"),
    ("maml", "supervised", "fewshot"), ("no-such-agent", "rl", "other"),
])
def test_paradigm_comes_from_the_registered_module(name, kind, want):
    assert page_style.paradigm(name, kind) == want


def test_a_plugin_agent_falls_in_the_other_group_and_keeps_a_hashed_identity():
    # test-only: the registry has no public unregister
    before = {k: dict(v) for k, v in agents._AGENTS.items()}
    sources = dict(agents._AGENT_SOURCES)
    try:
        agents.register_agent("explore-commit-x", "some_plugin.agents:ExploreCommit")
        st = page_style.style("explore-commit-x")
        assert st.paradigm == "other" and st.color in page_style.EXTRA_COLORS and st.marker in page_style.MARKERS
    finally:
        agents._AGENTS.clear()
        agents._AGENTS.update(before)
        agents._AGENT_SOURCES.clear()
        agents._AGENT_SOURCES.update(sources)
    # the identity of a name depends on nothing else: the same in a fresh process
    assert page_style.base_identity("explore-commit-x") == (st.color, st.marker)


def test_a_variant_keeps_its_agents_colour_dashed_and_hollow():
    base, var = page_style.style("maml-ppo"), page_style.style("maml-ppo@iterations=50", "maml-ppo")
    assert (var.color, var.marker, var.paradigm) == (base.color, base.marker, base.paradigm)
    assert base.dashes == () and not base.hollow and var.dashes and var.hollow
    assert base.linestyle == "-" and var.linestyle == (0, var.dashes)
    named = page_style.style("my-tuned-run", "ucb1")  # a --name variant
    assert named.color == page_style.BUILTIN["ucb1"][0] and named.hollow


def _mats(k: int, shape=(3, 40), seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    # rounded so that ties happen (the probability of improvement counts them half)
    return [np.round(rng.normal(0.1 * i, 1.0, shape), 1) for i in range(k)]


@pytest.mark.parametrize("lower", [False, True])
def test_pairwise_equals_compare_for_every_pair(lower):
    mats = _mats(4)
    out = page_pairs.pairwise(mats, lower, reps=300, seed=3)
    assert sorted(out) == [(i, j) for i in range(4) for j in range(i + 1, 4)]
    for (i, j), (diff, poi) in out.items():
        assert diff == stats.iqm_difference_ci(mats[i], mats[j], reps=300, seed=3)
        want = stats.probability_of_improvement_ci(mats[i], mats[j], lower, reps=300, seed=3)
        assert poi.point == want.point
        assert poi.low == pytest.approx(want.low, abs=1e-12) and poi.high == pytest.approx(want.high, abs=1e-12)


@pytest.mark.parametrize("table", [True, False])
def test_pairwise_with_different_seed_counts(table, monkeypatch):
    if not table:  # the per-task products instead of the lookup table of count vectors
        monkeypatch.setattr(page_pairs._Counts, "MAX_TABLE", 0)  # test-only: forces the other path
    mats = _mats(2, (3, 30)) + _mats(1, (2, 30), seed=1) + _mats(1, (7, 30), seed=2)
    out = page_pairs.pairwise(mats, False, reps=200)
    for (i, j), (diff, poi) in out.items():
        assert diff == stats.iqm_difference_ci(mats[i], mats[j], reps=200)
        want = stats.probability_of_improvement_ci(mats[i], mats[j], reps=200)
        assert (poi.point, poi.low, poi.high) == pytest.approx((want.point, want.low, want.high), abs=1e-12)


def test_page_data_and_html_of_a_benchmark(tmp_path, registered):
    root = tmp_path / "r"
    for s in (0, 1, 2):
        record("ucb1", s, 0.8).save(root)
        record("random", s, 0.3).save(root)
    md, html, errors = lb.build_leaderboard(root, reps=100)
    assert errors == []
    data = json.loads(re.search(r'<script type="application/json" id="lb-data">(.*?)</script>', html, re.S)
                      .group(1).replace("<\\/", "</"))
    b = data["benchmarks"][0]
    assert b["id"] == BENCH and [r["variant"] for r in b["rows"]] == ["ucb1", "random"]
    assert md.count("| ucb1 |") == 1
    # the curves are the records' pooled curves, as the plots draw them
    res = lb.collect(root)
    x, mean, se = plots.pooled_curve(res.groups[BENCH]["ucb1"])
    c = b["curves"]["ucb1"]
    assert c["x"] + c["fx"] == x.tolist()
    np.testing.assert_allclose(c["m"] + c["fm"], mean, rtol=1e-4)
    np.testing.assert_allclose(c["h"] + c["fh"], plots.Z95 * se, rtol=2e-3)
    # the one pair: compare's numbers
    summary, _ = lb.compare(root, "ucb1", "random", BENCH, reps=100)
    (i, j, *nums), = b["pairs"]
    assert (i, j) == (0, 1)
    want = [summary["iqm_difference"][k] for k in ("point", "low", "high")]
    want += [summary["probability_of_improvement"][k] for k in ("point", "low", "high")]
    assert nums == pytest.approx(want, rel=1e-5)
    # identities, the default comparison written for readers without a script, record links
    assert data["styles"]["0:ucb1"]["color"] == page_style.BUILTIN["ucb1"][0]
    assert f"As `metarl-bench compare ucb1 random --benchmark {BENCH}` reports them." in html
    assert 'href="MetaRL/PageUnit-v0/ucb1/seed-2.json"' in html
    assert "plots/MetaRL__PageUnit-v0.profiles.png" in html and "http" not in html.split("<script")[0].replace(
        'content="width=device-width', "")


def test_html_escapes_names_and_keeps_script_data_inert():
    assert page._json_script({"a": "</script><b>"}) == '{"a":"<\\/script><b>"}'
    assert page.record_link("MetaRL/X-v0", "ucb1@c=0.5", 2) == "MetaRL/X-v0/ucb1%40c%3D0.5/seed-2.json"
    assert page.short_name("MetaRL/Bandit-k5-n10-v0") == "Bandit-k5-n10"
