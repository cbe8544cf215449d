"""An interrupted sweep loses nothing and its rerun continues; the process pool agrees with serial runs.

A real ``metarl-bench run`` subprocess is stopped (SIGINT, then SIGKILL) once it has
written at least one record but before it has written all of them. The results folder
must then hold only valid records (SIGKILL may leave a ``.tmp-*`` file behind, which
the loaders and the rerun must ignore), and rerunning the same command must skip
exactly the records already there, leave them untouched, and finish the rest.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from metarl_bench.cli import main
from metarl_bench.results import load_all, load_record, record_path
from metarl_bench.sweep import plan, run_sweep

CLI = Path(sys.executable).with_name("metarl-bench")
BENCHMARKS = ["MetaRL/Bandit-k5-n10-smoke-v0", "MetaRL/Bandit-k10-n10-smoke-v0"]
AGENTS = ["random", "thompson", "greedy", "ucb1"]
# The brief's 24-job sweep first; longer ones only if a sweep finishes before it can be stopped.
SEED_LISTS = [[0, 1, 2], list(range(12)), list(range(48))]


def _run_args(results: Path, seeds: list[int], workers: int = 1) -> list[str]:
    return ["run", "--benchmark", *BENCHMARKS, "--agent", *AGENTS, "--seeds", *map(str, seeds),
            "--workers", str(workers), "--results", str(results)]


def _records(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("seed-*.json") if not p.name.startswith(".tmp-"))


def _default_sigint() -> None:
    # A shell may start background jobs with SIGINT ignored, and Python then keeps it ignored;
    # restore the default so that the interpreter turns SIGINT into KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt_sweep(
    results: Path, sig: signal.Signals, log: Path, workers: int = 1
) -> tuple[list[int], int, int]:
    """Start the sweep, send ``sig`` once a record exists; return (seeds, exit code, records at the signal).

    The sweep runs in its own process group and the signal goes to the whole group, as a
    Ctrl-C in a terminal does (with ``workers > 1`` the pool's workers receive it too).
    """
    for seeds in SEED_LISTS:
        total = len(BENCHMARKS) * len(AGENTS) * len(seeds)
        shutil.rmtree(results, ignore_errors=True)
        with log.open("w") as out:
            proc = subprocess.Popen([str(CLI), *_run_args(results, seeds, workers)], stdout=out,
                                    stderr=subprocess.STDOUT, preexec_fn=_default_sigint, start_new_session=True)
            deadline = time.monotonic() + 120
            at_signal = 0
            try:
                while proc.poll() is None and time.monotonic() < deadline:
                    if results.exists() and next(results.rglob("seed-*.json"), None) is not None:
                        os.killpg(proc.pid, sig)
                        at_signal = len(_records(results))
                        break
                    time.sleep(0.002)
                rc = proc.wait(timeout=60)
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        n = len(_records(results))
        if n == 0:
            pytest.fail(f"the sweep wrote no record (rc {rc}):\n{log.read_text()}")
        if n < total:
            return seeds, rc, at_signal
        # It finished before the signal landed: try a longer sweep.
    pytest.fail("every sweep finished before it could be interrupted")


def _check_folder(results: Path, allow_tmp: bool) -> list[Path]:
    """Only valid records (and, if allowed, ignored .tmp-* and claim files) under ``results``; returns the records."""
    records = _records(results)
    for p in records:
        load_record(p)  # raises RecordError naming the file if it is not a valid record
    leftovers = [p for p in results.rglob("*") if p.is_file() and p not in records]
    # a killed process may also leave its job's (released) .seed-N.claim file, which the next claim takes over
    tmp = [p for p in leftovers if p.name.startswith(".tmp-") or (p.name.startswith(".seed-") and p.suffix == ".claim")]
    assert not [p for p in leftovers if p not in tmp], f"unexpected files: {leftovers}"
    if not allow_tmp:
        assert not tmp, f"an interrupted write left temporary files: {tmp}"
    loaded, errors = load_all(results)
    assert not errors, errors  # a .tmp-* leftover is not read as a (broken) record
    assert len(loaded) == len(records)
    return records


def _interrupt_then_resume(
    tmp_path: Path, sig: signal.Signals, capsys: pytest.CaptureFixture[str], workers: int = 1
) -> str:
    results = tmp_path / "results"
    log = tmp_path / "sweep.log"
    seeds, rc, at_signal = _interrupt_sweep(results, sig, log, workers)
    output = log.read_text()
    # Killed processes (SIGKILL, or pool workers ended on Ctrl-C) may leave a .tmp-* file behind.
    allow_tmp = sig == signal.SIGKILL or workers > 1
    before = _check_folder(results, allow_tmp)
    # It stopped promptly: at most the jobs in flight (and a few more on a slow machine) finished after the signal.
    assert len(before) - at_signal <= 2 * workers + 2, f"{len(before) - at_signal} jobs finished after the signal"
    saved = {p: p.read_bytes() for p in before}
    total = len(BENCHMARKS) * len(AGENTS) * len(seeds)

    assert main(_run_args(results, seeds, workers)) == 0  # the same command again
    out = capsys.readouterr().out
    assert f"{total} jobs, {len(before)} already done" in out, out
    assert f"{total - len(before)} to run" in out

    after = _check_folder(results, allow_tmp)
    assert len(after) == total
    for b in BENCHMARKS:
        for a in AGENTS:
            for s in seeds:
                rec = load_record(record_path(results, b, a, s))
                assert (rec.benchmark_id, rec.agent_name, rec.seed) == (b, a, s)
    assert all(p.read_bytes() == data for p, data in saved.items()), "the rerun rewrote finished records"
    return output + f"\n[rc {rc}]"


def test_sigint_keeps_finished_records_and_the_rerun_continues(tmp_path, capsys):
    output = _interrupt_then_resume(tmp_path, signal.SIGINT, capsys)
    assert output.endswith("[rc 130]"), output
    assert "interrupted: finished records are kept" in output


def test_sigkill_keeps_finished_records_and_the_rerun_continues(tmp_path, capsys):
    output = _interrupt_then_resume(tmp_path, signal.SIGKILL, capsys)
    assert output.endswith(f"[rc {-signal.SIGKILL}]"), output


def test_sigint_stops_a_process_pool_sweep_promptly(tmp_path, capsys):
    # Ctrl-C must end a --workers sweep now (queued jobs dropped), not after every queued job ran;
    # _interrupt_sweep fails if each sweep it tries writes all its records despite the signal.
    output = _interrupt_then_resume(tmp_path, signal.SIGINT, capsys, workers=2)
    assert output.endswith("[rc 130]"), output
    assert "interrupted: finished records are kept" in output
    assert "FAILED" not in output  # the workers do not report the interrupt as failed jobs


def test_process_pool_gives_the_same_scores_as_serial(tmp_path):
    jobs, skipped = plan(BENCHMARKS[:1], ["random", "thompson", "ucb1"], [0, 1])
    assert not skipped and len(jobs) == 6
    serial, failed_serial = run_sweep(jobs, tmp_path / "serial", workers=1)
    seen = []
    pooled, failed_pool = run_sweep(jobs, tmp_path / "pool", workers=2, on_done=lambda j, p, e: seen.append(j))
    assert not failed_serial and not failed_pool
    assert len(serial) == len(pooled) == len(jobs)
    assert sorted(seen, key=str) == sorted(jobs, key=str)  # on_done runs once per job, in this process
    for job in jobs:
        a = load_record(record_path(tmp_path / "serial", job.benchmark, job.agent, job.seed))
        b = load_record(record_path(tmp_path / "pool", job.benchmark, job.agent, job.seed))
        assert a.scores == b.scores, job
        np.testing.assert_array_equal(a.returns, b.returns)
    # Different seeds give different runs (the comparison above is not vacuous).
    r0, r1 = (load_record(record_path(tmp_path / "pool", BENCHMARKS[0], "thompson", s)) for s in (0, 1))
    assert not np.array_equal(r0.returns, r1.returns)
