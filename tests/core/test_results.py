"""Results records: validation with the file named, atomic writes, compact arrays."""

import json
import os

import numpy as np
import pytest

import metarl_bench
from metarl_bench.results import (
    RecordError,
    atomic_write_json,
    decode_array,
    encode_array,
    load_all,
    load_record,
)


@pytest.fixture(scope="module")
def record():
    return metarl_bench.evaluate(metarl_bench.agent("random"), "MetaRL/Bandit-k5-n10-smoke-v0", seed=0)


def test_compact_array_round_trip():
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7
    np.testing.assert_array_equal(decode_array(encode_array(a)), a.astype(np.float64))


def test_truncated_file_is_named_with_the_fix(tmp_path, record):
    path = record.save(tmp_path)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(RecordError, match=r"seed-0\.json.*not valid JSON.*re-run"):
        load_record(path)
    records, errors = load_all(tmp_path)
    assert records == [] and len(errors) == 1 and "seed-0.json" in str(errors[0])


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.pop("scores"), "missing fields"),
        (lambda d: d.update(schema_version=99), "schema_version"),
        (lambda d: d["episodes"].update(x=[0.0]), "one entry per episode"),
        (lambda d: d["episodes"]["returns"].update(data="!!!"), "corrupt array"),
        (lambda d: d["scores"]["online"].update(value="high"), "scores.online.value"),
    ],
)
def test_hand_edited_records_fail_validation(tmp_path, record, edit, message):
    d = record.to_dict()
    edit(d)
    path = tmp_path / "r" / "seed-0.json"
    path.parent.mkdir()
    path.write_text(json.dumps(d))
    with pytest.raises(RecordError, match=message):
        load_record(path)


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "a.json"
    atomic_write_json(path, {"v": 1})

    def boom(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_json(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_score_matrix_is_runs_by_tasks(record):
    m = record.score_matrix("online")
    assert m.shape == (record.returns.shape[1], record.returns.shape[0])
    assert m.mean() == pytest.approx(record.scores["online"]["value"])
