"""Leaderboard and compare: a pure, deterministic function of the records that refuses bad files."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from metarl_bench import benchmarks as bm
from metarl_bench import leaderboard as lb
from metarl_bench import stats
from metarl_bench.benchmarks import Benchmark, Protocol
from metarl_bench.recording import build_record
from metarl_bench.results import Record

BENCH = "MetaRL/Fake-v0"
REFS = {"random": {"online": 1.0, "final": 0.5}, "oracle": {"online": 2.0, "final": 1.0}}
NO_REFS = {"random": {"online": None, "final": None}, "oracle": {"online": None, "final": None}}


def register_fake(bench_id: str, tasks: int, runs: int, lower_is_better: bool = False, refs: dict | None = None):
    """Register (for this test) a tiny benchmark on the 2-armed bandit family with fixed
    benchmark-level references: 2 budget episodes, 2 final, ``tasks`` x ``runs``."""
    bm.benchmark_ids()  # loads the registered definitions
    b = Benchmark(
        id=bench_id, family_id="MetaRL/Bandit-v0", family_kwargs={"k": 2},
        protocol=Protocol(budget_episodes=2, runs_per_task=runs, final_episodes=2), n_train=4, n_test=tasks,
        task_seed=7, meta_train_steps=10, headline="online", tier="smoke", lower_is_better=lower_is_better,
        reference_overrides=refs or REFS,
    )
    # test-only: benchmarks.py has no public way to replace a definition or unregister one
    old = bm._BENCHMARKS.get(bench_id)
    if old is None or (old.n_test, old.protocol, old.lower_is_better, old.reference_overrides) != (
        b.n_test, b.protocol, b.lower_is_better, b.reference_overrides
    ):
        bm._BENCHMARKS[bench_id] = b
    return bm._BENCHMARKS[bench_id]


@pytest.fixture(autouse=True)
def _forget_fake_benchmarks():
    bm.benchmark_ids()  # loads the definitions: else the snapshot is empty and the restore would leave none
    # test-only: benchmarks.py has no public way to replace a definition or unregister one
    before = dict(bm._BENCHMARKS)
    yield
    bm._BENCHMARKS.clear()
    bm._BENCHMARKS.update(before)


def fake_record(
    returns: np.ndarray,
    seed: int = 0,
    agent: str = "a",
    task_hash: str | None = None,
    lower_is_better: bool = False,
    bench_id: str = BENCH,
    config: dict | None = None,
    meta_train: dict | None = None,
    refs: dict | None = None,
) -> Record:
    """A record built by the harness's own ``build_record`` from ``(tasks, runs, 4 episodes)`` returns
    (2 budget episodes, 2 final) on a registered test benchmark of that shape."""
    bench = register_fake(bench_id, returns.shape[0], returns.shape[1], lower_is_better, refs)
    ag = SimpleNamespace(name=agent, resolved_config=lambda: dict(config or {}))
    x = np.array([0.0, 1.0, 2.0, 2.0])
    phase = ["budget", "budget", "final", "final"]
    mt = meta_train or {"env_steps": 1000 * (seed + 1), "wall_seconds": 3.0}
    rec = build_record(ag, bench, seed, returns, x, phase, mt, {})
    if task_hash is not None:
        rec.benchmark["task_hash"] = task_hash
    return rec


def rets(seed: int, p: float, tasks: int = 6, runs: int = 3) -> np.ndarray:
    return (np.random.default_rng(seed).random((tasks, runs, 4)) < p).astype(float)


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    for s in (0, 1):
        fake_record(rets(10 + s, 0.8), seed=s, agent="good").save(root)
        fake_record(rets(20 + s, 0.3), seed=s, agent="weak").save(root)
    return root


def table_row(md: str, agent: str) -> list[str]:
    rows = [line for line in md.splitlines() if line.startswith("| ") and f" | {agent} | " in line]
    assert len(rows) == 1, rows
    return [c.strip() for c in rows[0].strip("|").split("|")]


def test_markdown_numbers_match_the_records(results: Path):
    md, page, errors = lb.build_leaderboard(results, reps=200)
    assert errors == []
    recs = [Record.from_dict(json.loads(p.read_text())) for p in sorted((results / BENCH / "good").glob("*.json"))]
    # (seeds, tasks): each seed's 3 runs averaged per task
    m = np.stack([r.returns[:, :, :2].sum(axis=2).mean(axis=1) for r in recs])
    row = table_row(md, "good")
    assert row[0] == "1"  # higher online score ranks first
    mean_txt = row[2].split(" [")[0]
    tol = 0.5 * 10.0 ** -len(mean_txt.split(".")[1]) + 1e-9  # half a unit of the last printed digit
    assert float(mean_txt) == pytest.approx(m.mean(), abs=tol)
    assert row[2] == lb.fmt_ci(stats.mean_ci(m, reps=200))
    # the mean over two seeds with the same tasks and runs is the mean of the seeds' scores
    assert float(mean_txt) == pytest.approx(np.mean([r.scores["online"]["value"] for r in recs]), abs=tol)
    norm = (m - REFS["random"]["online"]) / (REFS["oracle"]["online"] - REFS["random"]["online"])
    assert row[4] == lb.fmt_ci(stats.iqm_ci(norm, reps=200))
    assert row[5] == "1,500" and row[6] == "3.0 s" and row[7] == "2 †"
    assert "† fewer than 3 seeds" in md and "benchmark-level references" in md
    assert table_row(md, "weak")[0] == "2"
    point, ci = row[2].split(" [")
    assert 'data-name="good"' in page and f"{point}<small>[{ci}</small>" in page  # the same text, CI set apart
    assert "plots/MetaRL__Fake-v0.curves.png" in md and 'src="plots/MetaRL__Fake-v0.curves.png"' in page


def test_lower_is_better_ranks_lowest_first(tmp_path: Path):
    root = tmp_path / "r"
    fake_record(rets(1, 0.9), agent="high", lower_is_better=True).save(root)
    fake_record(rets(2, 0.1), agent="low", lower_is_better=True).save(root)
    md, _, _ = lb.build_leaderboard(root, reps=50)
    assert table_row(md, "low")[0] == "1" and table_row(md, "high")[0] == "2"
    assert "lower is better" in md


def test_write_leaderboard_files_and_determinism(results: Path):
    paths = lb.write_leaderboard(results, reps=100)
    names = {p.relative_to(results).as_posix() for p in paths}
    assert {"LEADERBOARD.md", "index.html", "plots/MetaRL__Fake-v0.curves.png",
            "plots/MetaRL__Fake-v0.profiles.png"} <= names
    assert not any(n.endswith(".svg") for n in names)  # vector copies come from `metarl-bench plot`
    assert all(p.exists() and p.stat().st_size > 0 for p in paths)
    before = {p: p.read_bytes() for p in paths}
    (results / "plots" / "MetaRL__Gone-v0.curves.png").write_bytes(b"stale")
    lb.write_leaderboard(results, reps=100)
    assert {p: p.read_bytes() for p in paths} == before
    assert not (results / "plots" / "MetaRL__Gone-v0.curves.png").exists()


def test_truncated_file_is_named_and_nothing_published(results: Path):
    bad = results / BENCH / "weak" / "seed-1.json"
    bad.write_text(bad.read_text()[:200])
    with pytest.raises(lb.LeaderboardError) as err:
        lb.write_leaderboard(results, reps=50)
    assert str(bad) in str(err.value) and "not valid JSON" in str(err.value)
    assert not (results / "LEADERBOARD.md").exists() and not (results / "index.html").exists()
    lb.write_leaderboard(results, allow_errors=True, reps=50)
    md = (results / "LEADERBOARD.md").read_text()
    assert "Warning: incomplete" in md and str(bad) in md
    assert table_row(md, "weak")[7] == "1 †"  # only the good seed is counted
    assert "Warning: incomplete" in (results / "index.html").read_text()


def test_hand_edited_score_and_moved_file_are_named(results: Path):
    edited = results / BENCH / "good" / "seed-0.json"
    d = json.loads(edited.read_text())
    d["scores"]["online"]["value"] = 99.0
    edited.write_text(json.dumps(d))
    moved = results / BENCH / "weak" / "seed-7.json"
    (results / BENCH / "weak" / "seed-1.json").rename(moved)
    _, _, errors = lb.build_leaderboard(results, reps=50)
    assert len(errors) == 2
    assert any(str(edited) in e and "edited" in e for e in errors)
    assert any(str(moved) in e and "seed-1.json" in e for e in errors)


def test_stale_task_hash_is_refused_naming_the_registered_hash_and_the_command(results: Path):
    stale = fake_record(rets(3, 0.5), seed=2, agent="good", task_hash="other")
    path = stale.save(results)
    md, _, errors = lb.build_leaderboard(results, reps=50)
    bench = bm.benchmark(BENCH)
    assert len(errors) == 1 and str(path) in errors[0] and "stale" in errors[0]
    assert bench.task_hash in errors[0] and f"metarl-bench run --benchmark {BENCH} --agent good --seeds 2" in errors[0]
    assert table_row(md, "good")[7] == "2 †"  # the two current seeds are still published


def test_mixed_configs_of_one_agent_are_not_pooled(results: Path):
    fake_record(rets(3, 0.5), seed=2, agent="good", config={"lr": 0.1}).save(results)
    _, _, errors = lb.build_leaderboard(results, reps=50)
    assert len(errors) == 1 and "different agent configurations" in errors[0]


def test_compare_exact_on_separated_agents(tmp_path: Path):
    root = tmp_path / "r"
    fake_record(np.ones((5, 2, 4)), agent="hi").save(root)  # online 2 -> normalised 1
    fake_record(np.zeros((5, 2, 4)), agent="lo").save(root)  # online 0 -> normalised -1
    summary, text = lb.compare(root, "hi", "lo", BENCH, reps=100)
    assert summary["normalized"] and summary["score"] == "online"
    assert summary["iqm_difference"] == {"point": 2.0, "low": 2.0, "high": 2.0}
    assert summary["probability_of_improvement"] == {"point": 1.0, "low": 1.0, "high": 1.0}
    assert "hi is better" in text
    with pytest.raises(ValueError, match=r"agents with records: \['hi', 'lo'\]"):
        lb.compare(root, "hi", "nobody", BENCH)
    with pytest.raises(ValueError, match="benchmarks with records"):
        lb.compare(root, "hi", "lo", "MetaRL/Other-v0")


def test_compare_probability_of_improvement_matches_stats(results: Path):
    summary, _ = lb.compare(results, "weak", "good", BENCH, reps=100)
    bench = bm.benchmark(BENCH)
    good = stats.aggregate([fake_record(rets(10 + s, 0.8), seed=s, agent="good") for s in (0, 1)], bench)
    weak = stats.aggregate([fake_record(rets(20 + s, 0.3), seed=s, agent="weak") for s in (0, 1)], bench)
    poi = summary["probability_of_improvement"]
    assert poi["point"] == pytest.approx(stats.probability_of_improvement(weak.scores, good.scores), abs=1e-9)
    assert poi["low"] <= poi["point"] <= poi["high"] < 0.5


def test_compare_raw_lower_is_better_without_references(tmp_path: Path):
    root = tmp_path / "r"
    fake_record(np.ones((5, 2, 4)), agent="high-mse", lower_is_better=True, refs=NO_REFS).save(root)
    fake_record(np.zeros((5, 2, 4)), agent="low-mse", lower_is_better=True, refs=NO_REFS).save(root)
    summary, text = lb.compare(root, "low-mse", "high-mse", BENCH, reps=50)
    assert not summary["normalized"] and summary["lower_is_better"]
    assert summary["iqm_difference"]["point"] == -2.0
    assert summary["probability_of_improvement"]["point"] == 1.0
    assert "low-mse is better (lower online score)" in text
    md, _, _ = lb.build_leaderboard(root, reps=50)
    assert "(no references: raw, lower is better)" in md and table_row(md, "low-mse")[0] == "1"


def test_write_plots_of_one_benchmark(results: Path, tmp_path: Path):
    fake_record(rets(1, 0.5), agent="good", bench_id="MetaRL/Other-v0").save(results)
    paths = lb.write_plots(results, benchmark_id="MetaRL/Other-v0", out_dir=tmp_path / "p")
    assert sorted(p.name for p in paths) == [
        "MetaRL__Other-v0.curves.png", "MetaRL__Other-v0.curves.svg",
        "MetaRL__Other-v0.profiles.png", "MetaRL__Other-v0.profiles.svg",
    ]
    with pytest.raises(ValueError, match="benchmarks with records"):
        lb.write_plots(results, benchmark_id="MetaRL/Missing-v0")
