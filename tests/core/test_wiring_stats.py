"""Statistics and record wiring that other tests left open: the IQM's trimming proportion on a
matrix where 20% and 25% trimming differ, per-task normalisation of the online score (the budget
times the per-episode references), the record's headline, and records with non-finite returns."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from metarl_bench import stats
from metarl_bench.recording import build_record
from metarl_bench.results import Record, RecordError, encode_array


def test_iqm_drops_a_quarter_from_each_end():
    # 8 scores, skewed: 25% trimming drops 2 from each end -> mean(3, 4, 5, 6) = 4.5;
    # 20% would drop 1 -> mean(2, 3, 4, 5, 6, 50) = 11.67
    m = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [50.0, 100.0]])
    assert stats.iqm(m) == pytest.approx(4.5)
    # and its bootstrap (the counts-based path) is centred on the same point
    assert stats.iqm_ci(m, reps=200).point == pytest.approx(4.5)


def _bench(tasks: int, budget: int, task_refs: dict | None = None, headline: str = "final") -> Any:
    none = {"random": {"online": None, "final": None}, "oracle": {"online": None, "final": None}}
    return SimpleNamespace(
        id="MetaRL/Wiring-v0", version=0, task_hash="h", tier="smoke", headline=headline, lower_is_better=False,
        test_tasks=list(range(tasks)), references=none, task_references=task_refs,
        protocol=SimpleNamespace(budget_episodes=budget), summary=lambda: {"protocol": {"budget_episodes": budget}},
    )


def _record(bench: Any, returns: np.ndarray, seed: int = 0) -> Record:
    budget = bench.protocol.budget_episodes
    n_ep = returns.shape[2]
    x = np.concatenate([np.arange(budget), np.full(n_ep - budget, budget)]).astype(float)
    phase = ["budget"] * budget + ["final"] * (n_ep - budget)
    ag: Any = SimpleNamespace(name="a", resolved_config=lambda: {})
    return build_record(ag, bench, seed, returns, x, phase, {}, {})


def test_per_task_online_normalisation_scores_the_oracle_one_and_random_zero():
    """Per-task references are per episode; the online score is a sum over the budget, so its
    references are the budget times them: an agent earning each task's oracle return in every
    episode scores exactly 1 on every task, one earning the random return 0."""
    budget = 3
    per_episode = {"random": np.array([0.5, 1.0]), "oracle": np.array([0.9, 4.0])}
    bench = _bench(2, budget, per_episode, headline="online")
    for ref, want in (("oracle", 1.0), ("random", 0.0)):
        returns = np.broadcast_to(per_episode[ref][:, None, None], (2, 2, budget + 1)).copy()  # 2 tasks, 2 runs
        rec = _record(bench, returns)
        agg = stats.aggregate([rec], bench, which="online")
        assert agg.normalization == "per-task"
        np.testing.assert_allclose(agg.scores, [[want, want]], atol=1e-12)
        assert rec.scores["normalized_online"]["value"] == pytest.approx(want, abs=1e-12)


def test_score_matrix_of_the_headline_is_the_benchmarks_headline_score():
    returns = np.array([[[1.0, 2.0, 10.0], [3.0, 4.0, 20.0]]])  # 1 task, 2 runs, 2 budget + 1 final
    final_rec = _record(_bench(1, 2, headline="final"), returns)
    online_rec = _record(_bench(1, 2, headline="online"), returns)
    np.testing.assert_array_equal(final_rec.score_matrix("headline"), [[10.0], [20.0]])
    np.testing.assert_array_equal(online_rec.score_matrix("headline"), [[3.0], [7.0]])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_record_with_non_finite_returns_is_refused(bad):
    rec = _record(_bench(1, 2), np.ones((1, 2, 3)))
    d = rec.to_dict()
    returns = rec.returns.copy()
    returns[0, 1, 2] = bad
    d["episodes"]["returns"] = encode_array(returns)
    with pytest.raises(RecordError, match="NaN or inf"):
        Record.from_dict(d, where="seed-0.json")
    Record.from_dict(rec.to_dict())  # the untouched record reads back


def test_records_in_hidden_folders_are_not_read(tmp_path):
    """The results folder's hidden folders (divergence checkpoints, publishing's staging) hold
    no records: a record file there is neither listed nor loaded."""
    from metarl_bench.results import iter_record_paths, load_all

    rec = _record(_bench(2, 2), np.ones((2, 2, 3)))
    shown = rec.save(tmp_path)
    hidden = tmp_path / ".checkpoints" / "MetaRL/Wiring-v0" / "a" / "seed-1.json"
    hidden.parent.mkdir(parents=True)
    hidden.write_text(shown.read_text())
    assert list(iter_record_paths(tmp_path)) == [shown]
    records, errors = load_all(tmp_path)
    assert [r.seed for r in records] == [0] and errors == []
