"""Published numbers come from the registered benchmark and the episode returns, never from a
record's derived fields; bad records are refused naming the file; outputs are all or nothing."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.figure import Figure

from metarl_bench import benchmarks as bm
from metarl_bench import leaderboard as lb
from metarl_bench.benchmarks import Benchmark, Protocol
from metarl_bench.harness import build_record

BENCH = "MetaRL/FaultFake-v0"
OTHER = "MetaRL/FaultOther-v0"
REFS = {"random": {"online": 1.0, "final": 0.5}, "oracle": {"online": 2.0, "final": 1.0}}


@pytest.fixture(autouse=True)
def registered():
    bm.benchmark_ids()  # loads the definitions: else the snapshot is empty and the restore would leave none
    # test-only: benchmarks.py has no public way to replace a definition or unregister one
    before = dict(bm._BENCHMARKS)
    for bid in (BENCH, OTHER):
        bm._BENCHMARKS[bid] = Benchmark(
            id=bid, family_id="MetaRL/Bandit-v0", family_kwargs={"k": 2},
            protocol=Protocol(budget_episodes=2, runs_per_task=3, final_episodes=2), n_train=4, n_test=6,
            task_seed=11, meta_train_steps=10, headline="online", tier="smoke", reference_overrides=REFS,
        )
    yield
    bm._BENCHMARKS.clear()
    bm._BENCHMARKS.update(before)


def record(bid: str, agent: str, seed: int, p: float):
    returns = (np.random.default_rng(100 * seed + int(10 * p)).random((6, 3, 4)) < p).astype(float)
    ag = SimpleNamespace(name=agent, resolved_config=lambda: {})
    return build_record(ag, bm.benchmark(bid), seed, returns, np.array([0.0, 1.0, 2.0, 2.0]),
                        ["budget", "budget", "final", "final"], {"env_steps": 0, "wall_seconds": 0.0}, {})


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    for s in (0, 1, 2):
        record(BENCH, "good", s, 0.8).save(root)
        record(BENCH, "weak", s, 0.3).save(root)
    return root


def edit(path: Path, change) -> None:
    d = json.loads(path.read_text())
    change(d)
    path.write_text(json.dumps(d))


def test_edited_references_and_normalised_scores_change_nothing_published(results: Path):
    md0, _, errors0 = lb.build_leaderboard(results, reps=100)
    cmp0, _ = lb.compare(results, "weak", "good", BENCH, reps=100)
    for seed in (0, 1, 2):
        def bump(d):
            d["scores"]["references"] = {"random": {"online": -50.0, "final": -9.0}, "oracle": {"online": 0.0, "final": 0.0}}
            d["scores"]["normalized_online"] = {"value": 0.99, "se": 0.0}
            d["curve"]["mean"] = [0.0 for _ in d["curve"]["mean"]]
        edit(results / BENCH / "weak" / f"seed-{seed}.json", bump)
    md1, _, errors1 = lb.build_leaderboard(results, reps=100)
    cmp1, _ = lb.compare(results, "weak", "good", BENCH, reps=100)
    assert errors0 == errors1 == []
    assert md1 == md0 and cmp1 == cmp0


def test_edited_headline_or_direction_is_refused_naming_the_file(results: Path):
    bad = results / BENCH / "weak" / "seed-1.json"
    edit(bad, lambda d: d["benchmark"].update(headline="final"))
    _, _, errors = lb.build_leaderboard(results, reps=50)
    assert len(errors) == 1 and str(bad) in errors[0] and "benchmark.headline" in errors[0] and "'online'" in errors[0]
    with pytest.raises(lb.LeaderboardError, match="benchmark.headline"):
        lb.compare(results, "weak", "good", BENCH, reps=50)
    edit(bad, lambda d: d["benchmark"].update(headline="online", lower_is_better=True))
    _, _, errors = lb.build_leaderboard(results, reps=50)
    assert len(errors) == 1 and str(bad) in errors[0] and "lower_is_better" in errors[0]


def test_unregistered_benchmark_is_refused_naming_the_file_and_the_registered_versions(results: Path):
    path = record(BENCH, "good", 0, 0.8).save(results.parent / "scratch")
    moved = results / "MetaRL" / "FaultFake-v1" / "good" / "seed-0.json"
    moved.parent.mkdir(parents=True)
    edit(path, lambda d: d["benchmark"].update(id="MetaRL/FaultFake-v1", version=1))
    path.rename(moved)
    md, _, errors = lb.build_leaderboard(results, reps=50)
    assert len(errors) == 1 and str(moved) in errors[0] and "not registered" in errors[0] and BENCH in errors[0]
    assert "FaultFake-v1" not in md.split("Warning")[-1].split("\n\n", 2)[-1]  # no table of its own


def test_a_full_disk_while_publishing_replaces_nothing(results: Path, monkeypatch):
    record(OTHER, "good", 0, 0.5).save(results)  # two benchmarks: the plots are drawn by worker processes
    lb.write_leaderboard(results, reps=50, progress=False)
    before = {p: p.read_bytes() for p in results.rglob("*") if p.is_file() and p.suffix in (".md", ".html", ".png", ".svg")}
    assert len(before) == 2 + 2 * 2  # the pages, and curves and profiles (PNG) of both benchmarks
    for s in (0, 1, 2):  # the new board would differ
        record(BENCH, "weak", s, 0.5).save(results)
    real = Figure.savefig
    calls = []

    def savefig(self, fname, *args, **kwargs):
        calls.append(fname)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(fname))
        return real(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    with pytest.raises(OSError, match="No space left"):
        lb.write_leaderboard(results, reps=50, progress=False)
    after = {p: p.read_bytes() for p in results.rglob("*") if p.is_file() and p.suffix in (".md", ".html", ".png", ".svg")}
    assert after == before
    assert not [p for p in results.iterdir() if p.name.startswith(".leaderboard-staging-")]


def test_missing_or_file_results_path_is_one_clear_error(tmp_path: Path):
    missing = tmp_path / "does-not-exist"
    for call in (lambda r: lb.write_leaderboard(r, progress=False), lb.write_plots, lb.build_leaderboard,
                 lambda r: lb.compare(r, "a", "b", BENCH)):
        with pytest.raises(lb.ResultsPathError, match="does not exist"):
            call(missing)
        assert not missing.exists()
    a_file = tmp_path / "results.txt"
    a_file.write_text("x")
    with pytest.raises(lb.ResultsPathError, match="is a file, not a folder") as err:
        lb.write_leaderboard(a_file, progress=False)
    assert str(a_file) in str(err.value) and isinstance(err.value, ValueError)
