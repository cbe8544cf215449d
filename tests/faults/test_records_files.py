"""Bad record files are named and never block commands that do not read them; records and
pages get the mode the umask gives; unusable results folders are one clear line."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import tempfile
from pathlib import Path

import pytest

import metarl_bench
from metarl_bench.cli import main
from metarl_bench.results import RecordError, atomic_write_text, load_record, record_path

SMOKE = "MetaRL/Bandit-k5-n10-smoke-v0"
OTHER = "MetaRL/Bandit-k10-n10-smoke-v0"


@pytest.fixture(scope="module")
def good() -> dict:
    return metarl_bench.evaluate(metarl_bench.agent("ucb1"), SMOKE, seed=0).to_dict()


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("seed", ["abc", 0.5, True, -1, None])
def test_a_bad_seed_is_a_record_error_naming_the_file(tmp_path, good, seed):
    d = dict(good, seed=seed)
    path = _write(record_path(tmp_path, SMOKE, "ucb1", 0), json.dumps(d).encode())
    with pytest.raises(RecordError, match=rf"{path}.*seed must be an integer >= 0, got {seed!r}"):
        load_record(path)


def test_a_non_utf8_record_is_a_record_error_naming_the_file(tmp_path, good):
    raw = json.dumps(good).encode()
    path = _write(record_path(tmp_path, SMOKE, "ucb1", 0), raw[:50] + b"\xff\xfe" + raw[50:])
    with pytest.raises(RecordError, match=rf"{path}: not UTF-8"):
        load_record(path)


@pytest.mark.parametrize("damage", ["non-utf8", "seed-abc"])
def test_a_bad_record_does_not_block_runs_that_do_not_read_it(tmp_path, good, capsys, damage):
    raw = json.dumps(good).encode()
    damage = raw[:50] + b"\xff" + raw[50:] if damage == "non-utf8" else json.dumps(dict(good, seed="abc")).encode()
    bad = _write(record_path(tmp_path, SMOKE, "ucb1", 0), damage)
    # another benchmark, and another agent on the same benchmark: the bad file is not theirs
    for bid, agent in ((OTHER, "ucb1"), (SMOKE, "random")):
        args = ["run", "--benchmark", bid, "--agent", agent, "--seeds", "0", "--workers", "1", "--results", str(tmp_path)]
        assert main(args) == 0, capsys.readouterr()
    assert bad.read_bytes() == damage
    # its own job names the file and rewrites it
    args = ["run", "--benchmark", SMOKE, "--agent", "ucb1", "--seeds", "0", "--workers", "1", "--results", str(tmp_path)]
    assert main(args) == 0
    assert str(bad) in capsys.readouterr().err
    load_record(bad)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_records_and_pages_get_the_umasks_mode(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        page = tmp_path / "LEADERBOARD.md"
        atomic_write_text(page, "# board\n")
        rec = metarl_bench.evaluate(metarl_bench.agent("random"), SMOKE, seed=0, results=tmp_path)
    finally:
        os.umask(old)
    for path in (page, rec.path(tmp_path)):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


# --- unusable results folders: one line, non-zero exit ----------------------------------------

EVALUATE = ["evaluate", "--benchmark", SMOKE, "--agent", "random"]
RUN = ["run", "--benchmark", SMOKE, "--agent", "random", "--seeds", "0", "--workers", "1"]


def _one_error_line(err: str) -> str:
    """The one line naming the problem (``run`` reports it per job: one job here)."""
    lines = [ln for ln in err.splitlines() if "error:" in ln or ln.startswith("FAILED:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("cmd", [EVALUATE, RUN, ["leaderboard"], ["plot"], ["compare", "a", "b", "--benchmark", SMOKE]])
def test_a_file_given_as_the_results_folder(tmp_path, capsys, cmd):
    f = tmp_path / "results.txt"
    f.write_text("not a folder")
    assert main(cmd + ["--results", str(f)]) != 0
    assert "is a file, not a folder" in _one_error_line(capsys.readouterr().err)
    assert f.read_text() == "not a folder"


@pytest.mark.parametrize("cmd", [EVALUATE, RUN])
def test_a_file_where_a_subfolder_goes(tmp_path, capsys, cmd):
    (tmp_path / "MetaRL").write_text("in the way")
    assert main(cmd + ["--results", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    line = _one_error_line(out + err)
    assert "MetaRL" in line and "a file stands where a folder is needed" in line


@pytest.mark.parametrize("cmd", [EVALUATE, RUN])
@pytest.mark.parametrize("code, fix", [(errno.EROFS, "read-only"), (errno.EACCES, "make it writable")])
def test_a_read_only_results_folder(tmp_path, capsys, monkeypatch, cmd, code, fix):
    # the tests run as root, which no permission bit stops: the refusal is simulated at mkdir
    def refuse(path, *args, **kwargs):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(os, "mkdir", refuse)
    assert main(cmd + ["--results", str(tmp_path / "new")]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert str(tmp_path / "new") in line and fix in line


@pytest.mark.parametrize("cmd", [EVALUATE, RUN])
def test_a_full_disk_keeps_the_old_record(tmp_path, capsys, monkeypatch, cmd):
    rec = metarl_bench.evaluate(metarl_bench.agent("random"), SMOKE, seed=0, results=tmp_path)
    path = rec.path(tmp_path)
    before = path.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    assert main(cmd + ["--results", str(tmp_path)] + (["--force"] if cmd is RUN else [])) != 0
    out, err = capsys.readouterr()
    assert "No space left on device" in out + err and "the disk is full" in _one_error_line(out + err)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["seed-0.json"]


@pytest.mark.parametrize("cmd", [["leaderboard"], ["plot"]])
def test_a_missing_results_folder_is_not_created(tmp_path, capsys, cmd):
    missing = tmp_path / "does-not-exist"
    assert main(cmd + ["--results", str(missing)]) != 0
    assert "no such folder" in _one_error_line(capsys.readouterr().err)
    assert not missing.exists()


def test_plot_of_a_folder_without_records_is_an_error(tmp_path, capsys):
    assert main(["plot", "--results", str(tmp_path)]) != 0
    assert "no records to plot" in _one_error_line(capsys.readouterr().err)


def test_a_bad_record_does_not_block_compare_of_other_agents(tmp_path, capsys):
    run = ["run", "--benchmark", SMOKE, "--agent", "random", "thompson", "ucb1", "--seeds", "0", "1", "2",
           "--workers", "1", "--results", str(tmp_path)]
    assert main(run) == 0
    bad = record_path(tmp_path, SMOKE, "ucb1", 1)
    bad.write_bytes(b"\xff\xfe not a record")
    capsys.readouterr()
    assert main(["compare", "thompson", "random", "--benchmark", SMOKE, "--results", str(tmp_path)]) == 0
    assert main(["compare", "ucb1", "random", "--benchmark", SMOKE, "--results", str(tmp_path)]) != 0
    assert f"{bad}: not UTF-8" in capsys.readouterr().err


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks")
def test_a_ctrl_c_during_a_record_write_lands_after_it(tmp_path, monkeypatch):
    """A Ctrl-C right after the temporary file is created (before any cleanup could be set up)
    is held until the write is complete: the record is whole and no .tmp-* file is left."""
    real = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        out = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # Python raises it at the next chance it gets
        return out

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    target = tmp_path / "seed-0.json"
    # Python's own Ctrl-C handler, as in the CLI (a pytest-xdist worker ignores SIGINT).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            atomic_write_text(target, "{}")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert target.read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["seed-0.json"]
